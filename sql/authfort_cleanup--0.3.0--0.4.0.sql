-- authfort_cleanup 0.3.0 -> 0.4.0: no argument or table shape deletes a row
-- AuthFort keeps. grace and max_runtime are checked as the cutoff and the
-- deadline they compute; every statement reads ONLY the table and rechecks the
-- rule; a batch starts after the last row the one before it picked, so a row a
-- trigger keeps cannot stall a run; the procedure refuses, before its first
-- batch, a transaction block (2D000) and missing privileges (42501); and a
-- re-raised error keeps its DETAIL and HINT, with no empty ones.
\echo Use "ALTER EXTENSION authfort_cleanup UPDATE TO '0.4.0'" to load this file. \quit

-- A batch also says how many rows it picked but could not delete, and a
-- target's first batch checks the quadratic guard itself (one call fewer per
-- target). Only the procedure calls it; a role granted EXECUTE on it needs
-- the grant again (see doc/upgrades.md).
DROP FUNCTION authfort_cleanup_batch(text, text, bigint, interval, boolean);
CREATE FUNCTION authfort_cleanup_batch(
	"target" TEXT,
	"position" TEXT,
	"batch_size" bigint,
	"grace" interval,
	"keep_revoked_until_expired" bool
) RETURNS TABLE (
	"deleted" bigint,
	"kept" bigint,
	"next_position" TEXT,
	"blocking_index" TEXT
)
VOLATILE SECURITY INVOKER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'authfort_cleanup_batch_wrapper';
REVOKE EXECUTE ON FUNCTION authfort_cleanup_batch(text, text, bigint, interval, boolean) FROM PUBLIC;
COMMENT ON FUNCTION authfort_cleanup_batch(text, text, bigint, interval, boolean) IS
    'Internal, for authfort_cleanup_run(): deletes one batch of a target from the position the previous batch returned (NULL: the start), through the time indexes when the target has them, otherwise from a range of heap blocks. Returns the rows deleted, the rows picked but kept (by a trigger, rule or row security), the next position, and for a first batch (NULL position) that the quadratic guard stops, the CREATE INDEX the target waits for.';

-- The procedure no longer calls it: its first batch of each target asks.
COMMENT ON FUNCTION authfort_cleanup_blocking_index(text) IS
    'The CREATE INDEX a target waits for before authfort_cleanup_run() cleans it (the quadratic guard, which each target''s first batch checks), or NULL when it can be cleaned now.';

-- The procedure's checks before its first batch.
CREATE FUNCTION authfort_cleanup_prepare_run() RETURNS void
STRICT VOLATILE SECURITY INVOKER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'authfort_cleanup_prepare_run_wrapper';
REVOKE EXECUTE ON FUNCTION authfort_cleanup_prepare_run() FROM PUBLIC;
COMMENT ON FUNCTION authfort_cleanup_prepare_run() IS
    'Internal, for authfort_cleanup_run(): refuses before the first batch where the CALL cannot COMMIT (2D000) or lacks a privilege a batch or the log needs (42501).';

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
    walked boolean;
    batch_position text;
    deleted bigint;
    kept bigint;
    kept_counts bigint[] := ARRAY[0, 0, 0];
    blocking_index text;
    notes text[] := '{}';
    lost_lock boolean := false;
    out_of_time boolean := false;
    failed_state text;
    failed_message text;
    failed_detail text;
    failed_hint text;
    deadline timestamptz;
    log_failure text;
    -- A batch that lost a deadlock is run again, this many times at most.
    deadlock_retries_allowed constant integer := 3;
    batch_deadlocks integer := 0;
    deadlock_retries integer := 0;
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
    -- The deadline is checked as the timestamp it is: interval comparison
    -- counts a month as 30 days, so '1 mon -30 days' is not positive, while
    -- '-1 mon 31 days' compares as one day yet puts the deadline in the past.
    deadline := started_at OPERATOR(pg_catalog.+) max_runtime;
    IF deadline OPERATOR(pg_catalog.<=) started_at THEN
        RAISE EXCEPTION 'max_runtime must be positive, not %', max_runtime
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'It puts the deadline, the start plus max_runtime, at or before the start.',
                  HINT = 'Give max_runtime in one unit, such as ''15 minutes'', or leave it out (NULL) to run until done.';
    END IF;

    -- Refuses, before anything is locked, deleted or logged: in a transaction
    -- block or a function, where COMMIT is not allowed (2D000), and without a
    -- privilege some batch or the log will need (42501, with the GRANTs).
    -- Outside any EXCEPTION block, so it sees whether this CALL can COMMIT.
    PERFORM @extschema@.authfort_cleanup_prepare_run();
    COMMIT;

    -- The overlap guard: an advisory lock taken again in every transaction
    -- (a session lock would outlive a cancel that lands between batches). A
    -- second run finds it taken, does nothing and says so; it never waits.
    lock_key := @extschema@.authfort_cleanup_lock_key();

    -- Everything but COMMIT happens inside the block, so a cancel or
    -- statement_timeout at any moment is caught and logged.
    <<each_target>>
    FOR position IN 1 .. 3 LOOP
        walked := false;
        batch_position := NULL;
        WHILE NOT walked LOOP
            BEGIN
                IF NOT pg_catalog.pg_try_advisory_xact_lock(lock_key) THEN
                    lost_lock := true;
                ELSE
                    -- A target's first batch (position NULL) checks the
                    -- quadratic guard first, and names the index it waits for.
                    SELECT batch.deleted, batch.kept, batch.next_position, batch.blocking_index
                      INTO deleted, kept, batch_position, blocking_index
                      FROM @extschema@.authfort_cleanup_batch(targets[position], batch_position, batch_size, grace, keep_revoked_until_expired) AS batch;
                    IF blocking_index IS NOT NULL THEN
                        RAISE WARNING 'authfort_cleanup: % skipped: deleting them without an index would take time quadratic in the table size',
                            targets[position]
                            USING HINT = blocking_index;
                        notes := notes OPERATOR(pg_catalog.||) pg_catalog.format('%s skipped: run %s', targets[position], blocking_index);
                        walked := true;
                    ELSE
                        walked := batch_position IS NULL;
                        batches := batches OPERATOR(pg_catalog.+) 1;
                        counts[position] := counts[position] OPERATOR(pg_catalog.+) deleted;
                        kept_counts[position] := kept_counts[position] OPERATOR(pg_catalog.+) kept;
                        RAISE NOTICE 'authfort_cleanup: % rows of % deleted so far (% rows/s)',
                            counts[position], targets[position],
                            pg_catalog.round(counts[position]::numeric OPERATOR(pg_catalog./) GREATEST(0.001,
                                pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started_at)::numeric));
                        out_of_time := COALESCE(pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) deadline, false);
                    END IF;
                END IF;
            EXCEPTION
                -- Another statement deleting from the same table (AuthFort's
                -- own cleanup takes none of our locks) crossed this batch in
                -- the ON DELETE SET NULL trigger, and PostgreSQL made this
                -- batch give way. The block rolled it back whole, so it runs
                -- again from the same position, once the other has moved on.
                WHEN deadlock_detected THEN
                    batch_deadlocks := batch_deadlocks OPERATOR(pg_catalog.+) 1;
                    IF batch_deadlocks OPERATOR(pg_catalog.>) deadlock_retries_allowed THEN
                        GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_message = MESSAGE_TEXT,
                                                failed_detail = PG_EXCEPTION_DETAIL, failed_hint = PG_EXCEPTION_HINT;
                    ELSE
                        deadlock_retries := deadlock_retries OPERATOR(pg_catalog.+) 1;
                        RAISE NOTICE 'authfort_cleanup: a batch of % lost a deadlock; running it again', targets[position];
                        PERFORM pg_catalog.pg_sleep(0.1 OPERATOR(pg_catalog.*) batch_deadlocks);
                        CONTINUE;
                    END IF;
                WHEN OTHERS OR query_canceled THEN
                    GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_message = MESSAGE_TEXT,
                                            failed_detail = PG_EXCEPTION_DETAIL, failed_hint = PG_EXCEPTION_HINT;
            END;
            EXIT each_target WHEN failed_state IS NOT NULL OR lost_lock;
            batch_deadlocks := 0;
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
    FOR position IN 1 .. 3 LOOP
        IF kept_counts[position] OPERATOR(pg_catalog.>) 0 THEN
            notes := notes OPERATOR(pg_catalog.||) pg_catalog.format(
                '%s %s picked but not deleted (a trigger, rule or row security kept them, or another statement deleted or changed them first)',
                kept_counts[position], targets[position]);
        END IF;
    END LOOP;
    IF deadlock_retries OPERATOR(pg_catalog.>) 0 THEN
        notes := notes OPERATOR(pg_catalog.||) pg_catalog.format(
            '%s %s retried after a deadlock with another statement deleting from the same table',
            deadlock_retries, CASE WHEN deadlock_retries OPERATOR(pg_catalog.=) 1 THEN 'batch' ELSE 'batches' END);
    END IF;
    IF lost_lock THEN
        notes := notes OPERATOR(pg_catalog.||) 'stopped: another run took over between two batches'::text;
    END IF;
    IF out_of_time THEN
        notes := notes OPERATOR(pg_catalog.||) pg_catalog.format('stopped after max_runtime %s', max_runtime);
    END IF;
    IF failed_state IS NULL THEN
        PERFORM @extschema@.authfort_cleanup_record_run(
            started_at, counts[1], counts[2], counts[3], 'ok', NULL,
            NULLIF(pg_catalog.array_to_string(notes, '; '), ''));
        COMMIT;
        RETURN;
    END IF;
    -- A failed run is logged where it can be; the error reported is the
    -- first one, never the log's (read-only transaction, no grant, ...).
    BEGIN
        PERFORM @extschema@.authfort_cleanup_record_run(
            started_at, counts[1], counts[2], counts[3], 'error', failed_message,
            NULLIF(pg_catalog.array_to_string(notes, '; '), ''));
    EXCEPTION WHEN OTHERS THEN
        log_failure := SQLERRM;
    END;
    COMMIT;
    IF log_failure IS NOT NULL THEN
        RAISE WARNING 'authfort_cleanup: the failed run could not be logged: %', log_failure;
    END IF;
    -- The original error exactly: a DETAIL or HINT only where it had one.
    failed_detail := NULLIF(failed_detail, '');
    failed_hint := NULLIF(failed_hint, '');
    IF failed_detail IS NULL AND failed_hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = failed_state, MESSAGE = failed_message;
    ELSIF failed_detail IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = failed_state, MESSAGE = failed_message, HINT = failed_hint;
    ELSIF failed_hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = failed_state, MESSAGE = failed_message, DETAIL = failed_detail;
    END IF;
    RAISE EXCEPTION USING ERRCODE = failed_state, MESSAGE = failed_message, DETAIL = failed_detail, HINT = failed_hint;
END
$procedure$;

-- schedule() moves a job to the database asked for, and both refuse a
-- job_name pg_cron would truncate.
CREATE OR REPLACE FUNCTION authfort_cleanup_schedule(
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
    job_id bigint;
BEGIN
    IF schedule IS NULL OR job_name IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN schedule IS NULL THEN 'schedule' ELSE 'job_name' END
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Leave it out to use its default.';
    END IF;
    -- pg_cron stores job names as name: a longer one would be truncated,
    -- and unschedule() by the name given would then find nothing.
    IF octet_length(job_name) > 63 THEN
        RAISE EXCEPTION 'job_name is % bytes long; pg_cron keeps at most 63', octet_length(job_name)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass a shorter job_name.';
    END IF;
    PERFORM @extschema@.authfort_cleanup_require_pg_cron(format(
        'SELECT cron.schedule_in_database(%L, %L, %L, %L);', job_name, schedule, command, target_database));
    -- Both update the schedule and command of the job of that name if it
    -- exists, but neither moves it to another database: alter_job does.
    IF target_database = current_database() THEN
        job_id := cron.schedule(job_name, schedule, command);
    ELSE
        job_id := cron.schedule_in_database(job_name, schedule, command, target_database);
    END IF;
    IF (SELECT j.database FROM cron.job j WHERE j.jobid = job_id) IS DISTINCT FROM target_database THEN
        PERFORM cron.alter_job(job_id, database => target_database);
    END IF;
    RETURN job_id;
END
$function$;

CREATE OR REPLACE FUNCTION authfort_cleanup_unschedule(job_name text DEFAULT 'authfort_cleanup')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    IF job_name IS NULL THEN
        RAISE EXCEPTION 'job_name must not be NULL'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Leave it out to use ''authfort_cleanup''.';
    END IF;
    IF octet_length(job_name) > 63 THEN
        RAISE EXCEPTION 'job_name is % bytes long; pg_cron keeps at most 63', octet_length(job_name)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the job_name authfort_cleanup_schedule() was given.';
    END IF;
    PERFORM @extschema@.authfort_cleanup_require_pg_cron(format('SELECT cron.unschedule(%L);', job_name));
    IF NOT EXISTS (SELECT FROM cron.job j WHERE j.jobname = job_name AND j.username = current_user) THEN
        RETURN false;
    END IF;
    RETURN cron.unschedule(job_name::name);
END
$function$;
