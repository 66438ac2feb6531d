#!/usr/bin/env bash
# What `make install` needs to build for the PostgreSQL that PG_CONFIG names,
# and nothing else: it may run on a database server, so it installs no
# system package and no PostgreSQL. cargo-pgrx goes into Cargo's own bin
# directory (as `cargo install` does); anything else missing is named, with
# the Debian package that provides it, and the build stops.
set -euo pipefail

PGRX_VERSION=0.18.1
pg_config=${PG_CONFIG:?PG_CONFIG must name the pg_config of the PostgreSQL to build for}

missing() {
    echo "make install: $1" >&2
    exit 1
}

command -v cargo >/dev/null ||
    missing "cargo is not on PATH; install Rust with rustup (https://rustup.rs), then run make install again"

# pgrx's bindgen reads the server headers through libclang.
headers=$("$pg_config" --includedir-server)
[ -f "$headers/postgres.h" ] ||
    missing "$pg_config has no server headers in $headers (Debian: apt-get install postgresql-server-dev-$("$pg_config" --version | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p'))"
ldconfig -p 2>/dev/null | grep -q 'libclang' || [ -n "${LIBCLANG_PATH:-}" ] ||
    missing "libclang is not installed (Debian: apt-get install libclang-dev clang), or set LIBCLANG_PATH"

if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    # A debug build: cargo-pgrx only drives cargo, so its own speed does not
    # matter, and it compiles in half the time of a release build.
    echo "==> cargo install --debug cargo-pgrx $PGRX_VERSION (into $(dirname "$(command -v cargo)"); about 2 minutes)"
    cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked --debug --quiet 2>&1 |
        grep -v -e 'yanked' -e '^warning: package' >&2 || true
    cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$" || missing "cargo install cargo-pgrx $PGRX_VERSION failed"
fi
