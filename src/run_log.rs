//! The run log: one row in `authfort_cleanup_runs` per run, trimmed to
//! `authfort_cleanup.run_log_retention`, and a `NOTIFY authfort_cleanup`
//! whose JSON payload lets an application keep its own audit trail.

use chrono::{DateTime, Utc};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use serde::Serialize;

use crate::catalog::{self, Privilege};
use crate::error;
use crate::query;
use crate::settings;

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub keys: i64,
    pub tokens: i64,
    pub sessions: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Ok,
    Error,
    Skipped,
}

impl RunStatus {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ok" => Some(RunStatus::Ok),
            "error" => Some(RunStatus::Error),
            "skipped" => Some(RunStatus::Skipped),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Error => "error",
            RunStatus::Skipped => "skipped",
        }
    }
}

/// The NOTIFY payload, one JSON object per run.
#[derive(Serialize, Debug, PartialEq)]
pub struct Announcement<'a> {
    pub keys: i64,
    pub tokens: i64,
    pub sessions: i64,
    pub status: &'a str,
    pub duration_ms: i64,
    pub started_at: DateTime<Utc>,
}

impl Announcement<'_> {
    pub fn to_json(&self) -> String {
        match serde_json::to_string(self) {
            Ok(json) => json,
            Err(problem) => error::raise(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("authfort_cleanup: cannot serialise the run announcement: {problem}"),
                "This is a bug in authfort_cleanup; please report it.",
            ),
        }
    }
}

/// The run log's table and its id sequence, in the extension's schema.
pub struct LogTable {
    /// The extension's schema, where the log is.
    pub namespace: pg_sys::Oid,
    oid: pg_sys::Oid,
    qualified_name: String,
    sequence: Option<(pg_sys::Oid, String)>,
}

impl LogTable {
    const NAME: &'static str = "authfort_cleanup_runs";
    const SEQUENCE: &'static str = "authfort_cleanup_runs_id_seq";

    /// The log of the extension whose function `fcinfo` calls.
    pub fn of_call(fcinfo: pg_sys::FunctionCallInfo) -> Self {
        let namespace = catalog::calling_namespace(fcinfo);
        let qualified_name = catalog::qualified_name(namespace, Self::NAME);
        let Some(oid) = catalog::relation_in(namespace, Self::NAME) else {
            error::raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("relation {qualified_name} does not exist"),
                "The extension is incomplete: DROP EXTENSION authfort_cleanup; then CREATE EXTENSION authfort_cleanup;",
            )
        };
        let sequence = catalog::relation_in(namespace, Self::SEQUENCE)
            .map(|sequence| (sequence, catalog::qualified_name(namespace, Self::SEQUENCE)));
        LogTable { namespace, oid, qualified_name, sequence }
    }
}

/// Refuses a start that is infinite or in the future: the log's duration,
/// and the NOTIFY's duration_ms, would be meaningless or negative.
pub fn require_past(started_at: TimestampWithTimeZone) {
    let sensible =
        query::one::<bool>("SELECT isfinite($1) AND $1 <= clock_timestamp()", &[started_at.into()]).unwrap_or(false);
    if !sensible {
        error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "started_at must be a finite time no later than now",
            "Pass the clock_timestamp() taken when the run began.",
        );
    }
}

/// What writing a log row needs: trimming deletes old rows, and the id comes
/// from the table's sequence. Returns the GRANTs the current role lacks.
pub fn missing_grants(log: &LogTable, role: &str) -> Vec<String> {
    let mut grants = Vec::new();
    let table_privileges = [Privilege::Select, Privilege::Insert, Privilege::Delete];
    if !catalog::missing_privileges(log.oid, &table_privileges).is_empty() {
        grants.push(format!("GRANT SELECT, INSERT, DELETE ON TABLE {} TO {role};", log.qualified_name));
    }
    if let Some((sequence, sequence_name)) = &log.sequence {
        if !catalog::missing_privileges(*sequence, &[Privilege::Usage]).is_empty() {
            grants.push(format!("GRANT USAGE ON SEQUENCE {sequence_name} TO {role};"));
        }
    }
    grants
}

pub fn record(
    log: &LogTable,
    started_at: TimestampWithTimeZone,
    counts: &Counts,
    status: RunStatus,
    error_text: Option<&str>,
    notes: Option<&str>,
) {
    let table = &log.qualified_name;
    let retention_seconds = settings::run_log_retention_seconds();
    if retention_seconds > 0 {
        error::spi(Spi::run_with_args(
            &format!("DELETE FROM {table} WHERE finished_at < now() - make_interval(secs => $1)"),
            &[f64::from(retention_seconds).into()],
        ));
    }
    let (started_micros, duration_ms) = error::spi(Spi::get_two_with_args::<i64, i64>(
        &format!(
            "INSERT INTO {table} (started_at, keys, tokens, sessions, status, error, notes, run_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, current_user)
             RETURNING (extract(epoch FROM started_at) * 1000000)::bigint,
                       (extract(epoch FROM finished_at - started_at) * 1000)::bigint"
        ),
        &[
            started_at.into(),
            counts.keys.into(),
            counts.tokens.into(),
            counts.sessions.into(),
            status.as_str().into(),
            error_text.into(),
            notes.into(),
        ],
    ));
    let announcement = Announcement {
        keys: counts.keys,
        tokens: counts.tokens,
        sessions: counts.sessions,
        status: status.as_str(),
        duration_ms: duration_ms.unwrap_or(0),
        started_at: started_micros.and_then(DateTime::from_timestamp_micros).unwrap_or_default(),
    };
    error::spi(Spi::run_with_args("SELECT pg_notify('authfort_cleanup', $1)", &[announcement.to_json().into()]));
}

/// Failed runs in the last seven days and the last one's error, if any.
pub fn recent_failures(log: &LogTable) -> Option<(i64, String)> {
    let (failures, last_error) = query::two::<i64, String>(
        &format!(
            "SELECT count(*), (array_agg(error ORDER BY finished_at DESC))[1]
           FROM {} WHERE status = 'error' AND finished_at > now() - interval '7 days'",
            log.qualified_name
        ),
        &[],
    );
    let failures = failures.unwrap_or(0);
    (failures > 0).then(|| (failures, last_error.unwrap_or_default()))
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;

    #[pg_test]
    fn announcement_is_the_documented_json() {
        let announcement = Announcement {
            keys: 1,
            tokens: 2,
            sessions: 3,
            status: "ok",
            duration_ms: 4,
            started_at: DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap_or_default(),
        };
        assert_eq!(
            announcement.to_json(),
            r#"{"keys":1,"tokens":2,"sessions":3,"status":"ok","duration_ms":4,"started_at":"2023-11-14T22:13:20Z"}"#
        );
    }
}
