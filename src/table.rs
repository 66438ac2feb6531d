//! A target's table: found under the schema setting, checked against the
//! columns its rule reads, and the checks every call makes before it reads
//! or writes it (a standby, a read-only transaction, missing privileges).

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

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
    let (schema_exists, oid, relkind, qualified_name, column_types, children) = error::spi(Spi::connect(|client| {
        let row = client
            .select(
                // The type of each of the rule's columns, NULL where missing.
                "SELECT n.oid IS NOT NULL, c.oid, c.relkind::text, format('%I.%I', $1::text, $2::text),
                        ARRAY(SELECT (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                                       WHERE a.attrelid = c.oid AND a.attname = wanted.name
                                         AND a.attnum > 0 AND NOT a.attisdropped)
                                FROM unnest($3::text[]) WITH ORDINALITY AS wanted(name, position)
                               ORDER BY wanted.position),
                        (SELECT string_agg(inhrelid::regclass::text, ', ' ORDER BY inhrelid::regclass::text)
                           FROM pg_inherits WHERE inhparent = c.oid)
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
            row.get::<String>(6)?,
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
    if let Some(children) = children {
        refuse_inheritance_children(&qualified_name, &children);
    }
    Table { target, oid, qualified_name }
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
