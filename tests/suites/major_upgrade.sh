#!/usr/bin/env bash
# The two ways users move to a new PostgreSQL major, end to end, from
# OLD_PG_CONFIG's major to NEW_PG_CONFIG's (tests/run.sh runs it from 15, 16
# and 17 to 18; without them, from the first to the last of
# TEST_PG_CONFIGS): dump and restore, and pg_upgrade. Both start from a
# cluster in real use: AuthFort's tables in schema auth, the extension in
# schema maintenance, a maintenance role with the grants doc/functions.md
# gives, ALTER DATABASE ... SET authfort_cleanup.schema, rows in the run log,
# the replaced_by index, and expired rows waiting. Afterwards the same checks
# run on the new major. The commands are the ones doc/upgrades.md gives.
#
# With EXPECT_PG_ATTVER=yes it checks that the old server stores the
# attribute option pg_attver (Debian 12's 15.20 does), so that journey
# cannot quietly take the plain route. MAJOR_UPGRADE_PORT is the first of
# the five ports its servers use (default 54422).
set -euo pipefail

read -r -a configs <<<"${TEST_PG_CONFIGS:-}"
old_config=${OLD_PG_CONFIG:-${configs[0]:-}}
new_config=${NEW_PG_CONFIG:-${configs[${#configs[@]} - 1]:-}}
if [ -z "$old_config" ] || [ "$old_config" = "$new_config" ]; then
    echo "skipped: needs two majors (OLD_PG_CONFIG and NEW_PG_CONFIG, or two in TEST_PG_CONFIGS)"
    exit 77
fi
# The new major's client programs, as the recipes say: pg_dump and psql of
# the newer version read the older server.
PG_CONFIG=$new_config source "$(dirname "$0")/../lib.sh"
old_bindir=$("$old_config" --bindir)
old_major=$("$old_config" --version | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p')
new_major=$pg_major

db=app
old_port=${MAJOR_UPGRADE_PORT:-54422}
restored_port=$((old_port + 1))
upgraded_port=$((old_port + 2))
old_dir=$repo/.cluster/test-major-old
restored_dir=$repo/.cluster/test-major-restored
upgraded_dir=$repo/.cluster/test-major-upgraded

# cluster DIR PORT CONFIG COMMAND...: scripts/cluster.sh for one of them.
cluster() {
    local dir=$1 port=$2 config=$3
    shift 3
    CLUSTER_DIR=$dir PGPORT=$port PG_CONFIG=$config "$repo/scripts/cluster.sh" "$@"
}
destroy_all() {
    cluster "$old_dir" "$old_port" "$old_config" destroy
    cluster "$restored_dir" "$restored_port" "$new_config" destroy
    cluster "$upgraded_dir" "$upgraded_port" "$new_config" destroy
}
trap destroy_all EXIT
destroy_all

# as_maintenance QUERY: what the nightly job runs, as the maintenance role.
as_maintenance() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 -U authfort_maintenance -d "$db" -c "$1"
}

# sqlstate_as ROLE QUERY: the SQLSTATE QUERY fails with as ROLE, or "no error".
sqlstate_as() {
    PGUSER=$1 error_of "$db" "$2" | cut -d: -f1
}

# seed: the clients suite's rows (2 keys, 3 tokens and 4 sessions expired,
# 2 of each live), without its reset of the run log.
seed() {
    grep -v authfort_cleanup_runs "$repo/tests/clients/seed.sql" |
        PGOPTIONS='-c search_path=auth' psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null
}

# --- a cluster in real use on the old major ------------------------------------

echo "setup on PostgreSQL $old_major"
cluster "$old_dir" "$old_port" "$old_config" start
export PGHOST=$old_dir PGPORT=$old_port PGUSER=postgres
sql postgres "CREATE DATABASE $db"
# A table of another application in another database: pg_upgrade carries
# every database, and the way round pg_attver (below) must reach them all.
sql postgres "CREATE TABLE other_app (id int PRIMARY KEY, note text)"
sql "$db" "CREATE SCHEMA auth" "CREATE SCHEMA maintenance"
# AuthFort's migrations put its tables in the first schema of search_path.
sql postgres "ALTER DATABASE $db SET search_path = auth"
"$repo/.venv/bin/python" "$repo/tests/authfort_migrate.py" "postgresql+asyncpg://postgres@127.0.0.1:$PGPORT/$db"
sql postgres "ALTER DATABASE $db RESET search_path"
sql "$db" "CREATE EXTENSION authfort_cleanup SCHEMA maintenance" \
    "ALTER DATABASE $db SET authfort_cleanup.schema = 'auth'" \
    "CREATE ROLE authfort_maintenance LOGIN" \
    "CREATE ROLE app_reader LOGIN" \
    "GRANT USAGE ON SCHEMA auth, maintenance TO authfort_maintenance, app_reader" \
    "GRANT SELECT, UPDATE, DELETE ON auth.authfort_signing_keys, auth.authfort_verification_tokens,
                                     auth.authfort_refresh_tokens TO authfort_maintenance" \
    "GRANT SELECT, INSERT, DELETE ON maintenance.authfort_cleanup_runs TO authfort_maintenance" \
    "GRANT USAGE ON SEQUENCE maintenance.authfort_cleanup_runs_id_seq TO authfort_maintenance" \
    "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA maintenance TO authfort_maintenance" \
    "GRANT EXECUTE ON PROCEDURE maintenance.authfort_cleanup_run TO authfort_maintenance"
index=$(PGOPTIONS="-c client_min_messages=warning" sql "$db" "SELECT * FROM maintenance.authfort_cleanup_create_indexes()")
check "$old_major: the replaced_by index is created" ix_authfort_refresh_tokens_replaced_by "$index"
seed
check "$old_major: the maintenance role cleans keys|tokens|sessions" '2|3|4' \
    "$(as_maintenance "SELECT concat_ws('|', keys, tokens, sessions) FROM maintenance.authfort_cleanup_all()")"
as_maintenance "SELECT FROM maintenance.authfort_cleanup_all()" >/dev/null
seed
check "$old_major: two runs in the log, the last with id 2" '2|2' \
    "$(sql "$db" "SELECT count(*) || '|' || max(id) FROM maintenance.authfort_cleanup_runs")"
check "$old_major: app_reader may not clean" 42501 \
    "$(sqlstate_as app_reader "SELECT maintenance.authfort_cleanup_tokens()")"

# --- what must hold on the new major --------------------------------------------

# verify LABEL: the checks after a journey, on the cluster PGHOST/PGPORT name.
verify() {
    local label=$1
    check "$label: the extension is in schema maintenance" 'maintenance' \
        "$(sql "$db" "SELECT extnamespace::regnamespace FROM pg_extension WHERE extname = 'authfort_cleanup'")"
    check "$label: the database setting is intact" 'auth' \
        "$(psql -X -A -t -U authfort_maintenance -d "$db" -c "SHOW authfort_cleanup.schema")"
    check "$label: the run log's rows are there" '2|2' \
        "$(sql "$db" "SELECT count(*) || '|' || max(id) FROM maintenance.authfort_cleanup_runs")"
    check "$label: the status view sees the waiting rows" 'keys|2 tokens|3 sessions|4' \
        "$(sql "$db" "SELECT string_agg(concat_ws('|', target, deletable), ' ') FROM maintenance.authfort_cleanup_status")"
    check "$label: the replaced_by index is there" t \
        "$(sql "$db" "SELECT supporting_index_present FROM maintenance.authfort_cleanup_status WHERE target = 'sessions'")"
    check "$label: app_reader still may not clean" 42501 \
        "$(sqlstate_as app_reader "SELECT maintenance.authfort_cleanup_tokens()")"
    check "$label: the maintenance role cleans with authfort_cleanup_all()" '2|3|4' \
        "$(as_maintenance "SELECT concat_ws('|', keys, tokens, sessions) FROM maintenance.authfort_cleanup_all()")"
    check "$label: and the run log gives that run the next id" '3|ok|authfort_maintenance' \
        "$(sql "$db" "SELECT concat_ws('|', id, status, run_by)
                        FROM maintenance.authfort_cleanup_runs ORDER BY id DESC LIMIT 1")"
    seed
    check "$label: the one-shot functions work" '2|3|4' \
        "$(as_maintenance "SELECT concat_ws('|', maintenance.authfort_cleanup_keys(),
                                  maintenance.authfort_cleanup_tokens(), maintenance.authfort_cleanup_sessions())")"
    seed
    as_maintenance "CALL maintenance.authfort_cleanup_run()" 2>/dev/null
    check "$label: CALL authfort_cleanup_run() works and logs run 4" '4|ok|2|3|4|authfort_maintenance' \
        "$(sql "$db" "SELECT concat_ws('|', id, status, keys, tokens, sessions, run_by)
                        FROM maintenance.authfort_cleanup_runs ORDER BY id DESC LIMIT 1")"
}

# Debian's current builds (12's 15.20, 13's 17.12) store an attribute option
# pg_attver on every column. 18's pg_dump writes it out and 18 refuses it
# ("unrecognized parameter"), so the tables are never created: from such a
# server, dump with the old major's own pg_dump, which leaves it out.
# Counted on the database's own columns (attrelid >= 16384, the first OID
# initdb leaves to users), the only ones a dump or pg_upgrade carries.
attver_count="SELECT count(*) FROM pg_attribute
                WHERE attrelid >= 16384 AND array_to_string(attoptions, ',') LIKE '%pg_attver=%'"
attver=$(sql "$db" "$attver_count")
if [ "${EXPECT_PG_ATTVER:-}" = yes ]; then
    check "$old_major: every column of AuthFort's tables carries pg_attver" t \
        "$(sql "$db" "SELECT count(*) > 0 AND bool_and(coalesce(array_to_string(attoptions, ',') LIKE '%pg_attver=%', false))
                        FROM pg_attribute JOIN pg_class ON pg_class.oid = attrelid
                       WHERE relnamespace = 'auth'::regnamespace AND relkind = 'r' AND attnum > 0 AND NOT attisdropped")"
fi
dump_bindir=$pg_bindir
if [ "$attver" -gt 0 ]; then
    # grep -c reads it all: grep -q would stop early, and under pipefail
    # pg_dump's broken pipe would read as "not written".
    written=$(pg_dump --schema-only "$db" | grep -c 'SET (pg_attver=' || true)
    check "$old_major: $new_major's pg_dump writes the pg_attver option out" yes \
        "$([ "${written:-0}" -gt 0 ] && echo yes || echo no)"
    dump_bindir=$old_bindir
fi

# --- journey 1: pg_dump, restore into the new major -------------------------------

echo "dump and restore, PostgreSQL $old_major to $new_major, with $("$dump_bindir/pg_dump" --version)"
dumps=$(mktemp -d)
"$dump_bindir/pg_dumpall" --globals-only --no-role-passwords >"$dumps/globals.sql"
"$dump_bindir/pg_dump" --format=custom --create --file="$dumps/$db.dump" "$db"
cluster "$restored_dir" "$restored_port" "$new_config" start
export PGHOST=$restored_dir PGPORT=$restored_port
# The globals include the postgres role, which initdb already made.
errors=$(psql -X -q -d postgres -f "$dumps/globals.sql" 2>&1 >/dev/null | grep '^psql:.*ERROR' | sed -E 's/^psql:[^ ]* //' || true)
check "restore: the only error in the globals is the existing postgres role" 'ERROR:  role "postgres" already exists' "$errors"
pg_restore --create --exit-on-error -d postgres "$dumps/$db.dump"
rm -rf "$dumps"
check "restore: a PostgreSQL $new_major server" "$new_major" "$(sql postgres "SHOW server_version_num" | cut -c1-2)"
verify "restore"

# --- journey 2: pg_upgrade to the new major ----------------------------------------

echo "pg_upgrade, PostgreSQL $old_major to $new_major"
# The restore journey's checks ran on a copy; the old cluster is as it was.
cluster "$old_dir" "$old_port" "$old_config" stop
workdir=$repo/.cluster/test-major-work
# new_target: a new, empty cluster for pg_upgrade to fill, and its working
# directory. pg_upgrade needs the same checksum setting (18's initdb turns
# them on, 15's did not), encoding and locale as the old cluster.
new_target() {
    cluster "$upgraded_dir" "$upgraded_port" "$new_config" destroy
    INITDB_OPTIONS=--no-data-checksums cluster "$upgraded_dir" "$upgraded_port" "$new_config" init
    rm -rf "$workdir"
    mkdir -p "$workdir"
    chown postgres: "$workdir"
}
upgrade() {
    (cd "$workdir" && as_postgres "$pg_bindir/pg_upgrade" \
        --old-bindir="$old_bindir" --new-bindir="$pg_bindir" \
        --old-datadir="$old_dir/data" --new-datadir="$upgraded_dir/data" \
        --old-port=$((old_port + 3)) --new-port=$((old_port + 4)) --socketdir="$workdir" --username=postgres "$@")
}
new_target
log=$(mktemp)
status=0
upgrade --check >"$log" 2>&1 || status=$?
check "pg_upgrade --check passes" 0 "$status"
[ "$status" -eq 0 ] || cat "$log"
status=0
upgrade >"$log" 2>&1 || status=$?
if [ "$attver" -gt 0 ]; then
    # pg_upgrade restores the schema with the new major's pg_dump, so it
    # fails on pg_attver after its check passed. This fails, and tells us to
    # change doc/upgrades.md, the day a release accepts the option.
    check "pg_upgrade as it is fails on pg_attver, as doc/upgrades.md says" "failed|yes" \
        "$([ "$status" -ne 0 ] && echo failed || echo passed)|$(cat "$upgraded_dir"/data/pg_upgrade_output.d/*/log/*.log 2>/dev/null |
            grep -c 'unrecognized parameter "pg_attver"' >/dev/null && echo yes || echo no)"
    # The way round that doc/upgrades.md gives: take the option off the
    # database's own columns, in every database, which leaves them as a
    # server without pg_attver (15.18) made them; then pg_upgrade again,
    # into a new cluster.
    cluster "$old_dir" "$old_port" "$old_config" start
    export PGHOST=$old_dir PGPORT=$old_port
    left=0
    while IFS= read -r database; do
        sql "$database" "UPDATE pg_catalog.pg_attribute
                            SET attoptions = NULLIF(ARRAY(SELECT o FROM unnest(attoptions) AS o WHERE o NOT LIKE 'pg_attver=%'), '{}')
                          WHERE attrelid >= 16384 AND array_to_string(attoptions, ',') LIKE '%pg_attver=%'"
        left=$((left + $(sql "$database" "$attver_count")))
    done < <(sql postgres "SELECT datname FROM pg_database WHERE datallowconn")
    check "$old_major: after that, no column of any database keeps pg_attver" 0 "$left"
    check "$old_major: and the old server still reads AuthFort's tables" 'keys|2 tokens|3 sessions|4' \
        "$(sql "$db" "SELECT string_agg(concat_ws('|', target, deletable), ' ') FROM maintenance.authfort_cleanup_status")"
    cluster "$old_dir" "$old_port" "$old_config" stop
    new_target
    status=0
    upgrade >"$log" 2>&1 || status=$?
fi
check "pg_upgrade passes" 0 "$status"
[ "$status" -eq 0 ] || cat "$log"
rm -f "$log"
rm -rf "$workdir"
cluster "$upgraded_dir" "$upgraded_port" "$new_config" start
export PGHOST=$upgraded_dir PGPORT=$upgraded_port
# pg_upgrade carries no planner statistics over.
vacuumdb --all --analyze-in-stages --quiet
check "pg_upgrade: a PostgreSQL $new_major server" "$new_major" "$(sql postgres "SHOW server_version_num" | cut -c1-2)"
verify "pg_upgrade"

finish
