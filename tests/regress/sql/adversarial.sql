-- Odd but accepted inputs and table shapes: none of them deletes a row
-- AuthFort's rule keeps, none makes a run endless, and each refusal carries a
-- real SQLSTATE, names what is wrong and has a HINT.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
TRUNCATE authfort_refresh_tokens, authfort_verification_tokens;
CREATE FUNCTION pg_temp.seed_tokens() RETURNS void LANGUAGE sql AS $$
    TRUNCATE authfort_verification_tokens;
    INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
        ('25000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'expired', 'otp', now() - interval '1 day', now()),
        ('25000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'tomorrow', 'otp', now() + interval '1 day', now()),
        ('25000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001', 'next-year', 'otp', now() + interval '1 year', now());
$$;
SELECT pg_temp.seed_tokens();

-- 1. A grace that mixes months and days is checked as the cutoff it gives:
-- '-1 mon 32 days' compares as 2 days, but now() - it is a day or more ahead
-- (no month has 32 days).
SELECT authfort_cleanup_tokens(grace => '-1 mon 32 days');
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_tokens(grace => '-100 years 36000 days');
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_tokens(grace => '-100 years 36000 days', dry_run => true);
\echo :LAST_ERROR_SQLSTATE
CALL authfort_cleanup_run(grace => '-100 years 36000 days');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM authfort_cleanup_batch('tokens', NULL, 10, '-1 mon 32 days', false);
\echo :LAST_ERROR_SQLSTATE
-- One that lands in the past is fine.
SELECT authfort_cleanup_tokens(grace => '1 mon -1 day', dry_run => true) AS mixed_but_past;
SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;

-- 2. Inheritance: a ctid names a row only within one relation, so a table
-- with children is refused by every entry point, and nothing is deleted.
CREATE TABLE tokens_archive () INHERITS (authfort_verification_tokens);
INSERT INTO tokens_archive (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('25000000-0000-0000-0000-000000000101', '00000000-0000-0000-0000-000000000001', 'archived-expired', 'otp', now() - interval '1 day', now());
SELECT authfort_cleanup_tokens(max_rows => 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM authfort_cleanup_all();
\echo :LAST_ERROR_SQLSTATE
CALL authfort_cleanup_run();
\echo :LAST_ERROR_SQLSTATE
SELECT status, error FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1;
SELECT * FROM authfort_cleanup_preview();
\echo :LAST_ERROR_SQLSTATE
SELECT token_hash, tableoid::regclass FROM authfort_verification_tokens ORDER BY 1;
-- pg_stats keeps a second row per column for the inheritance tree, even
-- after the child is gone; check() reads the table's own.
ANALYZE authfort_verification_tokens;
DROP TABLE tokens_archive;
SELECT count(*) > 0 AS check_runs FROM authfort_cleanup_check();
-- A child alone is a table like any other: only its own rows are read.
CREATE SCHEMA kids;
CREATE TABLE kids.authfort_verification_tokens () INHERITS (public.authfort_verification_tokens);
INSERT INTO kids.authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('25000000-0000-0000-0000-000000000201', '00000000-0000-0000-0000-000000000001', 'kid-expired', 'otp', now() - interval '1 day', now()),
    ('25000000-0000-0000-0000-000000000202', '00000000-0000-0000-0000-000000000001', 'kid-live', 'otp', now() + interval '1 day', now());
SET authfort_cleanup.schema = 'kids';
SELECT authfort_cleanup_tokens(max_rows => 1) AS kid_rows_deleted;
SELECT * FROM authfort_cleanup_batch('tokens', NULL, 10, '0', false);
RESET authfort_cleanup.schema;
SELECT token_hash, tableoid::regclass FROM authfort_verification_tokens ORDER BY 1;
DROP SCHEMA kids CASCADE;

-- 3. A made-up position never widens what the options allow.
INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked) VALUES
    ('35000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'revoked-live', now() + interval '10 days', now(), true);
SELECT * FROM authfort_cleanup_batch('sessions', 'revoked 0', 10, '0', true);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM authfort_cleanup_batch('tokens', 'revoked 0', 10, '0', false);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM authfort_cleanup_batch('tokens', 'blocks 99999999999', 10, '0', false);
\echo :LAST_ERROR_SQLSTATE
SELECT token_hash FROM authfort_refresh_tokens ORDER BY 1;

-- 4. Batch sizes beyond the table: the block range is clamped to it.
ANALYZE authfort_verification_tokens;
SELECT * FROM authfort_cleanup_batch('tokens', 'blocks 0', 100000000000, '0', false);
SELECT pg_temp.seed_tokens();
CALL authfort_cleanup_run(batch_size => 100000000);
SELECT status, tokens FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1;
SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;

-- 5. A row a trigger keeps cannot stall the walk, with or without the time
-- indexes: the next batch starts after it, and the run log counts it.
SELECT pg_temp.seed_tokens();
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('25000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000001', 'oldest-kept', 'otp', now() - interval '2 days', now()),
    ('25000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-000000000001', 'tied-kept', 'otp', now() - interval '2 days', now());
UPDATE authfort_verification_tokens SET expires_at = (SELECT expires_at FROM authfort_verification_tokens WHERE token_hash = 'oldest-kept')
 WHERE token_hash = 'tied-kept';
CREATE FUNCTION pg_temp.keep_some() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.token_hash LIKE '%-kept' THEN RETURN NULL; END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER keep_some BEFORE DELETE ON authfort_verification_tokens FOR EACH ROW EXECUTE FUNCTION pg_temp.keep_some();
CALL authfort_cleanup_run(batch_size => 1);
SELECT status, tokens, notes FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1;
SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;
CREATE INDEX ix_tokens_expires_at ON authfort_verification_tokens (expires_at);
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('25000000-0000-0000-0000-000000000006', '00000000-0000-0000-0000-000000000001', 'expired', 'otp', now() - interval '1 day', now());
SELECT deleted, kept, next_position LIKE 'expired % (%,%)' AS walks_on
  FROM authfort_cleanup_batch('tokens', NULL, 1, '0', false);
CALL authfort_cleanup_run(batch_size => 1);
SELECT status, tokens, notes FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1;
SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;
DROP TRIGGER keep_some ON authfort_verification_tokens;

-- 6. Infinite expiries are legal data: -infinity is expired, infinity never
-- is, and the view, check(), the functions and the walks all handle both.
SELECT pg_temp.seed_tokens();
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('25000000-0000-0000-0000-000000000007', '00000000-0000-0000-0000-000000000001', 'minus-infinity', 'otp', '-infinity', now()),
    ('25000000-0000-0000-0000-000000000008', '00000000-0000-0000-0000-000000000001', 'plus-infinity', 'otp', 'infinity', now());
INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked) VALUES
    ('35000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'revoked-forever', 'infinity', now(), true),
    ('35000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001', 'live-forever', 'infinity', now(), false),
    ('35000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000001', 'expired-always', '-infinity', now(), false);
SELECT target, deletable, oldest_expired_age IS NOT NULL AS has_age FROM authfort_cleanup_status ORDER BY 1;
SELECT target, deletable, oldest_expiry FROM authfort_cleanup_preview() ORDER BY 1;
SELECT count(*) >= 0 AS check_runs FROM authfort_cleanup_check();
SELECT authfort_cleanup_create_indexes(time_indexes => true) IS NOT NULL AS indexes_created;
CALL authfort_cleanup_run(batch_size => 1);
SELECT status, tokens, sessions FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1;
SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;
SELECT token_hash FROM authfort_refresh_tokens ORDER BY 1;
DROP INDEX ix_tokens_expires_at, ix_authfort_refresh_tokens_expires_at, ix_authfort_refresh_tokens_expires_at_revoked;

-- 7. Only an index the ON DELETE SET NULL lookup can search counts as the
-- replaced_by index.
DROP INDEX IF EXISTS ix_authfort_refresh_tokens_replaced_by;
BEGIN READ ONLY;
SELECT authfort_cleanup_create_indexes();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
CREATE INDEX replaced_by_brin ON authfort_refresh_tokens USING brin (replaced_by);
CREATE INDEX replaced_by_second ON authfort_refresh_tokens (user_id, replaced_by);
CREATE INDEX replaced_by_partial ON authfort_refresh_tokens (replaced_by) WHERE revoked;
SELECT target, supporting_index_present FROM authfort_cleanup_status WHERE target = 'sessions';
SELECT fix FROM authfort_cleanup_check() WHERE problem LIKE '%replaced_by%';
CREATE INDEX replaced_by_hash ON authfort_refresh_tokens USING hash (replaced_by);
SELECT target, supporting_index_present FROM authfort_cleanup_status WHERE target = 'sessions';
DROP INDEX replaced_by_hash;
CREATE INDEX replaced_by_first ON authfort_refresh_tokens (replaced_by, user_id);
SELECT target, supporting_index_present FROM authfort_cleanup_status WHERE target = 'sessions';
DROP INDEX replaced_by_brin, replaced_by_second, replaced_by_partial, replaced_by_first;
SELECT authfort_cleanup_create_indexes();

-- 8. The run log takes only what a run can have done.
SELECT authfort_cleanup_record_run(now(), -5, 0, 0, 'ok');
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_record_run(now(), 0, -9223372036854775808, 0, 'ok');
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_record_run(now() + interval '1 hour', 0, 0, 0, 'ok');
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_record_run('infinity', 0, 0, 0, 'ok');
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_record_run(now(), 0, 1, 0, 'skipped');
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_record_run(NULL, 0, 0, 0, 'ok');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM authfort_cleanup_batch(NULL, NULL, 10, '0', false);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM authfort_cleanup_batch('tokens', NULL, NULL, '0', false);
\echo :LAST_ERROR_SQLSTATE
BEGIN READ ONLY;
SELECT authfort_cleanup_record_run(now(), 0, 0, 0, 'ok');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- 9. In a read-only session the procedure reports the batch's refusal, not
-- the log's, and says the log could not be written.
SELECT pg_temp.seed_tokens();
SET default_transaction_read_only = on;
CALL authfort_cleanup_run();
\echo :LAST_ERROR_SQLSTATE
RESET default_transaction_read_only;
SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;

-- 10. The procedure where COMMIT is not allowed: a transaction block, a
-- function, a DO block inside a transaction. Nothing is deleted or logged.
SELECT count(*) AS runs_before FROM authfort_cleanup_runs \gset
BEGIN;
CALL authfort_cleanup_run();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
CREATE FUNCTION pg_temp.call_run() RETURNS void LANGUAGE plpgsql AS $$ BEGIN CALL authfort_cleanup_run(); END $$;
SELECT pg_temp.call_run();
\echo :LAST_ERROR_SQLSTATE
BEGIN;
DO $$ BEGIN CALL authfort_cleanup_run(); END $$;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT count(*) - :runs_before AS runs_logged FROM authfort_cleanup_runs;
SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;
-- From a DO block in autocommit, COMMIT is allowed, and the run works.
DO $$ BEGIN CALL authfort_cleanup_run(); END $$;
SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;

-- 11. A re-raised error is the original one: no empty DETAIL or HINT, and a
-- DETAIL or HINT only where it had one. (Its SQLSTATE, a trigger's own
-- included, is checked in sqlstate.sql.)
CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'no deleting %', OLD.token_hash USING ERRCODE = 'AF001';
END $$;
SELECT pg_temp.seed_tokens();
CREATE TRIGGER refuse BEFORE DELETE ON authfort_verification_tokens FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse();
CALL authfort_cleanup_run();
DROP TRIGGER refuse ON authfort_verification_tokens;
CREATE FUNCTION pg_temp.refuse_with_hint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'no deleting %', OLD.token_hash USING ERRCODE = 'P0042', HINT = 'Ask the owner.';
END $$;
CREATE TRIGGER refuse BEFORE DELETE ON authfort_verification_tokens FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_with_hint();
CALL authfort_cleanup_run();
DROP TRIGGER refuse ON authfort_verification_tokens;
SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;

-- 12. Privileges are checked first, each refusal with the GRANT that fixes it.
SELECT pg_temp.seed_tokens();
CREATE ROLE regress_adversarial_cleaner;
GRANT SELECT, UPDATE, DELETE ON authfort_signing_keys, authfort_verification_tokens, authfort_refresh_tokens
    TO regress_adversarial_cleaner;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO regress_adversarial_cleaner;
GRANT EXECUTE ON PROCEDURE authfort_cleanup_run TO regress_adversarial_cleaner;
-- No grants on the run log: the procedure refuses before deleting anything.
SET ROLE regress_adversarial_cleaner;
CALL authfort_cleanup_run();
\echo :LAST_ERROR_SQLSTATE
-- Not the tables' owner: create_indexes() says who is.
SELECT authfort_cleanup_create_indexes(time_indexes => true);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- With the run log granted but two of the functions the procedure calls
-- not: the refusal names both, with their argument types.
GRANT SELECT, INSERT, DELETE ON authfort_cleanup_runs TO regress_adversarial_cleaner;
GRANT USAGE ON SEQUENCE authfort_cleanup_runs_id_seq TO regress_adversarial_cleaner;
REVOKE EXECUTE ON FUNCTION authfort_cleanup_batch, authfort_cleanup_record_run FROM regress_adversarial_cleaner;
SET ROLE regress_adversarial_cleaner;
CALL authfort_cleanup_run();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION authfort_cleanup_batch, authfort_cleanup_record_run TO regress_adversarial_cleaner;
REVOKE ALL ON authfort_cleanup_runs FROM regress_adversarial_cleaner;
REVOKE ALL ON SEQUENCE authfort_cleanup_runs_id_seq FROM regress_adversarial_cleaner;
SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;
-- Without SELECT: dry runs, preview(), check() and the view refuse with the GRANT.
REVOKE SELECT ON authfort_verification_tokens FROM regress_adversarial_cleaner;
SET ROLE regress_adversarial_cleaner;
SELECT authfort_cleanup_tokens(dry_run => true);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM authfort_cleanup_preview();
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM authfort_cleanup_check();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE ALL ON authfort_signing_keys, authfort_verification_tokens, authfort_refresh_tokens FROM regress_adversarial_cleaner;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM regress_adversarial_cleaner;
REVOKE EXECUTE ON PROCEDURE authfort_cleanup_run FROM regress_adversarial_cleaner;
DROP ROLE regress_adversarial_cleaner;
TRUNCATE authfort_refresh_tokens, authfort_verification_tokens;
