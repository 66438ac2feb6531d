# Shared by the test suites: a throwaway cluster per suite, and psql helpers.
# Source it; it expects `set -euo pipefail` in the caller.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$(pg_config --bindir):$PATH"

# start_cluster NAME PORT [--cron]: a fresh cluster under .cluster/test-NAME,
# destroyed when the suite exits.
start_cluster() {
    local name=$1 port=$2
    shift 2
    export CLUSTER_DIR="$repo/.cluster/test-$name" PGPORT=$port
    export PGHOST=$CLUSTER_DIR PGUSER=postgres
    "$repo/scripts/cluster.sh" destroy
    "$repo/scripts/cluster.sh" start "$@"
    trap '"$repo/scripts/cluster.sh" destroy' EXIT
}

# sql DB QUERY...: run queries, unaligned and tuples-only, stop at the first error.
sql() {
    local db=$1
    shift
    psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$db" "${@/#/-c}"
}

# new_authfort_db DB: a database with AuthFort's schema, made by AuthFort's
# own migrations, and the extension.
new_authfort_db() {
    local db=$1
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" -c "CREATE DATABASE \"$db\""
    "$repo/.venv/bin/python" "$repo/tests/authfort_migrate.py" "postgresql+asyncpg://postgres@127.0.0.1:$PGPORT/$db"
    sql "$db" "CREATE EXTENSION authfort_cleanup"
}

passed=0
failed=0
# check NAME EXPECTED ACTUAL
check() {
    if [ "$2" = "$3" ]; then
        passed=$((passed + 1))
        printf '  ok  %s\n' "$1"
    else
        failed=$((failed + 1))
        printf '  FAIL %s: expected [%s], got [%s]\n' "$1" "$2" "$3"
    fi
}

# finish: the suite's closing line, and its exit status.
finish() {
    printf '%d passed, %d failed\n' "$passed" "$failed"
    [ "$failed" -eq 0 ]
}
