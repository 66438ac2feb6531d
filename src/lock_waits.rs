//! How long cleanup may wait for a lock the application holds: a bounded time
//! (`authfort_cleanup.lock_timeout`), or not at all.
//!
//! Not at all means a subtransaction: work that would wait gives up at once
//! and is rolled back with everything it did, and the caller takes a path
//! that cannot wait. PL/pgSQL's EXCEPTION block does this for its callers;
//! from Rust the subtransaction is ours to manage.

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use crate::error;
use crate::settings;
use crate::sqlstate;

/// The shortest lock_timeout PostgreSQL accepts, in milliseconds.
const GIVE_UP_AT_ONCE_MS: i32 = 1;

/// Runs `work` under `authfort_cleanup.lock_timeout`, unless the caller
/// already waits less, then puts the caller's lock_timeout back. A wait that
/// runs out raises 55P03 with what to do about it. Errors raised inside
/// `work` keep their own SQLSTATE.
pub fn bounded<T>(work: impl FnOnce() -> T) -> T {
    let work = move || sqlstate::kept(work);
    let ours = settings::lock_timeout_ms();
    let callers = callers_lock_timeout_ms();
    if ours == 0 || (callers != 0 && callers <= ours) {
        return work();
    }
    set_lock_timeout_ms(ours);
    let result = PgTryBuilder::new(AssertUnwindSafe(work))
        .catch_when(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE, |caught| match caught {
            CaughtError::PostgresError(report) => error::raise_with_detail(
                PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                format!("authfort_cleanup: gave up waiting for a lock after authfort_cleanup.lock_timeout ({ours} ms)"),
                format!("PostgreSQL said: {}. Nothing was deleted by this statement.", report.message()),
                "Another session holds a conflicting lock on one of AuthFort's tables (see pg_locks); \
                 run again once it is released, or raise authfort_cleanup.lock_timeout.",
            ),
            other => other.rethrow(),
        })
        .execute();
    set_lock_timeout_ms(callers);
    result
}

/// Runs `work`, or returns None, having undone it, where it would have had
/// to wait for a lock. Any other error undoes it too, and propagates with
/// its own SQLSTATE.
pub fn forbidden<T>(work: impl FnOnce() -> T) -> Option<T> {
    let work = move || sqlstate::kept(work);
    let callers = callers_lock_timeout_ms();
    let caller = CallerState::save();
    // SAFETY: ended below on every path, success or error, so the caller's
    // (sub)transaction is the current one again when this returns.
    unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) };
    // The work allocates in the caller's memory, but under the
    // subtransaction's resource owner, so rolling back releases what it held.
    caller.switch_memory_context();
    let outcome = PgTryBuilder::new(AssertUnwindSafe(|| {
        set_lock_timeout_ms(GIVE_UP_AT_ONCE_MS);
        let result = work();
        // A setting changed in a subtransaction that commits lasts until the
        // end of the transaction: put the caller's back first.
        set_lock_timeout_ms(callers);
        Some(result)
    }))
    .catch_when(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE, |_| None)
    .catch_others(|error| {
        // SAFETY: our subtransaction is still the current one. An enclosing
        // PL/pgSQL EXCEPTION block expects its own to be current when the
        // error reaches it.
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        caller.restore();
        error.rethrow()
    })
    .execute();
    // SAFETY: our subtransaction is the current one. Rolling it back also
    // puts the caller's lock_timeout back.
    unsafe {
        match outcome {
            Some(_) => pg_sys::ReleaseCurrentSubTransaction(),
            None => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
    }
    caller.restore();
    outcome
}

/// What ending a subtransaction changes, and its caller expects back.
#[derive(Clone, Copy)]
struct CallerState {
    memory_context: pg_sys::MemoryContext,
    resource_owner: pg_sys::ResourceOwner,
}

impl CallerState {
    fn save() -> Self {
        // SAFETY: reads of two backend globals, on the backend's only thread.
        unsafe {
            CallerState { memory_context: pg_sys::CurrentMemoryContext, resource_owner: pg_sys::CurrentResourceOwner }
        }
    }

    fn switch_memory_context(self) {
        // SAFETY: valid when saved, before the subtransaction began, and owned
        // by the caller's (sub)transaction, which outlives it.
        unsafe { pg_sys::MemoryContextSwitchTo(self.memory_context) };
    }

    /// What PL/pgSQL's exec_stmt_block restores after each of its own
    /// subtransactions.
    fn restore(self) {
        self.switch_memory_context();
        // SAFETY: as above.
        unsafe { pg_sys::CurrentResourceOwner = self.resource_owner };
    }
}

/// The caller's lock_timeout in milliseconds, as the lock manager sees it.
fn callers_lock_timeout_ms() -> i32 {
    // SAFETY: a plain int GUC variable, read on the backend's only thread.
    unsafe { pg_sys::LockTimeout }
}

/// Sets lock_timeout until the end of the current (sub)transaction, the way
/// SET LOCAL would. Directly, not through SQL's set_config(): a batch sets
/// it several times, and a CALL on empty tables ran 24 such statements,
/// about a quarter of all it ran.
fn set_lock_timeout_ms(milliseconds: i32) {
    let value = format!("{milliseconds}ms\0");
    // SAFETY: both strings are NUL-terminated and outlive the call, which
    // copies them; an invalid value raises an ERROR as SET LOCAL would.
    unsafe {
        pg_sys::set_config_option(
            c"lock_timeout".as_ptr(),
            value.as_ptr().cast(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            0,
            false,
        );
    }
}
