#!/usr/bin/env bash
# `make install` as a DBA runs it on a database server: it builds and
# installs the extension and nothing else (no setup, no system package, no
# second PostgreSQL), for any supported major, registered with pgrx or not.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$repo"

fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
# fake_pg_config MAJOR INCLUDEDIR [DIR]: a pg_config that reports that
# major and that server-header directory, and DIR (default: its own) as
# every other directory.
fake_pg_config() {
    cat >"$fake/pg_config" <<EOF
#!/bin/sh
case "\$1" in
    --version) echo "PostgreSQL $1.0" ;;
    --includedir-server) echo "$2" ;;
    *) echo "${3:-$fake}" ;;
esac
EOF
    chmod +x "$fake/pg_config"
}

for config in ${TEST_PG_CONFIGS}; do
    # The Debian 13 root's PostgreSQL is built inside it, by its own make.
    [[ $config == debian13:* ]] && continue
    major=$("$config" --version | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p')
    plan=$(make -s -n install PG_CONFIG="$config")
    check "make install for $major runs no setup" no "$(contains "$plan" setup.sh)"
    check "make install for $major calls no package manager but build-tools" no \
        "$(grep -qE 'apt-get|dpkg|pip |npm |debootstrap' <<<"$plan" && echo yes || echo no)"
    check "make install for $major tells pgrx its pg_config" yes \
        "$(contains "$plan" "PGRX_PG_CONFIG_PATH=\"$config\" cargo pgrx install --pg-config \"$config\"")"
done

# A pg_config never registered with `cargo pgrx init`: an empty PGRX_HOME.
# The first major's pg_config, spelled as `make test` built it, so the build
# is reused (another spelling would rebuild pgrx's bindings).
empty_home=$(mktemp -d)
status=0
packages_before=$(dpkg-query -W -f='${Package}=${Version}\n' | sort)
output=$(PGRX_HOME=$empty_home make -s install-dev PG_CONFIG="${TEST_PG_CONFIGS%% *}" 2>&1) || status=$?
rm -rf "$empty_home"
check "make install-dev works with a PostgreSQL pgrx was never told about" 0 "$status"
check "and says nothing about pgrx managing it" no "$(contains "$output" 'not managed by pgrx')"
check "and installs, removes or upgrades no Debian package" "$packages_before" \
    "$(dpkg-query -W -f='${Package}=${Version}\n' | sort)"

fake_pg_config 14 "$fake"
status=0
output=$(make -s install PG_CONFIG="$fake/pg_config" 2>&1) || status=$?
check "make install refuses PostgreSQL 14" yes "$([ "$status" -ne 0 ] && echo yes || echo no)"
check "naming the supported majors" yes "$(contains "$output" "authfort_cleanup supports 15 16 17 18")"

fake_pg_config 17 "$fake/no-headers"
status=0
output=$(PG_CONFIG="$fake/pg_config" scripts/build-tools.sh 2>&1) || status=$?
check "build-tools refuses a PostgreSQL without server headers" yes "$([ "$status" -ne 0 ] && echo yes || echo no)"
check "naming the package that has them" yes "$(contains "$output" "postgresql-server-dev-17")"

# Debian's layout for a major whose server is not installed: build-tools
# stops rather than install a server. Only where that directory is free.
debian_bindir=/usr/lib/postgresql/16/bin
if [ ! -e "${debian_bindir%/bin}" ] && [ -z "$(dpkg-query -W -f='${Version}' postgresql-16 2>/dev/null)" ]; then
    mkdir -p "$debian_bindir"
    fake_pg_config 16 "$fake/no-headers" "$debian_bindir"
    cp "$fake/pg_config" "$debian_bindir/pg_config"
    status=0
    output=$(PG_CONFIG="$debian_bindir/pg_config" scripts/build-tools.sh 2>&1) || status=$?
    rm -rf "${debian_bindir%/bin}"
    check "build-tools stops where Debian's server is not installed" yes "$([ "$status" -ne 0 ] && echo yes || echo no)"
    check "naming the server package, and installing none" "yes|" \
        "$(contains "$output" 'apt-get install postgresql-16)')|$(dpkg-query -W -f='${Version}' postgresql-16 2>/dev/null)"
else
    skip "build-tools without Debian's server" "$debian_bindir is in use on this machine"
fi

finish
