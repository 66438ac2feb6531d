#!/usr/bin/env bash
# The .deb: build it, install it with apt, use the extension from it in a
# throwaway cluster, remove it again. The development build is reinstalled
# at the end, since the package's removal takes the shared files with it.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
[ "$(pg_config --bindir)" = "/usr/lib/postgresql/$pg_major/bin" ] ||
    skip_suite "the .deb is for Debian's postgresql-$pg_major package, and PostgreSQL $pg_major here is not Debian's"

restore_development_build() {
    make -s -C "$repo" install-dev >/dev/null 2>&1 || echo "  could not reinstall the development build"
}

# Debian 12's 15 (on the host, with 18's tarball beside it, as `make package`
# builds them) or Debian 13's 17 (in its root).
name=postgresql-$pg_major-authfort-cleanup
configs="$(pg_config --bindir)/pg_config" majors=$pg_major
if [ "$pg_major" = 15 ]; then
    configs+=" $repo/.pg18/bin/pg_config" majors+=" 18"
fi
PACKAGE_PG_CONFIGS=$configs "$repo/scripts/package.sh" >/dev/null 2>&1
deb=$(ls "$repo"/dist/"$name"_*.deb)
check "make package builds the .deb and a tarball for each of $majors" "$name $majors" \
    "$(basename "$deb" | sed 's/_.*//') $(for major in $majors; do
        ls "$repo"/dist/authfort_cleanup-*-pg"$major"-*.tar.gz >/dev/null && printf '%s ' "$major"; done | sed 's/ $//')"
check "the .deb depends on postgresql-$pg_major" "yes" \
    "$(dpkg-deb -f "$deb" Depends | grep -q "postgresql-$pg_major" && echo yes || echo no)"
version=$(sed -nE 's/^version = "(.*)"/\1/p' "$repo/Cargo.toml")
for major in $majors; do
    check "the $major tarball holds the library and the current install script" \
        "authfort_cleanup-$version-pg$major/extension/authfort_cleanup--$version.sql authfort_cleanup-$version-pg$major/lib/authfort_cleanup.so" \
        "$(tar -tzf "$repo"/dist/authfort_cleanup-"$version"-pg"$major"-*.tar.gz |
            grep -E "(\.so|/authfort_cleanup--$version\.sql)\$" | sort | tr '\n' ' ' | sed 's/ $//')"
done

# Debian 13's .deb goes onto a Debian 13 that has only PostgreSQL 17 and
# pg_cron (scripts/debian13.sh's plain root), with AuthFort's schema as its
# migrations make it, dumped from a cluster here.
. /etc/os-release
if [ "$VERSION_CODENAME" = trixie ]; then
    start_cluster package 54421
    PGOPTIONS='-c client_min_messages=warning' new_authfort_db app >/dev/null
    sql app "DROP EXTENSION authfort_cleanup"
    schema=$repo/.cluster/package-authfort-schema.sql
    pg_dump -s -d app >"$schema"
    "$repo/scripts/cluster.sh" destroy
    output=$("$repo/scripts/debian13.sh" plain bash "$repo/tests/package_plain_debian.sh" "$deb" "$schema" "$version" 2>&1) ||
        true
    rm -f "$schema"
    printf '%s\n' "$output"
    passed=$((passed + $(grep -c '^  ok  ' <<<"$output" || true)))
    failed=$((failed + $(grep -c '^  FAIL ' <<<"$output" || true)))
    [ "$(grep -cE '^  (ok  |FAIL )' <<<"$output" || true)" -eq 10 ] ||
        { failed=$((failed + 1)); echo "  FAIL plain Debian 13: not all of its 10 checks ran"; }
    finish
    exit 0
fi

DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
trap 'apt-get remove -y -qq "$name" >/dev/null 2>&1 || true; restore_development_build; "$repo/scripts/cluster.sh" destroy' EXIT
check "apt installs the package" "ii" "$(dpkg-query -W -f='${db:Status-Abbrev}' "$name" | cut -c1-2)"
for file in authfort_cleanup.control authfort_cleanup--0.1.0.sql authfort_cleanup--0.1.0--0.2.0.sql; do
    check "the package owns $file" "yes" \
        "$(dpkg -L "$name" | grep -q "/extension/$file\$" && echo yes || echo no)"
done

start_cluster package 54421
trap 'apt-get remove -y -qq "$name" >/dev/null 2>&1 || true; restore_development_build; "$repo/scripts/cluster.sh" destroy' EXIT
new_authfort_db app >/dev/null
sql app "SELECT authfort_cleanup_create_indexes()" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d app -f "$repo/tests/package_tokens.sql" >/dev/null
check "the packaged extension deletes the expired tokens" 3 "$(sql app "SELECT authfort_cleanup_tokens()")"
check "and keeps the live ones" 2 "$(sql app "SELECT count(*) FROM authfort_verification_tokens")"
sql app "DROP EXTENSION authfort_cleanup" "CREATE EXTENSION authfort_cleanup VERSION '0.1.0'" "ALTER EXTENSION authfort_cleanup UPDATE"
check "the package updates 0.1.0 to the current version" \
    "$(sed -nE 's/^version = "(.*)"/\1/p' "$repo/Cargo.toml")" \
    "$(sql app "SELECT extversion FROM pg_extension WHERE extname = 'authfort_cleanup'")"
sql app "DROP EXTENSION authfort_cleanup"

apt-get remove -y -qq "$name" >/dev/null
check "apt removes the package and its files" "no" \
    "$([ -e "$(pg_config --sharedir)/extension/authfort_cleanup.control" ] && echo yes || echo no)"
finish
