//! AuthFort's rule for a target, narrowed by a call's options: the cutoff
//! it compares expiries with, the SQL that selects the deletable rows, and
//! the arms a walk through the time indexes reads them in.
//!
//! Below the engine and `indexes`, which both read it; it knows targets and
//! settings, never a table in the catalog.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;

use crate::error;
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

/// `now() - grace`, checked as the timestamp it is, not as the interval it
/// came from: interval comparison counts a month as 30 days, while
/// `now() - grace` uses calendar months, so `'-1 mon 30 days'` compares as
/// zero yet puts the cutoff a day in the future. A cutoff after now() would
/// delete live rows. Computed with PostgreSQL's own timestamp arithmetic,
/// without a statement: every batch computes it.
pub fn cutoff(grace: Interval) -> TimestampWithTimeZone {
    let now = transaction_start();
    // These outer bounds, compared as PostgreSQL compares intervals, only
    // keep `now() - grace` from overflowing; the cutoff itself decides.
    let computable = grace.as_micros().abs() <= Interval::from_years(1000).as_micros();
    let computed = computable.then(|| now - grace);
    match computed {
        Some(cutoff) if cutoff <= now && cutoff >= now - Interval::from_years(100) => cutoff,
        _ => {
            let after_now = match computed {
                Some(cutoff) => cutoff > now,
                None => grace.as_micros() < 0,
            };
            error::raise_with_detail(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "grace must be between 0 and 100 years",
                if after_now {
                    "It puts the cutoff, now() - grace, after now()."
                } else {
                    "It puts the cutoff, now() - grace, more than 100 years back."
                },
                "grace keeps rows that expired less than this long ago, for example grace => '7 days'; \
                 give it in one unit, without negative parts.",
            )
        }
    }
}

/// now(): the start of the current transaction.
fn transaction_start() -> TimestampWithTimeZone {
    // SAFETY: reads the current transaction's start time, on the backend's
    // only thread.
    let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    TimestampWithTimeZone::try_from(now).unwrap_or_else(|_| {
        error::raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "the transaction has no start time", "This is a bug.")
    })
}

/// The WHERE clause that picks a target's deletable rows; `$1` is the cutoff.
/// Column names come from `targets`, never from users.
pub fn rule_sql(target: &Target, options: &Options) -> String {
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

/// The part of a rule one index serves. A rule's rows are the union of its
/// arms, and every row of the first arm expires before any row of the second,
/// so walking the arms one after the other walks the rule oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// Rows whose time column is before the cutoff, through an index on it.
    Expired,
    /// Revoked rows that have not expired yet, through a partial index on
    /// the time column `WHERE revoked`.
    Revoked,
}

/// The arms of the rule `options` select, in the order a walk takes them.
pub fn arms(target: &Target, options: &Options) -> Vec<Arm> {
    let deletes_revoked_early = target.revoked_column.is_some() && !options.keep_revoked_until_expired;
    if deletes_revoked_early {
        vec![Arm::Expired, Arm::Revoked]
    } else {
        vec![Arm::Expired]
    }
}

impl Arm {
    /// Where a walk of the arm begins: the expired rows from the oldest, the
    /// revoked ones from the rule's `cutoff` (those before it are expired
    /// too, and the expired arm took them).
    pub fn start(self, cutoff: TimestampWithTimeZone) -> TimestampWithTimeZone {
        match self {
            Arm::Expired => TimestampWithTimeZone::negative_infinity(),
            Arm::Revoked => cutoff,
        }
    }

    /// The predicate of the partial index the arm is read through, if any.
    pub fn index_predicate(self, target: &Target) -> Option<&'static str> {
        match self {
            Arm::Expired => None,
            Arm::Revoked => target.revoked_column,
        }
    }

    /// The rows of the arm, without the rest of the rule; `$1` is the
    /// cutoff. Each statement that deletes them checks the rule as well.
    pub fn filter_sql(self, target: &Target) -> String {
        let mut filter = match self.index_predicate(target) {
            Some(predicate) => predicate.to_string(),
            None => format!("{} < $1", target.time_column),
        };
        if let Some(protected) = target.protected_column {
            filter.push_str(&format!(" AND NOT {protected}"));
        }
        filter
    }
}
