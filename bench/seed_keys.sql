-- Seeds authfort_signing_keys with current_setting('bench.keys') keys, as
-- AuthFort's key rotation leaves them: one current key without expiry, 5%
-- rotated-out keys without expiry (never deleted), and the rest rotated out
-- with an expiry, 60% of all keys in the past. Key material is PEM-sized
-- (~1.7 kB private, ~450 B public) so rows are as wide as real ones.
SELECT setseed(0.42);

INSERT INTO authfort_signing_keys (id, kid, private_key, public_key, algorithm, is_current, created_at, expires_at)
SELECT gen_random_uuid(),
       format('kid-%s', i),
       '-----BEGIN PRIVATE KEY-----' || (SELECT string_agg(md5(i::text || ':' || j), '') FROM generate_series(1, 52) AS j) || '-----END PRIVATE KEY-----',
       '-----BEGIN PUBLIC KEY-----' || (SELECT string_agg(md5(j || ':' || i::text), '') FROM generate_series(1, 13) AS j) || '-----END PUBLIC KEY-----',
       'RS256',
       i = n,
       now() - interval '1 day' * (n - i) / 10,
       CASE WHEN i = n OR i % 20 = 0 THEN NULL
            WHEN r < 0.6 / 0.95 THEN now() - interval '1 hour' - interval '30 days' * random()
            ELSE now() + interval '1 hour' + interval '30 days' * random() END
  FROM (SELECT current_setting('bench.keys')::int AS n) AS p,
       LATERAL (SELECT i, random() AS r FROM generate_series(1, p.n) AS i) AS g
 ORDER BY i;
