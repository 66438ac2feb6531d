//! A target's table: found under the schema setting, checked against the
//! columns its rule reads, and the checks every call makes before it reads
//! or writes it (a standby, a read-only transaction, missing privileges).

use std::ffi::CString;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

use crate::catalog::{self, Privilege};
use crate::error;
use crate::query;
use crate::settings;
use crate::targets::Target;

/// A target's table, found in the schema setting and checked against the
/// columns the rule reads.
pub struct Table {
    pub target: &'static Target,
    pub oid: pg_sys::Oid,
    /// `schema.table`, each part quoted as an identifier.
    pub qualified_name: String,
}

impl Table {
    fn new(target: &'static Target, oid: pg_sys::Oid) -> Self {
        Table { target, oid, qualified_name: qualified_name(target) }
    }

    /// What a statement reads or deletes from: the table alone, never a
    /// child, because a ctid names a row only within one relation.
    pub fn only(&self) -> String {
        format!("ONLY {}", self.qualified_name)
    }
}

/// The target's table when it exists in the schema setting, unchecked.
pub fn try_resolve(target: &'static Target) -> Option<Table> {
    match find(target) {
        Found::Relation { oid, relkind: RELKIND_TABLE, .. } => Some(Table::new(target, oid)),
        _ => None,
    }
}

pub fn resolve(target: &'static Target) -> Table {
    let (oid, has_subclass) = match find(target) {
        Found::Relation { oid, relkind: RELKIND_TABLE, has_subclass } => (oid, has_subclass),
        Found::Relation { .. } => error::raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{} is not a plain table", qualified_name(target)),
            "authfort_cleanup works on the tables AuthFort's migrations create.",
        ),
        Found::NoSchema(schema) => error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
            format!("schema \"{schema}\" named by authfort_cleanup.schema does not exist"),
            "Set authfort_cleanup.schema to the schema that holds AuthFort's tables.",
        ),
        Found::NoRelation => error::raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation {} does not exist", qualified_name(target)),
            "Run AuthFort's migrations (await auth.migrate()), or set authfort_cleanup.schema \
             to the schema that holds AuthFort's tables.",
        ),
    };
    let table = Table::new(target, oid);
    for column in target.columns {
        let actual_type = catalog::column_number(oid, column.name).map(|number| catalog::column_type(oid, number));
        check_column(&table.qualified_name, column.name, column.sql_type, actual_type);
    }
    // The flag can outlive the last child (VACUUM clears it): the list decides.
    if has_subclass {
        let children = query::one::<String>(
            "SELECT string_agg(inhrelid::regclass::text, ', ' ORDER BY inhrelid::regclass::text)
               FROM pg_inherits WHERE inhparent = $1",
            &[oid.into()],
        );
        if let Some(children) = children {
            refuse_inheritance_children(&table.qualified_name, &children);
        }
    }
    table
}

/// `pg_class.relkind` of a plain table.
const RELKIND_TABLE: u8 = pg_sys::RELKIND_RELATION;

/// What the catalog holds under a target's name in the schema setting.
enum Found {
    NoSchema(String),
    NoRelation,
    Relation { oid: pg_sys::Oid, relkind: u8, has_subclass: bool },
}

/// Looks the target's table up in the backend's catalog caches: a batch
/// resolves its table every time.
fn find(target: &'static Target) -> Found {
    let schema = settings::authfort_schema();
    // A setting holds no NUL; an empty name finds nothing.
    let schema_name = CString::new(schema.as_str()).unwrap_or_default();
    // SAFETY: a lookup by NUL-terminated name in the catalog caches, on the
    // backend's only thread; missing_ok, so an absent schema is InvalidOid,
    // not an error.
    let namespace = unsafe { pg_sys::get_namespace_oid(schema_name.as_ptr(), true) };
    if namespace == pg_sys::InvalidOid {
        return Found::NoSchema(schema);
    }
    let Some(oid) = catalog::relation_in(namespace, target.table) else {
        return Found::NoRelation;
    };
    // A relation dropped meanwhile has no pg_class row any more.
    match catalog::class(oid) {
        Some(class) => Found::Relation { oid, relkind: class.relkind, has_subclass: class.has_subclass },
        None => Found::NoRelation,
    }
}

/// `schema.table`, each part quoted as an identifier.
fn qualified_name(target: &Target) -> String {
    format!("{}.{}", quote_identifier(settings::authfort_schema()), quote_identifier(target.table))
}

/// A table with inheritance children is refused: AuthFort's own DELETE
/// would reach into the children too, so cleaning the parent alone would not
/// be AuthFort's cleanup, and cleaning the hierarchy would need every child
/// to follow AuthFort's schema. Every statement also reads `ONLY` the table,
/// so a child attached meanwhile is never touched.
fn refuse_inheritance_children(qualified_name: &str, children: &str) -> ! {
    error::raise_with_detail(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("{qualified_name} has inheritance children, which authfort_cleanup does not clean"),
        format!("Its children: {children}."),
        format!(
            "Detach them (ALTER TABLE <child> NO INHERIT {qualified_name};) and clean them with a \
             DELETE of your own; authfort_cleanup then cleans {qualified_name} itself."
        ),
    )
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
    // SAFETY: a function and a GUC variable of the backend, called and read
    // on its only thread: what pg_is_in_recovery() and transaction_read_only
    // report, without a statement for each batch.
    let (in_recovery, read_only) = unsafe { (pg_sys::RecoveryInProgress(), pg_sys::XactReadOnly) };
    if in_recovery {
        error::raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot {action} on a standby server"),
            "Run authfort_cleanup on the primary; the standby receives its deletions through replication.",
        );
    }
    if read_only {
        error::raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot {action} in a read-only transaction"),
            read_only_hint,
        );
    }
}

/// Refuses before anything is locked or deleted: on a standby, in a read-only
/// transaction, or without the privileges the statement needs.
pub fn require_writable(table: &Table) {
    refuse_read_only(&format!("delete from {}", table.qualified_name), DRY_RUN_HINT);
    require_privileges(table, DELETING_PRIVILEGES);
}

/// What deleting needs. UPDATE is what lets cleanup skip rows the
/// application holds locked (`FOR UPDATE SKIP LOCKED`).
pub const DELETING_PRIVILEGES: &[Privilege] = &[Privilege::Select, Privilege::Update, Privilege::Delete];

/// Counting and previewing only read.
pub const READING_PRIVILEGES: &[Privilege] = &[Privilege::Select];

/// The privileges among `privileges` the current role lacks on `table`,
/// comma-separated, or None.
pub fn missing_privileges(table: &Table, privileges: &[Privilege]) -> Option<String> {
    let missing = catalog::missing_privileges(table.oid, privileges);
    (!missing.is_empty()).then(|| missing.iter().map(|privilege| privilege.name()).collect::<Vec<_>>().join(", "))
}

/// Raises 42501 with the GRANT that fixes it, before PostgreSQL would raise
/// its own error with no HINT halfway through.
pub fn require_privileges(table: &Table, privileges: &[Privilege]) {
    let Some(missing) = missing_privileges(table, privileges) else {
        return;
    };
    let role = catalog::current_role();
    let needed = privileges.iter().map(|privilege| privilege.name()).collect::<Vec<_>>().join(", ");
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
