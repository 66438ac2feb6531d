-- Every error names what is wrong, carries the right SQLSTATE and a HINT, and
-- deletes nothing.
\set SHOW_CONTEXT never
\set VERBOSITY default
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('22000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'expired', 'otp', now() - interval '1 day', now());

-- The schema setting names a schema that does not exist.
SET authfort_cleanup.schema = 'no_such_schema';
SELECT authfort_cleanup_tokens();
\echo :LAST_ERROR_SQLSTATE
-- A value that looks like SQL is only ever a name.
SET authfort_cleanup.schema = 'public; DROP TABLE authfort_users';
SELECT authfort_cleanup_tokens();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS users_still_there FROM authfort_users;

-- The schema exists, the tables do not (AuthFort not migrated there).
CREATE SCHEMA empty;
SET authfort_cleanup.schema = 'empty';
SELECT authfort_cleanup_keys();
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_tokens();
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_sessions();
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM authfort_cleanup_all();
\echo :LAST_ERROR_SQLSTATE

-- A table from an older or foreign schema: a column missing, or of the wrong type.
CREATE TABLE empty.authfort_verification_tokens (id uuid PRIMARY KEY, expires timestamptz);
SELECT authfort_cleanup_tokens();
\echo :LAST_ERROR_SQLSTATE
DROP TABLE empty.authfort_verification_tokens;
CREATE TABLE empty.authfort_verification_tokens (id uuid PRIMARY KEY, expires_at timestamp);
SELECT authfort_cleanup_tokens();
\echo :LAST_ERROR_SQLSTATE
DROP TABLE empty.authfort_verification_tokens;
CREATE VIEW empty.authfort_verification_tokens AS SELECT * FROM public.authfort_verification_tokens;
SELECT authfort_cleanup_tokens();
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA empty CASCADE;
RESET authfort_cleanup.schema;

-- Bad arguments.
SELECT authfort_cleanup_tokens(grace => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_tokens(dry_run => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_sessions(keep_revoked_until_expired => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_tokens(max_rows => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_tokens(max_rows => -5);
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_tokens(grace => '-1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_tokens(grace => '1000 years');
\echo :LAST_ERROR_SQLSTATE
-- PostgreSQL 17 and later have infinite intervals, so this one reaches our
-- own check there (expected/errors_1.out); 15 and 16 reject the literal.
SELECT authfort_cleanup_tokens(grace => '-infinity');
\echo :LAST_ERROR_SQLSTATE
CALL authfort_cleanup_run(batch_size => 0);
\echo :LAST_ERROR_SQLSTATE
CALL authfort_cleanup_run(batch_size => NULL);
\echo :LAST_ERROR_SQLSTATE
CALL authfort_cleanup_run(max_runtime => '-1 second');
\echo :LAST_ERROR_SQLSTATE
CALL authfort_cleanup_run(grace => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM authfort_cleanup_batch('passwords', NULL, 10, '0', false);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM authfort_cleanup_batch('tokens', 'expired soon', 10, '0', false);
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_create_indexes(time_indexes => NULL);
\echo :LAST_ERROR_SQLSTATE

-- Read-only transactions refuse before touching anything; a dry run still works.
BEGIN READ ONLY;
SELECT authfort_cleanup_tokens();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SELECT authfort_cleanup_tokens(dry_run => true) AS would_delete;
ROLLBACK;

-- Inside a transaction that has already failed.
BEGIN;
SELECT 1 / 0;
SELECT authfort_cleanup_tokens();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- The procedure needs to COMMIT, so it cannot run inside a transaction block.
BEGIN;
CALL authfort_cleanup_run();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- An error raised by the DELETE itself (here a trigger's) reaches the caller
-- with its own SQLSTATE and HINT and deletes nothing; a savepoint or an
-- EXCEPTION block around the call recovers from it as from any statement.
CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tokens are kept' USING ERRCODE = 'check_violation', HINT = 'Drop the trigger.';
END $$;
CREATE TRIGGER refuse_delete BEFORE DELETE ON authfort_verification_tokens
    FOR EACH ROW EXECUTE FUNCTION refuse_delete();
SELECT authfort_cleanup_tokens();
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SAVEPOINT before_cleanup;
SELECT authfort_cleanup_tokens();
ROLLBACK TO SAVEPOINT before_cleanup;
SELECT count(*) AS tokens_after_savepoint FROM authfort_verification_tokens;
COMMIT;
DO $$
BEGIN
    PERFORM authfort_cleanup_tokens();
EXCEPTION WHEN check_violation THEN
    RAISE NOTICE 'caught: %', SQLERRM;
END $$;
DROP TRIGGER refuse_delete ON authfort_verification_tokens;
DROP FUNCTION refuse_delete();

-- The caller's lock_timeout is what it was, after a call that deleted.
BEGIN;
SET LOCAL lock_timeout = '123ms';
SELECT authfort_cleanup_tokens() AS deleted;
SHOW lock_timeout;
ROLLBACK;

-- After all of that, the expired token is still there.
SELECT token_hash FROM authfort_verification_tokens;
SELECT authfort_cleanup_tokens() AS deleted;
