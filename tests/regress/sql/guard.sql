-- Without an index on replaced_by, deleting sessions costs one table scan per
-- deleted row. Small tables proceed with a WARNING; above
-- authfort_cleanup.quadratic_guard_rows the functions refuse, the procedure
-- skips sessions, and create_missing_indexes lets it fix the cause first.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
TRUNCATE authfort_refresh_tokens, authfort_verification_tokens;
DO $$
DECLARE index_name text;
BEGIN
    FOR index_name IN SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_attribute a
        ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'authfort_refresh_tokens'::regclass AND a.attname = 'replaced_by'
    LOOP
        EXECUTE 'DROP INDEX ' || index_name;
    END LOOP;
END $$;

INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked)
SELECT ('36000000-0000-0000-0000-00000000000' || n)::uuid, '00000000-0000-0000-0000-000000000001', 'session-' || n,
       now() + CASE WHEN n <= 2 THEN interval '-1 day' ELSE interval '1 day' END, now(), false
  FROM generate_series(1, 5) AS n;

-- Small table: proceeds, with a WARNING that names the fix.
SELECT authfort_cleanup_sessions(dry_run => true) AS would_delete;
BEGIN;
SELECT authfort_cleanup_sessions() AS deleted;
ROLLBACK;

-- Above the threshold: refuses, deletes nothing.
SET authfort_cleanup.quadratic_guard_rows = 3;
SELECT * FROM authfort_cleanup_check() WHERE target = 'sessions';
SELECT authfort_cleanup_sessions();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS sessions FROM authfort_refresh_tokens;

-- The procedure cleans keys and tokens and skips sessions, saying why.
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('26000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'old', 'otp', now() - interval '1 day', now());
CALL authfort_cleanup_run();
SELECT keys, tokens, sessions, status, notes FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1;
SELECT count(*) AS sessions FROM authfort_refresh_tokens;

-- With create_missing_indexes the procedure builds the index, then cleans.
SET authfort_cleanup.create_missing_indexes = on;
CALL authfort_cleanup_run();
SELECT keys, tokens, sessions, status, notes FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1;
SELECT indexrelid::regclass AS created FROM pg_index WHERE indrelid = 'authfort_refresh_tokens'::regclass
   AND indkey[0] = (SELECT attnum FROM pg_attribute WHERE attrelid = 'authfort_refresh_tokens'::regclass AND attname = 'replaced_by');
SELECT * FROM authfort_cleanup_check() WHERE target = 'sessions' AND problem LIKE '%index%';
RESET authfort_cleanup.create_missing_indexes;

-- authfort_cleanup_create_indexes() creates only what is missing.
SELECT authfort_cleanup_create_indexes();
DROP INDEX ix_authfort_refresh_tokens_replaced_by;
SELECT authfort_cleanup_create_indexes();
RESET authfort_cleanup.quadratic_guard_rows;
