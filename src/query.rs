//! Read-only queries. pgrx's `Spi::get_one` and friends run every statement
//! as an update, which assigns a transaction id: that fails on a standby
//! ("cannot assign TransactionIds during recovery") and spends an xid on
//! every dry run and every scrape of the status view. Reads go through here;
//! only the DELETE, the index build and the run log write.

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::prelude::*;

use crate::error;

/// The first column of the first row (None for NULL).
pub fn one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid]) -> Option<T> {
    error::spi(Spi::connect(|client| client.select(sql, Some(1), args)?.first().get_one::<T>()))
}

/// The first two columns of the first row.
pub fn two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid],
) -> (Option<A>, Option<B>) {
    error::spi(Spi::connect(|client| client.select(sql, Some(1), args)?.first().get_two::<A, B>()))
}
