#!/usr/bin/env bash
# Scheduling with real pg_cron, the run log and the NOTIFY payload, on a real
# cluster. The cron job is checked twice (a good run and a failing one), so
# this suite waits for two minute boundaries: it takes about two minutes.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
has_pg_cron || skip_suite "pg_cron is not installed for PostgreSQL $pg_major (here only Debian 12's 15 and Debian 13's 17 have it)"

db=cron_app          # holds AuthFort's tables, pg_cron and the extension
other_db=no_cron     # AuthFort and the extension, but pg_cron lives elsewhere
plain_name=cron-plain
plain_port=54413     # a second cluster without pg_cron preloaded

# --- helpers -----------------------------------------------------------------

# error_output DB SQL: runs SQL expecting it to fail; prints psql's stderr in
# verbose form, so the ERROR line carries the SQLSTATE. Never fails itself.
error_output() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$1" -c "$2" 2>&1 >/dev/null || true
}

# sqlstate_in TEXT: the SQLSTATE of the first ERROR in error_output's output.
sqlstate_in() {
    sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): .*/\1/p' <<<"$1" | head -n 1
}

# hint_in TEXT: the HINT line of error_output's output.
hint_in() {
    sed -n 's/^HINT:  //p' <<<"$1" | head -n 1
}

# counts: rows left in keys, verification tokens, refresh tokens.
counts() {
    sql "$db" "SELECT (SELECT count(*) FROM authfort_signing_keys) || '|' ||
                      (SELECT count(*) FROM authfort_verification_tokens) || '|' ||
                      (SELECT count(*) FROM authfort_refresh_tokens)"
}

job_count() {
    sql "$db" "SELECT count(*) FROM cron.job WHERE jobname = 'authfort_cleanup'"
}

last_runid() {
    sql "$db" "SELECT coalesce(max(runid), 0) FROM cron.job_run_details"
}

last_log_id() {
    sql "$db" "SELECT coalesce(max(id), 0) FROM authfort_cleanup_runs"
}

# wait_for_cron_run AFTER_RUNID [JOB]: waits for the first run of JOB
# (default authfort_cleanup) after AFTER_RUNID to finish (a '* * * * *' job
# starts within 60 s), then prints "runid|status". After 75 s it prints
# "0|timed out", which fails the checks without stopping the suite.
wait_for_cron_run() {
    local after=$1 job=${2:-authfort_cleanup} deadline=$((SECONDS + 75)) run
    while [ "$SECONDS" -lt "$deadline" ]; do
        run=$(sql "$db" "SELECT d.runid || '|' || d.status FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                          WHERE d.runid > $after AND d.status IN ('succeeded', 'failed') AND j.jobname = '$job'
                          ORDER BY d.runid LIMIT 1")
        if [ -n "$run" ]; then
            echo "$run"
            return
        fi
        sleep 1
    done
    echo "0|timed out"
}

# The run-log row written during cron run RUNID: its status and counts.
log_row_of_cron_run() {
    sql "$db" "SELECT r.status || '|' || r.keys || '|' || r.tokens || '|' || r.sessions
                 FROM authfort_cleanup_runs r JOIN cron.job_run_details d ON d.runid = $1
                WHERE r.started_at BETWEEN d.start_time AND d.end_time
                ORDER BY r.id LIMIT 1"
}

# seed_expired KEYS TOKENS SESSIONS: rows every cleanup must delete. Sessions
# alternate between revoked-but-unexpired and expired-but-not-revoked, so
# both halves of AuthFort's rule are exercised.
seed_expired() {
    sql "$db" "
        INSERT INTO authfort_signing_keys (id, kid, private_key, public_key, algorithm, is_current, created_at, expires_at)
        SELECT gen_random_uuid(), 'expired-' || gen_random_uuid(), 'private', 'public', 'RS256', false,
               now() - interval '60 days', now() - i * interval '1 day'
          FROM generate_series(1, $1) i" "
        INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
        SELECT gen_random_uuid(), (SELECT id FROM authfort_users LIMIT 1), 'expired-' || gen_random_uuid(),
               'email_verify', now() - i * interval '1 hour', now() - interval '2 days'
          FROM generate_series(1, $2) i" "
        INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked)
        SELECT gen_random_uuid(), (SELECT id FROM authfort_users LIMIT 1), 'dead-' || gen_random_uuid(),
               CASE WHEN i % 2 = 0 THEN now() + interval '50 years' ELSE now() - i * interval '1 day' END,
               now() - interval '40 days', i % 2 = 0
          FROM generate_series(1, $3) i"
}

# seed: one user, live rows that must survive every cleanup, and a first
# batch of expired ones (3 keys, 4 tokens, 5 sessions).
seed() {
    sql "$db" "
        INSERT INTO authfort_users (id, email, created_at, updated_at)
        VALUES (gen_random_uuid(), 'alice@example.com', now(), now())" "
        INSERT INTO authfort_signing_keys (id, kid, private_key, public_key, algorithm, is_current, created_at, expires_at) VALUES
            -- AuthFort's current key has no expiry.
            (gen_random_uuid(), 'current', 'private', 'public', 'RS256', true, now(), NULL),
            -- A rotated-out key still inside its verification window.
            (gen_random_uuid(), 'previous', 'private', 'public', 'RS256', false, now() - interval '1 day', now() + interval '50 years')" "
        INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
        SELECT gen_random_uuid(), id, 'live-' || i, 'password_reset', now() + interval '50 years', now()
          FROM authfort_users, generate_series(1, 2) i" "
        INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked)
        SELECT gen_random_uuid(), id, 'live-' || i, now() + interval '50 years', now(), false
          FROM authfort_users, generate_series(1, 2) i"
    seed_expired 3 4 5
    # A rotation chain: the revoked tokens point at the live token that
    # replaced them (ON DELETE SET NULL from the other side).
    sql "$db" "UPDATE authfort_refresh_tokens
                  SET replaced_by = (SELECT id FROM authfort_refresh_tokens WHERE token_hash = 'live-1')
                WHERE revoked"
}

live_counts='2|2|2'

# new_db DB: new_authfort_db without DROP DATABASE IF EXISTS's NOTICE.
new_db() {
    PGOPTIONS='-c client_min_messages=warning' new_authfort_db "$1" >/dev/null
}

cleanup_clusters() {
    CLUSTER_DIR="$repo/.cluster/test-$plain_name" "$repo/scripts/cluster.sh" destroy
    "$repo/scripts/cluster.sh" destroy
}

# --- setup -------------------------------------------------------------------

# The cluster starts before cron_app exists. pg_cron's launcher is a
# background worker that exits with FATAL "database does not exist" and is
# restarted by the postmaster every second, so it connects as soon as the
# database is created: no restart needed (checked below, not assumed).
CRON_DATABASE=$db start_cluster cron 54412 --cron
trap cleanup_clusters EXIT

echo "setup"
new_db "$db"
sql "$db" "CREATE EXTENSION pg_cron"
launcher=
for _ in $(seq 30); do
    launcher=$(sql postgres "SELECT datname FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'")
    [ -n "$launcher" ] && break
    sleep 1
done
check "pg_cron launcher connects to $db created after server start" "$db" "$launcher"
seed
check "seeded rows: keys|tokens|sessions" '5|6|7' "$(counts)"

# --- 1. schedule -------------------------------------------------------------
echo "schedule"
job_id=$(sql "$db" "SELECT authfort_cleanup_schedule('* * * * *')")
check "schedule() returns a job id" yes "$([[ $job_id =~ ^[0-9]+$ ]] && echo yes || echo no)"
check "cron.job has exactly one authfort_cleanup job" 1 "$(job_count)"
check "the job calls authfort_cleanup_run, in $db" "CALL public.authfort_cleanup_run()|$db|$job_id" \
    "$(sql "$db" "SELECT command || '|' || database || '|' || jobid FROM cron.job WHERE jobname = 'authfort_cleanup'")"

# Scheduling again updates the job in place: same id, new schedule.
check "rescheduling returns the same job id" "$job_id" "$(sql "$db" "SELECT authfort_cleanup_schedule('*/5 * * * *')")"
check "rescheduled: one job with the new schedule" "1|*/5 * * * *" \
    "$(sql "$db" "SELECT count(*) || '|' || max(schedule) FROM cron.job WHERE jobname = 'authfort_cleanup'")"
check "scheduling back returns the same job id" "$job_id" "$(sql "$db" "SELECT authfort_cleanup_schedule('* * * * *')")"
check "scheduled back: one job, every minute, same id" "1|* * * * *|$job_id" \
    "$(sql "$db" "SELECT count(*) || '|' || max(schedule) || '|' || max(jobid) FROM cron.job WHERE jobname = 'authfort_cleanup'")"

# --- 2. the job runs ---------------------------------------------------------
echo "the cron job runs (waiting for the next minute)"
run=$(wait_for_cron_run 0)
check "the cron run succeeded" succeeded "${run#*|}"
check "expired rows gone, live rows left (keys|tokens|sessions)" "$live_counts" "$(counts)"
check "the current key (NULL expiry) survives" 1 \
    "$(sql "$db" "SELECT count(*) FROM authfort_signing_keys WHERE is_current AND expires_at IS NULL")"
check "revoked tokens' replacement survives" 1 \
    "$(sql "$db" "SELECT count(*) FROM authfort_refresh_tokens WHERE token_hash = 'live-1'")"
check "run log: status|keys|tokens|sessions of the cron run" 'ok|3|4|5' "$(log_row_of_cron_run "${run%|*}")"

# --- 5. a failing run is logged ----------------------------------------------
# Done while the job is still scheduled, right after a run, so the next
# minute's run finds the table missing too.
echo "failing runs"
sql "$db" "ALTER TABLE authfort_verification_tokens RENAME TO authfort_verification_tokens_away"
before_log=$(last_log_id)
failure=$(error_output "$db" "CALL authfort_cleanup_run()")
check "CALL fails with the table's error, 42P01" 42P01 "$(sqlstate_in "$failure")"
check "the CALL's error names the table" yes "$(contains "$failure" authfort_verification_tokens)"
check "the failed CALL logged an error row naming the table" 'error|yes' \
    "$(sql "$db" "SELECT status || '|' || CASE WHEN error LIKE '%authfort_verification_tokens%' THEN 'yes' ELSE 'no' END
                    FROM authfort_cleanup_runs WHERE id > $before_log ORDER BY id LIMIT 1")"

# Meanwhile, from the database where pg_cron lives, schedule another
# database's cleanup; it runs in the same minute.
new_db "$other_db"
sql "$other_db" "INSERT INTO authfort_users (id, email, created_at, updated_at)
                 VALUES ('00000000-0000-0000-0000-0000000000aa', 'other@example.com', now(), now())" "
                 INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
                 SELECT gen_random_uuid(), '00000000-0000-0000-0000-0000000000aa', 'other-' || i, 'email_verify',
                        now() + CASE WHEN i <= 2 THEN interval '-1 hour' ELSE interval '1 day' END, now()
                   FROM generate_series(1, 3) i"
other_job=$(sql "$db" "SELECT authfort_cleanup_schedule('* * * * *', 'authfort_cleanup_other', '$other_db')")
check "schedule(database => ...) makes a job that runs there" "$other_db|CALL public.authfort_cleanup_run()" \
    "$(sql "$db" "SELECT database || '|' || command FROM cron.job WHERE jobid = $other_job")"

run=$(wait_for_cron_run "${run%|*}")
check "the cron run with the table missing failed" failed "${run#*|}"
check "cron's return_message names the table" yes \
    "$(contains "$(sql "$db" "SELECT return_message FROM cron.job_run_details WHERE runid = ${run%|*}")" \
        authfort_verification_tokens)"
check "the failed cron run logged an error row" 'error|0|0|0' "$(log_row_of_cron_run "${run%|*}")"
sql "$db" "ALTER TABLE authfort_verification_tokens_away RENAME TO authfort_verification_tokens"
other_run=$(wait_for_cron_run 0 authfort_cleanup_other)
check "the other database's job succeeded" succeeded "${other_run#*|}"
check "it cleaned the other database: expired tokens gone, live kept" 1 \
    "$(sql "$other_db" "SELECT count(*) FROM authfort_verification_tokens")"
check "and logged there" 'ok|0|2|0' \
    "$(sql "$other_db" "SELECT status || '|' || keys || '|' || tokens || '|' || sessions FROM authfort_cleanup_runs")"
check "unschedule(job_name) removes that job" t "$(sql "$db" "SELECT authfort_cleanup_unschedule('authfort_cleanup_other')")"

# --- 3. unschedule -----------------------------------------------------------
echo "unschedule"
check "unschedule() returns true" t "$(sql "$db" "SELECT authfort_cleanup_unschedule()")"
check "the job is gone" 0 "$(job_count)"
check "a second unschedule() returns false" f "$(sql "$db" "SELECT authfort_cleanup_unschedule()")"

# --- 4. the NOTIFY payload ---------------------------------------------------
# The job is gone, so nothing else can run a cleanup (and notify) meanwhile.
echo "NOTIFY payload"
seed_expired 2 1 3
payload=$("$repo/.venv/bin/python" "$repo/tests/listen_payload.py" \
    "postgresql://postgres@127.0.0.1:$PGPORT/$db" "SELECT * FROM authfort_cleanup_all()" || true)
field() { sed -n "s/^$1=//p" <<<"$payload"; }
check "authfort_cleanup_all() returned the seeded counts" '2,1,3' "$(field returned)"
check "payload counts equal the returned ones" "$(field returned)" "$(field payload_counts)"
check "payload counts are JSON integers" 'int,int,int' "$(field payload_count_types)"
check "payload status" ok "$(field status)"
check "payload duration_ms is an integer >= 0" 'int>=0' "$(field duration_ms)"
check "payload started_at is an ISO-8601 timestamp" iso-8601 "$(field started_at)"
check "payload fields" 'duration_ms,keys,sessions,started_at,status,tokens' "$(field fields)"
check "one payload per run" '' "$(field extra_payloads)"

# --- 7. the overlap guard ----------------------------------------------------
echo "overlap guard"
# Another session holds the run lock for 6 s; both entry points must skip
# at once rather than wait for it.
psql -X -q -d "$db" -c "SELECT pg_advisory_lock(authfort_cleanup_lock_key())" -c "SELECT pg_sleep(6)" >/dev/null &
holder=$!
for _ in $(seq 50); do
    [ "$(sql "$db" "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")" = 1 ] && break
    sleep 0.1
done
before_log=$(last_log_id)
started=$SECONDS
output=$(psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "CALL authfort_cleanup_run()" 2>&1 || true)
check "CALL returns at once while another run holds the lock" yes "$([ $((SECONDS - started)) -le 2 ] && echo yes || echo no)"
check "CALL says it skipped" yes "$(contains "$output" 'NOTICE:  authfort_cleanup: another cleanup run is in progress; this one skipped')"
started=$SECONDS
output=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$db" -c "SELECT * FROM authfort_cleanup_all()" 2>&1 || true)
check "authfort_cleanup_all() returns at once" yes "$([ $((SECONDS - started)) -le 2 ] && echo yes || echo no)"
check "authfort_cleanup_all() says it skipped" yes "$(contains "$output" 'this one skipped')"
check "authfort_cleanup_all() returns zeros" '0|0|0' "$(tail -n 1 <<<"$output")"
check "both logged a skipped row" 'skipped|0|0|0,skipped|0|0|0' \
    "$(sql "$db" "SELECT string_agg(status || '|' || keys || '|' || tokens || '|' || sessions, ',' ORDER BY id)
                    FROM authfort_cleanup_runs WHERE id > $before_log")"
wait "$holder" || true

# --- 6. errors ---------------------------------------------------------------
echo "errors"
failure=$(error_output "$db" "SELECT authfort_cleanup_schedule('not a schedule')")
# pg_cron 1.4.2 reports an invalid schedule as invalid_parameter_value.
check "an invalid cron expression fails with 22023" 22023 "$(sqlstate_in "$failure")"
check "an invalid cron expression leaves no job" 0 "$(job_count)"

# Rescheduling a job under the same name with another database moves it:
# cron.schedule_in_database alone would keep the job's old database. The
# schedule is 03:00, so neither job runs during the suite.
job_where() {
    sql "$db" "SELECT jobid || '|' || database || '|' || schedule FROM cron.job WHERE jobname = 'authfort_cleanup_moved'"
}
moved=$(sql "$db" "SELECT authfort_cleanup_schedule('0 3 * * *', 'authfort_cleanup_moved')")
check "a job scheduled here runs in $db" "$moved|$db|0 3 * * *" "$(job_where)"
check "rescheduling it with database => $other_db returns the same id" "$moved" \
    "$(sql "$db" "SELECT authfort_cleanup_schedule('0 4 * * *', 'authfort_cleanup_moved', '$other_db')")"
check "cron.job now runs it in $other_db, on the new schedule" "$moved|$other_db|0 4 * * *" "$(job_where)"
check "rescheduling it without database moves it back" "$moved" \
    "$(sql "$db" "SELECT authfort_cleanup_schedule('0 3 * * *', 'authfort_cleanup_moved')")"
check "cron.job runs it in $db again" "$moved|$db|0 3 * * *" "$(job_where)"
check "unschedule removes the moved job" t "$(sql "$db" "SELECT authfort_cleanup_unschedule('authfort_cleanup_moved')")"

# pg_cron keeps job names as name (63 bytes): a longer one is refused, not
# truncated into a job that unschedule() by the same name could not find.
long_name="repeat('x', 100)"
failure=$(error_output "$db" "SELECT authfort_cleanup_schedule('0 3 * * *', $long_name)")
check "a job_name over 63 bytes: 22023" 22023 "$(sqlstate_in "$failure")"
check "its message names job_name" yes "$(contains "$failure" 'job_name is 100 bytes long')"
check "and no job was made" 0 "$(sql "$db" "SELECT count(*) FROM cron.job WHERE jobname LIKE 'xxx%'")"
failure=$(error_output "$db" "SELECT authfort_cleanup_unschedule($long_name)")
check "unschedule() with that job_name: 22023 too" 22023 "$(sqlstate_in "$failure")"

new_db "$other_db"
failure=$(error_output "$other_db" "SELECT authfort_cleanup_schedule('* * * * *')")
check "schedule() where pg_cron lives in another database: 42704" 42704 "$(sqlstate_in "$failure")"
check "its HINT says to use cron.schedule_in_database" yes "$(contains "$(hint_in "$failure")" 'cron.schedule_in_database')"
failure=$(error_output "$other_db" "SELECT authfort_cleanup_unschedule()")
check "unschedule() there fails with 42704 too" 42704 "$(sqlstate_in "$failure")"

# A cluster without pg_cron preloaded, in a subshell so that this cluster's
# environment is left alone.
failure=$(
    export CLUSTER_DIR="$repo/.cluster/test-$plain_name" PGPORT=$plain_port
    export PGHOST=$CLUSTER_DIR
    "$repo/scripts/cluster.sh" destroy
    "$repo/scripts/cluster.sh" start
    new_db plain
    error_output plain "SELECT authfort_cleanup_schedule('* * * * *')"
)
check "schedule() without pg_cron preloaded: 42704" 42704 "$(sqlstate_in "$failure")"
check "its HINT mentions shared_preload_libraries" yes "$(contains "$(hint_in "$failure")" 'shared_preload_libraries')"

finish
