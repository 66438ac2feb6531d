-- The monitoring view and the catalog's own documentation.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
TRUNCATE authfort_refresh_tokens, authfort_verification_tokens;
DELETE FROM authfort_signing_keys WHERE kid <> 'current';
INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('27000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'old',   'otp', now() - interval '3 days', now()),
    ('27000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'older', 'otp', now() - interval '5 days', now()),
    ('27000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001', 'live',  'otp', now() + interval '1 day', now());
INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked) VALUES
    ('37000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'revoked', now() + interval '1 day', now(), true);

SELECT target, table_name, rows, deletable, oldest_expired_age > interval '5 days' AS over_5_days,
       supporting_index_present, table_bytes > 0 AS has_size, last_run_status
  FROM authfort_cleanup_status ORDER BY target;
SELECT * FROM authfort_cleanup_all();
SELECT target, rows, deletable, oldest_expired_age, last_run_status, last_run_deleted
  FROM authfort_cleanup_status ORDER BY target;

-- Every routine, table and view of the extension explains itself.
SELECT pg_describe_object(d.classid, d.objid, 0) AS undocumented
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'authfort_cleanup')
   AND d.classid IN ('pg_proc'::regclass, 'pg_class'::regclass)
   AND obj_description(d.objid, d.classid::regclass::name) IS NULL
   AND NOT (d.classid = 'pg_class'::regclass AND (SELECT relkind FROM pg_class WHERE oid = d.objid) IN ('S', 'i'));
-- Each setting describes itself too.
SELECT name, short_desc <> '' AS described FROM pg_settings WHERE name LIKE 'authfort_cleanup.%' ORDER BY name;
