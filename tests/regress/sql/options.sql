-- grace, max_rows, dry_run and keep_revoked_until_expired, alone and combined.
\set SHOW_CONTEXT never
TRUNCATE authfort_refresh_tokens, authfort_verification_tokens;

-- Ten tokens that expired 0.5 .. 9.5 days ago (half a day from any grace
-- boundary, since every statement here has its own now()), two live.
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
SELECT ('21000000-0000-0000-0000-0000000000' || lpad(d::text, 2, '0'))::uuid, '00000000-0000-0000-0000-000000000001',
       'expired-' || lpad(d::text, 2, '0'), 'otp', now() - make_interval(days => d) + interval '12 hours', now()
  FROM generate_series(1, 10) AS d;
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('21000000-0000-0000-0000-000000000099', '00000000-0000-0000-0000-000000000001', 'live-1', 'otp', now() + interval '1 day', now()),
    ('21000000-0000-0000-0000-000000000098', '00000000-0000-0000-0000-000000000001', 'live-2', 'otp', now() + interval '2 days', now());

-- A dry run predicts what the real run then deletes, and deletes nothing.
SELECT authfort_cleanup_tokens(dry_run => true) AS would_delete, count(*) AS still_there FROM authfort_verification_tokens;
SELECT authfort_cleanup_tokens(grace => '7 days', dry_run => true) AS would_delete_with_grace;

-- grace: only the three that expired more than 7 days ago go.
SELECT authfort_cleanup_tokens(grace => '7 days') AS deleted;
SELECT token_hash FROM authfort_verification_tokens WHERE token_hash LIKE 'expired%' ORDER BY 1;

-- max_rows: exactly that many, the oldest expiry first.
SELECT authfort_cleanup_tokens(max_rows => 2) AS deleted;
SELECT token_hash FROM authfort_verification_tokens WHERE token_hash LIKE 'expired%' ORDER BY 1;

-- combined: grace and max_rows and a dry run.
SELECT authfort_cleanup_tokens(grace => '2 days', max_rows => 3, dry_run => true) AS would_delete;
SELECT authfort_cleanup_tokens(grace => '2 days', max_rows => 3) AS deleted;
SELECT token_hash FROM authfort_verification_tokens WHERE token_hash LIKE 'expired%' ORDER BY 1;
SELECT authfort_cleanup_tokens(max_rows => 100) AS deleted;
SELECT token_hash FROM authfort_verification_tokens ORDER BY 1;

-- keep_revoked_until_expired: a logged-out session waits until it expires.
INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked) VALUES
    ('31000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'revoked-live',    now() + interval '1 day',  now(), true),
    ('31000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'revoked-expired', now() - interval '1 day',  now(), true),
    ('31000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001', 'revoked-long-ago',now() - interval '10 days', now(), true),
    ('31000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000001', 'expired',         now() - interval '1 day',  now(), false),
    ('31000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-000000000001', 'live',            now() + interval '1 day',  now(), false);
SELECT authfort_cleanup_sessions(keep_revoked_until_expired => true, grace => '5 days', dry_run => true) AS would_delete;
SELECT authfort_cleanup_sessions(keep_revoked_until_expired => true, grace => '5 days') AS deleted;
SELECT token_hash FROM authfort_refresh_tokens ORDER BY 1;
SELECT authfort_cleanup_sessions(keep_revoked_until_expired => true) AS deleted;
SELECT token_hash FROM authfort_refresh_tokens ORDER BY 1;
-- Without it, AuthFort's rule: revoked goes at once, whatever grace says of expiry.
SELECT authfort_cleanup_sessions(grace => '5 days') AS deleted;
SELECT token_hash FROM authfort_refresh_tokens ORDER BY 1;

-- preview counts what a run would delete, per target.
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('21000000-0000-0000-0000-000000000050', '00000000-0000-0000-0000-000000000001', 'p', 'otp', '2020-01-01 00:00+00', now());
SELECT * FROM authfort_cleanup_preview();
SELECT authfort_cleanup_tokens();
