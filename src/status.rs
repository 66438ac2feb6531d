//! The numbers behind the `authfort_cleanup_status` view: per target, how
//! big the table is, how much of it is waiting to be deleted and for how
//! long, and whether the index that keeps cleanup linear exists. Counting
//! reads each table once, so scrape it every minute or so, not every second.

use pgrx::datum::Interval;
use pgrx::prelude::*;

use crate::engine::{self, Options};
use crate::error;
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
    let table = engine::resolve(target);
    let (rows, oldest_expired_age, table_bytes) = error::spi(Spi::connect(|client| {
        let row = client
            .select(
                &format!(
                    "SELECT count(*), now() - min({time}) FILTER (WHERE {time} < now()), pg_total_relation_size($1)
                       FROM {table}",
                    time = target.time_column,
                    table = table.qualified_name
                ),
                Some(1),
                &[table.oid.into()],
            )?
            .first();
        Ok::<_, pgrx::spi::SpiError>((row.get::<i64>(1)?, row.get::<Interval>(2)?, row.get::<i64>(3)?))
    }));
    TargetStatus {
        target,
        deletable: engine::clean(&table, &Options { dry_run: true, ..Options::default() }),
        supporting_index_present: engine::missing_index(&table).is_none(),
        table_name: table.qualified_name,
        rows: rows.unwrap_or(0),
        oldest_expired_age,
        table_bytes: table_bytes.unwrap_or(0),
    }
}
