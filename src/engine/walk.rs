//! The batched procedure's walk over a table: each batch starts where the
//! one before it ended, and says where the next one starts. Through the time
//! indexes a batch deletes the next range of expiries, sized to hold at most
//! a batch of rows; without them, the next range of heap blocks. Either way
//! no batch starts over, and no row is read by two batches, so a run's cost
//! stays linear in what it reads and a row that survives its DELETE cannot
//! stall it.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;

use super::{
    expiry_range, rows_in_blocks, run_blocks, run_first_in_blocks, run_range, run_tie, take_deleter_lock, BlockRange,
    ExpiryRange, Picked, RangeStart,
};
use crate::catalog;
use crate::error;
use crate::indexes;
use crate::rule::{self, Arm, Options};
use crate::table::{require_writable, Table};

/// A row's physical address. A ctid names a row only within one relation,
/// which is why every statement reads `ONLY` the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tid {
    pub block: u32,
    pub offset: u16,
}

impl Tid {
    /// Before every row: offsets start at 1.
    pub const BEFORE_ALL: Tid = Tid { block: 0, offset: 0 };
    /// After every row: no block has the largest number.
    pub const AFTER_ALL: Tid = Tid { block: u32::MAX, offset: u16::MAX };

    /// Parses PostgreSQL's text form, `(block,offset)`.
    pub fn parse(text: &str) -> Option<Self> {
        let (block, offset) = text.strip_prefix('(')?.strip_suffix(')')?.split_once(',')?;
        Some(Tid { block: block.parse().ok()?, offset: offset.parse().ok()? })
    }

    /// The first address after this one.
    fn next(self) -> Self {
        match self.offset.checked_add(1) {
            Some(offset) => Tid { offset, ..self },
            None => Tid { block: self.block.saturating_add(1), offset: 0 },
        }
    }
}

impl std::fmt::Display for Tid {
    fn fmt(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(formatter, "({},{})", self.block, self.offset)
    }
}

/// Where a batched walk over a table stands between two batches. The
/// procedure passes it from one batch to the next as text, without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Rows at or after this ctid: the walk without time indexes, whose
    /// batches each read a range of heap blocks.
    Blocks(Tid),
    /// An arm's rows after this (expiry, ctid), the expiry in PostgreSQL's
    /// microseconds since 2000-01-01, through the arm's index: batches read
    /// what they delete. `Tid::BEFORE_ALL` starts at the expiry,
    /// `Tid::AFTER_ALL` just after it, and any other ctid within the rows
    /// that share it.
    Arm(Arm, i64, Tid),
}

impl std::fmt::Display for Position {
    fn fmt(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Position::Blocks(from) => write!(formatter, "blocks {from}"),
            Position::Arm(Arm::Expired, from, after) => write!(formatter, "expired {from} {after}"),
            Position::Arm(Arm::Revoked, from, after) => write!(formatter, "revoked {from} {after}"),
        }
    }
}

impl Position {
    /// Reads what `Display` wrote. A bare block number or expiry (the form
    /// 0.3.0 wrote) starts before every row at that block or expiry.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let (kind, number, tid) = (parts.next()?, parts.next()?, parts.next());
        if parts.next().is_some() {
            return None;
        }
        let tid = match tid {
            Some(tid) => Some(Tid::parse(tid)?),
            None => None,
        };
        match kind {
            "blocks" => match (number.parse::<u32>(), tid) {
                (Ok(block), None) => Some(Position::Blocks(Tid { block, offset: 0 })),
                _ => Tid::parse(number).filter(|_| tid.is_none()).map(Position::Blocks),
            },
            "expired" | "revoked" => {
                let arm = if kind == "expired" { Arm::Expired } else { Arm::Revoked };
                Some(Position::Arm(arm, number.parse::<i64>().ok()?, tid.unwrap_or(Tid::BEFORE_ALL)))
            }
            _ => None,
        }
    }

    /// Where a run starts: through the time indexes when the rule has them
    /// all, otherwise by heap blocks. A run keeps the walk it started with,
    /// whatever happens to the indexes meanwhile; either walk deletes the
    /// same rows.
    fn start(table: &Table, options: &Options, cutoff: TimestampWithTimeZone) -> Self {
        match rule::arms(table.target, options).first() {
            Some(arm) if indexes::rule_indexed(table, options) => {
                Position::Arm(*arm, arm.start(cutoff).into(), Tid::BEFORE_ALL)
            }
            _ => Position::Blocks(Tid::BEFORE_ALL),
        }
    }
}

/// What one batch did, and where the next one starts (None: the table is
/// walked).
pub struct Batch {
    pub deleted: i64,
    /// Rows the batch picked but did not delete: a trigger, a rule or row
    /// security kept them, or they changed meanwhile and no longer match.
    pub kept: i64,
    pub next: Option<Position>,
}

impl Batch {
    fn of(picked: &Picked, next: Option<Position>) -> Self {
        Batch { deleted: picked.deleted, kept: (picked.picked - picked.deleted).max(0), next }
    }
}

/// One batch of the batched procedure: at most `batch_size` rows, from
/// `position` (None: the start).
pub fn clean_batch(table: &Table, options: &Options, position: Option<Position>, batch_size: i64) -> Batch {
    require_writable(table);
    // Checked first, so a grace that puts the cutoff after now() is refused
    // even by a batch that gives way to another deleter.
    let cutoff = rule::cutoff(options.grace);
    let position = position.unwrap_or_else(|| Position::start(table, options, cutoff));
    // A position never widens what the options allow: the revoked arm exists
    // only where revoked rows go before they expire.
    if let Position::Arm(arm, ..) = position {
        if !rule::arms(table.target, options).contains(&arm) {
            invalid_position(&position.to_string());
        }
    }
    // Another statement is deleting from the table: this run leaves it be.
    if !take_deleter_lock(table) {
        return Batch { deleted: 0, kept: 0, next: None };
    }
    match position {
        Position::Blocks(from) => clean_blocks(table, options, cutoff, from, batch_size),
        Position::Arm(arm, from, after) => clean_arm(table, options, arm, cutoff, from, after, batch_size),
    }
}

/// A batch through an arm's index from a position: within rows that share
/// the expiry `from` (after ctid `after`), or from that expiry on.
fn clean_arm(
    table: &Table,
    options: &Options,
    arm: Arm,
    cutoff: TimestampWithTimeZone,
    from: i64,
    after: Tid,
    batch_size: i64,
) -> Batch {
    let Ok(expiry) = TimestampWithTimeZone::try_from(from) else {
        invalid_position(&Position::Arm(arm, from, after).to_string())
    };
    if after != Tid::BEFORE_ALL && after != Tid::AFTER_ALL {
        return clean_tie(table, options, arm, cutoff, expiry, after, batch_size);
    }
    clean_range(table, options, arm, cutoff, RangeStart { expiry, inclusive: after == Tid::BEFORE_ALL }, batch_size)
}

/// The next expiry range of the arm from `start` that holds at most
/// `batch_size` rows, deleted as one `DELETE ... WHERE <rule> AND expiry in
/// the range`. Only where more than a batch of rows share one expiry does a
/// batch pick them by ctid instead.
fn clean_range(
    table: &Table,
    options: &Options,
    arm: Arm,
    cutoff: TimestampWithTimeZone,
    start: RangeStart,
    batch_size: i64,
) -> Batch {
    let range = expiry_range(table, arm, cutoff, start, batch_size);
    match range.end {
        // More than a batch of rows share the expiry the range would end at.
        Some(end) if range.rows == 0 => clean_tie(table, options, arm, cutoff, end, Tid::BEFORE_ALL, batch_size),
        _ => delete_range(table, options, arm, cutoff, start, &range, batch_size),
    }
}

/// Deletes `range`, measured from `start` with `batch_size`. A range that
/// reaches the arm's end with room left goes on into the next arm, if the
/// rule has one, from that arm's start, as far as the next range that fits
/// the room: a backlog that fits in one batch costs one batch. Rows sharing
/// one expiry beyond the room wait for the next batch, which takes them by
/// range rather than by ctid.
fn delete_range(
    table: &Table,
    options: &Options,
    arm: Arm,
    cutoff: TimestampWithTimeZone,
    start: RangeStart,
    range: &ExpiryRange,
    batch_size: i64,
) -> Batch {
    // An empty range leaves a DELETE nothing to find; a row that expires
    // meanwhile is the next run's.
    let deleted = if range.rows > 0 { run_range(table, options, arm, cutoff, start, range.end) } else { 0 };
    let kept = (range.rows - deleted).max(0);
    if let Some(end) = range.end {
        return Batch { deleted, kept, next: Some(Position::Arm(arm, end.into(), Tid::BEFORE_ALL)) };
    }
    let arms = rule::arms(table.target, options);
    let Some(next_arm) = arms.iter().skip_while(|each| **each != arm).nth(1) else {
        return Batch { deleted, kept, next: None };
    };
    let next_start = RangeStart { expiry: next_arm.start(cutoff), inclusive: true };
    let handed_over =
        Batch { deleted, kept, next: Some(Position::Arm(*next_arm, next_start.expiry.into(), Tid::BEFORE_ALL)) };
    let room = batch_size - range.rows;
    if room <= 0 {
        return handed_over;
    }
    let next_range = expiry_range(table, *next_arm, cutoff, next_start, room);
    if next_range.end.is_some() && next_range.rows == 0 {
        return handed_over;
    }
    let rest = delete_range(table, options, *next_arm, cutoff, next_start, &next_range, room);
    Batch { deleted: deleted + rest.deleted, kept: kept + rest.kept, next: rest.next }
}

/// A batch through rows that all expire at `expiry`, after ctid `after`; the
/// batch after the last of them goes on just after that expiry.
fn clean_tie(
    table: &Table,
    options: &Options,
    arm: Arm,
    cutoff: TimestampWithTimeZone,
    expiry: TimestampWithTimeZone,
    after: Tid,
    batch_size: i64,
) -> Batch {
    let picked = run_tie(table, options, arm, cutoff, expiry, after, batch_size);
    let next = match picked.last_ctid {
        Some(last) if picked.picked >= batch_size => last,
        _ => Tid::AFTER_ALL,
    };
    Batch::of(&picked, Some(Position::Arm(arm, expiry.into(), next)))
}

/// A batch over a range of heap blocks: from ctid `from` on, as many blocks
/// as should hold `batch_size` rows, never past the table's end however
/// large `batch_size` is. Their rows go in one `DELETE ... WHERE <rule> AND
/// ctid >= from AND ctid < end`, as the same batch typed by hand; only where
/// the rule selects more than `batch_size` of them, the first `batch_size`.
fn clean_blocks(table: &Table, options: &Options, cutoff: TimestampWithTimeZone, from: Tid, batch_size: i64) -> Batch {
    let (block_count, rows_per_block) = catalog::blocks_and_density(table.oid);
    let block_count = i64::from(block_count);
    if i64::from(from.block) >= block_count {
        return Batch { deleted: 0, kept: 0, next: None };
    }
    // A never-analysed table has no row estimate; AuthFort's rows are a few
    // hundred bytes, so 20 a block errs towards smaller batches.
    let rows_per_block = rows_per_block.unwrap_or(20.0);
    let span = ((batch_size as f64 / rows_per_block).floor() as i64).max(1);
    let end = i64::from(from.block).saturating_add(span).min(block_count);
    // A block number is 32 bits, and end is within the table.
    let end = u32::try_from(end).unwrap_or(u32::MAX);
    let blocks = BlockRange { from, end };
    // Counting first costs little, as the DELETE reads the same blocks
    // straight after, and lets the batch be the range DELETE a DBA would type.
    let rows = rows_in_blocks(table, options, cutoff, blocks, batch_size);
    let (batch, next) = if rows <= batch_size {
        let deleted = run_blocks(table, options, cutoff, blocks);
        (Batch::of(&Picked { deleted, picked: rows, last_ctid: None }, None), Tid { block: end, offset: 0 })
    } else {
        // The blocks hold more rows than the estimate said: the first
        // batch_size of them, then on after the last.
        let picked = run_first_in_blocks(table, options, cutoff, blocks, batch_size);
        let next = match picked.last_ctid {
            Some(last) if picked.picked >= batch_size => last.next(),
            _ => Tid { block: end, offset: 0 },
        };
        (Batch::of(&picked, None), next)
    };
    Batch { next: (i64::from(next.block) < block_count).then_some(Position::Blocks(next)), ..batch }
}

/// Raises the error for a position no batch returned.
pub fn invalid_position(text: &str) -> ! {
    error::raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("\"{text}\" is not a position authfort_cleanup_batch returned for these options"),
        "Pass NULL to start, then each batch's next_position to the next batch, with the same options.",
    )
}
