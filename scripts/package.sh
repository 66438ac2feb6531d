#!/usr/bin/env bash
# Builds the release packages into dist/:
#   - the plain tree from `cargo pgrx package`, as a tarball;
#   - a .deb for Debian 12 and the PostgreSQL that pg_config names.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_config=$(command -v pg_config)
pg_major=$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
version=$(sed -nE 's/^version = "(.*)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
name="postgresql-$pg_major-authfort-cleanup"
tree="target/release/authfort_cleanup-pg$pg_major"

cargo pgrx package --pg-config "$pg_config"
# pgrx packages the current version's script and the update scripts; the
# released install scripts let CREATE EXTENSION ... VERSION and updates work.
extension_dir="$tree$("$pg_config" --sharedir)/extension"
for script in sql/authfort_cleanup--*.sql; do
    [[ $(basename "$script") =~ ^authfort_cleanup--[0-9.]+\.sql$ ]] && install -m 644 "$script" "$extension_dir/"
done

rm -rf dist
mkdir -p dist
tar -C "$tree" -czf "dist/authfort_cleanup-$version-pg$pg_major-$arch.tar.gz" .

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cp -a "$tree/." "$staging/"
mkdir -p "$staging/DEBIAN" "$staging/usr/share/doc/$name"
cp -r README.md doc "$staging/usr/share/doc/$name/"
cat >"$staging/DEBIAN/control" <<CONTROL
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
find "$staging" -type d -exec chmod 755 {} +
dpkg-deb --root-owner-group --build "$staging" "dist/${name}_${version}_$arch.deb" >/dev/null
ls -l dist
