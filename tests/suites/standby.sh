#!/usr/bin/env bash
# Standby suite: the extension on a real streaming replica. A hot standby is
# read-only, so every deleting entry point must refuse with SQLSTATE 25006 and
# say it is a standby, while the read-only ones (dry runs, the preview) keep
# working and the batched procedure, which pg_cron also runs on standbys,
# returns quietly. After promotion the same server must clean normally.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

start_cluster standby-primary 54415
primary_host=$PGHOST primary_port=$PGPORT

replica_dir="$repo/.cluster/test-standby-replica"
replica_data="$replica_dir/data"
replica_port=54416

# Both servers go at exit, the replica first: lib.sh's trap only knows the
# primary, so it is replaced by one that does both.
stop_replica() {
    if [ -f "$replica_data/PG_VERSION" ] && as_postgres "$pg_bindir/pg_ctl" -D "$replica_data" status >/dev/null 2>&1; then
        as_postgres "$pg_bindir/pg_ctl" -D "$replica_data" -m immediate -w stop >/dev/null || true
    fi
    rm -rf "$replica_dir"
}
trap 'stop_replica; "$repo/scripts/cluster.sh" destroy' EXIT
stop_replica

# on_replica CMD...: runs CMD with libpq pointed at the replica.
on_replica() {
    PGHOST=$replica_dir PGPORT=$replica_port "$@"
}

# deletable_counts DB: keys|tokens|sessions deletable by AuthFort's own rules,
# counted without the extension, to compare its answers against.
deletable_counts() {
    sql "$1" "SELECT (SELECT count(*) FROM authfort_signing_keys WHERE expires_at < now() AND NOT is_current)
                || '|' || (SELECT count(*) FROM authfort_verification_tokens WHERE expires_at < now())
                || '|' || (SELECT count(*) FROM authfort_refresh_tokens WHERE revoked OR expires_at < now())"
}

row_counts() {
    sql "$1" "SELECT (SELECT count(*) FROM authfort_signing_keys)
                || '|' || (SELECT count(*) FROM authfort_verification_tokens)
                || '|' || (SELECT count(*) FROM authfort_refresh_tokens)"
}

echo "# primary with AuthFort's schema and data"
new_authfort_db app
# Keys: 1 current, 3 expired (deletable), 2 retired but still valid, 1 with no
# expiry. Tokens: 4 expired, 3 live. Sessions: 5 expired, 3 revoked (one of
# them rotated into a live token), 4 live. Everything at least an hour from
# now(), so no row changes sides while the suite runs.
sql app "
INSERT INTO authfort_users (id, email, created_at, updated_at)
SELECT gen_random_uuid(), 'user' || i || '@standby.example', now(), now() FROM generate_series(1, 10) AS i;

INSERT INTO authfort_signing_keys (id, kid, private_key, public_key, algorithm, is_current, created_at, expires_at)
SELECT gen_random_uuid(), 'kid-' || i, 'private', 'public', 'RS256', i = 1, now(),
       CASE WHEN i = 1 OR i = 7 THEN NULL
            WHEN i <= 4 THEN now() - interval '2 days'
            ELSE now() + interval '2 days' END
  FROM generate_series(1, 7) AS i;

INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
SELECT gen_random_uuid(), (SELECT id FROM authfort_users ORDER BY email LIMIT 1), 'token-' || i, 'password_reset',
       now() + CASE WHEN i <= 4 THEN interval '-1 hour' ELSE interval '1 hour' END, now()
  FROM generate_series(1, 7) AS i;

INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, session_id, expires_at, created_at, revoked)
SELECT gen_random_uuid(), (SELECT id FROM authfort_users ORDER BY email LIMIT 1), 'session-' || i, NULL,
       now() + CASE WHEN i <= 5 THEN interval '-1 day' ELSE interval '1 day' END, now(), i BETWEEN 6 AND 8
  FROM generate_series(1, 12) AS i;
-- A rotation: session-6 (revoked) was replaced by session-9 (live).
UPDATE authfort_refresh_tokens SET replaced_by = (SELECT id FROM authfort_refresh_tokens WHERE token_hash = 'session-9')
 WHERE token_hash = 'session-6';
"
check "primary: AuthFort's rules find 3 keys, 4 tokens, 8 sessions deletable" "3|4|8" "$(deletable_counts app)"
# A standby cannot assign transaction ids ("cannot assign TransactionIds
# during recovery", XX000), so anything that must work there may not take
# one. Observable on the primary: after a read-only call the transaction
# still has none.
for call in "authfort_cleanup_keys(dry_run => true)" "count(*) FROM authfort_cleanup_preview()" \
            "authfort_cleanup_lock_key()"; do
    check "primary: SELECT $call assigns no transaction id" "" \
        "$(sql app "BEGIN" "SELECT $call" "SELECT txid_current_if_assigned()" "ROLLBACK" | sed -n 2p)"
done

echo "# streaming replica"
mkdir -p "$replica_dir"
chown postgres: "$replica_dir"
# -R writes standby.signal and a primary_conninfo that reaches the primary
# over its unix socket (pg_hba's "local replication all trust" from initdb).
as_postgres "$pg_bindir/pg_basebackup" -h "$primary_host" -p "$primary_port" -U postgres -D "$replica_data" -R -X stream -c fast
# The backup copied the primary's cluster.conf (its port and socket dir):
# the replica gets its own, or it would try to take the primary's.
{
    echo "listen_addresses = ''"
    echo "port = $replica_port"
    echo "unix_socket_directories = '$replica_dir'"
    echo "fsync = off"
    echo "max_connections = 60"
    echo "log_min_messages = warning"
    echo "hot_standby = on"
} | as_postgres tee "$replica_data/cluster.conf" >/dev/null
as_postgres "$pg_bindir/pg_ctl" -D "$replica_data" -l "$replica_dir/server.log" -w start >/dev/null

check "replica: is in recovery" "t" "$(on_replica sql app "SELECT pg_is_in_recovery()")"

# A token expired on the primary after the base backup: seeing it on the
# replica proves it streams, and gives it one more row than the backup had.
sql app "INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
         SELECT gen_random_uuid(), id, 'token-streamed', 'email_verify', now() - interval '1 hour', now()
           FROM authfort_users ORDER BY email LIMIT 1"
target_lsn=$(sql app "SELECT pg_current_wal_lsn()")
replayed=f
for _ in $(seq 1 100); do
    replayed=$(on_replica sql app "SELECT coalesce(pg_last_wal_replay_lsn() >= '$target_lsn'::pg_lsn, false)")
    [ "$replayed" = t ] && break
    sleep 0.1
done
check "replica: replays the primary's WAL" "t" "$replayed"
check "primary: a walsender is streaming to the replica" "1" \
    "$(sql postgres "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")"
check "replica: sees the streamed row" "1" \
    "$(on_replica sql app "SELECT count(*) FROM authfort_verification_tokens WHERE token_hash = 'token-streamed'")"

primary_rows_before=$(row_counts app)
check "replica: has the primary's rows" "$primary_rows_before" "$(on_replica row_counts app)"

echo "# deleting on the standby is refused"
# Writing the run log and building indexes need a transaction id too.
for call in "authfort_cleanup_keys()" "authfort_cleanup_tokens()" "authfort_cleanup_sessions()" \
            "* FROM authfort_cleanup_all()" "authfort_cleanup_record_run(now(), 0, 0, 0, 'ok')" \
            "* FROM authfort_cleanup_create_indexes()"; do
    error=$(on_replica error_of app "SELECT $call")
    check "standby: SELECT $call fails with 25006" "25006" "${error%%:*}"
    mentions=no
    case "$error" in *standby*) mentions=yes ;; esac
    check "standby: SELECT $call says it is a standby ($error)" "yes" "$mentions"
done
# Options that still delete are refused too, before any of them is looked at.
error=$(on_replica error_of app "SELECT authfort_cleanup_sessions(grace => '1 hour', max_rows => 1, keep_revoked_until_expired => true)")
check "standby: sessions with grace/max_rows fails with 25006" "25006" "${error%%:*}"

echo "# reading on the standby works"
check "standby: keys dry run counts 3" "3" "$(on_replica sql app "SELECT authfort_cleanup_keys(dry_run => true)")"
check "standby: tokens dry run counts 5" "5" "$(on_replica sql app "SELECT authfort_cleanup_tokens(dry_run => true)")"
check "standby: sessions dry run counts 8" "8" "$(on_replica sql app "SELECT authfort_cleanup_sessions(dry_run => true)")"
check "standby: sessions dry run keeping revoked until expired counts 5" "5" \
    "$(on_replica sql app "SELECT authfort_cleanup_sessions(dry_run => true, keep_revoked_until_expired => true)")"
check "standby: preview" "keys|3|true,tokens|5|true,sessions|8|true" \
    "$(on_replica sql app "SELECT string_agg(target || '|' || deletable || '|' || (oldest_expiry < now()), ',')
                             FROM authfort_cleanup_preview()")"

# The status view is what a dashboard scrapes, often from a replica.
check "standby: the status view" "keys|7|3,tokens|8|5,sessions|12|8" \
    "$(on_replica sql app "SELECT string_agg(target || '|' || rows || '|' || deletable, ',') FROM authfort_cleanup_status")"

echo "# the batched procedure is a no-op on the standby"
call_log=$(mktemp)
call_status=0
on_replica psql -X -q -v ON_ERROR_STOP=1 -d app -c "CALL authfort_cleanup_run()" 2>"$call_log" >/dev/null || call_status=$?
check "standby: CALL authfort_cleanup_run() succeeds" "0" "$call_status"
check "standby: CALL authfort_cleanup_run() says it is a standby" \
    "NOTICE:  authfort_cleanup: this server is a standby; nothing to do" "$(grep '^NOTICE' "$call_log" | head -n 1)"
check "standby: CALL authfort_cleanup_run() raises nothing but that NOTICE" "0" \
    "$(grep -c -E '^(ERROR|WARNING)' "$call_log" || true)"
rm -f "$call_log"
check "standby: CALL authfort_cleanup_run(batch_size => 1) also succeeds" "" \
    "$(on_replica sql app "CALL authfort_cleanup_run(batch_size => 1)" 2>/dev/null)"

echo "# nothing changed"
check "standby: still has every row" "$primary_rows_before" "$(on_replica row_counts app)"
check "primary: still has every row" "$primary_rows_before" "$(row_counts app)"
check "primary: run log is empty" "0" "$(sql app "SELECT count(*) FROM authfort_cleanup_runs")"

echo "# promoted, the replica cleans"
check "replica: promotes" "t" "$(on_replica sql app "SELECT pg_promote(wait => true, wait_seconds => 60)")"
check "promoted: no longer in recovery" "f" "$(on_replica sql app "SELECT pg_is_in_recovery()")"
check "promoted: keys deletes 3" "3" "$(on_replica sql app "SELECT authfort_cleanup_keys()")"
check "promoted: tokens deletes 5" "5" "$(on_replica sql app "SELECT authfort_cleanup_tokens()")"
check "promoted: sessions deletes 8" "8" "$(on_replica sql app "SELECT authfort_cleanup_sessions()" 2>/dev/null)"
check "promoted: nothing deletable is left" "0|0|0" "$(on_replica deletable_counts app)"
check "promoted: the live rows remain (1+2+1 keys, 3 tokens, 4 sessions)" "4|3|4" "$(on_replica row_counts app)"
check "promoted: the current key survives" "kid-1" \
    "$(on_replica sql app "SELECT kid FROM authfort_signing_keys WHERE is_current")"
check "promoted: authfort_cleanup_all() finds nothing left" "0|0|0" \
    "$(on_replica sql app "SELECT keys || '|' || tokens || '|' || sessions FROM authfort_cleanup_all()" 2>/dev/null)"
check "promoted: and logs its run" "ok" \
    "$(on_replica sql app "SELECT string_agg(status, ',') FROM authfort_cleanup_runs")"
check "primary: untouched by the promoted server's cleanup" "$primary_rows_before" "$(row_counts app)"

finish
