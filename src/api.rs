//! The SQL surface: every function users call, with its arguments checked
//! here and its work done by the engine, the run and the run log.
//!
//! All are SECURITY INVOKER with a pinned search_path, so they run with the
//! caller's privileges and nothing on the caller's search_path can change
//! what a name means.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::check;
use crate::engine::{self, GuardMode, Position};
use crate::error;
use crate::indexes;
use crate::lock_waits;
use crate::rule::Options;
use crate::run;
use crate::run_log::{self, Counts, LogTable, RunStatus};
use crate::status;
use crate::table::{self, Table};
use crate::targets::{self, Target};

/// An argument with a default: the HINT says to leave it out.
fn required<T>(value: Option<T>, argument: &str) -> T {
    required_or(value, argument, &format!("Leave {argument} out to use its default."))
}

/// An argument with no default: `hint` says what to pass.
fn required_or<T>(value: Option<T>, argument: &str, hint: &str) -> T {
    match value {
        Some(value) => value,
        None => {
            error::raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{argument} must not be NULL"), hint)
        }
    }
}

/// Every function runs under `authfort_cleanup.lock_timeout`: each lock it
/// takes on AuthFort's tables, even the ACCESS SHARE of a count or of
/// pg_relation_size, waits at most that long.
fn bounded<T>(work: impl FnOnce() -> T) -> T {
    lock_waits::bounded(work)
}

fn positive(value: i64, argument: &str) -> i64 {
    if value <= 0 {
        error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{argument} must be greater than zero, not {value}"),
            format!("Pass a positive {argument}, or leave it out."),
        );
    }
    value
}

fn target_named(name: Option<&str>) -> &'static Target {
    let name = required_or(name, "target", "Pass one of 'keys', 'tokens', 'sessions'.");
    match targets::by_name(name) {
        Some(target) => target,
        None => error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown cleanup target \"{name}\""),
            "The targets are keys, tokens and sessions.",
        ),
    }
}

fn options(
    grace: Option<Interval>,
    max_rows: Option<i64>,
    dry_run: Option<bool>,
    keep_revoked_until_expired: Option<bool>,
) -> Options {
    Options {
        grace: required(grace, "grace"),
        max_rows: max_rows.map(|rows| positive(rows, "max_rows")),
        dry_run: required(dry_run, "dry_run"),
        keep_revoked_until_expired: required(keep_revoked_until_expired, "keep_revoked_until_expired"),
    }
}

fn clean(target: &'static Target, options: Options) -> i64 {
    bounded(|| engine::clean(&table::resolve(target), &options))
}

/// Deletes expired signing keys; AuthFort's `cleanup_expired_keys()`.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_keys(
    grace: default!(Option<Interval>, "'0'"),
    max_rows: default!(Option<i64>, "NULL"),
    dry_run: default!(Option<bool>, "false"),
) -> i64 {
    clean(&targets::KEYS, options(grace, max_rows, dry_run, Some(false)))
}

/// Deletes expired verification tokens; AuthFort's `cleanup_expired_tokens()`.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_tokens(
    grace: default!(Option<Interval>, "'0'"),
    max_rows: default!(Option<i64>, "NULL"),
    dry_run: default!(Option<bool>, "false"),
) -> i64 {
    clean(&targets::TOKENS, options(grace, max_rows, dry_run, Some(false)))
}

/// Deletes revoked or expired refresh tokens; AuthFort's `cleanup_expired_sessions()`.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_sessions(
    grace: default!(Option<Interval>, "'0'"),
    max_rows: default!(Option<i64>, "NULL"),
    dry_run: default!(Option<bool>, "false"),
    keep_revoked_until_expired: default!(Option<bool>, "false"),
) -> i64 {
    clean(&targets::SESSIONS, options(grace, max_rows, dry_run, keep_revoked_until_expired))
}

/// The daily job in one call and one transaction, logged and announced.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_all(
    fcinfo: pg_sys::FunctionCallInfo,
) -> TableIterator<'static, (name!(keys, i64), name!(tokens, i64), name!(sessions, i64))> {
    let log = LogTable::of_call(fcinfo);
    let counts = bounded(|| run::all_in_one_transaction(&log));
    TableIterator::once((counts.keys, counts.tokens, counts.sessions))
}

/// What a run would delete now, without deleting anything.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_preview() -> TableIterator<
    'static,
    (name!(target, String), name!(deletable, i64), name!(oldest_expiry, Option<TimestampWithTimeZone>)),
> {
    let rows: Vec<_> = bounded(|| {
        targets::ALL
            .into_iter()
            .map(|target| {
                let table = table::resolve(target);
                let options = Options { dry_run: true, ..Options::default() };
                (target.name.to_string(), engine::clean(&table, &options), engine::oldest_deletable(&table, &options))
            })
            .collect()
    });
    TableIterator::new(rows)
}

/// One batch for `authfort_cleanup_run()`: deletes at most `batch_size` rows
/// of `target` from `position` (NULL: the start). Returns the rows deleted,
/// the rows it picked but could not delete (a trigger kept them), and the
/// position the next batch starts at, NULL once the target is done. The
/// first batch (`position` NULL) first checks the quadratic guard, as
/// `authfort_cleanup_blocking_index()` does: where the target waits for an
/// index, it deletes nothing and returns that index's CREATE INDEX as
/// `blocking_index`.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_batch(
    target: Option<&str>,
    position: Option<&str>,
    batch_size: Option<i64>,
    grace: Option<Interval>,
    keep_revoked_until_expired: Option<bool>,
) -> TableIterator<
    'static,
    (
        name!(deleted, i64),
        name!(kept, i64),
        name!(next_position, Option<String>),
        name!(blocking_index, Option<String>),
    ),
> {
    let target = target_named(target);
    let position = position.map(|text| Position::parse(text).unwrap_or_else(|| engine::invalid_position(text)));
    let batch_size =
        positive(required_or(batch_size, "batch_size", "Pass a positive batch_size, such as 10000."), "batch_size");
    let grace = required_or(grace, "grace", "Pass the run's grace, such as '0'.");
    let keep_revoked_until_expired = required_or(
        keep_revoked_until_expired,
        "keep_revoked_until_expired",
        "Pass the run's keep_revoked_until_expired, true or false.",
    );
    let options = options(Some(grace), None, Some(false), Some(keep_revoked_until_expired));
    let row = bounded(|| {
        let table = table::resolve(target);
        if position.is_none() {
            if let Some(index) = blocking_index(&table) {
                return (0, 0, None, Some(index));
            }
        }
        let batch = engine::clean_batch(&table, &options, position, batch_size);
        (batch.deleted, batch.kept, batch.next.map(|next| next.to_string()), None)
    });
    TableIterator::once(row)
}

/// NULL when `target` can be cleaned now, otherwise the CREATE INDEX
/// statement it is waiting for. Creates the index itself when
/// `authfort_cleanup.create_missing_indexes` is on.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_blocking_index(target: Option<&str>) -> Option<String> {
    let target = target_named(target);
    bounded(|| blocking_index(&table::resolve(target)))
}

/// The quadratic guard's answer for a batched run, which skips a target
/// instead of failing: the CREATE INDEX the table waits for, or None.
fn blocking_index(table: &Table) -> Option<String> {
    let missing = engine::guard_quadratic(table, GuardMode::Check)?;
    if crate::settings::create_missing_indexes() {
        indexes::create(table, &missing);
        return None;
    }
    Some(missing.concurrently)
}

/// Creates the indexes that keep cleanup linear, and with `time_indexes` the
/// ones that let it read only the rows it deletes; returns the names created.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_create_indexes(time_indexes: default!(Option<bool>, "false")) -> SetOfIterator<'static, String> {
    let time_indexes = required(time_indexes, "time_indexes");
    let created = bounded(|| {
        let tables: Vec<Table> = targets::ALL.into_iter().map(table::resolve).collect();
        let mut wanted: Vec<(&Table, indexes::IndexSpec)> = Vec::new();
        for table in &tables {
            wanted.extend(indexes::missing_self_reference_index(table).map(|index| (table, index)));
            if time_indexes {
                // AuthFort's rule has every arm a target can have.
                let missing = indexes::missing_time_indexes(table, &Options::default());
                wanted.extend(missing.into_iter().map(|(_, index)| (table, index)));
            }
        }
        // Every check before the first build, so a refusal builds nothing.
        if !wanted.is_empty() {
            table::refuse_read_only("create indexes", "Create them in a read-write transaction on the primary.");
        }
        for (table, _) in &wanted {
            indexes::require_owner(table);
        }
        wanted
            .into_iter()
            .map(|(table, index)| {
                indexes::create(table, &index);
                index.index_name
            })
            .collect::<Vec<String>>()
    });
    SetOfIterator::new(created)
}

/// Problems that would make cleanup slow or keep it from running, each with
/// the statement that fixes it.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_check(
    fcinfo: pg_sys::FunctionCallInfo,
) -> TableIterator<
    'static,
    (name!(level, String), name!(target, Option<String>), name!(problem, String), name!(fix, Option<String>)),
> {
    let log = LogTable::of_call(fcinfo);
    let rows: Vec<_> = bounded(|| check::findings(&log))
        .into_iter()
        .map(|finding| (finding.level.to_string(), finding.target.map(String::from), finding.problem, finding.fix))
        .collect();
    TableIterator::new(rows)
}

/// One row per target for the `authfort_cleanup_status` view.
// pgrx reads the column names from this signature, so they cannot move into
// a type alias.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_target_status() -> TableIterator<
    'static,
    (
        name!(target, String),
        name!(table_name, String),
        name!(rows, i64),
        name!(deletable, i64),
        name!(oldest_expired_age, Option<Interval>),
        name!(supporting_index_present, bool),
        name!(table_bytes, i64),
    ),
> {
    let rows: Vec<_> = bounded(status::all)
        .into_iter()
        .map(|status| {
            (
                status.target.name.to_string(),
                status.table_name,
                status.rows,
                status.deletable,
                status.oldest_expired_age,
                status.supporting_index_present,
                status.table_bytes,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// For `authfort_cleanup_run()`, before its first batch: refuses with 2D000
/// where the procedure could not COMMIT (a transaction block, or a call from
/// inside a function), and with 42501 and the GRANTs where the role lacks a
/// privilege some batch or the run log would need. So the run deletes nothing
/// it could not finish and log.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_prepare_run(fcinfo: pg_sys::FunctionCallInfo) {
    run::require_commit_allowed();
    let log = LogTable::of_call(fcinfo);
    bounded(|| run::require_run_privileges(&log));
}

/// The overlap guard's advisory lock key for the current schema setting.
#[pg_extern(stable, parallel_safe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_lock_key() -> i64 {
    run::lock_key()
}

/// Writes one run-log row, trims old ones and sends the NOTIFY payload.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
// Seven SQL arguments; `fcinfo` is the call itself, not one of them.
#[allow(clippy::too_many_arguments)]
fn authfort_cleanup_record_run(
    fcinfo: pg_sys::FunctionCallInfo,
    started_at: Option<TimestampWithTimeZone>,
    keys: Option<i64>,
    tokens: Option<i64>,
    sessions: Option<i64>,
    status: Option<&str>,
    error: default!(Option<&str>, "NULL"),
    notes: default!(Option<&str>, "NULL"),
) {
    let status = match RunStatus::parse(required_or(status, "status", "Pass one of 'ok', 'error', 'skipped'.")) {
        Some(status) => status,
        None => error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "status must be ok, error or skipped",
            "Pass one of 'ok', 'error', 'skipped'.",
        ),
    };
    let count = |value: Option<i64>, argument: &str| {
        let value = required_or(value, argument, &format!("Pass the number of {argument} the run deleted, 0 or more."));
        if value < 0 {
            error::raise(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("{argument} must not be negative, not {value}"),
                format!("Pass the number of {argument} the run deleted, 0 or more."),
            );
        }
        value
    };
    let counts =
        Counts { keys: count(keys, "keys"), tokens: count(tokens, "tokens"), sessions: count(sessions, "sessions") };
    if status == RunStatus::Skipped && counts != Counts::default() {
        error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "a skipped run deleted nothing: keys, tokens and sessions must be 0",
            "Pass status 'ok' or 'error' for a run that deleted rows.",
        );
    }
    let started_at = required_or(started_at, "started_at", "Pass the clock_timestamp() taken when the run began.");
    run_log::require_past(started_at);
    table::refuse_read_only("write the run log", "Record the run in a read-write transaction on the primary.");
    run_log::record(&LogTable::of_call(fcinfo), started_at, &counts, status, error, notes);
}
