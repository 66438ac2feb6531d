-- A caller's search_path cannot change what is deleted: its own now(), a
-- rigged < on timestamptz, and look-alike tables are all ignored.
\set SHOW_CONTEXT never
TRUNCATE authfort_refresh_tokens, authfort_verification_tokens;
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('24000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'expired', 'otp', now() - interval '1 day', now()),
    ('24000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'live',    'otp', now() + interval '1 day', now());
INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked) VALUES
    ('34000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'expired', now() - interval '1 day', now(), false),
    ('34000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'live',    now() + interval '1 day', now(), false);

CREATE SCHEMA evil;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT timestamptz '9999-01-01' $$;
CREATE FUNCTION evil.always(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR evil.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.always);
CREATE FUNCTION evil.always_int(integer, integer) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR evil.<= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.always_int);
CREATE FUNCTION evil.plus(bigint, bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT 1000000::bigint $$;
CREATE OPERATOR evil.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.plus);
CREATE TABLE evil.authfort_verification_tokens (LIKE public.authfort_verification_tokens);
INSERT INTO evil.authfort_verification_tokens SELECT * FROM public.authfort_verification_tokens;

-- The hostile schema comes first, even before pg_catalog.
SET search_path = evil, pg_catalog, public;
SELECT now() > '9000-01-01' AS rigged_now, (timestamptz '2030-01-01' < timestamptz '2020-01-01') AS rigged_less_than;
SET client_min_messages = warning;
-- The procedure has no SET search_path (it COMMITs); it qualifies everything.
CALL authfort_cleanup_run();
SELECT tokens, sessions, status FROM public.authfort_cleanup_runs ORDER BY id DESC LIMIT 1;
RESET client_min_messages;
RESET search_path;
SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('24000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001', 'expired', 'otp', now() - interval '1 day', now());
INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked) VALUES
    ('34000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001', 'expired', now() - interval '1 day', now(), false);
SET search_path = evil, pg_catalog, public;
SELECT authfort_cleanup_tokens() AS tokens, authfort_cleanup_sessions() AS sessions;
RESET search_path;

SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;
SELECT token_hash FROM authfort_refresh_tokens ORDER BY 1;
SELECT count(*) AS lookalike_rows_untouched FROM evil.authfort_verification_tokens;
DROP SCHEMA evil CASCADE;
