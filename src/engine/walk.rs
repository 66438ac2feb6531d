//! The batched procedure's walk over a table: each batch starts where the
//! last one stopped, and says where the next one starts. Through the time
//! indexes a batch reads the next rows by expiry; without them, the next
//! range of heap blocks. Either way no batch starts over from the beginning,
//! so a run's cost stays linear in what it reads.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;

use super::{arm_start, require_writable, run, run_arm, Options, Scope, Table};
use crate::error;
use crate::indexes::{self, Arm};
use crate::query;

/// Where a batched walk over a table stands between two batches. The
/// procedure passes it from one batch to the next as text, without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Heap blocks from this one on: the walk without time indexes, whose
    /// batches each read a range of blocks.
    Blocks(i64),
    /// An arm's rows from this expiry on (PostgreSQL's microseconds since
    /// 2000-01-01), through its index: batches read what they delete.
    Arm(Arm, i64),
}

impl std::fmt::Display for Position {
    fn fmt(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Position::Blocks(block) => write!(formatter, "blocks {block}"),
            Position::Arm(Arm::Expired, from) => write!(formatter, "expired {from}"),
            Position::Arm(Arm::Revoked, from) => write!(formatter, "revoked {from}"),
        }
    }
}

impl Position {
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, number) = text.split_once(' ')?;
        let number = number.parse::<i64>().ok()?;
        match kind {
            "blocks" if number >= 0 => Some(Position::Blocks(number)),
            "expired" => Some(Position::Arm(Arm::Expired, number)),
            "revoked" => Some(Position::Arm(Arm::Revoked, number)),
            _ => None,
        }
    }

    /// Where a run starts: through the time indexes when the rule has them
    /// all, otherwise by heap blocks. A run keeps the walk it started with,
    /// whatever happens to the indexes meanwhile; either walk deletes the
    /// same rows.
    fn start(table: &Table, options: &Options) -> Self {
        match indexes::arms(table, options).first() {
            Some(arm) if indexes::rule_indexed(table, options) => Position::Arm(*arm, arm_start(options, *arm).into()),
            _ => Position::Blocks(0),
        }
    }
}

/// One batch of the batched procedure: at most `batch_size` rows, from
/// `position` (None: the start). Returns the rows deleted and where the next
/// batch starts, or None once the table is walked.
pub fn clean_batch(
    table: &Table,
    options: &Options,
    position: Option<Position>,
    batch_size: i64,
) -> (i64, Option<Position>) {
    require_writable(table);
    match position.unwrap_or_else(|| Position::start(table, options)) {
        Position::Blocks(first_block) => clean_blocks(table, options, first_block, batch_size),
        Position::Arm(arm, from) => clean_arm(table, options, arm, from, batch_size),
    }
}

/// A batch through an arm's index. A batch that picked fewer rows than it
/// could has walked its arm to the end; the next arm, if the rule has one,
/// starts at this batch's cutoff.
fn clean_arm(table: &Table, options: &Options, arm: Arm, from: i64, batch_size: i64) -> (i64, Option<Position>) {
    let from = match TimestampWithTimeZone::try_from(from) {
        Ok(from) => from,
        Err(_) => invalid_position(&Position::Arm(arm, from).to_string()),
    };
    let batch = run_arm(table, options, arm, from, batch_size);
    if batch.picked >= batch_size {
        let last = batch.last.unwrap_or(from);
        return (batch.deleted, Some(Position::Arm(arm, last.into())));
    }
    let arms = indexes::arms(table, options);
    let next_arm = arms.iter().skip_while(|each| **each != arm).nth(1);
    (batch.deleted, next_arm.map(|next| Position::Arm(*next, arm_start(options, *next).into())))
}

/// A batch over a range of heap blocks: at most `batch_size` rows from the
/// blocks starting at `first_block`.
fn clean_blocks(table: &Table, options: &Options, first_block: i64, batch_size: i64) -> (i64, Option<Position>) {
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
    (deleted, (next < block_count).then_some(Position::Blocks(next)))
}

/// Raises the error for a position no batch returned.
pub fn invalid_position(text: &str) -> ! {
    error::raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("\"{text}\" is not a position authfort_cleanup_batch returned"),
        "Pass NULL to start, then each batch's next_position to the next batch.",
    )
}
