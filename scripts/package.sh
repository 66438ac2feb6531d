#!/usr/bin/env bash
# Builds the release packages into dist/, for each PostgreSQL in
# PACKAGE_PG_CONFIGS (default: the pg_config on PATH, Debian's 15, and the 18
# that scripts/setup.sh installs in .pg18):
#   - a tarball of what to install: lib/authfort_cleanup.so and extension/*,
#     to copy into `pg_config --pkglibdir` and `pg_config --sharedir`/extension
#     (doc/upgrades.md has the commands);
#   - for Debian's own PostgreSQL, a .deb: for Debian 12's 15 on the host,
#     for Debian 13's 17 when run in the Debian 13 root (`make package` does
#     both).
# Only the files of the majors it builds are replaced in dist/.
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a pg_configs <<<"${PACKAGE_PG_CONFIGS:-$(command -v pg_config) $PWD/.pg18/bin/pg_config}"
version=$(sed -nE 's/^version = "(.*)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)

mkdir -p dist
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT

# package PG_CONFIG
package() {
    local pg_config=$1 pg_major
    pg_major=$("$pg_config" --version | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p')
    local tree="target/release/authfort_cleanup-pg$pg_major"
    rm -f dist/authfort_cleanup-*-pg"$pg_major"-*.tar.gz dist/postgresql-"$pg_major"-authfort-cleanup_*.deb
    # cargo pgrx package lays the files out under pg_config's own paths.
    # Through PGRX_PG_CONFIG_PATH and with the linker's pruning, as `make
    # install` builds (see the Makefile).
    PGRX_PG_CONFIG_PATH=$pg_config CARGO_PGRX_DISABLE_GC_SECTIONS_WORKAROUND=1 cargo pgrx package --pg-config "$pg_config" --no-default-features --features "pg$pg_major"
    local library_dir="$tree$("$pg_config" --pkglibdir)" extension_dir="$tree$("$pg_config" --sharedir)/extension"
    # pgrx packages the current version's script and the update scripts; the
    # released install scripts let CREATE EXTENSION ... VERSION and updates work.
    local script
    for script in sql/authfort_cleanup--*.sql; do
        [[ $(basename "$script") =~ ^authfort_cleanup--[0-9.]+\.sql$ ]] && install -m 644 "$script" "$extension_dir/"
    done

    local portable="$staging/authfort_cleanup-$version-pg$pg_major"
    mkdir -p "$portable/lib" "$portable/extension"
    cp "$library_dir/authfort_cleanup.so" "$portable/lib/"
    cp "$extension_dir"/authfort_cleanup* "$portable/extension/"
    tar -C "$staging" -czf "dist/authfort_cleanup-$version-pg$pg_major-$arch.tar.gz" "$(basename "$portable")"

    if [ "$("$pg_config" --bindir)" = "/usr/lib/postgresql/$pg_major/bin" ]; then
        debian_package "$pg_major" "$tree"
    fi
}

# debian_package MAJOR TREE: the .deb, with the files where Debian's
# postgresql-MAJOR looks for them.
debian_package() {
    local pg_major=$1 tree=$2
    local name="postgresql-$pg_major-authfort-cleanup" root="$staging/deb-$pg_major"
    mkdir -p "$root/DEBIAN" "$root/usr/share/doc/$name"
    cp -a "$tree/." "$root/"
    cp -r README.md doc "$root/usr/share/doc/$name/"
    cat >"$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: authfort_cleanup maintainers <maintainers@authfort-cleanup.invalid>
Depends: postgresql-$pg_major, libc6
Suggests: postgresql-$pg_major-cron
Section: database
Priority: optional
Description: AuthFort's expired-data cleanup inside PostgreSQL $pg_major
 Deletes AuthFort's expired signing keys, verification tokens and sessions
 with the same rules as AuthFort's own cleanup methods, in batches that
 commit, on a pg_cron schedule, with a run log and a status view.
CONTROL
    find "$root" -type d -exec chmod 755 {} +
    dpkg-deb --root-owner-group --build "$root" "dist/${name}_${version}_$arch.deb" >/dev/null
}

for pg_config in "${pg_configs[@]}"; do
    package "$pg_config"
done
ls -l dist
