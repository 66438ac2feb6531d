//! The extension's settings (GUCs). Every one can be set per session, per
//! role or per database (`ALTER DATABASE app SET authfort_cleanup.schema = 'auth'`),
//! which is how a pg_cron job, running in a fresh session, picks them up.

use std::ffi::CString;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys::errcodes::PgSqlErrorCode;

use crate::error;

static SCHEMA: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"public"));
static QUADRATIC_GUARD_ROWS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
static CREATE_MISSING_INDEXES: GucSetting<bool> = GucSetting::<bool>::new(false);
static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5_000);
static RUN_LOG_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(90 * 24 * 60 * 60);

pub fn register() {
    GucRegistry::define_string_guc(
        c"authfort_cleanup.schema",
        c"Schema that holds AuthFort's tables.",
        c"The cleanup functions look for authfort_signing_keys, authfort_verification_tokens \
          and authfort_refresh_tokens in this schema. The value is a schema name, never SQL.",
        &SCHEMA,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"authfort_cleanup.quadratic_guard_rows",
        c"Sessions table size above which cleanup refuses to run without an index on replaced_by.",
        c"Without that index PostgreSQL scans the whole sessions table once for every deleted \
          row. Above this many rows the functions raise an error and the batched procedure \
          skips sessions, both naming the CREATE INDEX that fixes it.",
        &QUADRATIC_GUARD_ROWS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"authfort_cleanup.create_missing_indexes",
        c"Lets the batched procedure create the missing index on replaced_by itself.",
        c"CREATE INDEX holds a SHARE lock on authfort_refresh_tokens (writes wait) while it builds.",
        &CREATE_MISSING_INDEXES,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"authfort_cleanup.lock_timeout",
        c"Longest wait for a table or row lock during cleanup (0 waits forever).",
        c"A cleanup that cannot get its lock in time fails with SQLSTATE 55P03 and deletes \
          nothing, instead of queueing the application behind it.",
        &LOCK_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"authfort_cleanup.run_log_retention",
        c"How long rows stay in authfort_cleanup_runs (0 keeps them forever).",
        c"Each run deletes log rows older than this.",
        &RUN_LOG_RETENTION_S,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
}

/// The schema that holds AuthFort's tables, exactly as the setting spells it.
pub fn authfort_schema() -> String {
    let schema = SCHEMA.get().map(|value| value.to_string_lossy().into_owned()).unwrap_or_default();
    if schema.is_empty() {
        error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "authfort_cleanup.schema is empty",
            "Set it to the schema that holds AuthFort's tables, for example: \
             SET authfort_cleanup.schema = 'public';",
        );
    }
    schema
}

pub fn quadratic_guard_rows() -> i64 {
    i64::from(QUADRATIC_GUARD_ROWS.get())
}

pub fn create_missing_indexes() -> bool {
    CREATE_MISSING_INDEXES.get()
}

pub fn lock_timeout_ms() -> i32 {
    LOCK_TIMEOUT_MS.get()
}

pub fn run_log_retention_seconds() -> i32 {
    RUN_LOG_RETENTION_S.get()
}
