#!/usr/bin/env bash
# The benchmark doc/benchmarks.md quotes: AuthFort's own cleanup, the raw DELETE it
# issues, and authfort_cleanup's functions, on AuthFort's real schema, in a
# throwaway cluster of its own that is destroyed at the end.
#
#   bench/run.sh [N ...]          N: session counts (default 10000 100000 1000000)
#
# Results go to stdout (progress to stderr), so
#   nice -n 10 bench/run.sh 10000 100000 1000000 | tee bench/results-$(date +%F).txt
# keeps just the tables. Tunables (BENCH_CAP, BENCH_REPEAT, BENCH_KEYS,
# BENCH_PGBENCH_SECONDS, BENCH_RATE, ...) are described in bench/bench.py.
# It uses the extension as installed (make install), and never builds it.
# PG_CONFIG chooses the PostgreSQL (make bench PG_CONFIG=... passes it).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$("${PG_CONFIG:-pg_config}" --bindir):$PATH"

if [ $# -eq 0 ]; then
    set -- 10000 100000 1000000
fi
for n in "$@"; do
    if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
        echo "usage: $0 [N ...]  (N: positive session counts)" >&2
        exit 64
    fi
done

# Its own directory and port, so it can run next to `make demo` or the tests;
# BENCH_PORT moves it, for a machine where another checkout's bench runs.
export CLUSTER_DIR="$repo/.cluster/bench" PGPORT=${BENCH_PORT:-54420}
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

# Benchmark settings, on top of cluster.sh's (fsync off). ALTER SYSTEM lands
# in postgresql.auto.conf, read after cluster.conf, so it wins:
# - autovacuum off: every variant starts from a VACUUM ANALYZEd template copy,
#   and a vacuum kicking in halfway through one variant but not another would
#   be noise, not signal;
# - max_wal_size and checkpoint_timeout large: no checkpoint in the middle of
#   a measured DELETE (CREATE DATABASE's own checkpoint comes before it);
# - shared_buffers 512MB: the 1M-row table and its indexes (~0.5 GB) mostly
#   fit, as they would on a server sized for its database.
psql -X -q -v ON_ERROR_STOP=1 -d postgres \
    -c "ALTER SYSTEM SET autovacuum = off" \
    -c "ALTER SYSTEM SET max_wal_size = '16GB'" \
    -c "ALTER SYSTEM SET checkpoint_timeout = '1h'" \
    -c "ALTER SYSTEM SET shared_buffers = '512MB'"
"$repo/scripts/cluster.sh" stop
"$repo/scripts/cluster.sh" start

# What is measured is the extension as installed, so say which one. A
# reinstall during the run (make install copies over the loaded library in
# place) would mix two builds, or crash backends that have it mapped; the
# checksum taken before and after catches that.
library="$(pg_config --pkglibdir)/authfort_cleanup.so"
library_sum() { sha256sum "$library" | cut -c1-12; }
before=$(library_sum)
version=$(psql -X -A -t -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'authfort_cleanup'")
echo "authfort_cleanup $version (library sha256 $before, installed $(date -u -r "$library" '+%Y-%m-%d %H:%M UTC'), $(($(stat -c %s "$library") / 1048576)) MB), repo HEAD $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "run $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores; N = $*"
"$repo/.venv/bin/python" "$repo/bench/bench.py" "$@"
after=$(library_sum)
if [ "$after" != "$before" ]; then
    echo "WARNING: authfort_cleanup.so changed during the run ($before -> $after): the results mix builds; run again."
    exit 3
fi
