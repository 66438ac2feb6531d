-- The time indexes. authfort_cleanup_check() recommends them, from the
-- statistics alone, exactly when a cleanup would read far more rows than it
-- deletes; authfort_cleanup_create_indexes(time_indexes => true) creates
-- them; with them the functions and the procedure's batches read through
-- them and delete exactly what they deleted without them.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
TRUNCATE authfort_refresh_tokens, authfort_verification_tokens;
DELETE FROM authfort_signing_keys WHERE kid <> 'current';

-- n sessions, share of them expired and as many again revoked, spread
-- through the table; the rest expire within 30 days.
CREATE FUNCTION pg_temp.seed_sessions(n integer, share float8) RETURNS void LANGUAGE sql AS $$
    TRUNCATE authfort_refresh_tokens;
    INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked)
    SELECT md5('steady-' || i)::uuid, '00000000-0000-0000-0000-000000000001', 'steady-' || i,
           now() + CASE WHEN i % (1 / share)::int = 0 THEN -interval '1 hour' * (1 + i % 97)
                        ELSE interval '1 hour' * (1 + i % 700) END,
           now(), i % (1 / share)::int = 1
      FROM generate_series(1, n) AS i;
    ANALYZE authfort_refresh_tokens;
$$;
-- The estimates in the problem vary with ANALYZE's sample: numbers are N.
CREATE VIEW pg_temp.time_index_advice AS
SELECT level, target, fix, regexp_replace(problem, '[0-9][0-9.]*', 'N', 'g') AS problem
  FROM authfort_cleanup_check() WHERE fix LIKE 'CREATE INDEX%expires_at%';

-- Most rows deletable (a first run, or a table never cleaned): a whole-table
-- read is the right cost, so nothing is recommended.
SELECT pg_temp.seed_sessions(200000, 0.5);
SELECT * FROM pg_temp.time_index_advice;
-- A small table: reading it all is cheap, whatever share is deletable.
SELECT pg_temp.seed_sessions(5000, 0.01);
SELECT * FROM pg_temp.time_index_advice;
-- The steady state: 200,000 sessions, 1% expired and 1% revoked. Both
-- indexes, one statement each: the plain one serves both rules, the partial
-- one AuthFort's rule (revoked sessions go at once).
SELECT pg_temp.seed_sessions(200000, 0.01);
\x on
SELECT * FROM pg_temp.time_index_advice ORDER BY fix;
\x off
-- 7% expired and 7% revoked: only the plain index pays off, for
-- keep_revoked_until_expired; with AuthFort's rule 14% of the table goes.
SELECT pg_temp.seed_sessions(200000, 0.07);
\x on
SELECT * FROM pg_temp.time_index_advice ORDER BY fix;
\x off

-- Opt-in: the default creates only the replaced_by index (there already).
SELECT pg_temp.seed_sessions(200000, 0.01);
SELECT authfort_cleanup_create_indexes();
SELECT authfort_cleanup_create_indexes(time_indexes => true);
SELECT authfort_cleanup_create_indexes(time_indexes => true);
SELECT * FROM pg_temp.time_index_advice;

-- Batches walk the indexes forward: expired rows first, then revoked ones,
-- each batch a range of expiries that holds at most 700 rows. Rows that
-- share an expiry (an hour here) fall in the same batch.
SELECT count(*) AS deletable FROM authfort_refresh_tokens WHERE revoked OR expires_at < now();
CREATE TEMP TABLE walk AS
WITH RECURSIVE batches(number, deleted, next_position) AS (
    SELECT 1, b.deleted, b.next_position FROM authfort_cleanup_batch('sessions', NULL, 700, '0', false) AS b
    UNION ALL
    SELECT number + 1, b.deleted, b.next_position
      FROM batches, LATERAL authfort_cleanup_batch('sessions', batches.next_position, 700, '0', false) AS b
     WHERE batches.next_position IS NOT NULL)
SELECT number, deleted, split_part(next_position, ' ', 1) AS next_arm FROM batches;
SELECT * FROM walk ORDER BY number;
SELECT count(*) AS deletable_left FROM authfort_refresh_tokens WHERE revoked OR expires_at < now();
SELECT count(*) AS live_left FROM authfort_refresh_tokens;

-- keep_revoked_until_expired walks only the expired rows.
SELECT pg_temp.seed_sessions(200000, 0.01);
SELECT * FROM authfort_cleanup_batch('sessions', NULL, 5000, '0', true);
SELECT count(*) FILTER (WHERE expires_at < now()) AS expired_left, count(*) FILTER (WHERE revoked) AS revoked_left
  FROM authfort_refresh_tokens;

-- A batch that walks the expired rows to their end with room left goes on
-- into the revoked ones: a backlog that fits in one batch is one batch.
SELECT pg_temp.seed_sessions(200000, 0.01);
SELECT * FROM authfort_cleanup_batch('sessions', NULL, 5000, '0', false);
SELECT count(*) AS deletable_left FROM authfort_refresh_tokens WHERE revoked OR expires_at < now();

-- max_rows takes the oldest first, through the indexes.
SELECT pg_temp.seed_sessions(200000, 0.01);
CREATE TEMP TABLE before AS SELECT id, expires_at, revoked FROM authfort_refresh_tokens WHERE revoked OR expires_at < now();
SELECT authfort_cleanup_sessions(max_rows => 1500) AS deleted;
SELECT count(*) AS deleted, max(expires_at) <= (SELECT min(b.expires_at) FROM before b
                                               WHERE b.id IN (SELECT id FROM authfort_refresh_tokens)) AS oldest_first
  FROM before WHERE id NOT IN (SELECT id FROM authfort_refresh_tokens);
SELECT authfort_cleanup_sessions() AS deleted_the_rest;

-- Ties: 2,500 sessions expiring at the same instant, 1,000 a batch.
TRUNCATE authfort_refresh_tokens;
INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked)
SELECT md5('tie-' || i)::uuid, '00000000-0000-0000-0000-000000000001', 'tie-' || i,
       CASE WHEN i <= 2500 THEN timestamptz '2026-01-01 00:00+00' ELSE now() + interval '1 day' END, now(), false
  FROM generate_series(1, 2600) AS i;
CALL authfort_cleanup_run(batch_size => 1000);
SELECT sessions, status FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1;
SELECT count(*) AS left_after_ties FROM authfort_refresh_tokens;

-- The same batch by batch, with rows before and after the tie: a range up
-- to the tied expiry, the tied rows 1,000 at a time by ctid, then a range
-- after them; each row is deleted once.
TRUNCATE authfort_refresh_tokens;
INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked)
SELECT md5('tie-' || i)::uuid, '00000000-0000-0000-0000-000000000001', 'tie-' || i,
       CASE WHEN i <= 5 THEN timestamptz '2025-12-31 00:00+00' + interval '1 minute' * i
            WHEN i <= 2505 THEN timestamptz '2026-01-01 00:00+00'
            WHEN i <= 2510 THEN timestamptz '2026-01-02 00:00+00' + interval '1 minute' * i
            ELSE now() + interval '1 day' END, now(), false
  FROM generate_series(1, 2600) AS i;
CREATE TEMP TABLE tie_walk AS
WITH RECURSIVE batches(number, deleted, kept, next_position) AS (
    SELECT 1, b.deleted, b.kept, b.next_position FROM authfort_cleanup_batch('sessions', NULL, 1000, '0', true) AS b
    UNION ALL
    SELECT number + 1, b.deleted, b.kept, b.next_position
      FROM batches, LATERAL authfort_cleanup_batch('sessions', batches.next_position, 1000, '0', true) AS b
     WHERE batches.next_position IS NOT NULL)
SELECT number, deleted, kept,
       CASE WHEN next_position IS NULL THEN 'done'
            WHEN next_position LIKE '% (0,0)' THEN 'at an expiry'
            WHEN next_position LIKE '% (4294967295,65535)' THEN 'just after an expiry'
            ELSE 'within a tie' END AS next
  FROM batches;
SELECT * FROM tie_walk ORDER BY number;
SELECT count(*) AS left_after_the_tie_walk FROM authfort_refresh_tokens;

-- The same with the functions on keys and tokens, which have one arm.
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
SELECT md5('token-' || i)::uuid, '00000000-0000-0000-0000-000000000001', 'token-' || i, 'otp',
       now() + CASE WHEN i <= 30 THEN -interval '1 minute' * i ELSE interval '1 day' END, now()
  FROM generate_series(1, 100) AS i;
SELECT authfort_cleanup_tokens(max_rows => 10) AS deleted;
SELECT count(*) AS oldest_gone FROM authfort_verification_tokens WHERE expires_at < now() - interval '20.5 minutes';
SELECT authfort_cleanup_tokens() AS deleted_the_rest;

DROP INDEX ix_authfort_refresh_tokens_expires_at, ix_authfort_refresh_tokens_expires_at_revoked,
           ix_authfort_verification_tokens_expires_at, ix_authfort_signing_keys_expires_at;

-- Only an index a batch can walk counts as a time index: a btree that leads
-- with expires_at, with no expression, and with exactly the arm's predicate.
-- With any other, batches walk heap blocks ("blocks"), and delete the same.
SELECT pg_temp.seed_sessions(20000, 0.01);
CREATE INDEX odd_brin ON authfort_refresh_tokens USING brin (expires_at);
CREATE INDEX odd_hash ON authfort_refresh_tokens USING hash (expires_at);
CREATE INDEX odd_second ON authfort_refresh_tokens (user_id, expires_at);
CREATE INDEX odd_expression ON authfort_refresh_tokens (expires_at, lower(token_hash));
CREATE INDEX odd_partial ON authfort_refresh_tokens (expires_at) WHERE NOT revoked;
CREATE INDEX odd_partial_revoked ON authfort_refresh_tokens (expires_at, id) WHERE revoked AND user_id IS NOT NULL;
CREATE VIEW pg_temp.first_walk AS
SELECT split_part(b.next_position, ' ', 1) AS walk, split_part(k.next_position, ' ', 1) AS walk_keeping_revoked
  FROM authfort_cleanup_batch('sessions', NULL, 10, '0', false) AS b,
       authfort_cleanup_batch('sessions', NULL, 10, '0', true) AS k;
SELECT * FROM pg_temp.first_walk;
-- The plain index serves the expired arm; the revoked arm still lacks its own.
CREATE INDEX plain ON authfort_refresh_tokens (expires_at);
SELECT * FROM pg_temp.first_walk;
CREATE INDEX partial_revoked ON authfort_refresh_tokens (expires_at) WHERE revoked;
SELECT * FROM pg_temp.first_walk;
-- The revoked arm walks the index from the cutoff up, where a NULL expiry
-- would never be: it needs expires_at NOT NULL, as AuthFort declares it.
ALTER TABLE authfort_refresh_tokens ALTER COLUMN expires_at DROP NOT NULL;
SELECT * FROM pg_temp.first_walk;
ALTER TABLE authfort_refresh_tokens ALTER COLUMN expires_at SET NOT NULL;
SELECT * FROM pg_temp.first_walk;
DROP INDEX odd_brin, odd_hash, odd_second, odd_expression, odd_partial, odd_partial_revoked, plain, partial_revoked;
TRUNCATE authfort_refresh_tokens, authfort_verification_tokens;
