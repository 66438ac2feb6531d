-- authfort_cleanup 0.1.0 -> 0.2.0: the authfort_cleanup_status view for
-- monitoring, and a comment on every object so \dx+, \df+ and \d+ explain
-- themselves.
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
