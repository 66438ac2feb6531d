#!/usr/bin/env bash
# `make demo`: a throwaway cluster with pg_cron, a database with AuthFort's real
# schema and some stale rows, one cleanup before your eyes, and the nightly
# job scheduled. The cluster stays up so you can poke at it; `make stop` ends it.
# Safe to run again: the database is dropped and rebuilt each time.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# The same defaults as scripts/cluster.sh, exported so both see one cluster.
export CLUSTER_DIR=${CLUSTER_DIR:-$here/.cluster/demo}
export PGPORT=${PGPORT:-54329}
export PGHOST=$CLUSTER_DIR PGUSER=postgres
export CRON_DATABASE=authfort_demo
export PATH="$(pg_config --bindir):$PATH"
# Keep psql quiet: no NOTICEs (e.g. DROP ... IF EXISTS); WARNINGs still show.
export PGOPTIONS='-c client_min_messages=warning'
db=authfort_demo

say() { printf '== %s\n' "$*"; }

# psql_in DB ARGS...: quiet, no psqlrc, stop at the first error.
psql_in() {
    local database=$1
    shift
    psql -X -q -v ON_ERROR_STOP=1 -P footer=off -d "$database" "$@"
}

# value DB QUERY: one bare value.
value() { psql_in "$1" -A -t -c "$2"; }

cluster() { "$here/scripts/cluster.sh" "$@"; }

# A demo cluster already running without pg_cron, or for another cron
# database, keeps those settings until it restarts: restart it.
start_cluster() {
    cluster start --cron
    if [ "$(value postgres "SELECT current_setting('cron.database_name', true)")" != "$db" ]; then
        echo "(restarting $CLUSTER_DIR to load pg_cron for $db)"
        cluster stop
        cluster start --cron
    fi
}

scheduler_running() {
    [ "$(value postgres "SELECT count(*) FROM pg_stat_activity
                          WHERE backend_type = 'pg_cron launcher' AND datname = '$db'")" = 1 ]
}

# wait_for_scheduler SECONDS
wait_for_scheduler() {
    local tries=$(($1 * 5))
    until scheduler_running; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || return 1
        sleep 0.2
    done
}

# pg_cron's scheduler lives in the cron database. If that database is missing
# at server start it exits and the postmaster restarts it every second, so it
# picks up a newly created database by itself. But DROP DATABASE ... WITH
# (FORCE) terminates it, it exits cleanly ("pg_cron scheduler shutting down"),
# and the postmaster never restarts it: after a recreate, restart the server.
recreate_database() {
    local dropped=no
    if [ "$(value postgres "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 1 ]; then
        psql_in postgres -c "DROP DATABASE $db WITH (FORCE)"
        dropped=yes
    fi
    psql_in postgres -c "CREATE DATABASE $db"
    if [ "$dropped" = yes ] || ! wait_for_scheduler 3; then
        cluster stop
        cluster start --cron
    fi
    wait_for_scheduler 10 || { echo "pg_cron scheduler did not start; see $CLUSTER_DIR/server.log" >&2; exit 1; }
}

# AuthFort's own migrations make the schema, so the demo runs against exactly
# the tables an application would have.
install_schema() {
    "$here/.venv/bin/python" "$here/tests/authfort_migrate.py" "postgresql+asyncpg://postgres@127.0.0.1:$PGPORT/$db"
    psql_in "$db" -c "CREATE EXTENSION pg_cron" -c "CREATE EXTENSION authfort_cleanup"
}

# Per table: rows there, and rows a cleanup would delete now (a dry run).
summary() {
    psql_in "$db" -c "
        SELECT p.target AS \"table\", t.total, p.deletable
          FROM authfort_cleanup_preview() WITH ORDINALITY AS p(target, deletable, oldest_expiry, position)
          JOIN (VALUES ('keys',     (SELECT count(*) FROM authfort_signing_keys)),
                       ('tokens',   (SELECT count(*) FROM authfort_verification_tokens)),
                       ('sessions', (SELECT count(*) FROM authfort_refresh_tokens))) AS t(target, total)
            USING (target)
         ORDER BY p.position"
}

# Each surviving row and why AuthFort's rule keeps it.
survivors() {
    psql_in "$db" -c "
        CREATE FUNCTION pg_temp.expires_in(expires_at timestamptz) RETURNS text LANGUAGE sql AS \$\$
            SELECT CASE WHEN s < 3600 THEN round(s / 60) || ' minutes'
                        WHEN s < 172800 THEN round(s / 3600) || ' hours'
                        ELSE round(s / 86400) || ' days' END
              FROM extract(epoch FROM expires_at - now()) AS s \$\$;
        SELECT * FROM (
            SELECT 'keys' AS \"table\", kid AS \"row\",
                   CASE WHEN is_current THEN 'current key (never expires)'
                        ELSE 'rotated out, still verifies tokens for ' || pg_temp.expires_in(expires_at) END AS kept_because
              FROM authfort_signing_keys
            UNION ALL
            SELECT 'tokens', t.type || ' for ' || u.email, 'live for ' || pg_temp.expires_in(t.expires_at)
              FROM authfort_verification_tokens t JOIN authfort_users u ON u.id = t.user_id
            UNION ALL
            SELECT 'sessions', u.email || ', ' || r.user_agent,
                   'live for ' || pg_temp.expires_in(r.expires_at)
                    || CASE WHEN r.session_id <> r.id THEN ' (newest token of a refreshed session)' ELSE '' END
              FROM authfort_refresh_tokens r JOIN authfort_users u ON u.id = r.user_id
        ) AS survivor
         ORDER BY array_position(ARRAY['keys', 'tokens', 'sessions'], \"table\"), \"row\""
}

# What authfort_cleanup_check() finds, a record each (the fixes are long).
findings() {
    if [ "$(value "$db" "SELECT count(*) FROM authfort_cleanup_check()")" = 0 ]; then
        echo "(no findings)"
    else
        psql_in "$db" -x -c "SELECT level, target, problem, fix FROM authfort_cleanup_check()"
    fi
}

# Runs the fix check() gives for the sessions' missing index, as printed.
apply_index_fix() {
    local fix
    fix=$(value "$db" "SELECT fix FROM authfort_cleanup_check() WHERE target = 'sessions' AND fix LIKE 'CREATE INDEX%'")
    echo "$fix"
    psql_in "$db" -c "$fix"
    echo
}

clean() {
    psql_in "$db" -c "SELECT authfort_cleanup_keys() AS keys_deleted,
                             authfort_cleanup_tokens() AS tokens_deleted,
                             authfort_cleanup_sessions() AS sessions_deleted"
}

schedule() {
    value "$db" "SELECT authfort_cleanup_schedule()" >/dev/null
    psql_in "$db" -c "SELECT jobid, schedule, command FROM cron.job"
}

main() {
    say "Starting the demo cluster ($CLUSTER_DIR, port $PGPORT) with pg_cron"
    start_cluster
    say "Creating database $db: AuthFort's migrations, then pg_cron and authfort_cleanup"
    recreate_database
    install_schema
    psql_in "$db" -f "$here/scripts/demo_seed.sql"

    say "Before: rows per table, and how many a cleanup would delete"
    summary
    say "Asking authfort_cleanup_check() what stands in the way"
    findings
    echo "Without an index on replaced_by, PostgreSQL's ON DELETE SET NULL trigger scans"
    echo "the whole sessions table once for every session deleted. Applying its fix"
    echo "(the missing schedule comes last):"
    apply_index_fix
    say "Cleaning up"
    clean
    say "After"
    summary
    survivors

    say "Scheduling the nightly cleanup (03:00) with pg_cron"
    schedule
    say "authfort_cleanup_check() again: nothing left to fix"
    findings

    say "The cluster is still running. Connect with:"
    echo "    psql -h $CLUSTER_DIR -p $PGPORT -U postgres $db"
    echo "Stop it with:"
    echo "    make stop"
}

main "$@"
