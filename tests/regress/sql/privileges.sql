-- SECURITY INVOKER, nothing for PUBLIC, and a clear error without DELETE.
\set SHOW_CONTEXT never
SELECT p.proname, p.prosecdef AS security_definer,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'authfort_cleanup')
 ORDER BY 1;

INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at) VALUES
    ('23000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000001', 'expired', 'otp', now() - interval '1 day', now());

CREATE ROLE regress_cleanup_nobody;
CREATE ROLE regress_cleanup_reader;
GRANT SELECT, UPDATE ON authfort_verification_tokens TO regress_cleanup_reader;
GRANT EXECUTE ON FUNCTION authfort_cleanup_tokens(interval, bigint, boolean) TO regress_cleanup_reader;

-- Without EXECUTE.
SET ROLE regress_cleanup_nobody;
SELECT authfort_cleanup_tokens();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- With EXECUTE but without DELETE on the table.
SET ROLE regress_cleanup_reader;
SELECT authfort_cleanup_tokens();
\echo :LAST_ERROR_SQLSTATE
SELECT authfort_cleanup_tokens(dry_run => true) AS would_delete;
RESET ROLE;
SELECT count(*) AS still_there FROM authfort_verification_tokens;

-- The maintenance role of doc/functions.md (Privileges) can run everything.
CREATE ROLE regress_cleanup_maintenance;
GRANT SELECT, UPDATE, DELETE ON authfort_signing_keys, authfort_verification_tokens, authfort_refresh_tokens
    TO regress_cleanup_maintenance;
GRANT SELECT, INSERT, DELETE ON authfort_cleanup_runs TO regress_cleanup_maintenance;
GRANT USAGE ON SEQUENCE authfort_cleanup_runs_id_seq TO regress_cleanup_maintenance;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO regress_cleanup_maintenance;
GRANT EXECUTE ON PROCEDURE authfort_cleanup_run TO regress_cleanup_maintenance;
SET ROLE regress_cleanup_maintenance;
SELECT * FROM authfort_cleanup_all();
RESET ROLE;
SELECT run_by FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1;

REVOKE ALL ON authfort_signing_keys, authfort_verification_tokens, authfort_refresh_tokens, authfort_cleanup_runs
    FROM regress_cleanup_reader, regress_cleanup_maintenance;
REVOKE ALL ON SEQUENCE authfort_cleanup_runs_id_seq FROM regress_cleanup_maintenance;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM regress_cleanup_reader, regress_cleanup_maintenance;
REVOKE EXECUTE ON PROCEDURE authfort_cleanup_run FROM regress_cleanup_maintenance;
DROP ROLE regress_cleanup_nobody, regress_cleanup_reader, regress_cleanup_maintenance;
