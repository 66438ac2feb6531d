//! A run: the three targets cleaned together under the overlap guard, then
//! logged. Two runs never double-work and never wait on each other: the
//! second finds the advisory lock taken, does nothing, and says so.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::advisory_lock;
use crate::catalog;
use crate::engine;
use crate::error;
use crate::query;
use crate::rule::Options;
use crate::run_log::{self, Counts, LogTable, RunStatus};
use crate::settings;
use crate::table;
use crate::targets;

/// One key per AuthFort schema, so runs over different schemas don't exclude
/// each other.
pub fn lock_key() -> i64 {
    advisory_lock::key(&format!("authfort_cleanup:{}", settings::authfort_schema()))
}

/// `authfort_cleanup_all()`: AuthFort's three cleanups with AuthFort's rules,
/// in the caller's transaction. Being one transaction, a failure rolls back
/// its log row with everything else; the batched procedure logs failures.
pub fn all_in_one_transaction(log: &LogTable) -> Counts {
    let Some(started_at) = query::one::<TimestampWithTimeZone>("SELECT clock_timestamp()", &[]) else {
        error::raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "clock_timestamp() returned NULL", "This is a bug.");
    };
    table::refuse_read_only("delete from AuthFort's tables", table::DRY_RUN_HINT);
    if !advisory_lock::try_lock_for_transaction(lock_key()) {
        notice!("authfort_cleanup: another cleanup run is in progress; this one skipped");
        run_log::record(
            log,
            started_at,
            &Counts::default(),
            RunStatus::Skipped,
            Some("another run was in progress"),
            None,
        );
        return Counts::default();
    }
    let [keys, tokens, sessions] =
        targets::ALL.map(|target| engine::clean(&table::resolve(target), &Options::default()));
    let counts = Counts { keys, tokens, sessions };
    run_log::record(log, started_at, &counts, RunStatus::Ok, None, None);
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

/// The functions the procedure calls after `authfort_cleanup_prepare_run()`.
const CALLED_FUNCTIONS: [&str; 3] =
    ["authfort_cleanup_batch", "authfort_cleanup_lock_key", "authfort_cleanup_record_run"];

/// Refuses with 42501 and every missing GRANT, before the first batch: on
/// the tables AuthFort's migrations created (those that exist; a missing one
/// fails its own batch, logged), the run log and its sequence, and the
/// functions the procedure calls, found beside the log in the extension's
/// schema.
pub fn require_run_privileges(log: &LogTable) {
    let role = catalog::current_role();
    let mut grants = Vec::new();
    for target in targets::ALL {
        let Some(table) = table::try_resolve(target) else {
            continue;
        };
        if table::missing_privileges(&table, table::DELETING_PRIVILEGES).is_some() {
            grants.push(format!("GRANT SELECT, UPDATE, DELETE ON TABLE {} TO {role};", table.qualified_name));
        }
    }
    grants.extend(run_log::missing_grants(log, &role));
    let mut functions: Vec<String> = CALLED_FUNCTIONS
        .iter()
        .filter_map(|name| catalog::function_in(log.namespace, name))
        .filter(|function| !catalog::may_execute(*function))
        .map(catalog::function_signature)
        .collect();
    if !functions.is_empty() {
        functions.sort();
        grants.push(format!("GRANT EXECUTE ON FUNCTION {} TO {role};", functions.join(", ")));
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
