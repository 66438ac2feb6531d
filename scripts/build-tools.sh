#!/usr/bin/env bash
# What `make install` needs to build for the PostgreSQL that PG_CONFIG names,
# and nothing else: it may run on a database server, so it installs no
# server, pg_cron, Node.js, wheel or venv. For Debian's own PostgreSQL it
# installs that major's server headers, pinned to the installed server's
# version (an unpinned install would upgrade the running server), and
# libclang for pgrx's bindgen; cargo-pgrx goes into Cargo's bin directory.
# Anything else missing is named, with what provides it, and the build stops.
set -euo pipefail

PGRX_VERSION=0.18.1
pg_config=${PG_CONFIG:?PG_CONFIG must name the pg_config of the PostgreSQL to build for}

missing() {
    echo "make install: $1" >&2
    exit 1
}

installed_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

apt_install() {
    echo "==> apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
        missing "apt-get install $* failed"
}

command -v cargo >/dev/null ||
    missing "cargo is not on PATH; install Rust with rustup (https://rustup.rs), then run make install again"

major=$("$pg_config" --version | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p')
headers=$("$pg_config" --includedir-server)
if [ ! -f "$headers/postgres.h" ]; then
    # Debian's pg_config: its headers are postgresql-server-dev-N, at the
    # server's own version.
    [ "$("$pg_config" --bindir)" = "/usr/lib/postgresql/$major/bin" ] && command -v apt-get >/dev/null ||
        missing "$pg_config has no server headers in $headers; install the ones of that PostgreSQL (on Debian: postgresql-server-dev-$major)"
    server=$(installed_version "postgresql-$major")
    [ -n "$server" ] || missing "PostgreSQL $major is not installed (Debian: apt-get install postgresql-$major); authfort_cleanup installs into a server, never one of its own"
    apt_install "postgresql-server-dev-$major=$server"
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libclang' && [ -z "${LIBCLANG_PATH:-}" ]; then
    command -v apt-get >/dev/null || missing "libclang is not installed (pgrx's bindgen needs it), or set LIBCLANG_PATH"
    apt_install libclang-dev clang
fi

if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    # A debug build: cargo-pgrx only drives cargo, so its own speed does not
    # matter, and it compiles in half the time of a release build.
    echo "==> cargo install --debug cargo-pgrx $PGRX_VERSION (into $(dirname "$(command -v cargo)"); about 2 minutes)"
    cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked --debug --quiet 2>&1 |
        grep -v -e 'yanked' -e '^warning: package' >&2 || true
    cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$" || missing "cargo install cargo-pgrx $PGRX_VERSION failed"
fi
