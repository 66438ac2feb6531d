//! The indexes cleanup leans on, found in the catalog and spelled out as the
//! statements that create them.
//!
//! - The index on a self-reference (sessions' `replaced_by`): without it
//!   PostgreSQL's ON DELETE SET NULL trigger scans the whole table once per
//!   deleted row, so cleanup is quadratic. It is the default fix.
//! - The time indexes: one on the time column, and for a rule that deletes
//!   revoked rows before they expire, a partial one on the time column
//!   `WHERE revoked`. With them a run reads the rows it deletes instead of
//!   the whole table. Opt-in: each is one more index write per refresh.

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::error;
use crate::lock_waits;
use crate::query;
use crate::rule::{self, Arm, Options};
use crate::table::Table;

/// An index cleanup wants, and the two ways to create it.
pub struct IndexSpec {
    pub index_name: String,
    /// `CREATE INDEX CONCURRENTLY ...`: what an operator runs by hand.
    pub concurrently: String,
    /// `CREATE INDEX ...`: what `authfort_cleanup_create_indexes()` runs.
    pub in_transaction: String,
}

impl IndexSpec {
    /// An index on `column` of `table`, only over rows where `predicate`
    /// holds when there is one. Names come from `targets`, never from users.
    fn new(table: &Table, column: &str, predicate: Option<&str>) -> Self {
        let index_name = match predicate {
            None => format!("ix_{}_{column}", table.target.table),
            Some(predicate) => format!("ix_{}_{column}_{predicate}", table.target.table),
        };
        let quoted_index = pgrx::spi::quote_identifier(&index_name);
        let mut on = format!("{} ({column})", table.qualified_name);
        if let Some(predicate) = predicate {
            on.push_str(&format!(" WHERE {predicate}"));
        }
        IndexSpec {
            concurrently: format!("CREATE INDEX CONCURRENTLY IF NOT EXISTS {quoted_index} ON {on};"),
            in_transaction: format!("CREATE INDEX IF NOT EXISTS {quoted_index} ON {on};"),
            index_name,
        }
    }
}

/// The index an arm is walked through.
pub fn arm_index(table: &Table, arm: Arm) -> IndexSpec {
    IndexSpec::new(table, table.target.time_column, arm.index_predicate(table.target))
}

/// Whether a valid btree index leads with the time column and has exactly the
/// arm's predicate (none for `Expired`, `revoked` for `Revoked`). The
/// `Revoked` arm also needs the time column to be NOT NULL: it walks the
/// index from the cutoff up, and a NULL would sit outside that range.
fn arm_indexed(table: &Table, arm: Arm) -> bool {
    let predicate = arm.index_predicate(table.target);
    query::one::<bool>(
        "SELECT EXISTS (
            SELECT FROM pg_index i
              JOIN pg_class index_class ON index_class.oid = i.indexrelid
              JOIN pg_am am ON am.oid = index_class.relam
              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = $1 AND a.attname = $2 AND am.amname = 'btree'
               AND i.indisvalid AND i.indisready AND i.indexprs IS NULL
               AND (($3::text IS NULL AND i.indpred IS NULL)
                    OR ($3::text IS NOT NULL AND a.attnotnull AND pg_get_expr(i.indpred, i.indrelid) = $3::text)))",
        &[table.oid.into(), table.target.time_column.into(), predicate.into()],
    )
    .unwrap_or(false)
}

/// True when every arm of the rule has its index, so cleanup can read only
/// the rows it deletes.
pub fn rule_indexed(table: &Table, options: &Options) -> bool {
    rule::arms(table.target, options).into_iter().all(|arm| arm_indexed(table, arm))
}

/// The time indexes the rule lacks.
pub fn missing_time_indexes(table: &Table, options: &Options) -> Vec<(Arm, IndexSpec)> {
    rule::arms(table.target, options)
        .into_iter()
        .filter(|arm| !arm_indexed(table, *arm))
        .map(|arm| (arm, arm_index(table, arm)))
        .collect()
}

/// The index on the self-reference, if the target has one and it is missing.
///
/// Only an index that PostgreSQL's ON DELETE SET NULL lookup
/// (`WHERE replaced_by = $1`) can search counts: a valid, non-partial btree
/// or hash index whose first column is the reference. A BRIN index, or one
/// where the column comes second, leaves each deleted row a scan of the
/// table.
pub fn missing_self_reference_index(table: &Table) -> Option<IndexSpec> {
    let column = table.target.self_reference?;
    let indexed = query::one::<bool>(
        "SELECT EXISTS (
            SELECT FROM pg_index i
              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
              JOIN pg_class index_class ON index_class.oid = i.indexrelid
              JOIN pg_am am ON am.oid = index_class.relam
             WHERE i.indrelid = $1 AND a.attname = $2 AND am.amname IN ('btree', 'hash')
               AND i.indisvalid AND i.indisready AND i.indpred IS NULL)",
        &[table.oid.into(), column.into()],
    )
    .unwrap_or(false);
    (!indexed).then(|| IndexSpec::new(table, column, None))
}

/// Only a table's owner (or a member of its owning role) can index it:
/// refuses with the statement for the owner to run, before PostgreSQL's
/// "must be owner", which has no HINT.
pub fn require_owner(table: &Table) {
    let (owns, owner) = query::two::<bool, String>(
        "SELECT pg_has_role(current_user, relowner, 'USAGE'), quote_ident(pg_get_userbyid(relowner))
           FROM pg_class WHERE oid = $1",
        &[table.oid.into()],
    );
    if owns != Some(true) {
        error::raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be owner of table {} to create its indexes", table.qualified_name),
            format!(
                "Run authfort_cleanup_create_indexes() as {}, the table's owner (or a member of that role).",
                owner.unwrap_or_default()
            ),
        );
    }
}

/// Builds an index inside the current transaction. CREATE INDEX holds a
/// SHARE lock (writes wait) while it builds, so the wait for that lock is
/// bounded like every other lock cleanup takes.
pub fn create(table: &Table, index: &IndexSpec) {
    require_owner(table);
    notice!("authfort_cleanup: {}", index.in_transaction);
    lock_waits::bounded(|| error::spi(Spi::run(&index.in_transaction)));
}
