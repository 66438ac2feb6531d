#!/usr/bin/env bash
# A throwaway PostgreSQL cluster owned by the `postgres` OS user, on its own
# port and socket directory, so it never touches a system cluster.
#
#   scripts/cluster.sh start [--cron]   initdb if needed, then start (idempotent)
#   scripts/cluster.sh stop             stop it (idempotent)
#   scripts/cluster.sh destroy          stop it and delete its data
#   scripts/cluster.sh env              print the libpq variables to reach it
#
# CLUSTER_DIR (default .cluster/demo) and PGPORT (default 54329) choose which
# cluster; tests use their own directory and port. With --cron, pg_cron is
# preloaded and runs jobs in database CRON_DATABASE (default postgres).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
CLUSTER_DIR=${CLUSTER_DIR:-$here/.cluster/demo}
PGPORT=${PGPORT:-54329}
CRON_DATABASE=${CRON_DATABASE:-postgres}
bindir=$(pg_config --bindir)
data=$CLUSTER_DIR/data

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else sudo -u postgres -- "$@"; fi
}

start() {
    local with_cron=no
    [ "${1:-}" = --cron ] && with_cron=yes
    mkdir -p "$CLUSTER_DIR"
    chown postgres: "$CLUSTER_DIR"
    if [ ! -f "$data/PG_VERSION" ]; then
        as_postgres "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
        echo "include 'cluster.conf'" | as_postgres tee -a "$data/postgresql.conf" >/dev/null
    fi
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
    start) shift; start "$@" ;;
    stop) stop ;;
    destroy) stop; rm -rf "$CLUSTER_DIR" ;;
    env) printf 'export PGHOST=%q PGPORT=%q PGUSER=postgres\n' "$CLUSTER_DIR" "$PGPORT" ;;
    *) echo "usage: $0 start [--cron] | stop | destroy | env" >&2; exit 64 ;;
esac
