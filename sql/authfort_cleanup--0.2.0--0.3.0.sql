-- authfort_cleanup 0.2.0 -> 0.3.0: cleanup whose cost follows the rows it
-- deletes, not the table. authfort_cleanup_check() recommends the time
-- indexes when a run would read far more rows than it deletes,
-- authfort_cleanup_create_indexes(time_indexes => true) creates them, and with
-- them the functions and every batch of authfort_cleanup_run() read only the
-- rows they delete, each batch starting where the last one stopped.
\echo Use "ALTER EXTENSION authfort_cleanup UPDATE TO '0.3.0'" to load this file. \quit

-- A batch now starts from an opaque position (heap blocks, or an expiry in a
-- time index) instead of a block number. Only the procedure calls it.
DROP FUNCTION authfort_cleanup_batch(text, bigint, bigint, interval, boolean);
CREATE FUNCTION authfort_cleanup_batch(
	"target" TEXT,
	"position" TEXT,
	"batch_size" bigint,
	"grace" interval,
	"keep_revoked_until_expired" bool
) RETURNS TABLE (
	"deleted" bigint,
	"next_position" TEXT
)
VOLATILE SECURITY INVOKER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'authfort_cleanup_batch_wrapper';
REVOKE EXECUTE ON FUNCTION authfort_cleanup_batch(text, text, bigint, interval, boolean) FROM PUBLIC;
COMMENT ON FUNCTION authfort_cleanup_batch(text, text, bigint, interval, boolean) IS
    'Internal, for authfort_cleanup_run(): deletes one batch of a target from the position the previous batch returned (NULL: the start), through the time indexes when the target has them, otherwise from a range of heap blocks.';

-- authfort_cleanup_create_indexes() gains time_indexes. A role granted
-- EXECUTE on the old signature needs the grant again (see doc/upgrades.md).
DROP FUNCTION authfort_cleanup_create_indexes();
CREATE FUNCTION authfort_cleanup_create_indexes(
	"time_indexes" bool DEFAULT false
) RETURNS SETOF TEXT
VOLATILE SECURITY INVOKER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'authfort_cleanup_create_indexes_wrapper';
REVOKE EXECUTE ON FUNCTION authfort_cleanup_create_indexes(boolean) FROM PUBLIC;
COMMENT ON FUNCTION authfort_cleanup_create_indexes(boolean) IS
    'Creates the missing indexes that keep cleanup linear, and with time_indexes => true the expires_at indexes that let it read only the rows it deletes (CREATE INDEX: holds a SHARE lock on the table while it builds). Returns their names.';

COMMENT ON FUNCTION authfort_cleanup_check() IS
    'Lists what would make cleanup slow or keep it from running (missing index, a whole-table read for a few deletable rows, backlog, no schedule, failed runs), each with the statement that fixes it.';

-- The procedure passes each batch's position on to the next.
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
        walked := false;
        batch_position := NULL;
        blocking_index := NULL;
        WHILE NOT walked LOOP
            BEGIN
                IF NOT pg_catalog.pg_try_advisory_xact_lock(lock_key) THEN
                    lost_lock := true;
                ELSE
                    IF batch_position IS NULL THEN
                        blocking_index := @extschema@.authfort_cleanup_blocking_index(targets[position]);
                    END IF;
                    IF blocking_index IS NOT NULL THEN
                        RAISE WARNING 'authfort_cleanup: % skipped: deleting them without an index would take time quadratic in the table size',
                            targets[position]
                            USING HINT = blocking_index;
                        notes := notes OPERATOR(pg_catalog.||) pg_catalog.format('%s skipped: run %s', targets[position], blocking_index);
                        walked := true;
                    ELSE
                        SELECT batch.deleted, batch.next_position INTO deleted, batch_position
                          FROM @extschema@.authfort_cleanup_batch(targets[position], batch_position, batch_size, grace, keep_revoked_until_expired) AS batch;
                        walked := batch_position IS NULL;
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
