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
    'Lists what would make cleanup slow or keep it from running (missing index, a whole-table read for a few deletable rows, backlog, no schedule, failed runs), each with the statement that fixes it.';
COMMENT ON FUNCTION authfort_cleanup_create_indexes(boolean) IS
    'Creates the missing indexes that keep cleanup linear, and with time_indexes => true the expires_at indexes that let it read only the rows it deletes (CREATE INDEX: holds a SHARE lock on the table while it builds). Returns their names.';
COMMENT ON FUNCTION authfort_cleanup_batch(text, text, bigint, interval, boolean) IS
    'Internal, for authfort_cleanup_run(): deletes one batch of a target from the position the previous batch returned (NULL: the start), through the time indexes when the target has them, otherwise from a range of heap blocks. Returns the rows deleted, the rows picked but kept (by a trigger, rule or row security), the next position, and for a first batch (NULL position) that the quadratic guard stops, the CREATE INDEX the target waits for.';
COMMENT ON FUNCTION authfort_cleanup_blocking_index(text) IS
    'The CREATE INDEX a target waits for before authfort_cleanup_run() cleans it (the quadratic guard, which each target''s first batch checks), or NULL when it can be cleaned now.';
COMMENT ON FUNCTION authfort_cleanup_prepare_run() IS
    'Internal, for authfort_cleanup_run(): refuses before the first batch where the CALL cannot COMMIT (2D000) or lacks a privilege a batch or the log needs (42501).';
COMMENT ON FUNCTION authfort_cleanup_lock_key() IS
    'Internal: the advisory lock key that keeps two runs over the same schema from overlapping.';
COMMENT ON FUNCTION authfort_cleanup_record_run(timestamptz, bigint, bigint, bigint, text, text, text) IS
    'Internal: writes a row to authfort_cleanup_runs, trims old rows and sends the NOTIFY payload.';
COMMENT ON FUNCTION authfort_cleanup_target_status() IS
    'Internal: the per-target numbers behind the authfort_cleanup_status view.';
