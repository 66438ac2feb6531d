#!/usr/bin/env bash
# PostgreSQL 17: no server or headers for it run on this Debian 12 host, so
# the crate is type-checked against the bindings pgrx ships for it (what
# docs.rs builds with). Nothing is linked or run: the suites on 15, 16 and
# 18 are what prove behaviour.
set -euo pipefail
cd "$(dirname "$0")/../.."

passed=0
failed=0
for major in 17; do
    log=$(mktemp)
    if RUSTC_BOOTSTRAP=1 DOCS_RS=1 cargo check -Z profile-rustflags \
        --config 'profile.dev.package.pgrx-pg-sys.rustflags=["--cfg","docsrs"]' \
        --lib --no-default-features --features "pg$major" --target-dir target/typecheck >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "  ok  the crate type-checks against PostgreSQL $major"
    else
        failed=$((failed + 1))
        echo "  FAIL the crate does not type-check against PostgreSQL $major:"
        grep -E '^(error|warning)' -A 6 "$log" | head -n 40
    fi
    rm -f "$log"
done
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
