# Shared by the test suites: a throwaway cluster per suite, and psql helpers.
# Source it; it expects `set -euo pipefail` in the caller.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The PostgreSQL under test: PG_CONFIG's (tests/run.sh sets it per major), or
# the one on PATH. Its bin directory goes first on PATH, so every pg_config,
# initdb, psql and pg_regress below is that major's.
pg_bindir=$("${PG_CONFIG:-pg_config}" --bindir)
export PATH="$pg_bindir:$PATH"
pg_major=$(pg_config --version | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p')

# as_postgres COMMAND...: as the postgres OS user, whom the servers run as.
# sudo resets PATH, so name the program by its path ("$pg_bindir/pg_ctl").
as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else sudo -u postgres -- "$@"; fi
}

# skip_suite WHY: this suite cannot run on this PostgreSQL. One line, and
# exit 77, which tests/run.sh counts as a skip, never as a pass.
skip_suite() {
    echo "skipped: $*"
    exit 77
}

# has_pg_cron: pg_cron is installed for the PostgreSQL under test (Debian 12
# packages it for 15, Debian 13 for 17; nothing here provides it for 16 or 18).
has_pg_cron() {
    [ -f "$(pg_config --pkglibdir)/pg_cron.so" ]
}

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

# contains TEXT NEEDLE: "yes" or "no", for check.
contains() {
    case "$1" in *"$2"*) echo yes ;; *) echo no ;; esac
}

# sql DB QUERY...: run queries, unaligned and tuples-only, stop at the first error.
sql() {
    local db=$1
    shift
    psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$db" "${@/#/-c}"
}

# error_of DB QUERY: the "SQLSTATE: message" of the error QUERY raises, or
# "no error". VERBOSITY=verbose makes psql put the SQLSTATE in the message.
error_of() {
    local output
    if output=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$1" -c "$2" 2>&1 >/dev/null); then
        echo "no error"
    else
        printf '%s\n' "$output" | sed -n 's/^ERROR:  //p' | head -n 1
    fi
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
skipped=0
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

# skip NAME WHY: a check that cannot run on this PostgreSQL. Counted apart.
skip() {
    skipped=$((skipped + 1))
    printf '  skip %s: %s\n' "$1" "$2"
}

# finish: the suite's closing line, and its exit status.
finish() {
    if [ "$skipped" -gt 0 ]; then
        printf '%d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
    else
        printf '%d passed, %d failed\n' "$passed" "$failed"
    fi
    [ "$failed" -eq 0 ]
}
