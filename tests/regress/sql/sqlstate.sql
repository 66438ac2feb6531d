-- An error raised inside the deletes reaches the caller of every entry point
-- with its own SQLSTATE, even one PostgreSQL does not define (a trigger's
-- AF001 or P0042), and with its message, DETAIL and HINT; nothing is
-- deleted. No error or WARNING lends its SQLSTATE to another.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Nothing of the keys' for the procedure to delete before it reaches tokens.
DELETE FROM authfort_signing_keys WHERE expires_at < now();
-- An expired and a live row in tokens and in sessions.
CREATE PROCEDURE pg_temp.seed() LANGUAGE sql AS $$
    TRUNCATE authfort_refresh_tokens, authfort_verification_tokens;
    INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
        ('45000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'expired-token', 'otp', now() - interval '1 day', now()),
        ('45000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'live-token', 'otp', now() + interval '1 day', now());
    INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked) VALUES
        ('55000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'expired-session', now() - interval '1 day', now(), false),
        ('55000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'live-session', now() + interval '1 day', now(), false);
$$;
-- What is left of both.
CREATE FUNCTION pg_temp.rows_left() RETURNS TABLE (token_hash text) LANGUAGE sql AS $$
    SELECT token_hash FROM authfort_verification_tokens
    UNION ALL
    SELECT token_hash FROM authfort_refresh_tokens
    ORDER BY 1;
$$;
-- The error a statement raises, as a client reads it.
CREATE FUNCTION pg_temp.raised(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text;
    message text;
    detail text;
    hint text;
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RETURN format('%s: %s / DETAIL: %s / HINT: %s', state, message, detail, hint);
END $$;
-- The same with the trigger below raising `code`.
CREATE FUNCTION pg_temp.raised(code text, statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('regress.sqlstate', code, false);
    RETURN pg_temp.raised(statement);
END $$;
-- Refuses every delete with the SQLSTATE regress.sqlstate names. The message,
-- DETAIL and HINT are the same for every code.
CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% refuses to delete %', TG_TABLE_NAME, OLD.token_hash
        USING ERRCODE = current_setting('regress.sqlstate'), DETAIL = 'A trigger of the application.',
              HINT = 'Drop the trigger.';
END $$;

-- 1. Tokens, through each function, then the procedure (which catches the
-- error, logs the run and raises it again).
CALL pg_temp.seed();
CREATE TRIGGER refuse BEFORE DELETE ON authfort_verification_tokens FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse();
SELECT code, statement, pg_temp.raised(code, statement)
  FROM unnest(ARRAY['AF001', 'P0042']) AS code,
       unnest(ARRAY['SELECT authfort_cleanup_tokens()',
                    'SELECT authfort_cleanup_tokens(max_rows => 10)',
                    'SELECT * FROM authfort_cleanup_all()',
                    'SELECT * FROM authfort_cleanup_batch(''tokens'', NULL, 100, ''0'', false)']) AS statement
 ORDER BY 1, 2;
SET regress.sqlstate = 'AF001';
SELECT authfort_cleanup_tokens();
\echo :LAST_ERROR_SQLSTATE
CALL authfort_cleanup_run();
\echo :LAST_ERROR_SQLSTATE
SET regress.sqlstate = 'P0042';
CALL authfort_cleanup_run();
\echo :LAST_ERROR_SQLSTATE
SELECT status, error FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1;
DROP TRIGGER refuse ON authfort_verification_tokens;
SELECT * FROM pg_temp.rows_left();

-- 2. Sessions, the same way. Tokens has nothing to delete, so the procedure
-- reaches sessions.
DELETE FROM authfort_verification_tokens WHERE token_hash = 'expired-token';
CREATE TRIGGER refuse BEFORE DELETE ON authfort_refresh_tokens FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse();
SELECT code, statement, pg_temp.raised(code, statement)
  FROM unnest(ARRAY['AF001', 'P0042']) AS code,
       unnest(ARRAY['SELECT authfort_cleanup_sessions()',
                    'SELECT authfort_cleanup_sessions(max_rows => 10)',
                    'SELECT * FROM authfort_cleanup_all()',
                    'SELECT * FROM authfort_cleanup_batch(''sessions'', NULL, 100, ''0'', false)']) AS statement
 ORDER BY 1, 2;
SET regress.sqlstate = 'AF001';
SELECT authfort_cleanup_sessions();
\echo :LAST_ERROR_SQLSTATE
CALL authfort_cleanup_run();
\echo :LAST_ERROR_SQLSTATE
SET regress.sqlstate = 'P0042';
CALL authfort_cleanup_run();
\echo :LAST_ERROR_SQLSTATE

-- 3. One statement, errors one after another with the same message and
-- HINT: each keeps its own SQLSTATE, PostgreSQL's own (P0001, 23503) and
-- XX000 included; none is stamped with the one before it.
SELECT n, code, pg_temp.raised(code, 'SELECT authfort_cleanup_sessions()')
  FROM unnest(ARRAY['AF001', 'XX000', 'P0042', '23503', 'AF001', 'P0001', 'XX000']) WITH ORDINALITY AS c (code, n)
 ORDER BY n;
DROP TRIGGER refuse ON authfort_refresh_tokens;
SELECT * FROM pg_temp.rows_left();

-- 4. An error the trigger catches lends its SQLSTATE to none raised after it.
CREATE FUNCTION pg_temp.refuse_after_caught() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        RAISE EXCEPTION '% refuses to delete %', TG_TABLE_NAME, OLD.token_hash
            USING ERRCODE = 'AF001', HINT = 'Drop the trigger.';
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    RAISE EXCEPTION '% refuses to delete %', TG_TABLE_NAME, OLD.token_hash
        USING ERRCODE = current_setting('regress.sqlstate'), HINT = 'Drop the trigger.';
END $$;
CALL pg_temp.seed();
CREATE TRIGGER refuse BEFORE DELETE ON authfort_verification_tokens FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_after_caught();
SELECT code, pg_temp.raised(code, 'SELECT authfort_cleanup_tokens()')
  FROM unnest(ARRAY['XX000', 'P0001', 'P0042']) WITH ORDINALITY AS c (code, n)
 ORDER BY n;
DROP TRIGGER refuse ON authfort_verification_tokens;

-- 5. A WARNING keeps its own SQLSTATE, and one with the error's message and
-- HINT, raised after the error and before the error is raised again, is
-- not taken for it.
CREATE FUNCTION pg_temp.warn_and_raise_again() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'about to refuse' USING ERRCODE = 'AF002';
    RAISE EXCEPTION '% refuses to delete %', TG_TABLE_NAME, OLD.token_hash
        USING ERRCODE = 'AF001', HINT = 'Drop the trigger.';
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING '% refuses to delete %', TG_TABLE_NAME, OLD.token_hash
        USING ERRCODE = 'AF003', HINT = 'Drop the trigger.';
    RAISE;
END $$;
CREATE TRIGGER refuse BEFORE DELETE ON authfort_verification_tokens FOR EACH ROW EXECUTE FUNCTION pg_temp.warn_and_raise_again();
\set VERBOSITY sqlstate
SELECT authfort_cleanup_tokens();
CALL authfort_cleanup_run();
\set VERBOSITY default
DROP TRIGGER refuse ON authfort_verification_tokens;
SELECT * FROM pg_temp.rows_left();

-- 6. A plain DELETE, for comparison.
CREATE TRIGGER refuse BEFORE DELETE ON authfort_verification_tokens FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse();
SELECT pg_temp.raised('AF001', 'DELETE FROM authfort_verification_tokens');
DROP TRIGGER refuse ON authfort_verification_tokens;
TRUNCATE authfort_refresh_tokens, authfort_verification_tokens;
