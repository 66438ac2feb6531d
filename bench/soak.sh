#!/usr/bin/env bash
# make bench-soak: bench/soak.py's months of nightly cleanup, in a throwaway
# cluster of its own that is destroyed at the end.
#
#   bench/soak.sh            settings: SOAK_NIGHTS, SOAK_LIVE, SOAK_NIGHT_SECONDS, ...
#                            (described in bench/soak.py)
#
# Results go to stdout (progress to stderr), so
#   nice -n 10 bench/soak.sh | tee bench/results-$(date -u +%F)-soak-pg15.txt
# keeps just the table and the report. It uses the extension as installed
# (make install), and never builds it. PG_CONFIG chooses the PostgreSQL
# (make bench-soak PG_CONFIG=... passes it); BENCH_PORT the port (54428).
#
# Autovacuum runs at PostgreSQL's defaults (bench/run.sh turns it off); the
# settings that differ are scripts/cluster.sh's for every throwaway cluster
# here (fsync off, max_connections 60, its own port and socket) and the two
# set below.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$("${PG_CONFIG:-pg_config}" --bindir):$PATH"

export CLUSTER_DIR="$repo/.cluster/soak" PGPORT=${BENCH_PORT:-54428}
export PGHOST=$CLUSTER_DIR PGUSER=postgres
# A leftover from an interrupted run would carry old databases and settings.
"$repo/scripts/cluster.sh" destroy
"$repo/scripts/cluster.sh" start
# On failure, the server's log goes with the cluster: show its end first.
# BENCH_KEEP_CLUSTER=1 leaves the cluster (stopped) for a post-mortem.
finish() {
    local status=$?
    if [ "$status" -ne 0 ] && [ -f "$CLUSTER_DIR/server.log" ]; then
        echo "--- last lines of $CLUSTER_DIR/server.log" >&2
        tail -n 40 "$CLUSTER_DIR/server.log" >&2
    fi
    if [ "${BENCH_KEEP_CLUSTER:-0}" = 1 ]; then
        "$repo/scripts/cluster.sh" stop
    else
        "$repo/scripts/cluster.sh" destroy
    fi
    exit "$status"
}
trap finish EXIT

# Sized as for a server that holds this data (bench/run.sh does the same),
# so the nights measure the cleanup and autovacuum, not evictions from a
# 128 MB buffer pool or a checkpoint forced by WAL volume every night:
# shared_buffers 1GB (the two sessions tables and their indexes take about
# 1.5 GB together at the start), max_wal_size 4GB. Autovacuum and
# everything else stay at PostgreSQL's defaults; soak.py prints them.
psql -X -q -v ON_ERROR_STOP=1 -d postgres \
    -c "ALTER SYSTEM SET shared_buffers = '1GB'" \
    -c "ALTER SYSTEM SET max_wal_size = '4GB'"
"$repo/scripts/cluster.sh" stop
"$repo/scripts/cluster.sh" start

# Which build is measured, and a check that it was not replaced mid-run
# (as in bench/run.sh).
library="$(pg_config --pkglibdir)/authfort_cleanup.so"
library_sum() { sha256sum "$library" | cut -c1-12; }
before=$(library_sum)
version=$(psql -X -A -t -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'authfort_cleanup'")
echo "authfort_cleanup $version (library sha256 $before, installed $(date -u -r "$library" '+%Y-%m-%d %H:%M UTC')), repo HEAD $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "soak $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores"
"$repo/.venv/bin/python" "$repo/bench/soak.py"
after=$(library_sum)
if [ "$after" != "$before" ]; then
    echo "WARNING: authfort_cleanup.so changed during the run ($before -> $after): the results mix builds; run again."
    exit 3
fi
