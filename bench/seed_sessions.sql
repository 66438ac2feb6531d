-- Seeds AuthFort's sessions table (authfort_refresh_tokens) with
-- current_setting('bench.n') refresh tokens shaped like AuthFort's rotation
-- leaves them. Runs in a template database whose schema AuthFort's own
-- migrations made; bench.py copies the result once per variant.
--
-- A session is a chain of 1..3 tokens (mean 2): every refresh revokes the
-- presented token and points its replaced_by at the new one, so all but the
-- latest token of a chain are revoked. The latest is
--   logged out (revoked)        5% of chains
--   abandoned (expired)        15% of chains
--   live                       80% of chains
-- so 1/2 (non-latest) + 1/2 * 20% (latest, dead) = 60% of tokens are
-- deletable. Rows go into the heap in created_at order, as an application
-- writes them, so deletable rows are spread through the whole table rather
-- than packed at one end (which would flatter any block-range strategy).
--
-- Deterministic: setseed() fixes random(); uuids come from gen_random_uuid()
-- but every variant sees the same bytes because it is a copy of the template.

SELECT setseed(0.42);

-- AuthFort's FK triggers (user_id, replaced_by) would check each of the N
-- rows one at a time; the data is consistent by construction and checked at
-- the end, so seed with triggers off.
SET session_replication_role = replica;

CREATE TEMP TABLE bench_params AS
SELECT current_setting('bench.n')::int AS n,
       greatest(10, current_setting('bench.n')::int / 10) AS users;

INSERT INTO authfort_users (id, email, created_at, updated_at)
SELECT gen_random_uuid(), format('user%s@bench.example', u), now() - interval '180 days', now() - interval '180 days'
  FROM bench_params, generate_series(1, users) AS u;

CREATE TEMP TABLE bench_users AS
SELECT row_number() OVER (ORDER BY email) AS u, id FROM authfort_users;

-- One row per chain (session). A few more chains than needed; the surplus is
-- cut at exactly n tokens below.
CREATE TEMP TABLE chains AS
SELECT c,
       1 + floor(random() * 3)::int AS len,
       random() AS fate,
       1 + floor(random() * (SELECT users FROM bench_params))::int AS u,
       interval '15 minutes' + interval '3 days' * random() AS step,   -- time between refreshes
       interval '1 day' + interval '29 days' * random() AS left_or_ago   -- latest's expiry distance from now
  FROM generate_series(1, (SELECT n / 2 + 1000 FROM bench_params)) AS c;

CREATE TEMP TABLE tokens AS
SELECT ch.c, p.pos, ch.fate, ch.u, ch.step, ch.left_or_ago, gen_random_uuid() AS id,
       row_number() OVER (ORDER BY ch.c, p.pos) AS rn
  FROM chains ch CROSS JOIN LATERAL generate_series(1, ch.len) AS p(pos);
DELETE FROM tokens WHERE rn > (SELECT n FROM bench_params);

-- The latest token's expiry decides the chain's fate; AuthFort's refresh
-- tokens live 30 days, so created_at = expires_at - 30 days, and earlier
-- tokens were issued one `step` apart before it.
CREATE TEMP TABLE shaped AS
SELECT t.*,
       max(t.pos) OVER w AS last_pos,
       first_value(t.id) OVER w AS session_id,
       lead(t.id) OVER w AS next_id,
       CASE WHEN t.fate >= 0.05 AND t.fate < 0.20 THEN now() - t.left_or_ago
            ELSE now() + t.left_or_ago END AS latest_expires_at
  FROM tokens t
WINDOW w AS (PARTITION BY t.c ORDER BY t.pos ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING);

INSERT INTO authfort_refresh_tokens
       (id, user_id, token_hash, session_id, expires_at, created_at, revoked, replaced_by, user_agent, ip_address)
SELECT s.id,
       bu.id,
       encode(sha256(convert_to(s.id::text, 'UTF8')), 'hex'),
       s.session_id,
       s.latest_expires_at - s.step * (s.last_pos - s.pos),
       s.latest_expires_at - interval '30 days' - s.step * (s.last_pos - s.pos),
       s.pos < s.last_pos OR s.fate < 0.05,
       s.next_id,
       'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
       format('10.%s.%s.%s', s.u % 256, (s.u / 256) % 256, s.c % 256)
  FROM shaped s JOIN bench_users bu ON bu.u = s.u
 ORDER BY 6;  -- created_at: heap order is the order the application wrote them

RESET session_replication_role;

-- What pgbench's clients hold: the current token of every live session. A
-- refresh rotates it (bench/refresh.pgbench), like a browser storing the new
-- refresh token. Not an AuthFort table; the cleanup never looks at it.
CREATE TABLE bench_clients (k int PRIMARY KEY, token_hash varchar(255) NOT NULL);
INSERT INTO bench_clients
SELECT row_number() OVER (ORDER BY id), token_hash
  FROM authfort_refresh_tokens
 WHERE NOT revoked AND expires_at > now() + interval '1 hour';

-- The seed must satisfy the constraints the triggers would have checked.
DO $$
BEGIN
    IF EXISTS (SELECT FROM authfort_refresh_tokens r
                WHERE r.replaced_by IS NOT NULL
                  AND NOT EXISTS (SELECT FROM authfort_refresh_tokens t WHERE t.id = r.replaced_by)) THEN
        RAISE EXCEPTION 'seed bug: dangling replaced_by';
    END IF;
    IF EXISTS (SELECT FROM authfort_refresh_tokens r
                WHERE NOT EXISTS (SELECT FROM authfort_users u WHERE u.id = r.user_id)) THEN
        RAISE EXCEPTION 'seed bug: dangling user_id';
    END IF;
END
$$;
