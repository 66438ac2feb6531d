//! `authfort_cleanup_check()`: what stands between this database and a
//! cleanup that stays fast and actually runs. Each finding carries one
//! executable statement that fixes it, where one exists.

use crate::engine::{self, Options};
use crate::query;
use crate::run_log;
use crate::targets;

/// More deletable rows than this in one target is a backlog worth a warning:
/// the schedule is missing, failing, or too rare.
const BACKLOG_ROWS: i64 = 100_000;

pub struct Finding {
    pub level: &'static str,
    pub target: Option<&'static str>,
    pub problem: String,
    pub fix: Option<String>,
}

pub fn findings() -> Vec<Finding> {
    let mut findings = Vec::new();
    for target in targets::ALL {
        let table = engine::resolve(target);
        if let Some(missing) = engine::missing_index(&table) {
            findings.push(Finding {
                level: "warning",
                target: Some(target.name),
                problem: format!(
                    "{} has no index on {}: deleting N rows scans the table N times",
                    table.qualified_name,
                    target.self_reference.unwrap_or_default()
                ),
                fix: Some(missing.concurrently),
            });
        }
        let backlog =
            engine::clean(&table, &Options { dry_run: true, max_rows: Some(BACKLOG_ROWS + 1), ..Options::default() });
        if backlog > BACKLOG_ROWS {
            findings.push(Finding {
                level: "warning",
                target: Some(target.name),
                problem: format!("more than {BACKLOG_ROWS} rows of {} are waiting to be deleted", table.qualified_name),
                fix: Some("CALL authfort_cleanup_run();".into()),
            });
        }
    }
    if let Some(problem) = schedule_problem() {
        findings.push(Finding {
            level: "info",
            target: None,
            problem,
            fix: Some("SELECT authfort_cleanup_schedule();".into()),
        });
    }
    if let Some((failures, last_error)) = run_log::recent_failures() {
        findings.push(Finding {
            level: "warning",
            target: None,
            problem: format!("{failures} failed runs in the last 7 days; the last said: {last_error}"),
            fix: None,
        });
    }
    findings
}

/// Why no scheduled run will happen from this database, if none will.
fn schedule_problem() -> Option<String> {
    let has_pg_cron =
        query::one::<bool>("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron')", &[]).unwrap_or(false);
    if !has_pg_cron {
        return Some("pg_cron is not installed in this database, so nothing schedules the cleanup".into());
    }
    let scheduled = query::one::<bool>(
        "SELECT EXISTS (SELECT FROM cron.job WHERE active AND database = current_database()
                          AND command LIKE '%authfort_cleanup%')",
        &[],
    )
    .unwrap_or(false);
    (!scheduled).then(|| "no active pg_cron job runs authfort_cleanup in this database".into())
}
