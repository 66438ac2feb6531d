//! `authfort_cleanup_check()`: what stands between this database and a
//! cleanup that stays fast and actually runs. Each finding carries one
//! executable statement that fixes it, where one exists.

use crate::engine;
use crate::indexes;
use crate::query;
use crate::rule::{Arm, Options};
use crate::run_log::{self, LogTable};
use crate::space;
use crate::statistics;
use crate::table::{self, Table};
use crate::targets;

/// More deletable rows than this in one target is a backlog worth a warning:
/// the schedule is missing, failing, or too rare.
const BACKLOG_ROWS: i64 = 100_000;

/// The time indexes pay for their writes once a whole-table read would read
/// at least this many rows for each one it deletes...
const READS_PER_DELETE: f64 = 10.0;
/// ...on a table at least this large. Below it, reading it all is cheap.
const INDEXED_CLEANUP_MIN_ROWS: f64 = 100_000.0;

/// Free space worth a rewrite: at least this share of a table's size, its
/// indexes included (a table in steady state keeps far less: what one
/// night frees, the next day's rows fill)...
const RECLAIMABLE_SHARE: f64 = 0.5;
/// ...and at least this much.
const RECLAIMABLE_MIN_BYTES: i64 = 64 * 1024 * 1024;

pub struct Finding {
    pub level: &'static str,
    pub target: Option<&'static str>,
    pub problem: String,
    pub fix: Option<String>,
}

pub fn findings(log: &LogTable) -> Vec<Finding> {
    let mut findings = Vec::new();
    for target in targets::ALL {
        let table = table::resolve(target);
        table::require_privileges(&table, table::READING_PRIVILEGES);
        findings.extend(time_index_findings(&table));
        if let Some(missing) = indexes::missing_self_reference_index(&table) {
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
        findings.extend(space_finding(&table));
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
    if let Some((failures, last_error)) = run_log::recent_failures(log) {
        findings.push(Finding {
            level: "warning",
            target: None,
            problem: format!("{failures} failed runs in the last 7 days; the last said: {last_error}"),
            fix: None,
        });
    }
    findings
}

/// The rules a target can be cleaned with, as users choose them.
fn rules(table: &Table) -> Vec<(&'static str, Options)> {
    let mut rules = vec![("AuthFort's rule", Options::default())];
    if table.target.revoked_column.is_some() {
        rules.push(("keep_revoked_until_expired", Options { keep_revoked_until_expired: true, ..Options::default() }));
    }
    rules
}

/// A time index missing for a rule whose cleanup, by the statistics, reads
/// far more rows than it deletes: one finding per index, naming the rules
/// it serves and what it costs.
fn time_index_findings(table: &Table) -> Vec<Finding> {
    let paying: Vec<(&str, Options, f64, f64)> = rules(table)
        .into_iter()
        .filter_map(|(name, options)| {
            let estimate = statistics::estimate(table, &options)?;
            let pays = estimate.rows >= INDEXED_CLEANUP_MIN_ROWS && estimate.deletable_share * READS_PER_DELETE <= 1.0;
            pays.then_some((name, options, estimate.rows, estimate.deletable_share))
        })
        .collect();
    let mut findings: Vec<Finding> = Vec::new();
    for (name, options, rows, share) in &paying {
        for (arm, index) in indexes::missing_time_indexes(table, options) {
            if let Some(existing) =
                findings.iter_mut().find(|finding| finding.fix.as_ref() == Some(&index.concurrently))
            {
                existing.problem.push_str(&format!("; with {name}, about {:.1}%", share * 100.0));
                continue;
            }
            let target = table.target;
            let cost = match arm {
                Arm::Expired => format!("one more index write per {}", target.written_by),
                Arm::Revoked => "one more index write per revocation".to_string(),
            };
            let serves = match arm {
                Arm::Expired => format!("an index on {}", target.time_column),
                Arm::Revoked => format!(
                    "with revoked rows deleted before they expire, also a partial index on {} WHERE {}",
                    target.time_column,
                    target.revoked_column.unwrap_or_default()
                ),
            };
            findings.push(Finding {
                level: "info",
                target: Some(target.name),
                problem: format!(
                    "cleanup reads all of {} (about {rows:.0} rows) to delete a few of them; {serves} lets it \
                     read only the rows it deletes, for {cost}. Deletable now, by the statistics: \
                     with {name}, about {:.1}%",
                    table.qualified_name,
                    share * 100.0
                ),
                fix: Some(index.concurrently),
            });
        }
    }
    findings
}

/// A table that holds far more free space than rows, as a first cleanup of
/// a large backlog leaves it: how to give the space back, online with
/// pg_repack where it is installed, else with VACUUM FULL and what that costs.
fn space_finding(table: &Table) -> Option<Finding> {
    let space = space::estimate(table)?;
    let free = space.free_bytes();
    if free < RECLAIMABLE_MIN_BYTES || (free as f64) < RECLAIMABLE_SHARE * space.total_bytes as f64 {
        return None;
    }
    let live = space::pretty(space.live_bytes);
    let (how, fix) = if extension_installed("pg_repack") {
        let database = query::one::<String>("SELECT current_database()::text", &[]).unwrap_or_default();
        (
            format!(
                "pg_repack (the command, with your usual -h, -p and -U) rebuilds it online, locking it only \
                 briefly at the start and the end, and needs free disk about the size of the live part ({live})"
            ),
            format!("pg_repack --dbname={} --table={}", shell_quoted(&database), shell_quoted(&table.qualified_name)),
        )
    } else {
        (
            format!(
                "VACUUM FULL gives it back, but holds an ACCESS EXCLUSIVE lock on the table for the whole rewrite \
                 (every sign-in and refresh waits) and needs free disk at least the size of the live part \
                 (about {live}); the pg_repack extension does the same online"
            ),
            format!("VACUUM FULL {};", table.qualified_name),
        )
    };
    Some(Finding {
        level: "info",
        target: Some(table.target.name),
        problem: format!(
            "{} takes {} with its indexes, of which about {} is free space (estimated from the statistics): \
             PostgreSQL reuses it for new rows but does not give it back to the disk. {how}",
            table.qualified_name,
            space::pretty(space.total_bytes),
            space::pretty(free)
        ),
        fix: Some(fix),
    })
}

/// Whether the extension NAME is created in this database.
fn extension_installed(name: &str) -> bool {
    query::one::<bool>("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = $1)", &[name.into()]).unwrap_or(false)
}

/// WORD as one word for a POSIX shell, whatever it holds.
fn shell_quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// Why no scheduled run will happen from this database, if none will.
fn schedule_problem() -> Option<String> {
    if !extension_installed("pg_cron") {
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
