#!/usr/bin/env bash
# The cleanup functions from every kind of client: asyncpg (AuthFort's own
# driver), SQLAlchemy and Alembic (AuthFort users' own stack, and on it a
# scheduled background task as a FastAPI lifespan starts one), psycopg, pgx,
# JDBC, Ruby's pg, PHP's PDO, tokio-postgres, node-postgres, psql and pg_cron.
# Each reseeds the same AuthFort-shaped rows (tests/clients/seed.sql: 2 keys,
# 3 tokens and 4 sessions to delete, 2 of each to keep), checks that the
# counts decode to the language's integers, CALLs the procedure the way that
# client must (autocommit) and the way it must not (its usual transaction:
# 2D000 and the HINT), and receives the NOTIFY payload and, where the driver
# shows them, the progress NOTICEs. A client whose toolchain is missing
# fails: scripts/setup.sh installs them all. The pg_cron part waits for a
# minute boundary: up to 75 s.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

db=clients
clients=$repo/tests/clients
expected='2|3|4'     # deletable keys|tokens|sessions after seeding
live='2|2|2'         # rows left after a cleanup
seeded='4|5|6'       # rows after seeding

# --- helpers -----------------------------------------------------------------

seed() {
    psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$clients/seed.sql" >/dev/null
}

rows_left() {
    sql "$db" "SELECT (SELECT count(*) FROM authfort_signing_keys) || '|' ||
                      (SELECT count(*) FROM authfort_verification_tokens) || '|' ||
                      (SELECT count(*) FROM authfort_refresh_tokens)"
}

last_run() {
    sql "$db" "SELECT status || '|' || keys || '|' || tokens || '|' || sessions
                 FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1"
}

# run_client NAME COMMAND...: runs a client script that prints its own
# "  ok  ..."/"  FAIL ..." lines, and adds them to this suite's totals. A
# script that exits non-zero without a FAIL line (it crashed) is one failure.
run_client() {
    local name=$1 output status=0 ok fail
    shift
    output=$("$@" 2>&1) || status=$?
    printf '%s\n' "$output"
    ok=$(grep -c '^  ok  ' <<<"$output" || true)
    fail=$(grep -c '^  FAIL ' <<<"$output" || true)
    passed=$((passed + ok))
    failed=$((failed + fail))
    if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then
        failed=$((failed + 1))
        printf '  FAIL %s: exited with status %d\n' "$name" "$status"
    elif [ "$ok" -eq 0 ] && [ "$fail" -eq 0 ]; then
        failed=$((failed + 1))
        printf '  FAIL %s: ran no checks\n' "$name"
    fi
}

# --- setup -------------------------------------------------------------------

# pg_cron's launcher retries every second until the database exists, so it
# is created right after the server starts. Without pg_cron (PostgreSQL 18
# here) every client but pg_cron runs.
if has_pg_cron; then
    CRON_DATABASE=$db start_cluster clients 54419 --cron
else
    start_cluster clients 54419
fi
echo "setup"
PGOPTIONS='-c client_min_messages=warning' new_authfort_db "$db" >/dev/null
has_pg_cron && sql "$db" "CREATE EXTENSION pg_cron"
# The replaced_by index, so that no client sees the missing-index WARNING.
PGOPTIONS='-c client_min_messages=warning' sql "$db" "SELECT authfort_cleanup_create_indexes()" >/dev/null
check "the sessions' supporting index is present" t \
    "$(sql "$db" "SELECT supporting_index_present FROM authfort_cleanup_status WHERE target = 'sessions'")"
seed
check "seeded rows: keys|tokens|sessions" "$seeded" "$(rows_left)"
check "seeded deletable rows: keys|tokens|sessions" "$expected" \
    "$(sql "$db" "SELECT string_agg(deletable::text, '|' ORDER BY array_position(ARRAY['keys', 'tokens', 'sessions'], target))
                    FROM authfort_cleanup_preview()")"

tcp_dsn="postgresql://postgres@127.0.0.1:$PGPORT/$db"

# --- Python: asyncpg ---------------------------------------------------------
echo "asyncpg"
run_client asyncpg "$repo/.venv/bin/python" "$clients/asyncpg_client.py" "$tcp_dsn" "$clients/seed.sql"

# --- Python: SQLAlchemy 2 asyncio over asyncpg, as AuthFort itself runs -----
echo "sqlalchemy"
run_client sqlalchemy "$repo/.venv/bin/python" "$clients/sqlalchemy_client.py" "$tcp_dsn" "$clients/seed.sql"

# --- Python: a scheduled background task, as a FastAPI lifespan starts it ---
# SQLAlchemy again; the skipped run, AuthFort's log line and a failed run.
echo "background task"
run_client background-task "$repo/.venv/bin/python" "$clients/background_task.py" "$tcp_dsn" "$clients/seed.sql"

# --- Python: psycopg 3 -------------------------------------------------------
echo "psycopg"
run_client psycopg "$repo/.venv/bin/python" "$clients/psycopg_client.py" "$tcp_dsn" "$clients/seed.sql"

# --- Alembic: an application's own migration installs the extension ---------
# A database of its own: its downgrade drops the extension.
echo "alembic"
sql postgres "CREATE DATABASE alembic_app"
run_client alembic "$repo/.venv/bin/python" "$repo/tests/alembic_test.py" "postgresql://postgres@127.0.0.1:$PGPORT/alembic_app"

# --- Go: pgx v4 (Debian's, built in GOPATH mode) -----------------------------
echo "pgx"
run_client pgx "$clients/go/run.sh" "$tcp_dsn" "$clients/seed.sql"

# --- Java: JDBC (Debian's pgjdbc), the source file run directly -------------
echo "jdbc"
run_client jdbc java -cp /usr/share/java/postgresql.jar "$clients/java/Client.java" "$tcp_dsn" "$clients/seed.sql"

# --- Ruby: pg (Debian's ruby-pg) ---------------------------------------------
echo "ruby-pg"
run_client ruby-pg ruby "$clients/ruby_client.rb" "$tcp_dsn" "$clients/seed.sql"

# --- PHP: PDO pgsql (Debian's php-pgsql) -------------------------------------
echo "pdo_pgsql"
run_client pdo_pgsql php "$clients/php_client.php" "$tcp_dsn" "$clients/seed.sql"

# --- Rust: tokio-postgres, a crate of its own (built once, about 2 minutes) --
echo "tokio-postgres"
run_client tokio-postgres "$clients/rust/run.sh" "$tcp_dsn" "$clients/seed.sql"

# --- Node.js: node-postgres --------------------------------------------------
echo "node-postgres"
if [ ! -d "$clients/node_modules/pg" ]; then
    (cd "$clients" && npm ci --silent --no-audit --no-fund >/dev/null)
fi
run_client node-postgres node "$clients/node_client.mjs" "$tcp_dsn" "$clients/seed.sql"

# --- psql --------------------------------------------------------------------
echo "psql"
seed
check "psql: preview, target|deletable" $'keys|2\ntokens|3\nsessions|4' \
    "$(sql "$db" "SELECT target, deletable FROM authfort_cleanup_preview()")"
check "psql: status columns" \
    'target|table_name|rows|deletable|oldest_expired_age|supporting_index_present|table_bytes|last_run_at|last_run_status|last_run_deleted' \
    "$(psql -X -A -P footer=off -d "$db" -c "SELECT * FROM authfort_cleanup_status LIMIT 0")"
check "psql: status, target|rows|deletable|supporting_index_present" $'keys|4|2|t\ntokens|5|3|t\nsessions|6|4|t' \
    "$(sql "$db" "SELECT target, rows, deletable, supporting_index_present FROM authfort_cleanup_status")"
check "psql: keys(), tokens(), sessions()" "$expected" \
    "$(psql -X -A -t -d "$db" -c "SELECT authfort_cleanup_keys(), authfort_cleanup_tokens(), authfort_cleanup_sessions()")"
check "psql: rows left" "$live" "$(rows_left)"

seed
check "psql: cleanup_all() columns and row" $'keys|tokens|sessions\n2|3|4' \
    "$(psql -X -A -P footer=off -d "$db" -c "SELECT * FROM authfort_cleanup_all()")"
check "psql: rows left after cleanup_all()" "$live" "$(rows_left)"

seed
status=0
stderr=$(psql -X -A -t -v ON_ERROR_STOP=1 -d "$db" -c "CALL authfort_cleanup_run()" 2>&1 >/dev/null) || status=$?
check "psql: CALL authfort_cleanup_run() in autocommit exits 0" 0 "$status"
check "psql: CALL reports progress in NOTICEs" yes \
    "$(contains "$stderr" 'NOTICE:  authfort_cleanup: 4 rows of sessions deleted so far')"
check "psql: CALL raises no WARNING" no "$(contains "$stderr" WARNING)"
check "psql: rows left after CALL" "$live" "$(rows_left)"
check "psql: run log after CALL" "ok|$expected" "$(last_run)"

seed
stderr=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$db" \
    -c "BEGIN" -c "CALL authfort_cleanup_run()" 2>&1 >/dev/null || true)
check "psql: CALL inside BEGIN fails with 2D000" yes "$(contains "$stderr" 'ERROR:  2D000')"
check "psql: nothing deleted by the refused CALL" "$seeded" "$(rows_left)"

# --- pg_cron -----------------------------------------------------------------
if has_pg_cron; then
    echo "pg_cron (waiting for the next minute)"
    seed
    job_id=$(sql "$db" "SELECT authfort_cleanup_schedule('* * * * *')")
    check "pg_cron: schedule() returns a job id" yes "$([[ $job_id =~ ^[0-9]+$ ]] && echo yes || echo no)"
    run='0|timed out'
    deadline=$((SECONDS + 75))
    while [ "$SECONDS" -lt "$deadline" ]; do
        found=$(sql "$db" "SELECT runid || '|' || status FROM cron.job_run_details
                            WHERE jobid = $job_id AND status IN ('succeeded', 'failed')
                            ORDER BY runid LIMIT 1")
        if [ -n "$found" ]; then
            run=$found
            break
        fi
        sleep 1
    done
    check "pg_cron: the job run succeeded" succeeded "${run#*|}"
    check "pg_cron: rows left" "$live" "$(rows_left)"
    check "pg_cron: run log status|keys|tokens|sessions, run by postgres" "ok|$expected|postgres" \
        "$(sql "$db" "SELECT status || '|' || keys || '|' || tokens || '|' || sessions || '|' || run_by
                        FROM authfort_cleanup_runs ORDER BY id LIMIT 1")"
    check "pg_cron: unschedule() returns true" t "$(sql "$db" "SELECT authfort_cleanup_unschedule()")"
else
    skip "pg_cron" "not installed for PostgreSQL $pg_major"
fi

finish
