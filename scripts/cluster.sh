#!/usr/bin/env bash
# A throwaway PostgreSQL cluster owned by the `postgres` OS user, on its own
# port and socket directory, so it never touches a system cluster.
#
#   scripts/cluster.sh init             initdb if needed (idempotent)
#   scripts/cluster.sh start [--cron]   init, then start (idempotent)
#   scripts/cluster.sh stop             stop it (idempotent)
#   scripts/cluster.sh destroy          stop it and delete its data
#   scripts/cluster.sh env              print the libpq variables to reach it
#
# CLUSTER_DIR (default .cluster/demo) and PGPORT (default 54329) choose which
# cluster; tests use their own directory and port. PG_CONFIG (default: the
# pg_config on PATH) chooses the PostgreSQL, and INITDB_OPTIONS adds to
# initdb's (a pg_upgrade target needs its old cluster's checksum setting). With --cron, pg_cron is
# preloaded and runs jobs in database CRON_DATABASE (default postgres).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
CLUSTER_DIR=${CLUSTER_DIR:-$here/.cluster/demo}
PGPORT=${PGPORT:-54329}
CRON_DATABASE=${CRON_DATABASE:-postgres}
bindir=$("${PG_CONFIG:-pg_config}" --bindir)
data=$CLUSTER_DIR/data

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else sudo -u postgres -- "$@"; fi
}

init() {
    mkdir -p "$CLUSTER_DIR"
    chown postgres: "$CLUSTER_DIR"
    if [ ! -f "$data/PG_VERSION" ]; then
        # shellcheck disable=SC2086 # INITDB_OPTIONS is a list of options
        as_postgres "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
            ${INITDB_OPTIONS:-} >/dev/null
        echo "include_if_exists 'cluster.conf'" | as_postgres tee -a "$data/postgresql.conf" >/dev/null
    fi
}

start() {
    local with_cron=no
    [ "${1:-}" = --cron ] && with_cron=yes
    init
    # Rewritten on every start, so the same directory can be started with or
    # without pg_cron. TCP stays on loopback only: pg_cron's connections and
    # the Python, Node.js and pgbench clients use it.
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $PGPORT"
        echo "unix_socket_directories = '$CLUSTER_DIR'"
        echo "fsync = off"
        echo "max_connections = 60"
        echo "log_min_messages = warning"
        if [ "$with_cron" = yes ]; then
            echo "shared_preload_libraries = 'pg_cron'"
            echo "cron.database_name = '$CRON_DATABASE'"
            echo "cron.use_background_workers = on"
            echo "max_worker_processes = 20"
        fi
    } | as_postgres tee "$data/cluster.conf" >/dev/null
    if ! as_postgres "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_postgres "$bindir/pg_ctl" -D "$data" -l "$CLUSTER_DIR/server.log" -w start >/dev/null
    fi
}

stop() {
    if [ -f "$data/PG_VERSION" ] && as_postgres "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_postgres "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    fi
}

case "${1:-}" in
    init) init ;;
    start) shift; start "$@" ;;
    stop) stop ;;
    destroy) stop; rm -rf "$CLUSTER_DIR" ;;
    env) printf 'export PGHOST=%q PGPORT=%q PGUSER=postgres\n' "$CLUSTER_DIR" "$PGPORT" ;;
    *) echo "usage: $0 init | start [--cron] | stop | destroy | env" >&2; exit 64 ;;
esac
