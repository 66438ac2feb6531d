//! The deletion engine: deletes (or counts) the rows a target's rule
//! selects, in one statement or in batches that each delete one expiry
//! range through the time indexes, as a DBA would by hand.
//!
//! Rows an application transaction holds locked are left for the next run
//! instead of making cleanup (and everything queued behind it) wait: a DELETE
//! that meets one is undone and redone as `DELETE ... WHERE ctid = ANY(ARRAY(
//! SELECT ctid ... FOR UPDATE SKIP LOCKED))`. Only ROW EXCLUSIVE is ever
//! taken on AuthFort's tables.
//! One wait remains: the foreign-key trigger's UPDATE of a row that still
//! references a deleted session waits if the application holds that row;
//! `authfort_cleanup.lock_timeout` bounds it.

use std::panic::AssertUnwindSafe;

use pgrx::datum::{DatumWithOid, Interval, TimestampWithTimeZone};
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use crate::advisory_lock;
use crate::error;
use crate::indexes::{self, IndexSpec};
use crate::lock_waits;
use crate::query;
use crate::rule::{self, cutoff, rule_sql, Arm, Options};
use crate::settings;
use crate::table::{require_privileges, require_writable, Table, READING_PRIVILEGES};

#[cfg(any(test, feature = "pg_test"))]
mod property_test;
mod walk;

pub use walk::{clean_batch, invalid_position, Position, Tid};

/// The rows a one-shot statement takes: those the rule selects, and for
/// `max_rows` the oldest first.
fn selection_sql(table: &Table, rule: &str, options: &Options) -> String {
    let mut sql = format!("SELECT ctid FROM {} WHERE {rule}", table.only());
    // A count is the same in any order: only a deleting max_rows sorts.
    if let (Some(limit), false) = (options.max_rows, options.dry_run) {
        sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", table.target.time_column));
    }
    sql
}

/// Deletes (or, in a dry run, counts) what `options` selects, in one
/// statement. Callers that delete have checked `require_writable` first.
fn run(table: &Table, options: &Options) -> i64 {
    let cutoff = cutoff(options.grace);
    let rule = rule_sql(table.target, options);
    let selection = selection_sql(table, &rule, options);
    let parameters: Vec<DatumWithOid> = vec![cutoff.into()];
    if options.dry_run {
        let count = query::one::<i64>(&format!("SELECT count(*) FROM ({selection}) AS deletable"), &parameters);
        return count.unwrap_or(0);
    }
    if !take_deleter_lock(table) {
        return 0;
    }
    let only = table.only();
    let plain = match options.max_rows {
        None => format!("DELETE FROM {only} WHERE {rule}"),
        // The rule again: a row updated since it was picked is deleted only
        // if its new version still matches, as in a plain DELETE.
        Some(_) => format!("DELETE FROM {only} WHERE ctid = ANY (ARRAY({selection})) AND {rule}"),
    };
    let skipping_locked =
        format!("DELETE FROM {only} WHERE ctid = ANY (ARRAY({selection} FOR UPDATE SKIP LOCKED)) AND {rule}");
    let delete = |statement: &str| {
        error::spi(Spi::connect_mut(|client| {
            client.update(statement, None, &parameters).map(|deleted| deleted.len() as i64)
        }))
    };
    skipping_held_rows(|| delete(&plain), || delete(&skipping_locked))
}

/// Runs `plain`, the statement a DBA would write, in a subtransaction that
/// gives up at the first lock wait; where it gives up, undoes it and runs
/// `skipping_locked` instead. Rows the application holds are rare among
/// expired ones, and locking every row first (`FOR UPDATE SKIP LOCKED`) costs
/// a second write per row, so only a held row makes cleanup pay for that.
///
/// A deadlock keeps PostgreSQL's error, with a HINT to run again: another
/// statement deleting from the same table crossed this one in the ON DELETE
/// SET NULL trigger, such as AuthFort's own cleanup, which takes none of the
/// extension's locks. (The procedure runs such a batch again by itself.)
fn skipping_held_rows<T>(plain: impl FnOnce() -> T, skipping_locked: impl FnOnce() -> T) -> T {
    PgTryBuilder::new(AssertUnwindSafe(|| {
        lock_waits::bounded(|| lock_waits::forbidden(plain).unwrap_or_else(skipping_locked))
    }))
    .catch_when(PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED, |caught| match caught {
        CaughtError::PostgresError(report) => {
            let hint = "Retry the call: another statement was deleting from the same table at the same time \
                        (AuthFort's own cleanup_expired_sessions(), for example); schedule the two apart.";
            match report.detail() {
                Some(detail) => error::raise_with_detail(
                    PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED,
                    report.message(),
                    detail,
                    hint,
                ),
                None => error::raise(PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED, report.message(), hint),
            }
        }
        other => other.rethrow(),
    })
    .execute()
}

/// What one batch statement did.
struct Picked {
    deleted: i64,
    /// Rows it picked, deleted or not: fewer than its limit means its range
    /// is walked to the end.
    picked: i64,
    /// The last row it picked, in the walk's order: the next batch starts
    /// after it, so a row that survived its DELETE (a trigger that returned
    /// NULL, a rule, row security) is never picked again.
    last_ctid: Option<Tid>,
}

/// Picks at most `limit` rows with `pick`, then deletes those that the rule
/// still selects. `pick` orders by `order` and lists `ctid` and `expiry`.
/// The plain form rechecks the rule against each row's newest version; the
/// `SKIP LOCKED` form locks first and rechecks it just the same.
fn delete_picked(table: &Table, rule: &str, pick: &str, order: &str, parameters: &[DatumWithOid]) -> Picked {
    let only = table.only();
    let statement = |lock: &str| {
        format!(
            "WITH picked AS MATERIALIZED ({pick}{lock}),
             deleted AS (
                 DELETE FROM {only} WHERE ctid = ANY (ARRAY(SELECT ctid FROM picked)) AND {rule} RETURNING 1),
             last AS (SELECT ctid FROM picked ORDER BY {order} DESC LIMIT 1)
             SELECT (SELECT count(*) FROM deleted), (SELECT count(*) FROM picked), (SELECT ctid::text FROM last)"
        )
    };
    let (plain, skipping_locked) = (statement(""), statement(" FOR UPDATE SKIP LOCKED"));
    let execute = |sql: &str| {
        let (deleted, picked, last_ctid) = error::spi(Spi::connect_mut(|client| {
            let row = client.update(sql, Some(1), parameters)?.first();
            Ok::<_, pgrx::spi::SpiError>((
                row.get::<i64>(1)?.unwrap_or(0),
                row.get::<i64>(2)?.unwrap_or(0),
                row.get::<String>(3)?,
            ))
        }));
        Picked { deleted, picked, last_ctid: last_ctid.as_deref().and_then(Tid::parse) }
    };
    skipping_held_rows(|| execute(&plain), || execute(&skipping_locked))
}

/// Deletes at most `limit` rows of one arm of the rule, oldest first, from
/// the rows after (`from`, `after`) in (time column, ctid) order, through the
/// arm's index: `max_rows`, which must stop at exactly its count. Callers
/// have checked `require_writable` and taken the deleter lock first.
///
/// Rows that share the last batch's expiry are neither skipped nor read
/// twice: ctid breaks the tie.
fn run_arm(
    table: &Table,
    options: &Options,
    arm: Arm,
    cutoff: TimestampWithTimeZone,
    from: TimestampWithTimeZone,
    after: Tid,
    limit: i64,
) -> Picked {
    let time = table.target.time_column;
    let pick = format!(
        "SELECT ctid, {time} AS expiry FROM {} WHERE {}
            AND {time} >= $2 AND ({time} > $2 OR ctid > $3::text::tid)
          ORDER BY {time}, ctid LIMIT {limit}",
        table.only(),
        arm.filter_sql(table.target),
    );
    let parameters: Vec<DatumWithOid> =
        vec![cutoff.into(), from.into(), DatumWithOid::from(after.to_string().as_str())];
    delete_picked(table, &rule_sql(table.target, options), &pick, "expiry, ctid", &parameters)
}

/// Deletes at most `limit` rows of one arm that all expire at `at`, after
/// ctid `after`, in ctid order: a batch's way through more rows sharing one
/// expiry than a batch holds, which no expiry range can split.
fn run_tie(
    table: &Table,
    options: &Options,
    arm: Arm,
    cutoff: TimestampWithTimeZone,
    at: TimestampWithTimeZone,
    after: Tid,
    limit: i64,
) -> Picked {
    let time = table.target.time_column;
    let pick = format!(
        "SELECT ctid, {time} AS expiry FROM {} WHERE {} AND {time} = $2 AND ctid > $3::text::tid
          ORDER BY ctid LIMIT {limit}",
        table.only(),
        arm.filter_sql(table.target),
    );
    let parameters: Vec<DatumWithOid> = vec![cutoff.into(), at.into(), DatumWithOid::from(after.to_string().as_str())];
    delete_picked(table, &rule_sql(table.target, options), &pick, "ctid", &parameters)
}

/// Where a batch starts within an arm: at an expiry, or just after it.
#[derive(Clone, Copy)]
struct RangeStart {
    expiry: TimestampWithTimeZone,
    inclusive: bool,
}

/// A batch's expiry range within an arm, from its start up to `end`.
struct ExpiryRange {
    /// The expiry of the row just past the batch's `limit` rows: the range
    /// ends before it, so rows sharing it all fall to the next batch. None:
    /// `limit` rows or fewer remain, and the range runs to the arm's end.
    end: Option<TimestampWithTimeZone>,
    /// The rows in the range when it was measured.
    rows: i64,
}

impl RangeStart {
    /// `time >= $2`, or `time > $2`.
    fn condition(self, time: &str) -> String {
        format!("{time} {} $2", if self.inclusive { ">=" } else { ">" })
    }
}

/// Measures the expiry range of a batch of at most `limit` rows of `arm`
/// from `start`, reading the arm's index alone: the batch then deletes by
/// expiry, not by row address, so it costs what the same DELETE typed by
/// hand costs. One index-only scan of `limit` + 1 entries finds the end,
/// the expiry of the last of them. Rows sharing the end fall to the next
/// batch, so where another row shares it a second scan counts the rows
/// before it; where none does (AuthFort's expiries are microseconds apart)
/// they are the `limit` rows, and one index probe that says so spares a
/// second read of the range, heap pages included where they are not
/// all-visible. Each statement is planned only when it runs, and streamed
/// through aggregates, where a materialised list of the entries cost twice
/// as much. `cutoff` is the rule's, computed once for the batch.
fn expiry_range(table: &Table, arm: Arm, cutoff: TimestampWithTimeZone, start: RangeStart, limit: i64) -> ExpiryRange {
    let time = table.target.time_column;
    let arm_rows = format!(
        "FROM {only} WHERE {filter} AND {from}",
        only = table.only(),
        filter = arm.filter_sql(table.target),
        from = start.condition(time),
    );
    let limit = limit.min(i64::MAX - 1);
    let (ahead, last) = query::two::<i64, TimestampWithTimeZone>(
        &format!(
            "SELECT count(*), max(expiry) FROM (SELECT {time} AS expiry {arm_rows} ORDER BY {time} LIMIT $3) AS first_rows"
        ),
        &[cutoff.into(), start.expiry.into(), (limit + 1).into()],
    );
    let ahead = ahead.unwrap_or(0);
    let Some(end) = last.filter(|_| ahead > limit) else {
        return ExpiryRange { end: None, rows: ahead };
    };
    let parameters = [cutoff.into(), start.expiry.into(), end.into()];
    let sharing_end = query::one::<i64>(
        &format!("SELECT count(*) FROM (SELECT {arm_rows} AND {time} = $3 LIMIT 2) AS sharing"),
        &parameters,
    );
    let rows = if sharing_end == Some(1) {
        limit
    } else {
        query::one::<i64>(&format!("SELECT count(*) {arm_rows} AND {time} < $3"), &parameters).unwrap_or(0)
    };
    ExpiryRange { end: Some(end), rows }
}

/// Deletes the rows of `arm` that the rule selects in the expiry range from
/// `start` to `end` (open when None): `DELETE ... WHERE <rule> AND expires_at
/// >= start AND expires_at < end`, read through the arm's index. Callers
/// have checked `require_writable` and taken the deleter lock first.
fn run_range(
    table: &Table,
    options: &Options,
    arm: Arm,
    cutoff: TimestampWithTimeZone,
    start: RangeStart,
    end: Option<TimestampWithTimeZone>,
) -> i64 {
    let time = table.target.time_column;
    let mut range = format!("{} AND {}", arm.filter_sql(table.target), start.condition(time));
    let mut parameters: Vec<DatumWithOid> = vec![cutoff.into(), start.expiry.into()];
    if let Some(end) = end {
        range.push_str(&format!(" AND {time} < $3"));
        parameters.push(end.into());
    }
    delete_in(table, options, &range, &parameters)
}

/// Deletes the rows the rule selects among those `range` narrows to, in one
/// `DELETE ... WHERE <range> AND <rule>`: what a DBA would type for a batch.
/// `range` reads `$2` on; `$1` is the cutoff.
fn delete_in(table: &Table, options: &Options, range: &str, parameters: &[DatumWithOid]) -> i64 {
    let range = format!("{range} AND {}", rule_sql(table.target, options));
    let only = table.only();
    let plain = format!("DELETE FROM {only} WHERE {range}");
    let skipping_locked = format!(
        "DELETE FROM {only} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {only} WHERE {range} FOR UPDATE SKIP LOCKED))
            AND {range}"
    );
    let delete = |statement: &str| {
        error::spi(Spi::connect_mut(|client| {
            client.update(statement, None, parameters).map(|deleted| deleted.len() as i64)
        }))
    };
    skipping_held_rows(|| delete(&plain), || delete(&skipping_locked))
}

/// The heap blocks of one batch without the time indexes: from ctid `from`
/// (within a block, after a batch that filled up there) to block `end`.
#[derive(Clone, Copy)]
struct BlockRange {
    from: Tid,
    end: u32,
}

impl BlockRange {
    /// `$2` and `$3`, after the cutoff: a TID range scan reads just these
    /// blocks, so a batch costs the same however large the table is.
    const CONDITION: &'static str = "ctid >= $2::text::tid AND ctid < $3::text::tid";

    fn parameters(self, cutoff: TimestampWithTimeZone) -> Vec<DatumWithOid<'static>> {
        let end = Tid { block: self.end, offset: 0 };
        vec![cutoff.into(), self.from.to_string().into(), end.to_string().into()]
    }
}

/// How many rows the rule selects in `blocks`, counting no further than
/// `limit` + 1: whether one range DELETE keeps the batch within `limit`.
fn rows_in_blocks(
    table: &Table,
    options: &Options,
    cutoff: TimestampWithTimeZone,
    blocks: BlockRange,
    limit: i64,
) -> i64 {
    let mut parameters = blocks.parameters(cutoff);
    parameters.push(limit.saturating_add(1).into());
    query::one::<i64>(
        &format!(
            "SELECT count(*) FROM (SELECT FROM {} WHERE {} AND {} LIMIT $4) AS ahead",
            table.only(),
            rule_sql(table.target, options),
            BlockRange::CONDITION,
        ),
        &parameters,
    )
    .unwrap_or(0)
}

/// Deletes the rows the rule selects in `blocks`, as one range DELETE.
/// Callers have counted them (`rows_in_blocks`), checked `require_writable`
/// and taken the deleter lock first.
fn run_blocks(table: &Table, options: &Options, cutoff: TimestampWithTimeZone, blocks: BlockRange) -> i64 {
    delete_in(table, options, BlockRange::CONDITION, &blocks.parameters(cutoff))
}

/// Deletes the first `limit` rows the rule selects in `blocks`, in ctid
/// order: the rare batch whose blocks hold more rows than the table's row
/// estimate said. Callers have checked `require_writable` and taken the
/// deleter lock first.
fn run_first_in_blocks(
    table: &Table,
    options: &Options,
    cutoff: TimestampWithTimeZone,
    blocks: BlockRange,
    limit: i64,
) -> Picked {
    let rule = rule_sql(table.target, options);
    let pick = format!(
        "SELECT ctid, {time} AS expiry FROM {only} WHERE {rule} AND {range} ORDER BY ctid LIMIT {limit}",
        time = table.target.time_column,
        only = table.only(),
        range = BlockRange::CONDITION,
    );
    delete_picked(table, &rule, &pick, "ctid", &blocks.parameters(cutoff))
}

/// Two statements deleting from a self-referencing table can deadlock inside
/// PostgreSQL's ON DELETE SET NULL trigger: each trigger's UPDATE waits for a
/// row the other statement holds. So one deleter per table at a time, until
/// the end of its transaction; another gets false, says so, and deletes
/// nothing. Tables without a self-reference need no such lock.
fn take_deleter_lock(table: &Table) -> bool {
    if table.target.self_reference.is_none() {
        return true;
    }
    let taken = advisory_lock::try_lock_for_transaction(advisory_lock::key(&format!(
        "authfort_cleanup:delete:{}",
        table.qualified_name
    )));
    if !taken {
        notice!(
            "authfort_cleanup: another statement is deleting from {}; this one deleted nothing",
            table.qualified_name
        );
    }
    taken
}

/// Deletes what a one-shot call asks for: the whole backlog, or `max_rows`.
///
/// The whole backlog is one DELETE of the rule, and the planner reads it
/// through the time indexes when they exist and it pays. `max_rows` takes the
/// oldest rows first: through the time indexes, arm by arm, reading only the
/// rows it deletes; without them, by sorting every deletable row.
pub fn clean(table: &Table, options: &Options) -> i64 {
    if options.dry_run {
        require_privileges(table, READING_PRIVILEGES);
    } else {
        require_writable(table);
        guard_quadratic(table, GuardMode::Raise);
    }
    match options.max_rows {
        Some(max_rows) if !options.dry_run && indexes::rule_indexed(table, options) => {
            // Checked first, so a grace that puts the cutoff after now() is
            // refused even where another deleter makes this call give way.
            let cutoff = cutoff(options.grace);
            if !take_deleter_lock(table) {
                return 0;
            }
            let mut deleted = 0;
            for arm in rule::arms(table.target, options) {
                if deleted >= max_rows {
                    break;
                }
                let from = arm.start(cutoff);
                deleted += run_arm(table, options, arm, cutoff, from, Tid::BEFORE_ALL, max_rows - deleted).deleted;
            }
            deleted
        }
        _ => run(table, options),
    }
}

/// Earliest expiry among the rows the rule selects, for previews.
pub fn oldest_deletable(table: &Table, options: &Options) -> Option<TimestampWithTimeZone> {
    let cutoff = cutoff(options.grace);
    query::one::<TimestampWithTimeZone>(
        &format!(
            "SELECT min({time}) FROM {table} WHERE {rule}",
            time = table.target.time_column,
            table = table.only(),
            rule = rule_sql(table.target, options)
        ),
        &[cutoff.into()],
    )
}

/// A table's size and backlog under AuthFort's rule, from one scan.
pub struct Census {
    pub rows: i64,
    pub deletable: i64,
    /// How long ago the oldest expired row with a finite expiry expired.
    pub oldest_expired_age: Option<Interval>,
    /// With indexes and TOAST.
    pub bytes: i64,
}

pub fn census(table: &Table) -> Census {
    require_privileges(table, READING_PRIVILEGES);
    let rule = rule_sql(table.target, &Options::default());
    let time = table.target.time_column;
    let counts = error::spi(Spi::connect(|client| {
        let row = client
            .select(
                &format!(
                    // An expiry of -infinity is expired, but has no age to
                    // subtract: the age is that of the oldest finite one.
                    "SELECT count(*), count(*) FILTER (WHERE {rule}),
                            now() - min({time}) FILTER (WHERE {time} < now() AND isfinite({time})),
                            pg_total_relation_size($2)
                       FROM {}",
                    table.only()
                ),
                Some(1),
                &[cutoff(Interval::from_micros(0)).into(), table.oid.into()],
            )?
            .first();
        Ok::<_, pgrx::spi::SpiError>((
            row.get::<i64>(1)?,
            row.get::<i64>(2)?,
            row.get::<Interval>(3)?,
            row.get::<i64>(4)?,
        ))
    }));
    let (rows, deletable, oldest_expired_age, bytes) = counts;
    Census { rows: rows.unwrap_or(0), deletable: deletable.unwrap_or(0), oldest_expired_age, bytes: bytes.unwrap_or(0) }
}

/// Rows in the table, counting no further than `ceiling`, so asking costs at
/// most that many rows however large the table is.
fn rows_up_to(table: &Table, ceiling: i64) -> i64 {
    query::one::<i64>(
        &format!("SELECT count(*) FROM (SELECT FROM {} LIMIT $1) AS sample", table.only()),
        &[ceiling.into()],
    )
    .unwrap_or(0)
}

pub enum GuardMode {
    /// A one-shot call: refuse with an error whose HINT is the fix.
    Raise,
    /// Report whether deleting would be quadratic, without raising.
    Check,
}

/// Keeps session cleanup off PostgreSQL's quadratic path. Returns the missing
/// index when the table is too large to delete from without it.
pub fn guard_quadratic(table: &Table, mode: GuardMode) -> Option<IndexSpec> {
    let missing = indexes::missing_self_reference_index(table)?;
    let threshold = settings::quadratic_guard_rows();
    let rows = rows_up_to(table, threshold.saturating_add(1));
    let column = table.target.self_reference.unwrap_or_default();
    let problem = format!(
        "{} has no index on {column}, so each deleted row costs PostgreSQL one scan of the whole table",
        table.qualified_name
    );
    let hint = format!("{} (or SELECT authfort_cleanup_create_indexes();)", missing.concurrently);
    if rows <= threshold {
        error::warn(problem, hint);
        return None;
    }
    if let GuardMode::Raise = mode {
        error::raise_with_detail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            problem,
            format!(
                "The table holds more than authfort_cleanup.quadratic_guard_rows ({threshold}) rows; \
                 deleting its expired sessions could take hours."
            ),
            hint,
        );
    }
    Some(missing)
}
