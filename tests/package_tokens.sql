-- The package tests' rows: one user, 3 expired tokens and 2 live ones. Run
-- by tests/suites/package.sh and tests/package_plain_debian.sh, as psql -f.
DELETE FROM authfort_verification_tokens;
DELETE FROM authfort_users;
INSERT INTO authfort_users (id, email, created_at, updated_at)
VALUES ('00000000-0000-0000-0000-000000000001', 'ada@example.com', now(), now());
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'token-' || n, 'email_otp',
       now() + CASE WHEN n <= 3 THEN interval '-1 day' ELSE interval '1 day' END, now()
  FROM generate_series(1, 5) AS n;
