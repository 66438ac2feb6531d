//! A run: the three targets cleaned together under the overlap guard, then
//! logged. Two runs never double-work and never wait on each other: the
//! second finds the advisory lock taken, does nothing, and says so.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::engine;
use crate::error;
use crate::query;
use crate::rule::Options;
use crate::run_log::{self, Counts, RunStatus};
use crate::settings;
use crate::table;
use crate::targets;

/// One key per AuthFort schema, so runs over different schemas don't exclude
/// each other.
pub fn lock_key() -> i64 {
    let schema = settings::authfort_schema();
    query::one::<i64>("SELECT hashtextextended('authfort_cleanup:' || $1, 0)", &[schema.as_str().into()]).unwrap_or(0)
}

/// `authfort_cleanup_all()`: AuthFort's three cleanups with AuthFort's rules,
/// in the caller's transaction. Being one transaction, a failure rolls back
/// its log row with everything else; the batched procedure logs failures.
pub fn all_in_one_transaction() -> Counts {
    let Some(started_at) = query::one::<TimestampWithTimeZone>("SELECT clock_timestamp()", &[]) else {
        error::raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "clock_timestamp() returned NULL", "This is a bug.");
    };
    table::refuse_read_only("delete from AuthFort's tables", table::DRY_RUN_HINT);
    let locked = query::one::<bool>("SELECT pg_try_advisory_xact_lock($1)", &[lock_key().into()]);
    if locked != Some(true) {
        notice!("authfort_cleanup: another cleanup run is in progress; this one skipped");
        run_log::record(started_at, &Counts::default(), RunStatus::Skipped, Some("another run was in progress"), None);
        return Counts::default();
    }
    let [keys, tokens, sessions] =
        targets::ALL.map(|target| engine::clean(&table::resolve(target), &Options::default()));
    let counts = Counts { keys, tokens, sessions };
    run_log::record(started_at, &counts, RunStatus::Ok, None, None);
    counts
}

/// Refuses with 2D000 where `authfort_cleanup_run()` could not COMMIT: in a
/// transaction block (a driver without autocommit, SQLAlchemy's session, a
/// JDBC connection with autoCommit off), or called from inside a function.
/// Called by the procedure outside any EXCEPTION block, so the SPI
/// connection it asks about is the procedure's own.
pub fn require_commit_allowed() {
    // SAFETY: reads the state of the current SPI connection, on the
    // backend's only thread.
    let can_commit = unsafe { pg_sys::SPI_inside_nonatomic_context() };
    if !can_commit {
        error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION,
            "authfort_cleanup_run() commits after each batch, so it must be CALLed outside a transaction block",
            "CALL it in autocommit mode (psql's default; in a driver, turn autocommit on for that \
             connection), or use SELECT * FROM authfort_cleanup_all(); to clean in one transaction.",
        );
    }
}

/// Refuses with 42501 and every missing GRANT, before the first batch: on
/// the tables AuthFort's migrations created (those that exist; a missing one
/// fails its own batch, logged), the run log and its sequence, and the
/// functions the procedure calls.
pub fn require_run_privileges() {
    let role = query::one::<String>("SELECT quote_ident(current_user)", &[]).unwrap_or_default();
    let mut grants = Vec::new();
    for target in targets::ALL {
        let Some(table) = table::try_resolve(target) else {
            continue;
        };
        if table::missing_privileges(&table, table::DELETING_PRIVILEGES).is_some() {
            grants.push(format!("GRANT SELECT, UPDATE, DELETE ON TABLE {} TO {role};", table.qualified_name));
        }
    }
    grants.extend(run_log::missing_grants());
    let functions = query::one::<String>(
        "SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.proname)
           FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
           JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'authfort_cleanup'
          WHERE p.proname IN ('authfort_cleanup_batch', 'authfort_cleanup_lock_key', 'authfort_cleanup_record_run')
            AND NOT has_function_privilege(p.oid, 'EXECUTE')",
        &[],
    );
    if let Some(functions) = functions {
        grants.push(format!("GRANT EXECUTE ON FUNCTION {functions} TO {role};"));
    }
    if !grants.is_empty() {
        error::raise_with_detail(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied: {role} lacks privileges authfort_cleanup_run() needs"),
            "Nothing was deleted: the run checks every privilege its batches and its log need first.",
            grants.join(" "),
        );
    }
}
