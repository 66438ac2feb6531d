//! A run: the three targets cleaned together under the overlap guard, then
//! logged. Two runs never double-work and never wait on each other: the
//! second finds the advisory lock taken, does nothing, and says so.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::engine::{self, Options};
use crate::error;
use crate::query;
use crate::run_log::{self, Counts, RunStatus};
use crate::settings;
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
    engine::refuse_read_only("AuthFort's tables");
    let locked = query::one::<bool>("SELECT pg_try_advisory_xact_lock($1)", &[lock_key().into()]);
    if locked != Some(true) {
        notice!("authfort_cleanup: another cleanup run is in progress; this one skipped");
        run_log::record(started_at, &Counts::default(), RunStatus::Skipped, Some("another run was in progress"), None);
        return Counts::default();
    }
    let [keys, tokens, sessions] =
        targets::ALL.map(|target| engine::clean(&engine::resolve(target), &Options::default()));
    let counts = Counts { keys, tokens, sessions };
    run_log::record(started_at, &counts, RunStatus::Ok, None, None);
    counts
}
