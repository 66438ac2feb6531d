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

source "$repo/bench/lib.sh"
# Sized as for a server that holds this data (bench/run.sh does the same),
# so the nights measure the cleanup and autovacuum, not evictions from a
# 128 MB buffer pool or a checkpoint forced by WAL volume every night:
# shared_buffers 1GB (the two sessions tables and their indexes take about
# 1.5 GB together at the start), max_wal_size 4GB. Autovacuum and
# everything else stay at PostgreSQL's defaults; soak.py prints them.
bench_cluster soak 54428 "shared_buffers = '1GB'" "max_wal_size = '4GB'"
soak() {
    echo "soak $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores"
    "$repo/.venv/bin/python" "$repo/bench/soak.py"
}
measured soak
