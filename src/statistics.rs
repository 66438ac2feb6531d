//! How much of a table a cleanup rule would delete, estimated from the
//! statistics ANALYZE keeps (`pg_class.reltuples`, `pg_stats`), so asking
//! costs the same on a table of ten rows or ten billion: nothing is scanned.

use crate::query;
use crate::rule::Options;
use crate::table::Table;

/// A table's size and the share of it a rule selects now.
pub struct Estimate {
    pub rows: f64,
    /// Between 0 and 1.
    pub deletable_share: f64,
}

/// None when the table has never been analysed: without statistics there is
/// nothing to estimate from.
pub fn estimate(table: &Table, options: &Options) -> Option<Estimate> {
    let target = table.target;
    // The share of rows whose time column is before now(): the most common
    // values below it, plus the histogram's share of the rest (each bound
    // below now() stands for an equal slice of the rows not in that list).
    // Revoked rows: the frequency of `true` among the most common values
    // (a boolean has at most two, so both are always listed).
    let (rows, shares) = query::two::<f64, Vec<Option<f64>>>(
        "WITH stats AS (
            SELECT s.* FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace
              JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname
             -- The table's own rows: a table that ever had inheritance
             -- children keeps a second, inherited row per column.
             WHERE c.oid = $1 AND NOT s.inherited),
         expiry AS (
            SELECT null_frac::float8 AS null_frac,
                   coalesce(histogram_bounds::text::timestamptz[], '{}') AS bounds,
                   coalesce(most_common_vals::text::timestamptz[], '{}') AS common,
                   coalesce(most_common_freqs, '{}') AS common_freqs
              FROM stats WHERE attname = $2)
         SELECT (SELECT CASE WHEN reltuples >= 0 THEN reltuples::float8 END FROM pg_class WHERE oid = $1),
                ARRAY[(SELECT (SELECT coalesce(sum(f), 0) FROM unnest(common, common_freqs) AS m(v, f) WHERE v < now())
                              + (1 - null_frac - (SELECT coalesce(sum(f), 0) FROM unnest(common_freqs) AS m(f)))
                                * coalesce((SELECT count(*) FILTER (WHERE b < now())::float8 / nullif(count(*), 0)
                                              FROM unnest(bounds) AS h(b)), 0)
                         FROM expiry),
                      (SELECT coalesce((SELECT f FROM unnest(most_common_vals::text::boolean[], most_common_freqs)
                                                  AS m(v, f) WHERE v), 0)::float8
                         FROM stats WHERE attname = $3)]",
        &[table.oid.into(), target.time_column.into(), target.revoked_column.into()],
    );
    let rows = rows?;
    let shares = shares.unwrap_or_default();
    let expired = shares.first().copied().flatten()?;
    let revoked = match target.revoked_column {
        Some(_) if !options.keep_revoked_until_expired => shares.get(1).copied().flatten().unwrap_or(0.0),
        _ => 0.0,
    };
    // Revoked or expired, taking the two as independent, as the planner does.
    let deletable_share = (expired + revoked - expired * revoked).clamp(0.0, 1.0);
    Some(Estimate { rows, deletable_share })
}
