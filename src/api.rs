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
use crate::engine::{self, GuardMode, Options, Position};
use crate::error;
use crate::indexes;
use crate::run;
use crate::run_log::{self, Counts, RunStatus};
use crate::status;
use crate::targets::{self, Target};

fn required<T>(value: Option<T>, argument: &str) -> T {
    match value {
        Some(value) => value,
        None => error::raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{argument} must not be NULL"),
            format!("Leave {argument} out to use its default."),
        ),
    }
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
    let name = required(name, "target");
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
    let table = engine::resolve(target);
    engine::clean(&table, &options)
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
fn authfort_cleanup_all() -> TableIterator<'static, (name!(keys, i64), name!(tokens, i64), name!(sessions, i64))> {
    let counts = run::all_in_one_transaction();
    TableIterator::once((counts.keys, counts.tokens, counts.sessions))
}

/// What a run would delete now, without deleting anything.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_preview() -> TableIterator<
    'static,
    (name!(target, String), name!(deletable, i64), name!(oldest_expiry, Option<TimestampWithTimeZone>)),
> {
    let rows: Vec<_> = targets::ALL
        .into_iter()
        .map(|target| {
            let table = engine::resolve(target);
            let options = Options { dry_run: true, ..Options::default() };
            (target.name.to_string(), engine::clean(&table, &options), engine::oldest_deletable(&table, &options))
        })
        .collect();
    TableIterator::new(rows)
}

/// One batch for `authfort_cleanup_run()`: deletes at most `batch_size` rows
/// of `target` from `position` (NULL: the start). Returns the rows deleted
/// and the position the next batch starts at, NULL once the target is done.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_batch(
    target: Option<&str>,
    position: Option<&str>,
    batch_size: Option<i64>,
    grace: Option<Interval>,
    keep_revoked_until_expired: Option<bool>,
) -> TableIterator<'static, (name!(deleted, i64), name!(next_position, Option<String>))> {
    let target = target_named(target);
    let position = position.map(|text| Position::parse(text).unwrap_or_else(|| engine::invalid_position(text)));
    let batch_size = positive(required(batch_size, "batch_size"), "batch_size");
    let options = options(grace, None, Some(false), keep_revoked_until_expired);
    let table = engine::resolve(target);
    let (deleted, next) = engine::clean_batch(&table, &options, position, batch_size);
    TableIterator::once((deleted, next.map(|next| next.to_string())))
}

/// For `authfort_cleanup_run()`: NULL when `target` can be cleaned now,
/// otherwise the CREATE INDEX statement it is waiting for. Creates the index
/// itself when `authfort_cleanup.create_missing_indexes` is on.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_blocking_index(target: Option<&str>) -> Option<String> {
    let table = engine::resolve(target_named(target));
    let missing = engine::guard_quadratic(&table, GuardMode::Check)?;
    if crate::settings::create_missing_indexes() {
        indexes::create(&missing);
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
    let mut created = Vec::new();
    for table in targets::ALL.into_iter().map(engine::resolve) {
        let mut wanted: Vec<indexes::IndexSpec> = indexes::missing_self_reference_index(&table).into_iter().collect();
        if time_indexes {
            // AuthFort's rule has every arm a target can have.
            let missing = indexes::missing_time_indexes(&table, &Options::default());
            wanted.extend(missing.into_iter().map(|(_, index)| index));
        }
        for index in wanted {
            indexes::create(&index);
            created.push(index.index_name);
        }
    }
    SetOfIterator::new(created)
}

/// Problems that would make cleanup slow or keep it from running, each with
/// the statement that fixes it.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_check() -> TableIterator<
    'static,
    (name!(level, String), name!(target, Option<String>), name!(problem, String), name!(fix, Option<String>)),
> {
    let rows: Vec<_> = check::findings()
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
    let rows: Vec<_> = status::all()
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

/// The overlap guard's advisory lock key for the current schema setting.
#[pg_extern(stable, parallel_safe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_lock_key() -> i64 {
    run::lock_key()
}

/// Writes one run-log row, trims old ones and sends the NOTIFY payload.
#[pg_extern(volatile, parallel_unsafe, security_invoker)]
#[search_path(pg_catalog, pg_temp)]
fn authfort_cleanup_record_run(
    started_at: Option<TimestampWithTimeZone>,
    keys: Option<i64>,
    tokens: Option<i64>,
    sessions: Option<i64>,
    status: Option<&str>,
    error: default!(Option<&str>, "NULL"),
    notes: default!(Option<&str>, "NULL"),
) {
    let status = match RunStatus::parse(required(status, "status")) {
        Some(status) => status,
        None => error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "status must be ok, error or skipped",
            "Pass one of 'ok', 'error', 'skipped'.",
        ),
    };
    let counts = Counts {
        keys: required(keys, "keys"),
        tokens: required(tokens, "tokens"),
        sessions: required(sessions, "sessions"),
    };
    run_log::record(required(started_at, "started_at"), &counts, status, error, notes);
}
