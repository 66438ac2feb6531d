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

pub use walk::{clean_batch, invalid_position, Position, Tid};

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

impl Table {
    /// What a statement reads or deletes from: the table alone, never a
    /// child, because a ctid names a row only within one relation.
    pub fn only(&self) -> String {
        format!("ONLY {}", self.qualified_name)
    }
}

/// The target's table when it exists in the schema setting, unchecked.
pub fn try_resolve(target: &'static Target) -> Option<Table> {
    let schema = settings::authfort_schema();
    let (oid, qualified_name) = query::two::<pg_sys::Oid, String>(
        "SELECT c.oid, format('%I.%I', $1::text, $2::text) FROM (VALUES (1)) AS one
           LEFT JOIN pg_namespace n ON n.nspname = $1
           LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = $2 AND c.relkind = 'r'",
        &[schema.as_str().into(), target.table.into()],
    );
    Some(Table { target, oid: oid?, qualified_name: qualified_name.unwrap_or_default() })
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
    refuse_inheritance_children(&qualified_name, oid);
    Table { target, oid, qualified_name }
}

/// A table with inheritance children is refused: AuthFort's own DELETE
/// would reach into the children too, so cleaning the parent alone would not
/// be AuthFort's cleanup, and cleaning the hierarchy would need every child
/// to follow AuthFort's schema. Every statement also reads `ONLY` the table,
/// so a child attached meanwhile is never touched.
fn refuse_inheritance_children(qualified_name: &str, oid: pg_sys::Oid) {
    let children = query::one::<String>(
        "SELECT string_agg(inhrelid::regclass::text, ', ' ORDER BY inhrelid::regclass::text)
           FROM pg_inherits WHERE inhparent = $1",
        &[oid.into()],
    );
    if let Some(children) = children {
        error::raise_with_detail(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{qualified_name} has inheritance children, which authfort_cleanup does not clean"),
            format!("Its children: {children}."),
            format!(
                "Detach them (ALTER TABLE <child> NO INHERIT {qualified_name};) and clean them with a \
                 DELETE of your own; authfort_cleanup then cleans {qualified_name} itself."
            ),
        );
    }
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

/// The read-only HINT of a call that could count instead of deleting.
pub const DRY_RUN_HINT: &str = "Run the cleanup in a read-write transaction, or pass dry_run => true to only count.";

/// Refuses, before anything is locked or written, to write on a standby or in
/// a read-only transaction. `action` says what would have been written
/// ("delete from public.authfort_refresh_tokens"); `read_only_hint` what to
/// do in a read-only transaction.
pub fn refuse_read_only(action: &str, read_only_hint: &str) {
    let (in_recovery, read_only) =
        query::two::<bool, bool>("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')::boolean", &[]);
    if in_recovery == Some(true) {
        error::raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot {action} on a standby server"),
            "Run authfort_cleanup on the primary; the standby receives its deletions through replication.",
        );
    }
    if read_only == Some(true) {
        error::raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot {action} in a read-only transaction"),
            read_only_hint,
        );
    }
}

/// Refuses before anything is locked or deleted: on a standby, in a read-only
/// transaction, or without the privileges the statement needs.
fn require_writable(table: &Table) {
    refuse_read_only(&format!("delete from {}", table.qualified_name), DRY_RUN_HINT);
    require_privileges(table, DELETING_PRIVILEGES);
}

/// What deleting needs. UPDATE is what lets cleanup skip rows the
/// application holds locked (`FOR UPDATE SKIP LOCKED`).
pub const DELETING_PRIVILEGES: &[&str] = &["SELECT", "UPDATE", "DELETE"];

/// Counting and previewing only read.
pub const READING_PRIVILEGES: &[&str] = &["SELECT"];

/// The privileges among `privileges` the current role lacks on `table`,
/// comma-separated, or None.
pub fn missing_privileges(table: &Table, privileges: &[&str]) -> Option<String> {
    query::one::<String>(
        "SELECT string_agg(privilege, ', ' ORDER BY ordinality)
           FROM unnest($2::text[]) WITH ORDINALITY AS p(privilege, ordinality)
          WHERE NOT has_table_privilege($1, privilege)",
        &[table.oid.into(), privileges.to_vec().into()],
    )
}

/// Raises 42501 with the GRANT that fixes it, before PostgreSQL would raise
/// its own error with no HINT halfway through.
pub fn require_privileges(table: &Table, privileges: &[&str]) {
    let Some(missing) = missing_privileges(table, privileges) else {
        return;
    };
    let role = query::one::<String>("SELECT quote_ident(current_user)", &[]).unwrap_or_default();
    let needed = privileges.join(", ");
    let why = if privileges == DELETING_PRIVILEGES {
        " UPDATE is what lets it skip rows the application holds locked."
    } else {
        ""
    };
    error::raise_with_detail(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("permission denied for table {}", table.qualified_name),
        format!("This needs {needed} on it; {role} lacks {missing}.{why}"),
        format!("GRANT {needed} ON TABLE {} TO {role};", table.qualified_name),
    );
}

/// `now() - grace`, checked as the timestamp it is, not as the interval it
/// came from: interval comparison counts a month as 30 days, while
/// `now() - grace` uses calendar months, so `'-1 mon 30 days'` compares as
/// zero yet puts the cutoff a day in the future. A cutoff after now() would
/// delete live rows.
pub fn cutoff(grace: Interval) -> TimestampWithTimeZone {
    let (cutoff, error_text) = query::two::<TimestampWithTimeZone, String>(
        // The outer bounds only keep `now() - grace` from overflowing; the
        // cutoff itself decides.
        "WITH computed AS (
            SELECT CASE WHEN $1 BETWEEN interval '-1000 years' AND interval '1000 years' THEN now() - $1 END AS cutoff)
         SELECT CASE WHEN cutoff <= now() AND cutoff >= now() - interval '100 years' THEN cutoff END,
                CASE WHEN cutoff > now() OR (cutoff IS NULL AND $1 < interval '0')
                     THEN 'It puts the cutoff, now() - grace, after now()'
                     ELSE 'It puts the cutoff, now() - grace, more than 100 years back' END
           FROM computed",
        &[grace.into()],
    );
    match cutoff {
        Some(cutoff) => cutoff,
        None => error::raise_with_detail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "grace must be between 0 and 100 years",
            format!("{}.", error_text.unwrap_or_default()),
            "grace keeps rows that expired less than this long ago, for example grace => '7 days'; \
             give it in one unit, without negative parts.",
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
fn skipping_held_rows<T>(plain: impl FnOnce() -> T, skipping_locked: impl FnOnce() -> T) -> T {
    lock_waits::bounded(|| lock_waits::forbidden(plain).unwrap_or_else(skipping_locked))
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
    last_expiry: Option<TimestampWithTimeZone>,
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
             last AS (SELECT expiry, ctid FROM picked ORDER BY {order} DESC LIMIT 1)
             SELECT (SELECT count(*) FROM deleted), (SELECT count(*) FROM picked),
                    (SELECT expiry FROM last), (SELECT ctid::text FROM last)"
        )
    };
    let (plain, skipping_locked) = (statement(""), statement(" FOR UPDATE SKIP LOCKED"));
    let execute = |sql: &str| {
        let (deleted, picked, last_expiry, last_ctid) = error::spi(Spi::connect_mut(|client| {
            let row = client.update(sql, Some(1), parameters)?.first();
            Ok::<_, pgrx::spi::SpiError>((
                row.get::<i64>(1)?.unwrap_or(0),
                row.get::<i64>(2)?.unwrap_or(0),
                row.get::<TimestampWithTimeZone>(3)?,
                row.get::<String>(4)?,
            ))
        }));
        Picked { deleted, picked, last_expiry, last_ctid: last_ctid.as_deref().and_then(Tid::parse) }
    };
    skipping_held_rows(|| execute(&plain), || execute(&skipping_locked))
}

/// Deletes at most `limit` rows of one arm of the rule, oldest first, from
/// the rows after (`from`, `after`) in (time column, ctid) order, through the
/// arm's index. Callers have checked `require_writable` first.
///
/// Rows that share the last batch's expiry are neither skipped nor read
/// twice: ctid breaks the tie.
fn run_arm(table: &Table, options: &Options, arm: Arm, from: TimestampWithTimeZone, after: Tid, limit: i64) -> Picked {
    if !take_deleter_lock(table) {
        return Picked { deleted: 0, picked: 0, last_expiry: None, last_ctid: None };
    }
    let target = table.target;
    let time = target.time_column;
    let rule = rule_sql(target, options);
    let mut arm_filter = match (arm, target.revoked_column) {
        (Arm::Revoked, Some(revoked)) => revoked.to_string(),
        _ => format!("{time} < $1"),
    };
    if let Some(protected) = target.protected_column {
        arm_filter.push_str(&format!(" AND NOT {protected}"));
    }
    let pick = format!(
        "SELECT ctid, {time} AS expiry FROM {} WHERE {arm_filter}
            AND {time} >= $2 AND ({time} > $2 OR ctid > $3::text::tid)
          ORDER BY {time}, ctid LIMIT {limit}",
        table.only()
    );
    let parameters: Vec<DatumWithOid> =
        vec![cutoff(options.grace).into(), from.into(), DatumWithOid::from(after.to_string().as_str())];
    delete_picked(table, &rule, &pick, "expiry, ctid", &parameters)
}

/// Deletes at most `limit` rows the rule selects among those at or after
/// ctid `from` and before block `end`, in ctid order: a TID range scan, so a
/// batch costs the same however large the table is.
fn run_blocks(table: &Table, options: &Options, from: Tid, end: u32, limit: i64) -> Picked {
    if !take_deleter_lock(table) {
        return Picked { deleted: 0, picked: 0, last_expiry: None, last_ctid: None };
    }
    let rule = rule_sql(table.target, options);
    let pick = format!(
        "SELECT ctid, {time} AS expiry FROM {only} WHERE {rule}
            AND ctid >= $2::text::tid AND ctid < $3::text::tid ORDER BY ctid LIMIT {limit}",
        time = table.target.time_column,
        only = table.only()
    );
    let end = Tid { block: end, offset: 0 }.to_string();
    let parameters: Vec<DatumWithOid> = vec![
        cutoff(options.grace).into(),
        DatumWithOid::from(from.to_string().as_str()),
        DatumWithOid::from(end.as_str()),
    ];
    delete_picked(table, &rule, &pick, "ctid", &parameters)
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
    if options.dry_run {
        require_privileges(table, READING_PRIVILEGES);
    } else {
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
                deleted +=
                    run_arm(table, options, arm, arm_start(options, arm), Tid::BEFORE_ALL, max_rows - deleted).deleted;
            }
            deleted
        }
        _ => run(table, options),
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
