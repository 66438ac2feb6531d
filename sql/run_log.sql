-- The run log: one row per run of authfort_cleanup_all() or authfort_cleanup_run().
-- pg_dump keeps its rows (pg_extension_config_dump); each run trims rows older
-- than authfort_cleanup.run_log_retention, so it never grows without bound.
CREATE TABLE authfort_cleanup_runs (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    keys        bigint NOT NULL DEFAULT 0,
    tokens      bigint NOT NULL DEFAULT 0,
    sessions    bigint NOT NULL DEFAULT 0,
    status      text NOT NULL CHECK (status IN ('ok', 'error', 'skipped')),
    error       text,
    notes       text,
    run_by      name NOT NULL DEFAULT CURRENT_USER
);
CREATE INDEX authfort_cleanup_runs_finished_at ON authfort_cleanup_runs (finished_at);

SELECT pg_catalog.pg_extension_config_dump('authfort_cleanup_runs', '');
SELECT pg_catalog.pg_extension_config_dump('authfort_cleanup_runs_id_seq', '');

COMMENT ON TABLE authfort_cleanup_runs IS
    'One row per cleanup run: rows deleted per target, ok/error/skipped, and who ran it. Trimmed to authfort_cleanup.run_log_retention.';
COMMENT ON COLUMN authfort_cleanup_runs.status IS 'ok, error (the run failed; see error), or skipped (another run was in progress).';
COMMENT ON COLUMN authfort_cleanup_runs.notes IS 'What the run left undone on purpose: a target skipped for a missing index, or a stop at max_runtime.';
