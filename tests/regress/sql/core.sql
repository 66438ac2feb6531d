-- AuthFort's three rules, row by row, including every boundary.
\set SHOW_CONTEXT never
CREATE INDEX ON authfort_refresh_tokens (replaced_by);

INSERT INTO authfort_users (id, email, created_at, updated_at)
VALUES ('00000000-0000-0000-0000-000000000001', 'ada@example.com', now(), now());

-- Keys: a key without expiry is never deleted, nor the current key.
INSERT INTO authfort_signing_keys (id, kid, private_key, public_key, algorithm, is_current, created_at, expires_at) VALUES
    ('10000000-0000-0000-0000-000000000001', 'current',         'k', 'k', 'RS256', true,  now(), NULL),
    ('10000000-0000-0000-0000-000000000002', 'no-expiry',       'k', 'k', 'RS256', false, now(), NULL),
    ('10000000-0000-0000-0000-000000000003', 'expired',         'k', 'k', 'RS256', false, now(), now() - interval '1 day'),
    ('10000000-0000-0000-0000-000000000004', 'in-overlap',      'k', 'k', 'RS256', false, now(), now() + interval '1 hour'),
    ('10000000-0000-0000-0000-000000000005', 'current-expired', 'k', 'k', 'RS256', true,  now(), now() - interval '1 day');

INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('20000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'a', 'password_reset', now() - interval '1 minute', now()),
    ('20000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'b', 'email_verify',   now() - interval '2 days',   now()),
    ('20000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001', 'c', 'magic_link',     now() + interval '10 minutes', now()),
    ('20000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000001', 'd', 'otp',            now() + interval '5 minutes',  now());

-- Sessions: the newest token of a rotation chain is live; the one it replaced
-- is revoked and points at it.
INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked, replaced_by) VALUES
    ('30000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'live',            now() + interval '30 days', now(), false, NULL),
    ('30000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'expired',         now() - interval '1 day',   now(), false, NULL),
    ('30000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001', 'logged-out',      now() + interval '30 days', now(), true,  NULL),
    ('30000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000001', 'chain-new',       now() + interval '30 days', now(), false, NULL),
    ('30000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-000000000001', 'chain-old',       now() + interval '29 days', now(), true,  '30000000-0000-0000-0000-000000000004'),
    ('30000000-0000-0000-0000-000000000006', '00000000-0000-0000-0000-000000000001', 'expired-revoked', now() - interval '3 days',  now(), true,  NULL);

SELECT authfort_cleanup_keys() AS keys, authfort_cleanup_tokens() AS tokens, authfort_cleanup_sessions() AS sessions;

SELECT kid FROM authfort_signing_keys ORDER BY kid;
SELECT type FROM authfort_verification_tokens ORDER BY type;
SELECT token_hash, revoked FROM authfort_refresh_tokens ORDER BY token_hash;

-- Nothing left to do: a second run deletes nothing.
SELECT authfort_cleanup_keys() AS keys, authfort_cleanup_tokens() AS tokens, authfort_cleanup_sessions() AS sessions;

-- A row expiring exactly at now() is kept; one a microsecond earlier is not.
BEGIN;
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('20000000-0000-0000-0000-000000000010', '00000000-0000-0000-0000-000000000001', 'now',     'otp', now(), now()),
    ('20000000-0000-0000-0000-000000000011', '00000000-0000-0000-0000-000000000001', 'now-1us', 'otp', now() - interval '1 microsecond', now());
SELECT authfort_cleanup_tokens() AS tokens;
SELECT token_hash FROM authfort_verification_tokens WHERE token_hash LIKE 'now%';
ROLLBACK;

-- All three in one call, logged.
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('20000000-0000-0000-0000-000000000020', '00000000-0000-0000-0000-000000000001', 'old', 'otp', now() - interval '1 hour', now());
SELECT * FROM authfort_cleanup_all();
SELECT keys, tokens, sessions, status, error, run_by FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1;
