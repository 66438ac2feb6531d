-- Nothing here is for PUBLIC: every routine of the extension deletes data or
-- manages jobs, so EXECUTE is granted explicitly to a maintenance role (see
-- the Privileges section of doc/functions.md).
DO $revoke$
DECLARE
    routine regprocedure;
BEGIN
    FOR routine IN
        SELECT d.objid::regprocedure
          FROM pg_catalog.pg_depend d
         WHERE d.classid = 'pg_catalog.pg_proc'::regclass
           AND d.refclassid = 'pg_catalog.pg_extension'::regclass
           AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'authfort_cleanup')
           AND d.deptype = 'e'
    LOOP
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC', routine);
    END LOOP;
END
$revoke$;
