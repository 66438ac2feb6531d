-- Seed for `make demo`: a small, readable mix of what AuthFort leaves behind,
-- written against the columns AuthFort 0.0.31's migrations create (no column
-- has a database default, so every row spells out id and created_at).
-- Lifetimes follow AuthFort's defaults: 30-day sessions, 48-hour key overlap,
-- 1 h password reset, 24 h email verify, 10 min magic link, 5 min email OTP.
--
-- What a cleanup run deletes, by construction:
--   keys      4 rows, 2 deletable (the two rotated keys past their overlap)
--   tokens    9 rows, 5 deletable (expired ones)
--   sessions 10 rows, 6 deletable (2 expired, 2 logged out, 2 rotated away)

BEGIN;

INSERT INTO authfort_users (id, email, email_verified, name, created_at, updated_at) VALUES
    ('00000000-0000-4000-8000-00000000000a', 'alice@example.com', true,  'Alice', now() - interval '90 days', now()),
    ('00000000-0000-4000-8000-00000000000b', 'bob@example.com',   true,  'Bob',   now() - interval '60 days', now()),
    ('00000000-0000-4000-8000-00000000000c', 'carol@example.com', false, 'Carol', now() - interval '2 days',  now()),
    ('00000000-0000-4000-8000-00000000000d', 'dave@example.com',  true,  'Dave',  now() - interval '200 days', now());

-- Signing keys. AuthFort keeps one current key (expires_at NULL); rotating
-- sets the old key's expires_at to now + 48 h so tokens it signed still verify.
-- The key material is a placeholder: nothing in the demo signs with it.
INSERT INTO authfort_signing_keys (id, kid, private_key, public_key, algorithm, is_current, created_at, expires_at) VALUES
    (gen_random_uuid(), 'key-demo-1-expired', '(demo placeholder)', '(demo placeholder)', 'RS256', false,
        now() - interval '120 days', now() - interval '88 days'),
    (gen_random_uuid(), 'key-demo-2-expired', '(demo placeholder)', '(demo placeholder)', 'RS256', false,
        now() - interval '90 days',  now() - interval '28 days'),
    (gen_random_uuid(), 'key-demo-3-overlap', '(demo placeholder)', '(demo placeholder)', 'RS256', false,
        now() - interval '30 days',  now() + interval '36 hours'),
    (gen_random_uuid(), 'key-demo-4-current', '(demo placeholder)', '(demo placeholder)', 'RS256', true,
        now() - interval '12 hours', NULL);

-- Verification tokens: 5 expired, 4 live. AuthFort stores sha256 hex digests;
-- these hash a readable label so each is unique and deterministic.
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
SELECT gen_random_uuid(), u.id, encode(sha256(convert_to(t.label, 'UTF8')), 'hex'), t.type,
       now() + t.expires_in, now() + t.expires_in - t.ttl
  FROM (VALUES
        -- expired
        ('alice@example.com', 'password_reset', 'alice reset (old)',  interval '-3 days',     interval '1 hour'),
        ('dave@example.com',  'password_reset', 'dave reset',         interval '-50 minutes', interval '1 hour'),
        ('carol@example.com', 'email_verify',   'carol verify (old)', interval '-1 day',      interval '24 hours'),
        ('bob@example.com',   'magic_link',     'bob magic link',     interval '-2 hours',    interval '10 minutes'),
        ('alice@example.com', 'email_otp',      'alice otp (old)',    interval '-1 minute',   interval '5 minutes'),
        -- live
        ('alice@example.com', 'password_reset', 'alice reset',        interval '40 minutes',  interval '1 hour'),
        ('carol@example.com', 'email_verify',   'carol verify',       interval '20 hours',    interval '24 hours'),
        ('dave@example.com',  'magic_link',     'dave magic link',    interval '8 minutes',   interval '10 minutes'),
        ('alice@example.com', 'email_otp',      'alice otp',          interval '4 minutes',   interval '5 minutes')
       ) AS t(email, type, label, expires_in, ttl)
  JOIN authfort_users u USING (email);

-- Refresh tokens (sessions). AuthFort deletes a row once it is revoked or
-- expired. A refresh revokes the presented token and points replaced_by at
-- its successor, which keeps the session_id.
INSERT INTO authfort_refresh_tokens
       (id, user_id, token_hash, expires_at, created_at, revoked, replaced_by, user_agent, ip_address, session_id)
SELECT s.id, u.id, encode(sha256(convert_to(s.label, 'UTF8')), 'hex'),
       now() + s.expires_in, now() + s.expires_in - interval '30 days',
       s.revoked, s.replaced_by, s.user_agent, '192.0.2.' || s.host, coalesce(s.session_id, s.id)
  FROM (VALUES
        -- live sessions
        ('00000000-0000-4000-8000-000000000101'::uuid, 'alice@example.com', 'alice laptop',   interval '29 days',  false, NULL::uuid,
            'Firefox on Linux', 11, NULL::uuid),
        ('00000000-0000-4000-8000-000000000102', 'bob@example.com',   'bob phone',      interval '12 days',  false, NULL,
            'Safari on iOS', 12, NULL),
        ('00000000-0000-4000-8000-000000000103', 'carol@example.com', 'carol desktop',  interval '30 days',  false, NULL,
            'Chrome on Windows', 13, NULL),
        -- expired (never refreshed within 30 days)
        ('00000000-0000-4000-8000-000000000201', 'dave@example.com',  'dave old tablet', interval '-100 days', false, NULL,
            'Chrome on Android', 21, NULL),
        ('00000000-0000-4000-8000-000000000202', 'bob@example.com',   'bob old laptop',  interval '-3 days',   false, NULL,
            'Firefox on macOS', 22, NULL),
        -- logged out: revoked before expiry
        ('00000000-0000-4000-8000-000000000301', 'alice@example.com', 'alice kiosk',    interval '20 days',  true,  NULL,
            'Edge on Windows', 31, NULL),
        ('00000000-0000-4000-8000-000000000302', 'dave@example.com',  'dave work pc',   interval '25 days',  true,  NULL,
            'Firefox on Linux', 32, NULL),
        -- a rotation chain in one session: 401 -> 402 -> 403 (403 is live)
        ('00000000-0000-4000-8000-000000000401', 'alice@example.com', 'alice phone #1', interval '28 days',  true,
            '00000000-0000-4000-8000-000000000402', 'AuthFort app on Android', 41, '00000000-0000-4000-8000-000000000401'),
        ('00000000-0000-4000-8000-000000000402', 'alice@example.com', 'alice phone #2', interval '29 days',  true,
            '00000000-0000-4000-8000-000000000403', 'AuthFort app on Android', 41, '00000000-0000-4000-8000-000000000401'),
        ('00000000-0000-4000-8000-000000000403', 'alice@example.com', 'alice phone #3', interval '30 days',  false, NULL,
            'AuthFort app on Android', 41, '00000000-0000-4000-8000-000000000401')
       ) AS s(id, email, label, expires_in, revoked, replaced_by, user_agent, host, session_id)
  JOIN authfort_users u USING (email);

COMMIT;
