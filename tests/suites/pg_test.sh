#!/usr/bin/env bash
# Rust-level tests (#[pg_test]) inside a PostgreSQL that cargo-pgrx starts.
# PostgreSQL refuses to run as root, so as root the server runs as the
# postgres user, with a data directory that user owns. It installs its test
# build (with a `tests` schema) system-wide, so tests/run.sh runs it last.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The major under test. pgrx reads its pg_config from PGRX_PG_CONFIG_PATH,
# exactly as `make install-dev` builds, so the two share one build of
# pgrx-pg-sys (a different value would regenerate its bindings).
pg_config=${PG_CONFIG:-$(command -v pg_config)}
export PGRX_PG_CONFIG_PATH=$pg_config
major=$("$pg_config" --version | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p')

runas=()
if [ "$(id -u)" -eq 0 ]; then
    pgdata="$PWD/.cluster/pg_test"
    rm -rf "$pgdata"
    mkdir -p "$pgdata"
    chown postgres: "$pgdata"
    runas=(--runas postgres --pgdata "$pgdata")
fi
log=$(mktemp)
set +e
cargo pgrx test "pg$major" --no-default-features --features "pg$major" "${runas[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# cargo's own summaries: "test result: ok. N passed; M failed; ..."
passed=$(grep -E '^test result:' "$log" | sed -nE 's/.* ([0-9]+) passed.*/\1/p' | awk '{ total += $1 } END { print total + 0 }')
failed=$(grep -E '^test result:' "$log" | sed -nE 's/.* ([0-9]+) failed.*/\1/p' | awk '{ total += $1 } END { print total + 0 }')
rm -f "$log"
echo "${passed:-0} passed, ${failed:-1} failed"
exit "$status"
