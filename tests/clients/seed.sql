-- The same AuthFort-shaped rows before every client check, so every client
-- must see the same counts. Expired (deletable): 2 keys, 3 tokens, 4 sessions.
-- Live (must survive): 2 of each. Plain statements without parameters, so
-- psql -f, asyncpg's execute() and node-postgres's query() all run it as is.
DELETE FROM authfort_refresh_tokens;
DELETE FROM authfort_verification_tokens;
DELETE FROM authfort_signing_keys;
DELETE FROM authfort_users;
DELETE FROM authfort_cleanup_runs;

INSERT INTO authfort_users (id, email, created_at, updated_at)
VALUES ('00000000-0000-0000-0000-000000000001', 'ada@example.com', now(), now());

INSERT INTO authfort_signing_keys (id, kid, private_key, public_key, algorithm, is_current, created_at, expires_at) VALUES
    ('10000000-0000-0000-0000-000000000001', 'current',   'k', 'k', 'RS256', true,  now(), NULL),
    ('10000000-0000-0000-0000-000000000002', 'previous',  'k', 'k', 'RS256', false, now(), now() + interval '1 hour'),
    ('10000000-0000-0000-0000-000000000003', 'expired-1', 'k', 'k', 'RS256', false, now(), now() - interval '1 day'),
    ('10000000-0000-0000-0000-000000000004', 'expired-2', 'k', 'k', 'RS256', false, now(), now() - interval '30 days');

INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('20000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'live-1',    'password_reset', now() + interval '1 hour',   now()),
    ('20000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'live-2',    'magic_link',     now() + interval '10 minutes', now()),
    ('20000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001', 'expired-1', 'password_reset', now() - interval '1 minute', now()),
    ('20000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000001', 'expired-2', 'email_verify',   now() - interval '2 hours',  now()),
    ('20000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-000000000001', 'expired-3', 'otp',            now() - interval '2 days',   now());

-- Sessions: a rotation chain (the revoked old token points at the live new
-- one), a logout (revoked, unexpired), an expiry, and both at once.
INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked, replaced_by) VALUES
    ('30000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'live',            now() + interval '30 days', now(), false, NULL),
    ('30000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'chain-new',       now() + interval '30 days', now(), false, NULL),
    ('30000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001', 'chain-old',       now() + interval '29 days', now(), true,  '30000000-0000-0000-0000-000000000002'),
    ('30000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000001', 'logged-out',      now() + interval '30 days', now(), true,  NULL),
    ('30000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-000000000001', 'expired',         now() - interval '1 day',   now(), false, NULL),
    ('30000000-0000-0000-0000-000000000006', '00000000-0000-0000-0000-000000000001', 'expired-revoked', now() - interval '3 days',  now(), true,  NULL);
