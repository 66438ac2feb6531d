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
use pgrx::PgList;

use crate::catalog;
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

/// Whether a valid btree index among `indexes`, the table's, leads with the
/// time column and has exactly the arm's predicate (none for `Expired`,
/// `revoked` for `Revoked`). The `Revoked` arm also needs the time column to
/// be NOT NULL: it walks the index from the cutoff up, and a NULL would sit
/// outside that range.
fn arm_indexed(table: &Table, indexes: &[IndexFacts], arm: Arm) -> bool {
    let Some(time_column) = catalog::column_number(table.oid, table.target.time_column) else {
        return false;
    };
    let predicate = arm.index_predicate(table.target);
    if predicate.is_some() && !catalog::not_null(table.oid, time_column) {
        return false;
    }
    indexes.iter().any(|index| {
        index.first_column == time_column
            && index.access_method == pg_sys::BTREE_AM_OID
            && index.usable
            && !index.has_expressions
            && index.predicate.as_deref() == predicate
    })
}

/// True when every arm of the rule has its index, so cleanup can read only
/// the rows it deletes.
pub fn rule_indexed(table: &Table, options: &Options) -> bool {
    let indexes = indexes_of(table);
    rule::arms(table.target, options).into_iter().all(|arm| arm_indexed(table, &indexes, arm))
}

/// The time indexes the rule lacks.
pub fn missing_time_indexes(table: &Table, options: &Options) -> Vec<(Arm, IndexSpec)> {
    let indexes = indexes_of(table);
    rule::arms(table.target, options)
        .into_iter()
        .filter(|arm| !arm_indexed(table, &indexes, *arm))
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
    let column_number = catalog::column_number(table.oid, column);
    let searchable = |index: &IndexFacts| {
        Some(index.first_column) == column_number
            && [pg_sys::BTREE_AM_OID, pg_sys::HASH_AM_OID].contains(&index.access_method)
            && index.usable
            && index.predicate.is_none()
    };
    let indexed = indexes_of(table).iter().any(searchable);
    (!indexed).then(|| IndexSpec::new(table, column, None))
}

/// What cleanup asks of one index of a table.
struct IndexFacts {
    /// The attribute number of its first key column; 0 for an expression.
    first_column: i16,
    access_method: pg_sys::Oid,
    /// Valid and ready: built, and kept up to date by every write.
    usable: bool,
    has_expressions: bool,
    /// Its WHERE, as `pg_get_expr()` writes it.
    predicate: Option<String>,
}

/// The table's indexes, read from the relation and catalog caches.
fn indexes_of(table: &Table) -> Vec<IndexFacts> {
    // SAFETY: the table is opened under ACCESS SHARE, the lock any SELECT
    // takes, held to the end of the transaction as PostgreSQL does; the
    // index list is a copy in the current memory context.
    let index_oids: Vec<pg_sys::Oid> = unsafe {
        let relation = pg_sys::relation_open(table.oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let list = PgList::<pg_sys::Oid>::from_pg(pg_sys::RelationGetIndexList(relation));
        let oids = list.iter_oid().collect();
        pg_sys::relation_close(relation, pg_sys::NoLock as pg_sys::LOCKMODE);
        oids
    };
    index_oids.into_iter().filter_map(index_facts).collect()
}

fn index_facts(index: pg_sys::Oid) -> Option<IndexFacts> {
    let access_method = catalog::class(index)?.access_method;
    // SAFETY: the pg_index tuple is the cache's, pinned while read; its fixed
    // part (up to indkey, whose first indnatts entries exist) is read through
    // GETSTRUCT, and the rest through SysCacheGetAttr.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::INDEXRELID as i32, pg_sys::Datum::from(index));
        catalog::read_cached(tuple, |tuple| {
            let form = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_index>(tuple);
            let key_count = usize::try_from(form.indnatts).unwrap_or(0);
            let mut predicate_is_null = false;
            let predicate_tree = pg_sys::SysCacheGetAttr(
                pg_sys::SysCacheIdentifier::INDEXRELID as i32,
                tuple,
                pg_sys::Anum_pg_index_indpred as pg_sys::AttrNumber,
                &mut predicate_is_null,
            );
            IndexFacts {
                first_column: form.indkey.values.as_slice(key_count).first().copied().unwrap_or(0),
                access_method,
                usable: form.indisvalid && form.indisready,
                has_expressions: !pg_sys::heap_attisnull(
                    tuple,
                    pg_sys::Anum_pg_index_indexprs as i32,
                    std::ptr::null_mut(),
                ),
                predicate: (!predicate_is_null)
                    .then(|| {
                        pgrx::direct_function_call::<String>(
                            pg_sys::pg_get_expr,
                            &[Some(predicate_tree), Some(pg_sys::Datum::from(form.indrelid))],
                        )
                    })
                    .flatten(),
            }
        })
    }
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
