//! One way to raise a PostgreSQL error: a SQLSTATE, a message that names the
//! object, and a HINT that says what to do. pgrx's `ereport!` has no HINT, so
//! this builds the same `ErrorReport` with one.

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// Raises an ERROR; the current (sub)transaction is aborted, so nothing the
/// statement deleted survives.
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) -> ! {
    ErrorReport::new(code, message.into(), function_name!()).set_hint(hint).report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// Raises an ERROR that also carries a DETAIL line.
pub fn raise_with_detail(
    code: PgSqlErrorCode,
    message: impl Into<String>,
    detail: impl Into<String>,
    hint: impl Into<String>,
) -> ! {
    ErrorReport::new(code, message.into(), function_name!())
        .set_detail(detail)
        .set_hint(hint)
        .report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// Emits a WARNING with a HINT and carries on.
pub fn warn(message: impl Into<String>, hint: impl Into<String>) {
    ErrorReport::new(PgSqlErrorCode::ERRCODE_WARNING, message.into(), function_name!())
        .set_hint(hint)
        .report(PgLogLevel::WARNING);
}

/// Unwraps an SPI result. An SPI failure here is a bug in our own SQL, never
/// something a caller can cause (PostgreSQL's own errors abort before SPI
/// returns), so it is reported as an internal error rather than a panic.
pub fn spi<T>(result: Result<T, pgrx::spi::SpiError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("authfort_cleanup: internal query failed: {error}"),
            "This is a bug in authfort_cleanup; please report it with the statement you ran.",
        ),
    }
}
