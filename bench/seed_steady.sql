-- Seeds AuthFort's sessions table in its steady state: current_setting
-- ('bench.n') refresh tokens of which bench.expired have expired and
-- bench.revoked more are revoked but not yet expired, laid out as
-- bench.layout says:
--   ordered    rows expire in the order they were inserted (a real table:
--              every token lives 30 days), so the expired ones are the
--              oldest, packed at the start of the heap;
--   scattered  the expired rows are spread evenly through the heap, so each
--              deleted row is on a page of its own.
-- The revoked ones (logouts and rotations since the last run) are spread
-- evenly over the unexpired rows in both layouts. All in SQL, set-based.
-- Runs in a template database whose schema AuthFort's own migrations made;
-- bench.py copies it once per variant.

SET session_replication_role = replica;  -- the rows are consistent by construction

CREATE TEMP TABLE bench_params AS
SELECT current_setting('bench.n')::bigint AS n,
       current_setting('bench.expired')::bigint AS expired,
       current_setting('bench.revoked')::bigint AS revoked,
       current_setting('bench.layout') AS layout,
       greatest(10, current_setting('bench.n')::bigint / 100) AS users;

INSERT INTO authfort_users (id, email, created_at, updated_at)
SELECT lpad(to_hex(u), 32, '0')::uuid, format('user%s@bench.example', u), now() - interval '180 days',
       now() - interval '180 days'
  FROM bench_params, generate_series(1, users) AS u;

-- Loading 10M rows into AuthFort's secondary indexes one by one takes far
-- longer than building them afterwards: drop them, load, build them again
-- with the definitions the migrations gave them.
CREATE TEMP TABLE authfort_indexes AS
SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS definition
  FROM pg_index i
 WHERE indrelid = 'authfort_refresh_tokens'::regclass
   AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid);
DO $$
DECLARE index_name text;
BEGIN
    FOR index_name IN SELECT name FROM authfort_indexes LOOP
        EXECUTE 'DROP INDEX ' || index_name;
    END LOOP;
END $$;

-- Row i is the i-th token inserted. Each flag picks an exact count of rows,
-- evenly spaced (i * count / span steps up by one at each picked row).
INSERT INTO authfort_refresh_tokens
       (id, user_id, token_hash, session_id, expires_at, created_at, revoked, replaced_by, user_agent, ip_address)
SELECT lpad(to_hex(r.i), 32, '0')::uuid,
       lpad(to_hex(1 + r.i % p.users), 32, '0')::uuid,
       encode(sha256(int8send(r.i)), 'hex'),
       lpad(to_hex(r.i), 32, '0')::uuid,
       r.expires_at,
       r.expires_at - interval '30 days',
       r.revoked,
       NULL,
       'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
       format('10.%s.%s.%s', r.i % 256, (r.i / 256) % 256, (r.i / 65536) % 256)
  FROM bench_params p
 CROSS JOIN LATERAL (
        SELECT g.i,
               -- A day between the newest expired row and the next to expire,
               -- so no row expires while the benchmark runs.
               CASE WHEN p.layout = 'ordered'
                    -- one step of 30 days / n per row: the first `expired` rows are in the past
                    THEN now() + (g.i - p.expired - 0.5) * (interval '30 days' / p.n)
                         + CASE WHEN g.i > p.expired THEN interval '1 day' ELSE interval '-1 day' END
                    WHEN g.i * p.expired / p.n > (g.i - 1) * p.expired / p.n
                    THEN now() - interval '1 day' - interval '1 minute' * (g.i % 10000)
                    ELSE now() + interval '1 day' + g.i * (interval '30 days' / p.n) END AS expires_at,
               CASE WHEN p.layout = 'ordered'
                    THEN g.i > p.expired
                         AND (g.i - p.expired) * p.revoked / (p.n - p.expired)
                             > (g.i - p.expired - 1) * p.revoked / (p.n - p.expired)
                    ELSE NOT g.i * p.expired / p.n > (g.i - 1) * p.expired / p.n
                         AND (g.i + p.n / (2 * p.revoked)) * p.revoked / p.n
                             > (g.i + p.n / (2 * p.revoked) - 1) * p.revoked / p.n END AS revoked
          FROM generate_series(1, p.n) AS g(i)) AS r;

DO $$
DECLARE definition text;
BEGIN
    FOR definition IN SELECT a.definition FROM authfort_indexes a LOOP
        EXECUTE definition;
    END LOOP;
END $$;

RESET session_replication_role;

-- What pgbench's clients hold: the current token of 100,000 live sessions.
CREATE TABLE bench_clients (k int PRIMARY KEY, token_hash varchar(255) NOT NULL);
INSERT INTO bench_clients
SELECT row_number() OVER (), token_hash
  FROM (SELECT token_hash FROM authfort_refresh_tokens
         WHERE NOT revoked AND expires_at > now() + interval '1 day' LIMIT 100000) AS live;
