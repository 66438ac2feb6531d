//! The numbers behind the `authfort_cleanup_status` view: per target, how
//! big the table is, how much of it is waiting to be deleted and for how
//! long, and whether the index that keeps cleanup linear exists. Counting
//! reads each table once, so scrape it every minute or so, not every second.

use pgrx::datum::Interval;

use crate::engine;
use crate::indexes;
use crate::table;
use crate::targets::{self, Target};

pub struct TargetStatus {
    pub target: &'static Target,
    pub table_name: String,
    pub rows: i64,
    pub deletable: i64,
    pub oldest_expired_age: Option<Interval>,
    pub supporting_index_present: bool,
    pub table_bytes: i64,
}

pub fn all() -> Vec<TargetStatus> {
    targets::ALL.into_iter().map(of).collect()
}

fn of(target: &'static Target) -> TargetStatus {
    let table = table::resolve(target);
    let census = engine::census(&table);
    TargetStatus {
        target,
        supporting_index_present: indexes::missing_self_reference_index(&table).is_none(),
        table_name: table.qualified_name,
        rows: census.rows,
        deletable: census.deletable,
        oldest_expired_age: census.oldest_expired_age,
        table_bytes: census.bytes,
    }
}
