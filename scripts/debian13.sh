#!/usr/bin/env bash
# PostgreSQL 17 as Debian 13 (trixie) ships it, with its pg_cron, for the
# tests: Debian 12 has no 17, and Debian 13's binaries need its newer glibc,
# so they run in a Debian 13 root in .debian13 (git ignores it). A second,
# plain root has only PostgreSQL 17 and pg_cron, as a Debian 13 database
# server has: the package suite installs the .deb there.
#
#   scripts/debian13.sh create            debootstrap both roots and install
#                                         what the suites need (idempotent)
#   scripts/debian13.sh run CMD [ARG]     run CMD inside the build root, in
#                                         this checkout (same path), as root
#   scripts/debian13.sh plain CMD [ARG]   the same in the plain root (no
#                                         toolchain, nothing but the checkout)
#   scripts/debian13.sh destroy           delete both roots
#
# Every mount lives in a private mount namespace (unshare), so it ends with
# CMD, failure or not: none is ever left behind for an `rm -rf .debian13` to
# reach through into the host. Inside, the checkout's .venv and target/ are
# the root's own (Debian 13's Python; a build of its own, as a build shared
# with the host's fails), and the host's Rust toolchain is used.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
root=$here/.debian13/root
plain_root=$here/.debian13/plain
private=$here/.debian13/private   # the root's own .venv and target/
# The host's own Debian mirror, where it names one.
mirror=$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
# debootstrap's own resolver handles the server, its pg_cron and headers;
# apt, inside, the rest: the build (libclang for pgrx's bindgen), sudo to run
# clusters as postgres, Python for the tests, and the clients suite's
# toolchains and drivers.
base_packages=(postgresql-17 postgresql-17-cron postgresql-server-dev-17)
packages=(libclang-dev clang make gcc sudo ca-certificates python3 python3-venv nodejs npm golang-go
    golang-github-jackc-pgx-v4-dev default-jdk-headless libpostgresql-jdbc-java ruby-pg php-cli php-pgsql
    postgresql-17-repack)

log() { printf '==> %s\n' "$*"; }

# What the root's processes see of the host's environment: the build and
# test settings, and where to find the CA certificates the package
# registries are reached through (the host's bundle is mounted in).
passed_variables=(PG_CONFIG TEST_PG_CONFIGS SUITES OLD_PG_CONFIG NEW_PG_CONFIG
    SSL_CERT_FILE SSL_CERT_DIR PIP_CERT REQUESTS_CA_BUNDLE CURL_CA_BUNDLE NODE_EXTRA_CA_CERTS GIT_SSL_CAINFO
    PIP_DEFAULT_TIMEOUT)
ca_bundle=/etc/ssl/certs/ca-certificates.crt

# inside ROOT CMD...: CMD in ROOT, with /proc, /sys, /dev and the checkout
# mounted, and in the build root also the CA bundle, the Rust toolchain and
# the root's own .venv and target/; all in a mount namespace that dies with
# CMD.
inside() {
    local target_root=$1 toolchain=no
    shift
    [ "$target_root" = "$root" ] && toolchain=yes
    local environment=(HOME="$HOME" PATH="$HOME/.cargo/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        LANG=C.UTF-8 TERM="${TERM:-dumb}") variable
    for variable in "${passed_variables[@]}"; do
        [ -n "${!variable:-}" ] && environment+=("$variable=${!variable}")
    done
    unshare --mount --propagation private -- bash -euo pipefail -c '
        root=$1 here=$2 private=$3 ca_bundle=$4 toolchain=$5 count=$6
        shift 6
        environment=("${@:1:$count}")
        shift "$count"
        # The root a mount point of its own, so that a namespace made inside
        # it (the package suite enters the plain root from the build root)
        # can make its mounts private too.
        mount --bind "$root" "$root"
        mount -t proc proc "$root/proc"
        mount --rbind /sys "$root/sys"
        mount --rbind /dev "$root/dev"
        # The host'"'"'s name resolves there too (sudo looks it up).
        mount --bind -o ro /etc/hosts "$root/etc/hosts"
        mkdir -p "$root$here"
        mount --bind "$here" "$root$here"
        if [ "$toolchain" = yes ]; then
            if [ -f "$ca_bundle" ] && [ -f "$root$ca_bundle" ]; then
                mount --bind -o ro "$ca_bundle" "$root$ca_bundle"
            fi
            for dir in "$HOME/.cargo" "$HOME/.rustup"; do
                mkdir -p "$root$dir"
                mount --bind "$dir" "$root$dir"
            done
            for dir in .venv target; do
                mkdir -p "$private/$dir" "$here/$dir"
                mount --bind "$private/$dir" "$root$here/$dir"
            done
        fi
        exec chroot "$root" env -i "${environment[@]}" bash -c "cd \"\$0\" && exec \"\$@\"" "$here" "$@"
    ' inside "$target_root" "$here" "$private" "$ca_bundle" "$toolchain" "${#environment[@]}" "${environment[@]}" "$@"
}

# remove DIR: deletes a root, never through a mount: mounts live only in
# the namespaces of inside(), but a mount made by hand would show here.
remove() {
    if findmnt -R "$1" >/dev/null 2>&1 || findmnt -rn -o TARGET | grep -q "^$1/"; then
        echo "something is mounted under $1 (findmnt -R $1): unmount it first" >&2
        exit 1
    fi
    rm -rf --one-file-system "$1"
}

# bootstrap DIR LOG PACKAGE...: a minimal Debian 13 in DIR with PACKAGEs.
bootstrap() {
    local dir=$1 log_file=$2
    shift 2
    remove "$dir"
    mkdir -p "$dir"
    # debootstrap mounts /proc and /sys in DIR while it installs: in a
    # namespace of its own, those mounts end with it even if it fails.
    unshare --mount --propagation private -- \
        debootstrap --variant=minbase --include="$(IFS=,; echo "$*")" trixie "$dir" "$mirror" >"$log_file" 2>&1 ||
        { tail -n 20 "$log_file" >&2; echo "debootstrap failed; see $log_file" >&2; exit 1; }
}

# debootstrap itself comes from the host's Debian; a new machine lacks it.
ensure_debootstrap() {
    command -v debootstrap >/dev/null && return
    log "apt-get install debootstrap"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap; } \
        >"$here/.debian13/apt-host.log" 2>&1 ||
        { tail -n 20 "$here/.debian13/apt-host.log" >&2; echo "apt-get install debootstrap failed" >&2; exit 1; }
}

create() {
    mkdir -p "$here/.debian13"
    ensure_debootstrap
    if [ ! -f "$root/.created" ]; then
        log "debootstrap Debian 13 into .debian13/root, then its build and test tools (about 5 minutes, 3.3 GB)"
        bootstrap "$root" "$here/.debian13/debootstrap.log" "${base_packages[@]}"
        touch "$root/.created"
    fi
    # Every time: a root made before a package joined the list gets it too.
    if ! inside "$root" dpkg-query -W "${packages[@]}" >/dev/null 2>&1; then
        log "apt-get install, in the root: ${packages[*]}"
        inside "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" \
            >"$here/.debian13/apt.log" 2>&1 ||
            { tail -n 20 "$here/.debian13/apt.log" >&2; echo "apt-get install in the root failed" >&2; exit 1; }
    fi
    if [ ! -f "$plain_root/.created" ]; then
        log "debootstrap a plain Debian 13 with PostgreSQL 17 and pg_cron into .debian13/plain"
        bootstrap "$plain_root" "$here/.debian13/debootstrap-plain.log" postgresql-17 postgresql-17-cron
        touch "$plain_root/.created"
    fi
    # The suites' own setup, inside: the venv, the Rust client's crates.
    inside "$root" scripts/setup.sh
}

# require ROOT: ROOT was created.
require() {
    [ -f "$1/.created" ] || { echo "no Debian 13 root in $1 yet: run scripts/debian13.sh create" >&2; exit 1; }
}

case "${1:-}" in
    create) create ;;
    run)
        shift
        require "$root"
        inside "$root" "$@"
        ;;
    plain)
        shift
        require "$plain_root"
        inside "$plain_root" "$@"
        ;;
    destroy)
        remove "$root"
        remove "$plain_root"
        ;;
    *)
        echo "usage: scripts/debian13.sh create | run CMD [ARG...] | plain CMD [ARG...] | destroy" >&2
        exit 2
        ;;
esac
