#!/usr/bin/env bash
# The disk space a first cleanup leaves behind. A 400,000-session table is
# cleaned of a night's worth of rows (steady state: check() stays quiet),
# then of a backlog of 90 % (check() says how much is free and how to give it
# back). The fix it gives is run as given (VACUUM FULL; pg_repack where the
# extension is installed, on 15 and 17 here), the table shrinks, and check() is
# quiet again. The estimate is printed beside pgstattuple's exact count.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

db=space
table=public.authfort_refresh_tokens
start_cluster space 54427
PGOPTIONS='-c client_min_messages=warning' new_authfort_db "$db" >/dev/null
PGOPTIONS='-c client_min_messages=warning' sql "$db" "SELECT authfort_cleanup_create_indexes()" >/dev/null

# seed: 400,000 sessions of one user: 1 % expired a month ago (a night's
# worth: all a 7-day grace lets go), 90 % expired an hour ago, 9 % live.
seed() {
    PGOPTIONS='-c client_min_messages=warning' sql "$db" "TRUNCATE authfort_refresh_tokens, authfort_users CASCADE" \
        "INSERT INTO authfort_users (id, email, created_at, updated_at)
         VALUES ('00000000-0000-0000-0000-000000000001', 'ada@example.com', now(), now())" \
        "INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked)
         SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', md5(i::text) || md5((-i)::text),
                now() + CASE WHEN i % 100 = 0 THEN interval '-30 days'
                             WHEN i % 10 = 0 THEN interval '30 days' ELSE interval '-1 hour' END,
                now() - interval '40 days', false
           FROM generate_series(1, 400000) i" \
        "VACUUM ANALYZE authfort_refresh_tokens"
}

# space_finding: the check() finding about free space, as level|target|fix.
space_finding() {
    sql "$db" "SELECT concat_ws('|', level, target, fix) FROM authfort_cleanup_check() WHERE problem LIKE '%free space%'"
}
space_problem() {
    sql "$db" "SELECT problem FROM authfort_cleanup_check() WHERE problem LIKE '%free space%'"
}
size() {
    sql "$db" "SELECT pg_total_relation_size('$table')"
}
# check_space_given_back HOW BEFORE: after the fix HOW, run as given, the
# table is less than half its BEFORE size, check() is quiet, and every live
# session is there.
check_space_given_back() {
    local how=$1 before=$2
    sql "$db" "ANALYZE authfort_refresh_tokens"
    check "$how, as given, gives back more than half of the table" yes \
        "$([ "$(size)" -lt "$((before / 2))" ] && echo yes || echo no)"
    check "check() is quiet about space afterwards" "" "$(space_finding)"
    check "and the live sessions are all there" 36000 "$(sql "$db" "SELECT count(*) FROM authfort_refresh_tokens")"
}

# clean_backlog: the night's rows, then the backlog; VACUUM ANALYZE as
# autovacuum would, so that the statistics see the rows that are left.
clean_backlog() {
    sql "$db" "SELECT authfort_cleanup_sessions(grace => '7 days')" "VACUUM ANALYZE authfort_refresh_tokens" >/dev/null
    check "steady state: a night's cleanup of 1 % leaves check() quiet about space" "" "$(space_finding)"
    check "the backlog: 360,000 sessions deleted" 360000 "$(sql "$db" "SELECT authfort_cleanup_sessions()")"
    sql "$db" "VACUUM ANALYZE authfort_refresh_tokens"
}

# Printed, not checked: how close the estimate comes to pgstattuple's exact
# free space (free plus dead tuples, of the heap and each index).
measure() {
    if sql "$db" "CREATE EXTENSION IF NOT EXISTS pgstattuple" 2>/dev/null; then
        sql "$db" "SELECT format('  measured: check() estimates %s free of %s; pgstattuple counts %s',
                                 substring(problem FROM 'about ([^ ]+ [^ ]+) is free'),
                                 pg_size_pretty(pg_total_relation_size('$table')), pg_size_pretty(exact))
                     FROM authfort_cleanup_check(),
                          (SELECT sum(free_space + dead_tuple_len) AS exact
                             FROM (SELECT '$table'::regclass AS rel
                                   UNION ALL SELECT indexrelid::regclass FROM pg_index WHERE indrelid = '$table'::regclass) r,
                                  LATERAL pgstattuple(rel)) e
                    WHERE problem LIKE '%free space%'"
        sql "$db" "DROP EXTENSION pgstattuple"
    else
        echo "  (pgstattuple is not installed for PostgreSQL $pg_major: no exact count to compare with)"
    fi
}

echo "VACUUM FULL, without pg_repack"
seed
clean_backlog
finding=$(space_finding)
check "the backlog's free space: an info finding on sessions, VACUUM FULL as the fix" \
    "info|sessions|VACUUM FULL $table;" "$finding"
problem=$(space_problem)
echo "  $problem"
check "the finding names the table, its size and the free space" yes \
    "$(grep -qE "^$table takes [0-9]+ MB with its indexes, of which about [0-9]+ MB is free space" <<<"$problem" && echo yes || echo no)"
check "and what VACUUM FULL costs: the lock and the disk" "yes|yes" \
    "$(contains "$problem" 'ACCESS EXCLUSIVE lock on the table for the whole rewrite')|$(contains "$problem" 'needs free disk at least the size of the live part')"
measure
before=$(size)
sql "$db" "${finding##*|}"
check_space_given_back "VACUUM FULL" "$before"

if [ -f "$(pg_config --pkglibdir)/pg_repack.so" ] && command -v pg_repack >/dev/null; then
    echo "pg_repack"
    sql "$db" "CREATE EXTENSION pg_repack"
    seed
    clean_backlog
    finding=$(space_finding)
    check "with pg_repack installed, the fix is its command for this table and database" \
        "info|sessions|pg_repack --dbname='$db' --table='$table'" "$finding"
    check "and the finding says it works online" yes "$(contains "$(space_problem)" 'rebuilds it online')"
    before=$(size)
    # The command as given, with this cluster's connection options.
    eval "${finding##*|} --host=\"\$PGHOST\" --port=\"\$PGPORT\" --username=postgres" >/dev/null 2>&1 ||
        echo "  pg_repack failed"
    check_space_given_back pg_repack "$before"
else
    skip "pg_repack" "no pg_repack for PostgreSQL $pg_major here (only Debian's, for 15 and 17)"
fi

finish
