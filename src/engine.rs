//! The deletion engine: finds a target's table under the schema setting,
//! checks it, and deletes (or counts) the rows its rule selects.
//!
//! Rows an application transaction holds locked are left for the next run
//! instead of making cleanup (and everything queued behind it) wait: a DELETE
//! that meets one is undone and redone as `DELETE ... WHERE ctid = ANY(ARRAY(
//! SELECT ctid ... FOR UPDATE SKIP LOCKED))`. Only ROW EXCLUSIVE is ever
//! taken on AuthFort's tables.
//! One wait remains: the foreign-key trigger's UPDATE of a row that still
//! references a deleted session waits if the application holds that row;
//! `authfort_cleanup.lock_timeout` bounds it.

use pgrx::datum::{DatumWithOid, Interval, TimestampWithTimeZone};
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::error;
use crate::indexes::{self, Arm, IndexSpec};
use crate::lock_waits;
use crate::query;
use crate::settings;
use crate::targets::Target;

#[cfg(any(test, feature = "pg_test"))]
mod property_test;
mod walk;

pub use walk::{clean_batch, invalid_position, Position};

/// How a call narrows AuthFort's rule. `Options::default()` is AuthFort's rule
/// exactly.
pub struct Options {
    /// Only rows that expired more than this long ago.
    pub grace: Interval,
    /// At most this many rows, oldest expiry first.
    pub max_rows: Option<i64>,
    pub dry_run: bool,
    /// A revoked session waits until it has also expired (plus grace), so
    /// AuthFort's theft detection keeps working for it until then.
    pub keep_revoked_until_expired: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { grace: Interval::from_micros(0), max_rows: None, dry_run: false, keep_revoked_until_expired: false }
    }
}

/// A target's table, found in the schema setting and checked against the
/// columns the rule reads.
pub struct Table {
    pub target: &'static Target,
    pub oid: pg_sys::Oid,
    /// `schema.table`, each part quoted as an identifier.
    pub qualified_name: String,
}

/// The part of a table one statement looks at.
enum Scope {
    Everything,
    /// Heap blocks `[first, end)`: a TID range scan, so a batch costs the same
    /// however large the table is.
    Blocks {
        first: i64,
        end: i64,
    },
}

pub fn resolve(target: &'static Target) -> Table {
    let schema = settings::authfort_schema();
    let column_names: Vec<&str> = target.columns.iter().map(|column| column.name).collect();
    let (schema_exists, oid, relkind, qualified_name, column_types) = error::spi(Spi::connect(|client| {
        let row = client
            .select(
                // The type of each of the rule's columns, NULL where missing.
                "SELECT n.oid IS NOT NULL, c.oid, c.relkind::text, format('%I.%I', $1::text, $2::text),
                        ARRAY(SELECT (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                                       WHERE a.attrelid = c.oid AND a.attname = wanted.name
                                         AND a.attnum > 0 AND NOT a.attisdropped)
                                FROM unnest($3::text[]) WITH ORDINALITY AS wanted(name, position)
                               ORDER BY wanted.position)
                   FROM (VALUES (1)) AS one
                   LEFT JOIN pg_namespace n ON n.nspname = $1
                   LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = $2",
                Some(1),
                &[schema.as_str().into(), target.table.into(), column_names.into()],
            )?
            .first();
        Ok::<_, pgrx::spi::SpiError>((
            row.get::<bool>(1)?.unwrap_or(false),
            row.get::<pg_sys::Oid>(2)?,
            row.get::<String>(3)?,
            row.get::<String>(4)?.unwrap_or_default(),
            row.get::<Vec<Option<String>>>(5)?.unwrap_or_default(),
        ))
    }));
    if !schema_exists {
        error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
            format!("schema \"{schema}\" named by authfort_cleanup.schema does not exist"),
            "Set authfort_cleanup.schema to the schema that holds AuthFort's tables.",
        );
    }
    let Some(oid) = oid else {
        error::raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation {qualified_name} does not exist"),
            "Run AuthFort's migrations (await auth.migrate()), or set authfort_cleanup.schema \
             to the schema that holds AuthFort's tables.",
        );
    };
    if relkind.as_deref() != Some("r") {
        error::raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{qualified_name} is not a plain table"),
            "authfort_cleanup works on the tables AuthFort's migrations create.",
        );
    }
    for (column, actual_type) in target.columns.iter().zip(column_types) {
        check_column(&qualified_name, column.name, column.sql_type, actual_type);
    }
    Table { target, oid, qualified_name }
}

fn check_column(qualified_name: &str, column: &str, expected_type: &str, actual_type: Option<String>) {
    match actual_type {
        None => error::raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("column \"{column}\" of relation {qualified_name} does not exist"),
            "The table does not have AuthFort 0.0.31's schema: run AuthFort's migrations.",
        ),
        Some(actual) if actual != expected_type => error::raise(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!("column \"{column}\" of relation {qualified_name} is of type {actual}, expected {expected_type}"),
            "The table does not have AuthFort 0.0.31's schema: run AuthFort's migrations.",
        ),
        Some(_) => {}
    }
}

/// Refuses, before anything is locked or written, to delete on a standby or
/// in a read-only transaction. `what` names what would have been deleted.
pub fn refuse_read_only(what: &str) {
    let (in_recovery, read_only) =
        query::two::<bool, bool>("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')::boolean", &[]);
    if in_recovery == Some(true) {
        error::raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot delete from {what} on a standby server"),
            "Run authfort_cleanup on the primary; the standby receives its deletions through replication.",
        );
    }
    if read_only == Some(true) {
        error::raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot delete from {what} in a read-only transaction"),
            "Run the cleanup in a read-write transaction, or pass dry_run => true to only count.",
        );
    }
}

/// Refuses before anything is locked or deleted: on a standby, in a read-only
/// transaction, or without the privileges the statement needs.
fn require_writable(table: &Table) {
    refuse_read_only(&table.qualified_name);
    let missing = query::one::<String>(
        "SELECT string_agg(privilege, ', ' ORDER BY ordinality)
           FROM unnest(ARRAY['SELECT', 'UPDATE', 'DELETE']) WITH ORDINALITY AS p(privilege, ordinality)
          WHERE NOT has_table_privilege($1, privilege)",
        &[table.oid.into()],
    );
    if let Some(missing) = missing {
        let role = query::one::<String>("SELECT quote_ident(current_user)", &[]).unwrap_or_default();
        error::raise_with_detail(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for table {}", table.qualified_name),
            format!(
                "Cleanup needs SELECT, UPDATE and DELETE on it; {role} lacks {missing}. \
                     UPDATE is what lets it skip rows the application holds locked."
            ),
            format!("GRANT SELECT, UPDATE, DELETE ON TABLE {} TO {role};", table.qualified_name),
        );
    }
}

/// `now() - grace`, after checking that grace is sensible.
fn cutoff(grace: Interval) -> TimestampWithTimeZone {
    let cutoff = query::one::<TimestampWithTimeZone>(
        "SELECT CASE WHEN $1 BETWEEN interval '0' AND interval '100 years' THEN now() - $1 END",
        &[grace.into()],
    );
    match cutoff {
        Some(cutoff) => cutoff,
        None => error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "grace must be between 0 and 100 years",
            "grace keeps rows that expired less than this long ago, for example grace => '7 days'.",
        ),
    }
}

/// The WHERE clause that picks a target's deletable rows; `$1` is the cutoff.
/// Column names come from `targets`, never from users.
fn rule_sql(target: &Target, options: &Options) -> String {
    let mut rule = format!("{} < $1", target.time_column);
    if let Some(revoked) = target.revoked_column {
        if !options.keep_revoked_until_expired {
            rule = format!("({revoked} OR {rule})");
        }
    }
    if let Some(protected) = target.protected_column {
        rule = format!("{rule} AND NOT {protected}");
    }
    rule
}

/// `rule`, narrowed to the scope. Returns the SQL and its arguments after
/// `$1`.
fn filter_sql(rule: &str, scope: &Scope) -> (String, Vec<String>) {
    match scope {
        Scope::Everything => (rule.to_owned(), Vec::new()),
        Scope::Blocks { first, end } => (
            format!("{rule} AND ctid >= $2::text::tid AND ctid < $3::text::tid"),
            vec![format!("({first},0)"), format!("({end},0)")],
        ),
    }
}

/// The rows a statement takes: those `filter` passes, and for `max_rows` the
/// oldest first.
fn selection_sql(table: &Table, filter: &str, options: &Options, scope: &Scope, limit: Option<i64>) -> String {
    let mut sql = format!("SELECT ctid FROM {} WHERE {filter}", table.qualified_name);
    // max_rows takes the oldest first. A batch's limit only caps its size (its
    // blocks are walked again if it was reached), and a count is the same in
    // any order: neither sorts.
    if limit.is_some() && matches!(scope, Scope::Everything) && !options.dry_run {
        sql.push_str(&format!(" ORDER BY {}", table.target.time_column));
    }
    if let Some(limit) = limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    sql
}

/// Deletes (or, in a dry run, counts) what `options` selects within `scope`.
/// Callers that delete have checked `require_writable` first.
fn run(table: &Table, options: &Options, scope: &Scope, limit: Option<i64>) -> i64 {
    let cutoff = cutoff(options.grace);
    let rule = rule_sql(table.target, options);
    let (filter, arguments) = filter_sql(&rule, scope);
    let selection = selection_sql(table, &filter, options, scope, limit);
    let mut parameters: Vec<DatumWithOid> = vec![cutoff.into()];
    parameters.extend(arguments.iter().map(|argument| DatumWithOid::from(argument.as_str())));
    if options.dry_run {
        let count = query::one::<i64>(&format!("SELECT count(*) FROM ({selection}) AS deletable"), &parameters);
        return count.unwrap_or(0);
    }
    if !take_deleter_lock(table) {
        return 0;
    }
    let table_name = &table.qualified_name;
    let plain = match limit {
        None => format!("DELETE FROM {table_name} WHERE {filter}"),
        // The rule again: a row updated since it was picked is deleted only
        // if its new version still matches, as in a plain DELETE.
        Some(_) => format!("DELETE FROM {table_name} WHERE ctid = ANY (ARRAY({selection})) AND {rule}"),
    };
    let skipping_locked =
        format!("DELETE FROM {table_name} WHERE ctid = ANY (ARRAY({selection} FOR UPDATE SKIP LOCKED))");
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
fn skipping_held_rows<T>(plain: impl FnOnce() -> T, skipping_locked: impl FnOnce() -> T) -> T {
    lock_waits::bounded(|| lock_waits::forbidden(plain).unwrap_or_else(skipping_locked))
}

/// What one statement over an arm did.
struct ArmBatch {
    deleted: i64,
    /// Rows it picked: fewer than its limit means the arm is walked to its end.
    picked: i64,
    /// The latest expiry among the rows it picked: where the next one starts.
    last: Option<TimestampWithTimeZone>,
}

/// Deletes at most `limit` rows of one arm of the rule, oldest first, from
/// the rows whose time column is at or after `from`, through the arm's index.
/// Callers have checked `require_writable` first.
///
/// Starting at `from` itself, not after it, keeps rows that share the last
/// batch's expiry: the only rows read twice are the ones at that one instant
/// already deleted, whose index entries the first read marked dead.
fn run_arm(table: &Table, options: &Options, arm: Arm, from: TimestampWithTimeZone, limit: i64) -> ArmBatch {
    let nothing = ArmBatch { deleted: 0, picked: 0, last: None };
    if !take_deleter_lock(table) {
        return nothing;
    }
    let target = table.target;
    let (table_name, time) = (&table.qualified_name, target.time_column);
    let rule = rule_sql(target, options);
    let mut arm_filter = match (arm, target.revoked_column) {
        (Arm::Revoked, Some(revoked)) => format!("{revoked} AND {time} >= $2"),
        _ => format!("{time} >= $2 AND {time} < $1"),
    };
    if let Some(protected) = target.protected_column {
        arm_filter.push_str(&format!(" AND NOT {protected}"));
    }
    let statement = |lock: &str, recheck: &str| {
        format!(
            "WITH picked AS MATERIALIZED (
                 SELECT ctid, {time} AS expiry FROM {table_name} WHERE {arm_filter}
                  ORDER BY {time} LIMIT {limit}{lock}),
             deleted AS (
                 DELETE FROM {table_name} WHERE ctid = ANY (ARRAY(SELECT ctid FROM picked)){recheck} RETURNING 1)
             SELECT (SELECT count(*) FROM deleted), (SELECT count(*) FROM picked), (SELECT max(expiry) FROM picked)"
        )
    };
    // As in `run`: the plain form rechecks the rule against a row's newest
    // version; FOR UPDATE rechecks the arm's own condition by itself.
    let plain = statement("", &format!(" AND {rule}"));
    let skipping_locked = statement(" FOR UPDATE SKIP LOCKED", "");
    let parameters: Vec<DatumWithOid> = vec![cutoff(options.grace).into(), from.into()];
    let execute = |sql: &str| {
        error::spi(Spi::connect_mut(|client| {
            let row = client.update(sql, Some(1), &parameters)?.first();
            Ok::<_, pgrx::spi::SpiError>(ArmBatch {
                deleted: row.get::<i64>(1)?.unwrap_or(0),
                picked: row.get::<i64>(2)?.unwrap_or(0),
                last: row.get::<TimestampWithTimeZone>(3)?,
            })
        }))
    };
    skipping_held_rows(|| execute(&plain), || execute(&skipping_locked))
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
    let taken = query::one::<bool>(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('authfort_cleanup:delete:' || $1, 0))",
        &[table.qualified_name.as_str().into()],
    )
    .unwrap_or(false);
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
    if !options.dry_run {
        require_writable(table);
        guard_quadratic(table, GuardMode::Raise);
    }
    match options.max_rows {
        Some(max_rows) if !options.dry_run && indexes::rule_indexed(table, options) => {
            let mut deleted = 0;
            for arm in indexes::arms(table, options) {
                if deleted >= max_rows {
                    break;
                }
                deleted += run_arm(table, options, arm, arm_start(options, arm), max_rows - deleted).deleted;
            }
            deleted
        }
        _ => run(table, options, &Scope::Everything, options.max_rows),
    }
}

/// Where the walk of an arm begins: the expired rows from the oldest, the
/// revoked ones from the cutoff (those before it are expired too, and the
/// expired arm took them).
fn arm_start(options: &Options, arm: Arm) -> TimestampWithTimeZone {
    match arm {
        Arm::Expired => TimestampWithTimeZone::negative_infinity(),
        Arm::Revoked => cutoff(options.grace),
    }
}

/// Earliest expiry among the rows the rule selects, for previews.
pub fn oldest_deletable(table: &Table, options: &Options) -> Option<TimestampWithTimeZone> {
    let cutoff = cutoff(options.grace);
    query::one::<TimestampWithTimeZone>(
        &format!(
            "SELECT min({time}) FROM {table} WHERE {rule}",
            time = table.target.time_column,
            table = table.qualified_name,
            rule = rule_sql(table.target, options)
        ),
        &[cutoff.into()],
    )
}

/// A table's size and backlog under AuthFort's rule, from one scan.
pub struct Census {
    pub rows: i64,
    pub deletable: i64,
    /// How long ago the oldest expired row expired.
    pub oldest_expired_age: Option<Interval>,
    /// With indexes and TOAST.
    pub bytes: i64,
}

pub fn census(table: &Table) -> Census {
    let rule = rule_sql(table.target, &Options::default());
    let time = table.target.time_column;
    let counts = error::spi(Spi::connect(|client| {
        let row = client
            .select(
                &format!(
                    "SELECT count(*), count(*) FILTER (WHERE {rule}),
                            now() - min({time}) FILTER (WHERE {time} < now()), pg_total_relation_size($2)
                       FROM {}",
                    table.qualified_name
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
        &format!("SELECT count(*) FROM (SELECT FROM {} LIMIT $1) AS sample", table.qualified_name),
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
