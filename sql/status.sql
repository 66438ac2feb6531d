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
