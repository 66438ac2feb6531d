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
use crate::lock_waits;
use crate::query;
use crate::settings;
use crate::targets::Target;

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
///
/// The DELETE is first the plain one a DBA would write, in a subtransaction
/// that gives up at the first lock wait. Rows the application holds are rare
/// among expired ones, and locking every row first (`FOR UPDATE SKIP
/// LOCKED`) costs a second write per row. Only when a row is held is that
/// work undone and done again the way that skips it.
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
    if table.target.self_reference.is_some() && !take_deleter_lock(table) {
        notice!(
            "authfort_cleanup: another statement is deleting from {}; this one deleted nothing",
            table.qualified_name
        );
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
    lock_waits::bounded(|| lock_waits::forbidden(|| delete(&plain)).unwrap_or_else(|| delete(&skipping_locked)))
}

/// Two statements deleting from a self-referencing table can deadlock inside
/// PostgreSQL's ON DELETE SET NULL trigger: each trigger's UPDATE waits for a
/// row the other statement holds. So one deleter per table at a time, until
/// the end of its transaction; another gets false and deletes nothing.
fn take_deleter_lock(table: &Table) -> bool {
    query::one::<bool>(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('authfort_cleanup:delete:' || $1, 0))",
        &[table.qualified_name.as_str().into()],
    )
    .unwrap_or(false)
}

/// Deletes what a one-shot call asks for: the whole backlog, or `max_rows`.
pub fn clean(table: &Table, options: &Options) -> i64 {
    if !options.dry_run {
        require_writable(table);
        guard_quadratic(table, GuardMode::Raise);
    }
    run(table, options, &Scope::Everything, options.max_rows)
}

/// One batch of the batched procedure: at most `batch_size` rows from the
/// heap blocks starting at `first_block`. Returns the rows deleted and the
/// block to start the next batch at, or None once the table is walked.
pub fn clean_batch(table: &Table, options: &Options, first_block: i64, batch_size: i64) -> (i64, Option<i64>) {
    require_writable(table);
    let (block_count, rows_per_block) = query::two::<i64, f64>(
        "SELECT pg_relation_size(oid) / current_setting('block_size')::bigint,
                CASE WHEN relpages > 0 AND reltuples > 0 THEN reltuples / relpages ELSE 0 END
           FROM pg_class WHERE oid = $1",
        &[table.oid.into()],
    );
    let block_count = block_count.unwrap_or(0);
    if first_block >= block_count {
        return (0, None);
    }
    // A never-analysed table has no row estimate; AuthFort's rows are a few
    // hundred bytes, so 20 a block errs towards smaller batches.
    let rows_per_block = rows_per_block.filter(|rows| *rows > 0.0).unwrap_or(20.0);
    let span = ((batch_size as f64 / rows_per_block).floor() as i64).max(1);
    let end = first_block.saturating_add(span);
    let deleted = run(table, options, &Scope::Blocks { first: first_block, end }, Some(batch_size));
    // A full batch may have left rows in its blocks: walk them again.
    let next = if deleted >= batch_size { first_block } else { end };
    (deleted, (next < block_count).then_some(next))
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

/// An index that PostgreSQL's foreign-key trigger needs to stay linear.
pub struct MissingIndex {
    pub index_name: String,
    /// `CREATE INDEX CONCURRENTLY ...`: what an operator runs by hand.
    pub concurrently: String,
    /// `CREATE INDEX ...`: what `authfort_cleanup_create_indexes()` runs.
    pub in_transaction: String,
}

pub fn missing_index(table: &Table) -> Option<MissingIndex> {
    let column = table.target.self_reference?;
    let indexed = query::one::<bool>(
        "SELECT EXISTS (
            SELECT FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = $1 AND a.attname = $2 AND i.indisvalid AND i.indpred IS NULL)",
        &[table.oid.into(), column.into()],
    )
    .unwrap_or(false);
    if indexed {
        return None;
    }
    let index_name = format!("ix_{}_{column}", table.target.table);
    let (quoted_index, on) = (pgrx::spi::quote_identifier(&index_name), format!("{} ({column})", table.qualified_name));
    Some(MissingIndex {
        concurrently: format!("CREATE INDEX CONCURRENTLY IF NOT EXISTS {quoted_index} ON {on};"),
        in_transaction: format!("CREATE INDEX IF NOT EXISTS {quoted_index} ON {on};"),
        index_name,
    })
}

pub enum GuardMode {
    /// A one-shot call: refuse with an error whose HINT is the fix.
    Raise,
    /// Report whether deleting would be quadratic, without raising.
    Check,
}

/// Keeps session cleanup off PostgreSQL's quadratic path. Returns the missing
/// index when the table is too large to delete from without it.
pub fn guard_quadratic(table: &Table, mode: GuardMode) -> Option<MissingIndex> {
    let missing = missing_index(table)?;
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

/// Builds a missing index inside the current transaction. CREATE INDEX holds
/// a SHARE lock (writes wait) while it builds, so the wait for that lock is
/// bounded like every other lock cleanup takes.
pub fn create_index(missing: &MissingIndex) {
    notice!("authfort_cleanup: {}", missing.in_transaction);
    lock_waits::bounded(|| error::spi(Spi::run(&missing.in_transaction)));
}

/// The engine against an independent oracle: random rows near now(), NULL
/// expiries, revoked and current flags and rotation chains; the set the
/// engine deletes must be exactly the set the oracle picks.
#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {

    use super::*;
    use crate::targets::{self, KEYS, SESSIONS, TOKENS};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    #[derive(Debug, Clone)]
    struct Row {
        /// Seconds from now(); None only where the column allows NULL.
        expires_in: Option<i64>,
        revoked: bool,
        is_current: bool,
        /// Index of the row that replaced this one.
        replaced_by: Option<usize>,
    }

    #[derive(Debug, Clone)]
    enum Mode {
        Everything,
        MaxRows(i64),
        Batches(i64),
    }

    #[derive(Debug, Clone)]
    struct Case {
        rows: Vec<Row>,
        grace_seconds: i64,
        keep_revoked_until_expired: bool,
        mode: Mode,
    }

    /// Expiries cluster on the boundaries that matter: now() itself and
    /// now() minus each grace.
    fn expiry() -> impl Strategy<Value = i64> {
        prop_oneof![Just(0i64), Just(-3600), Just(-3599), Just(-3601), -200_000i64..200_000,]
    }

    fn case() -> impl Strategy<Value = Case> {
        let row = (
            proptest::option::weighted(0.85, expiry()),
            any::<bool>(),
            proptest::bool::weighted(0.1),
            any::<prop::sample::Index>(),
            any::<bool>(),
        );
        (
            prop::collection::vec(row, 0..60),
            prop_oneof![Just(0i64), Just(3600), Just(86_400)],
            any::<bool>(),
            prop_oneof![Just(Mode::Everything), (1i64..25).prop_map(Mode::MaxRows), (1i64..8).prop_map(Mode::Batches)],
        )
            .prop_map(|(raw, grace_seconds, keep_revoked_until_expired, mode)| {
                let count = raw.len();
                let rows = raw
                    .into_iter()
                    .enumerate()
                    .map(|(position, (expires_in, revoked, is_current, target, chained))| Row {
                        expires_in,
                        revoked,
                        is_current,
                        replaced_by: (chained && count > 1)
                            .then(|| target.index(count))
                            .filter(|other| *other != position),
                    })
                    .collect();
                Case { rows, grace_seconds, keep_revoked_until_expired, mode }
            })
    }

    /// The rule, written independently of `rule_sql`.
    fn oracle_deletes(target: &Target, row: &Row, case: &Case) -> bool {
        let expired = matches!(row.expires_in, Some(seconds) if seconds < -case.grace_seconds);
        match target.name {
            "keys" => expired && !row.is_current,
            "tokens" => expired,
            _ => expired || (row.revoked && !case.keep_revoked_until_expired),
        }
    }

    fn id(position: usize) -> String {
        format!("00000000-0000-0000-0000-{position:012}")
    }

    fn create_tables() {
        Spi::run(
            "CREATE SCHEMA prop;
             CREATE TABLE prop.authfort_signing_keys (id uuid PRIMARY KEY, expires_at timestamptz, is_current boolean NOT NULL);
             CREATE TABLE prop.authfort_verification_tokens (id uuid PRIMARY KEY, expires_at timestamptz NOT NULL);
             CREATE TABLE prop.authfort_refresh_tokens (id uuid PRIMARY KEY, expires_at timestamptz NOT NULL,
                 revoked boolean NOT NULL, replaced_by uuid REFERENCES prop.authfort_refresh_tokens ON DELETE SET NULL);
             CREATE INDEX ON prop.authfort_refresh_tokens (replaced_by);
             SET LOCAL authfort_cleanup.schema = 'prop';",
        )
        .expect("create the property-test tables");
    }

    fn load(target: &Target, case: &Case) {
        Spi::run(&format!("TRUNCATE prop.{}", target.table)).expect("truncate");
        for (position, row) in case.rows.iter().enumerate() {
            // Only keys may have a NULL expiry in AuthFort's schema; tokens
            // and sessions get a far-future expiry instead.
            let expires_at = match (row.expires_in, target.name) {
                (Some(seconds), _) => format!("now() + make_interval(secs => {seconds})"),
                (None, "keys") => "NULL".into(),
                (None, _) => "now() + interval '1 year'".into(),
            };
            let statement = match target.name {
                "keys" => format!(
                    "INSERT INTO prop.authfort_signing_keys VALUES ('{}', {expires_at}, {})",
                    id(position),
                    row.is_current
                ),
                "tokens" => {
                    format!("INSERT INTO prop.authfort_verification_tokens VALUES ('{}', {expires_at})", id(position))
                }
                _ => format!(
                    "INSERT INTO prop.authfort_refresh_tokens VALUES ('{}', {expires_at}, {}, NULL)",
                    id(position),
                    row.revoked
                ),
            };
            Spi::run(&statement).expect("insert a generated row");
        }
        if target.self_reference.is_some() {
            for (position, row) in case.rows.iter().enumerate() {
                if let Some(replacement) = row.replaced_by {
                    Spi::run(&format!(
                        "UPDATE prop.authfort_refresh_tokens SET replaced_by = '{}' WHERE id = '{}'",
                        id(replacement),
                        id(position)
                    ))
                    .expect("link a rotation chain");
                }
            }
        }
    }

    fn survivors(target: &Target) -> Vec<(String, Option<String>)> {
        let replaced_by = if target.self_reference.is_some() { "replaced_by::text" } else { "NULL::text" };
        Spi::connect(|client| {
            client
                .select(&format!("SELECT id::text, {replaced_by} FROM prop.{} ORDER BY id", target.table), None, &[])?
                .map(|row| Ok((row.get::<String>(1)?.unwrap_or_default(), row.get::<String>(2)?)))
                .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
        })
        .expect("read the survivors")
    }

    fn run_engine(target: &'static Target, case: &Case) -> i64 {
        let options = Options {
            grace: Interval::from_seconds(case.grace_seconds as f64),
            max_rows: match case.mode {
                Mode::MaxRows(rows) => Some(rows),
                _ => None,
            },
            dry_run: false,
            keep_revoked_until_expired: case.keep_revoked_until_expired,
        };
        let table = resolve(target);
        match case.mode {
            Mode::Batches(size) => {
                let (mut deleted, mut next) = (0, Some(0));
                while let Some(first_block) = next {
                    let (batch, following) = clean_batch(&table, &options, first_block, size);
                    assert!(batch <= size, "a batch deleted {batch} rows, more than its size {size}");
                    deleted += batch;
                    next = following;
                }
                deleted
            }
            _ => clean(&table, &options),
        }
    }

    fn check(target: &'static Target, case: &Case) -> Result<(), TestCaseError> {
        load(target, case);
        let expected: Vec<usize> =
            (0..case.rows.len()).filter(|position| oracle_deletes(target, &case.rows[*position], case)).collect();
        let deleted_count = run_engine(target, case);
        let surviving: std::collections::HashMap<String, Option<String>> = survivors(target).into_iter().collect();
        let deleted: Vec<usize> =
            (0..case.rows.len()).filter(|position| !surviving.contains_key(&id(*position))).collect();
        prop_assert_eq!(deleted_count, deleted.len() as i64);
        match case.mode {
            Mode::MaxRows(limit) => {
                prop_assert_eq!(deleted.len(), expected.len().min(limit as usize));
                prop_assert!(deleted.iter().all(|position| expected.contains(position)));
                let latest_deleted = deleted.iter().filter_map(|p| case.rows[*p].expires_in).max();
                let earliest_kept =
                    expected.iter().filter(|p| !deleted.contains(p)).filter_map(|p| case.rows[*p].expires_in).min();
                if let (Some(latest), Some(earliest)) = (latest_deleted, earliest_kept) {
                    prop_assert!(latest <= earliest, "max_rows must take the oldest expiry first");
                }
            }
            _ => prop_assert_eq!(&deleted, &expected),
        }
        // ON DELETE SET NULL: a survivor that pointed at a deleted row now points nowhere.
        let chained = case.rows.iter().enumerate().filter(|_| target.self_reference.is_some());
        for (position, row) in chained {
            if let (Some(after), Some(replacement)) = (surviving.get(&id(position)), row.replaced_by) {
                let expected_link = surviving.contains_key(&id(replacement)).then(|| id(replacement));
                prop_assert_eq!(after, &expected_link);
            }
        }
        Ok(())
    }

    #[pg_test]
    fn engine_deletes_exactly_what_the_oracle_picks() {
        create_tables();
        let mut runner = TestRunner::new(Config { cases: 100, failure_persistence: None, ..Config::default() });
        for target in targets::ALL {
            let outcome = runner.run(&case(), |case| check(target, &case));
            if let Err(failure) = outcome {
                panic!("{} disagrees with the oracle: {failure}", target.name);
            }
        }
    }

    #[pg_test]
    fn rules_read_as_authfort_wrote_them() {
        let parity = Options::default();
        assert_eq!(rule_sql(&KEYS, &parity), "expires_at < $1 AND NOT is_current");
        assert_eq!(rule_sql(&TOKENS, &parity), "expires_at < $1");
        assert_eq!(rule_sql(&SESSIONS, &parity), "(revoked OR expires_at < $1)");
        let keep = Options { keep_revoked_until_expired: true, ..Options::default() };
        assert_eq!(rule_sql(&SESSIONS, &keep), "expires_at < $1");
    }
}
