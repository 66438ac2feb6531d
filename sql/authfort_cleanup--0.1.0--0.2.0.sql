-- authfort_cleanup 0.1.0 -> 0.2.0: the authfort_cleanup_status view for
-- monitoring, a comment on every object so \dx+, \df+ and \d+ explain
-- themselves, a batched procedure that cannot leak its overlap lock, and
-- scheduling from the database where pg_cron lives.
\echo Use "ALTER EXTENSION authfort_cleanup UPDATE TO '0.2.0'" to load this file. \quit

CREATE FUNCTION authfort_cleanup_target_status() RETURNS TABLE (
	"target" TEXT,
	"table_name" TEXT,
	"rows" bigint,
	"deletable" bigint,
	"oldest_expired_age" interval,
	"supporting_index_present" bool,
	"table_bytes" bigint
)
STRICT VOLATILE SECURITY INVOKER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'authfort_cleanup_target_status_wrapper';
REVOKE EXECUTE ON FUNCTION authfort_cleanup_target_status() FROM PUBLIC;

-- authfort_cleanup_schedule() can schedule another database's cleanup from
-- the database where pg_cron lives.
DROP FUNCTION authfort_cleanup_schedule(text, text);
CREATE FUNCTION authfort_cleanup_schedule(
    schedule text DEFAULT '0 3 * * *',
    job_name text DEFAULT 'authfort_cleanup',
    database text DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    command text := 'CALL @extschema@.authfort_cleanup_run()';
    target_database text := COALESCE(database, current_database());
BEGIN
    IF schedule IS NULL OR job_name IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN schedule IS NULL THEN 'schedule' ELSE 'job_name' END
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Leave it out to use its default.';
    END IF;
    PERFORM @extschema@.authfort_cleanup_require_pg_cron(format(
        'SELECT cron.schedule_in_database(%L, %L, %L, %L);', job_name, schedule, command, target_database));
    -- Both update the job of that name if it exists.
    IF target_database = current_database() THEN
        RETURN cron.schedule(job_name, schedule, command);
    END IF;
    RETURN cron.schedule_in_database(job_name, schedule, command, target_database);
END
$function$;

REVOKE EXECUTE ON FUNCTION authfort_cleanup_schedule(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION authfort_cleanup_schedule(text, text, text) IS
    'Creates or updates the pg_cron job that CALLs authfort_cleanup_run() in database (default: this one); returns its job id.';

-- The batched procedure takes its overlap lock per transaction instead of per
-- session, so a cancel landing between two batches cannot leave it held, and
-- everything but COMMIT runs inside the block that logs failures.
CREATE OR REPLACE PROCEDURE authfort_cleanup_run(
    batch_size integer DEFAULT 10000,
    max_runtime interval DEFAULT NULL,
    grace interval DEFAULT '0',
    keep_revoked_until_expired boolean DEFAULT false
)
LANGUAGE plpgsql
AS $procedure$
DECLARE
    started_at timestamptz := pg_catalog.clock_timestamp();
    lock_key bigint;
    targets text[] := ARRAY['keys', 'tokens', 'sessions'];
    counts bigint[] := ARRAY[0, 0, 0];
    batches integer := 0;
    first_block bigint;
    deleted bigint;
    blocking_index text;
    notes text[] := '{}';
    lost_lock boolean := false;
    out_of_time boolean := false;
    failed_state text;
    failed_message text;
    failed_detail text;
    failed_hint text;
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE NOTICE 'authfort_cleanup: this server is a standby; nothing to do'
            USING HINT = 'Cleanup runs on the primary; the standby receives its deletions through replication.';
        RETURN;
    END IF;
    IF batch_size IS NULL OR grace IS NULL OR keep_revoked_until_expired IS NULL THEN
        RAISE EXCEPTION '% must not be NULL',
            CASE WHEN batch_size IS NULL THEN 'batch_size' WHEN grace IS NULL THEN 'grace' ELSE 'keep_revoked_until_expired' END
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Leave it out to use its default.';
    END IF;
    IF batch_size OPERATOR(pg_catalog.<=) 0 THEN
        RAISE EXCEPTION 'batch_size must be greater than zero, not %', batch_size
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Leave batch_size out to use 10000.';
    END IF;
    IF max_runtime OPERATOR(pg_catalog.<=) interval '0' THEN
        RAISE EXCEPTION 'max_runtime must be positive, not %', max_runtime
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Leave max_runtime out (NULL) to run until done.';
    END IF;

    -- Inside a transaction block (or called from a function) COMMIT is not
    -- allowed: fail here, with 2D000, before anything is locked or deleted.
    COMMIT;

    -- The overlap guard: an advisory lock taken again in every transaction
    -- (a session lock would outlive a cancel that lands between batches). A
    -- second run finds it taken, does nothing and says so; it never waits.
    lock_key := @extschema@.authfort_cleanup_lock_key();

    -- Everything but COMMIT happens inside the block, so a cancel or
    -- statement_timeout at any moment is caught and logged.
    <<each_target>>
    FOR position IN 1 .. 3 LOOP
        first_block := 0;
        blocking_index := NULL;
        WHILE first_block IS NOT NULL LOOP
            BEGIN
                IF NOT pg_catalog.pg_try_advisory_xact_lock(lock_key) THEN
                    lost_lock := true;
                ELSE
                    IF first_block OPERATOR(pg_catalog.=) 0 THEN
                        blocking_index := @extschema@.authfort_cleanup_blocking_index(targets[position]);
                    END IF;
                    IF blocking_index IS NOT NULL THEN
                        RAISE WARNING 'authfort_cleanup: % skipped: deleting them without an index would take time quadratic in the table size',
                            targets[position]
                            USING HINT = blocking_index;
                        notes := notes OPERATOR(pg_catalog.||) pg_catalog.format('%s skipped: run %s', targets[position], blocking_index);
                        first_block := NULL;
                    ELSE
                        SELECT batch.deleted, batch.next_block INTO deleted, first_block
                          FROM @extschema@.authfort_cleanup_batch(targets[position], first_block, batch_size, grace, keep_revoked_until_expired) AS batch;
                        batches := batches OPERATOR(pg_catalog.+) 1;
                        counts[position] := counts[position] OPERATOR(pg_catalog.+) deleted;
                        RAISE NOTICE 'authfort_cleanup: % rows of % deleted so far (% rows/s)',
                            counts[position], targets[position],
                            pg_catalog.round(counts[position]::numeric OPERATOR(pg_catalog./) GREATEST(0.001,
                                pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started_at)::numeric));
                        out_of_time := max_runtime IS NOT NULL
                            AND pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started_at OPERATOR(pg_catalog.>=) max_runtime;
                    END IF;
                END IF;
            EXCEPTION WHEN OTHERS OR query_canceled THEN
                GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_message = MESSAGE_TEXT,
                                        failed_detail = PG_EXCEPTION_DETAIL, failed_hint = PG_EXCEPTION_HINT;
            END;
            EXIT each_target WHEN failed_state IS NOT NULL OR lost_lock;
            COMMIT;
            EXIT each_target WHEN out_of_time;
        END LOOP;
    END LOOP;

    IF lost_lock AND batches OPERATOR(pg_catalog.=) 0 THEN
        RAISE NOTICE 'authfort_cleanup: another cleanup run is in progress; this one skipped';
        PERFORM @extschema@.authfort_cleanup_record_run(started_at, 0, 0, 0, 'skipped', 'another run was in progress');
        COMMIT;
        RETURN;
    END IF;
    IF lost_lock THEN
        notes := notes OPERATOR(pg_catalog.||) 'stopped: another run took over between two batches'::text;
    END IF;
    IF out_of_time THEN
        notes := notes OPERATOR(pg_catalog.||) pg_catalog.format('stopped after max_runtime %s', max_runtime);
    END IF;
    PERFORM @extschema@.authfort_cleanup_record_run(
        started_at, counts[1], counts[2], counts[3],
        CASE WHEN failed_state IS NULL THEN 'ok' ELSE 'error' END,
        failed_message,
        NULLIF(pg_catalog.array_to_string(notes, '; '), ''));
    COMMIT;
    IF failed_state IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = failed_state, MESSAGE = failed_message,
            DETAIL = COALESCE(failed_detail, ''), HINT = COALESCE(failed_hint, '');
    END IF;
END
$procedure$;


-- One row per target, for dashboards and alerts: table size, backlog, the
-- age of the oldest expired row, whether the supporting index exists, and
-- what the last run did.
CREATE VIEW authfort_cleanup_status AS
SELECT s.target,
       s.table_name,
       s.rows,
       s.deletable,
       s.oldest_expired_age,
       s.supporting_index_present,
       s.table_bytes,
       last_run.finished_at AS last_run_at,
       last_run.status AS last_run_status,
       CASE s.target
           WHEN 'keys' THEN last_run.keys
           WHEN 'tokens' THEN last_run.tokens
           ELSE last_run.sessions
       END AS last_run_deleted
  FROM authfort_cleanup_target_status() AS s
  LEFT JOIN LATERAL (
        SELECT r.finished_at, r.status, r.keys, r.tokens, r.sessions
          FROM authfort_cleanup_runs AS r
         ORDER BY r.id DESC
         LIMIT 1
       ) AS last_run ON true;

COMMENT ON VIEW authfort_cleanup_status IS
    'One row per cleanup target: rows, deletable rows, age of the oldest expired row, supporting index, table size and the last run. Reads each table once per query.';
COMMENT ON COLUMN authfort_cleanup_status.deletable IS 'Rows AuthFort''s rule would delete now.';
COMMENT ON COLUMN authfort_cleanup_status.oldest_expired_age IS 'How long ago the oldest expired row expired; NULL when none has.';
COMMENT ON COLUMN authfort_cleanup_status.supporting_index_present IS 'False when cleanup needs an index it lacks (sessions: replaced_by); see authfort_cleanup_check().';
COMMENT ON COLUMN authfort_cleanup_status.table_bytes IS 'pg_total_relation_size of the table, with its indexes and TOAST.';
COMMENT ON COLUMN authfort_cleanup_status.last_run_deleted IS 'Rows of this target the last logged run deleted.';

-- What \df+ authfort_cleanup* shows. The SQL-defined objects carry their
-- comments beside their definitions; these are the functions written in Rust.
COMMENT ON FUNCTION authfort_cleanup_keys(interval, bigint, boolean) IS
    'Deletes expired signing keys (expires_at < now() - grace, never the current key), like AuthFort''s cleanup_expired_keys(). Returns the rows deleted.';
COMMENT ON FUNCTION authfort_cleanup_tokens(interval, bigint, boolean) IS
    'Deletes expired verification tokens (expires_at < now() - grace), like AuthFort''s cleanup_expired_tokens(). Returns the rows deleted.';
COMMENT ON FUNCTION authfort_cleanup_sessions(interval, bigint, boolean, boolean) IS
    'Deletes revoked or expired refresh tokens, like AuthFort''s cleanup_expired_sessions(); keep_revoked_until_expired keeps revoked ones until they expire. Returns the rows deleted.';
COMMENT ON FUNCTION authfort_cleanup_all() IS
    'Runs the three cleanups with AuthFort''s rules in one transaction, logs the run and NOTIFYs authfort_cleanup with a JSON summary.';
COMMENT ON FUNCTION authfort_cleanup_preview() IS
    'Counts what each cleanup would delete now, and the oldest expiry among those rows. Deletes nothing.';
COMMENT ON FUNCTION authfort_cleanup_check() IS
    'Lists what would make cleanup slow or keep it from running (missing index, backlog, no schedule, failed runs), each with the statement that fixes it.';
COMMENT ON FUNCTION authfort_cleanup_create_indexes() IS
    'Creates the missing indexes that keep cleanup linear (CREATE INDEX: holds a SHARE lock on the table while it builds). Returns their names.';
COMMENT ON FUNCTION authfort_cleanup_batch(text, bigint, bigint, interval, boolean) IS
    'Internal, for authfort_cleanup_run(): deletes one batch of a target from a range of heap blocks.';
COMMENT ON FUNCTION authfort_cleanup_blocking_index(text) IS
    'Internal, for authfort_cleanup_run(): the CREATE INDEX a target waits for, or NULL when it can be cleaned now.';
COMMENT ON FUNCTION authfort_cleanup_lock_key() IS
    'Internal: the advisory lock key that keeps two runs over the same schema from overlapping.';
COMMENT ON FUNCTION authfort_cleanup_record_run(timestamptz, bigint, bigint, bigint, text, text, text) IS
    'Internal: writes a row to authfort_cleanup_runs, trims old rows and sends the NOTIFY payload.';
COMMENT ON FUNCTION authfort_cleanup_target_status() IS
    'Internal: the per-target numbers behind the authfort_cleanup_status view.';

COMMENT ON COLUMN authfort_cleanup_runs.status IS 'ok, error (the run failed; see error), or skipped (another run was in progress).';
COMMENT ON COLUMN authfort_cleanup_runs.notes IS 'What the run left undone on purpose: a target skipped for a missing index, or a stop at max_runtime.';
