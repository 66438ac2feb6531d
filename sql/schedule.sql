-- Scheduling through pg_cron. The job is the batched procedure, so a failed
-- run is still logged (it COMMITs its log row before re-raising), and cron's
-- job_run_details reports the failure too.

-- Raises a clear error unless pg_cron can be used from this database.
CREATE FUNCTION authfort_cleanup_require_pg_cron(command text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    cron_database text := current_setting('cron.database_name', true);
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    IF cron_database IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not available in this cluster'
            USING ERRCODE = 'undefined_object',
                  HINT = 'Set shared_preload_libraries = ''pg_cron'' and cron.database_name in postgresql.conf, '
                         'restart PostgreSQL, then run CREATE EXTENSION pg_cron in that database.';
    END IF;
    IF cron_database <> current_database() THEN
        RAISE EXCEPTION 'pg_cron lives in database "%", not in "%"', cron_database, current_database()
            USING ERRCODE = 'undefined_object',
                  HINT = format('Connect to %I and run: %s', cron_database, command);
    END IF;
    RAISE EXCEPTION 'pg_cron is loaded but the extension is not created in database "%"', cron_database
        USING ERRCODE = 'undefined_object', HINT = 'CREATE EXTENSION pg_cron;';
END
$function$;

-- database: where the job runs. Called in the database where pg_cron lives
-- (cron.database_name) with the extension created there too, it schedules
-- the cleanup of another database of the cluster.
CREATE FUNCTION authfort_cleanup_schedule(
    schedule text DEFAULT '0 3 * * *',
    job_name text DEFAULT 'authfort_cleanup',
    database text DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    command text := 'CALL @extschema@.authfort_cleanup_run()';
    target_database text := COALESCE(database, current_database());
    job_id bigint;
BEGIN
    IF schedule IS NULL OR job_name IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN schedule IS NULL THEN 'schedule' ELSE 'job_name' END
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Leave it out to use its default.';
    END IF;
    -- pg_cron stores job names as name: a longer one would be truncated,
    -- and unschedule() by the name given would then find nothing.
    IF octet_length(job_name) > 63 THEN
        RAISE EXCEPTION 'job_name is % bytes long; pg_cron keeps at most 63', octet_length(job_name)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass a shorter job_name.';
    END IF;
    PERFORM @extschema@.authfort_cleanup_require_pg_cron(format(
        'SELECT cron.schedule_in_database(%L, %L, %L, %L);', job_name, schedule, command, target_database));
    -- Both update the schedule and command of the job of that name if it
    -- exists, but neither moves it to another database: alter_job does.
    IF target_database = current_database() THEN
        job_id := cron.schedule(job_name, schedule, command);
    ELSE
        job_id := cron.schedule_in_database(job_name, schedule, command, target_database);
    END IF;
    IF (SELECT j.database FROM cron.job j WHERE j.jobid = job_id) IS DISTINCT FROM target_database THEN
        PERFORM cron.alter_job(job_id, database => target_database);
    END IF;
    RETURN job_id;
END
$function$;

CREATE FUNCTION authfort_cleanup_unschedule(job_name text DEFAULT 'authfort_cleanup')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    IF job_name IS NULL THEN
        RAISE EXCEPTION 'job_name must not be NULL'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Leave it out to use ''authfort_cleanup''.';
    END IF;
    IF octet_length(job_name) > 63 THEN
        RAISE EXCEPTION 'job_name is % bytes long; pg_cron keeps at most 63', octet_length(job_name)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the job_name authfort_cleanup_schedule() was given.';
    END IF;
    PERFORM @extschema@.authfort_cleanup_require_pg_cron(format('SELECT cron.unschedule(%L);', job_name));
    IF NOT EXISTS (SELECT FROM cron.job j WHERE j.jobname = job_name AND j.username = current_user) THEN
        RETURN false;
    END IF;
    RETURN cron.unschedule(job_name::name);
END
$function$;

COMMENT ON FUNCTION authfort_cleanup_schedule(text, text, text) IS
    'Creates or updates the pg_cron job that CALLs authfort_cleanup_run() in database (default: this one); returns its job id.';
COMMENT ON FUNCTION authfort_cleanup_unschedule(text) IS
    'Removes the pg_cron job; false if there was none.';
COMMENT ON FUNCTION authfort_cleanup_require_pg_cron(text) IS
    'Internal: raises a clear error unless pg_cron is usable from this database.';
