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

PACKAGE_PG_CONFIGS="$(pg_config --bindir)/pg_config $repo/.pg18/bin/pg_config" "$repo/scripts/package.sh" >/dev/null 2>&1
deb=$(ls "$repo"/dist/postgresql-15-authfort-cleanup_*.deb)
check "make package builds a .deb and a tarball for 15 and for 18" "3" "$(ls "$repo"/dist | wc -l)"
check "the .deb depends on postgresql-15" "yes" \
    "$(dpkg-deb -f "$deb" Depends | grep -q 'postgresql-15' && echo yes || echo no)"
version=$(sed -nE 's/^version = "(.*)"/\1/p' "$repo/Cargo.toml")
for major in 15 18; do
    check "the $major tarball holds the library and the current install script" \
        "authfort_cleanup-$version-pg$major/extension/authfort_cleanup--$version.sql authfort_cleanup-$version-pg$major/lib/authfort_cleanup.so" \
        "$(tar -tzf "$repo"/dist/authfort_cleanup-"$version"-pg"$major"-*.tar.gz |
            grep -E "(\.so|/authfort_cleanup--$version\.sql)\$" | sort | tr '\n' ' ' | sed 's/ $//')"
done

DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
trap 'apt-get remove -y -qq postgresql-15-authfort-cleanup >/dev/null 2>&1 || true; restore_development_build; "$repo/scripts/cluster.sh" destroy' EXIT
check "apt installs the package" "ii" "$(dpkg-query -W -f='${db:Status-Abbrev}' postgresql-15-authfort-cleanup | cut -c1-2)"
for file in authfort_cleanup.control authfort_cleanup--0.1.0.sql authfort_cleanup--0.1.0--0.2.0.sql; do
    check "the package owns $file" "yes" \
        "$(dpkg -L postgresql-15-authfort-cleanup | grep -q "/extension/$file\$" && echo yes || echo no)"
done

start_cluster package 54421
trap 'apt-get remove -y -qq postgresql-15-authfort-cleanup >/dev/null 2>&1 || true; restore_development_build; "$repo/scripts/cluster.sh" destroy' EXIT
new_authfort_db app >/dev/null
sql app "SELECT authfort_cleanup_create_indexes()" >/dev/null
sql app "INSERT INTO authfort_users (id, email, created_at, updated_at)
         VALUES ('00000000-0000-0000-0000-000000000001', 'ada@example.com', now(), now())"
sql app "INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
         SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'token-' || n, 'email_otp',
                now() + CASE WHEN n <= 3 THEN interval '-1 day' ELSE interval '1 day' END, now()
           FROM generate_series(1, 5) AS n"
check "the packaged extension deletes the expired tokens" 3 "$(sql app "SELECT authfort_cleanup_tokens()")"
check "and keeps the live ones" 2 "$(sql app "SELECT count(*) FROM authfort_verification_tokens")"
sql app "DROP EXTENSION authfort_cleanup" "CREATE EXTENSION authfort_cleanup VERSION '0.1.0'" "ALTER EXTENSION authfort_cleanup UPDATE"
check "the package updates 0.1.0 to the current version" \
    "$(sed -nE 's/^version = "(.*)"/\1/p' "$repo/Cargo.toml")" \
    "$(sql app "SELECT extversion FROM pg_extension WHERE extname = 'authfort_cleanup'")"
sql app "DROP EXTENSION authfort_cleanup"

apt-get remove -y -qq postgresql-15-authfort-cleanup >/dev/null
check "apt removes the package and its files" "no" \
    "$([ -e "$(pg_config --sharedir)/extension/authfort_cleanup.control" ] && echo yes || echo no)"
finish
