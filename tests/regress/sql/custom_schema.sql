-- AuthFort's tables in a schema with an awkward name, chosen by the setting.
\set SHOW_CONTEXT never
CREATE SCHEMA "Auth ""Prod""";
CREATE TABLE "Auth ""Prod""".authfort_signing_keys (LIKE public.authfort_signing_keys INCLUDING ALL);
CREATE TABLE "Auth ""Prod""".authfort_verification_tokens (LIKE public.authfort_verification_tokens INCLUDING ALL);
CREATE TABLE "Auth ""Prod""".authfort_refresh_tokens (LIKE public.authfort_refresh_tokens INCLUDING ALL);
ALTER TABLE "Auth ""Prod""".authfort_refresh_tokens ADD FOREIGN KEY (replaced_by)
    REFERENCES "Auth ""Prod""".authfort_refresh_tokens (id) ON DELETE SET NULL;
CREATE INDEX ON "Auth ""Prod""".authfort_refresh_tokens (replaced_by);

INSERT INTO "Auth ""Prod""".authfort_signing_keys (id, kid, private_key, public_key, algorithm, is_current, created_at, expires_at) VALUES
    ('15000000-0000-0000-0000-000000000001', 'current', 'k', 'k', 'RS256', true,  now(), NULL),
    ('15000000-0000-0000-0000-000000000002', 'old',     'k', 'k', 'RS256', false, now(), now() - interval '1 day');
INSERT INTO "Auth ""Prod""".authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('25000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'old', 'otp', now() - interval '1 day', now());
INSERT INTO "Auth ""Prod""".authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked) VALUES
    ('35000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'revoked', now() + interval '1 day', now(), true),
    ('35000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'live',    now() + interval '1 day', now(), false);
-- The same rows in public must not be touched.
INSERT INTO public.authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('25000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'public-old', 'otp', now() - interval '1 day', now());

SET authfort_cleanup.schema = 'Auth "Prod"';
SELECT target, deletable FROM authfort_cleanup_preview();
SELECT authfort_cleanup_keys() AS keys, authfort_cleanup_tokens() AS tokens, authfort_cleanup_sessions() AS sessions;
SET client_min_messages = warning;
CALL authfort_cleanup_run();
RESET client_min_messages;
RESET authfort_cleanup.schema;

SELECT kid FROM "Auth ""Prod""".authfort_signing_keys;
SELECT count(*) AS tokens_left FROM "Auth ""Prod""".authfort_verification_tokens;
SELECT token_hash FROM "Auth ""Prod""".authfort_refresh_tokens;
SELECT token_hash FROM public.authfort_verification_tokens WHERE token_hash = 'public-old';
DROP SCHEMA "Auth ""Prod""" CASCADE;
DELETE FROM public.authfort_verification_tokens;
