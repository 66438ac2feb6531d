//! The disk space a cleanup frees inside a table but PostgreSQL keeps: the
//! freed space is reused for new rows, never given back to the disk, so a
//! first cleanup of a large backlog leaves a table (and its indexes) far
//! larger than its rows.
//!
//! Estimated from what PostgreSQL keeps, like `statistics`: the live rows
//! (`pg_class.reltuples`) times their width (`pg_stats.avg_width`), packed
//! as heap and B-tree pages hold them, against what the table and its
//! indexes take. Nothing is scanned, so asking costs the same on any table,
//! and pgstattuple need not be installed; doc/monitoring.md says how close
//! it comes to pgstattuple's exact count.

use crate::query;
use crate::table::Table;

/// A table, its indexes included: what it takes on disk, and an estimate of
/// what its live rows alone would take, rewritten.
pub struct Space {
    pub total_bytes: i64,
    pub live_bytes: i64,
}

impl Space {
    pub fn free_bytes(&self) -> i64 {
        self.total_bytes - self.live_bytes
    }
}

/// None when the table has never been analysed: without statistics there
/// is nothing to estimate from.
pub fn estimate(table: &Table) -> Option<Space> {
    // A heap tuple: its 24-byte header and its columns padded to 8 bytes,
    // plus a 4-byte line pointer; 8,168 of a page's 8,192 bytes hold them.
    // A B-tree leaf tuple: an 8-byte header and its key padded to 8, plus a
    // line pointer, in leaves that CREATE INDEX and REINDEX fill to 90 %,
    // and a metapage. TOAST, the free space map and the visibility map are
    // left out of the live part: small next to the rows of AuthFort's tables.
    let (total, live) = query::two::<i64, i64>(
        "WITH rel AS (
            SELECT reltuples::float8 AS tuples FROM pg_class WHERE oid = $1 AND reltuples >= 0),
         columns AS (
            SELECT a.attnum, coalesce(s.avg_width, 0)::float8 AS width
              FROM pg_attribute a
              JOIN pg_class c ON c.oid = a.attrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname
                                  AND s.attname = a.attname AND NOT s.inherited
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped),
         live AS (
            SELECT ceil(tuples * (24 + ceil((SELECT sum(width) FROM columns) / 8) * 8 + 4) / 8168) * 8192
                   + coalesce((SELECT sum(ceil(tuples * (8 + ceil(coalesce(
                                  (SELECT sum(width) FROM columns WHERE attnum = ANY (i.indkey::int2[])), 0) / 8) * 8 + 4)
                                  / (8168 * 0.9)) * 8192 + 8192)
                                 FROM pg_index i WHERE i.indrelid = $1), 0) AS bytes
              FROM rel)
         -- One row even for a table never analysed, whose live part is NULL.
         SELECT pg_total_relation_size($1), (SELECT least(bytes, pg_total_relation_size($1))::bigint FROM live)",
        &[table.oid.into()],
    );
    Some(Space { total_bytes: total?, live_bytes: live? })
}

/// Bytes as PostgreSQL prints them (`pg_size_pretty`).
pub fn pretty(bytes: i64) -> String {
    query::one::<String>("SELECT pg_size_pretty($1::bigint)", &[bytes.into()]).unwrap_or_default()
}
