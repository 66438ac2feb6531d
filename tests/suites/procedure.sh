#!/usr/bin/env bash
# authfort_cleanup_run() and the one-shot functions under real concurrency on
# a real cluster: batches that commit as they go, max_runtime, a run killed or
# crashed mid-batch, overlapping runs and calls, application row and table
# locks, statement_timeout, and the quadratic guard at 60,000 sessions. The
# checks live in tests/procedure_tests.py (asyncpg: many sessions at once,
# each watched, blocked or killed by the others); this sets up the cluster.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

start_cluster procedure 54414
# Migrated once by AuthFort; every test clones it (CREATE DATABASE ... TEMPLATE).
new_authfort_db procedure_template

# procedure_tests.py prints the "N passed, N failed" line itself; an immediate
# stop it performs restarts the cluster through scripts/cluster.sh, which
# reads CLUSTER_DIR and PGPORT from start_cluster's exports.
status=0
"$repo/.venv/bin/python" "$repo/tests/procedure_tests.py" procedure_template || status=$?
exit "$status"
