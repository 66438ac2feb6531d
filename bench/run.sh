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

source "$repo/bench/lib.sh"
# Its own directory and port (54420), so it can run next to `make demo` or
# the tests. Benchmark settings, on top of cluster.sh's (fsync off):
# - autovacuum off: every variant starts from a VACUUM ANALYZEd template copy,
#   and a vacuum kicking in halfway through one variant but not another would
#   be noise, not signal;
# - max_wal_size and checkpoint_timeout large: no checkpoint in the middle of
#   a measured DELETE (CREATE DATABASE's own checkpoint comes before it);
# - shared_buffers 512MB: the 1M-row table and its indexes (~0.5 GB) mostly
#   fit, as they would on a server sized for its database.
bench_cluster bench 54420 "autovacuum = off" "max_wal_size = '16GB'" "checkpoint_timeout = '1h'" \
    "shared_buffers = '512MB'"
run_bench() {
    echo "run $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores; N = $*"
    "$repo/.venv/bin/python" "$repo/bench/bench.py" "$@"
}
measured run_bench "$@"
