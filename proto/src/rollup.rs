//! Materialized views (rollups): the definition the catalog stores and the progress
//! `system.rollups` shows.

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

/// Prefix of a view's internal columns: the grouping keys and aggregate results before the
/// final `SELECT` list is applied, which the FE's query rewrite reads. `SELECT *` never
/// shows them; the user-facing schema is [`RollupInfo::schema`].
pub const INTERNAL_COLUMN_PREFIX: &str = "$";

/// A view as the catalog stores it. The defining query is kept as text and compiled again
/// on every start, so a definition never outlives the planner that understood it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupDef {
    pub name: String,
    /// The defining `SELECT`, as the user wrote it.
    pub sql: String,
    /// How late (event time) a row may arrive and still update its bucket or session;
    /// `None` accepts every row however late.
    #[serde(default)]
    pub lateness_secs: Option<u64>,
}

/// One row of `system.rollups`, plus what the FE needs to plan over the view.
#[derive(Debug, Clone)]
pub struct RollupInfo {
    pub def: RollupDef,
    /// The relation the view reads (a table, or another view it cascades from).
    pub source: String,
    /// The table whose writes feed the view (the source, or the root of a cascade).
    pub root_table: String,
    /// The columns `SELECT * FROM view` returns.
    pub schema: SchemaRef,
    /// The internal columns (grouping keys, then aggregates, in the defining query's order),
    /// each named [`INTERNAL_COLUMN_PREFIX`] + position.
    pub internal_schema: SchemaRef,
    pub rows: u64,
    /// Buckets (or sessions) that can still change: late rows may still reach them.
    pub open_buckets: u64,
    /// Rows that arrived behind the newest event time but within the lateness, and counted.
    pub late_rows_accepted: u64,
    /// Rows that arrived later than the lateness allows: not in the view.
    pub late_rows_dropped: u64,
    /// Bytes held by the view's aggregate states.
    pub state_bytes: u64,
    /// Rows of the source that existed when the view was created (or when its state had to
    /// be rebuilt) and that the backfill has aggregated so far, out of `backfill_rows_total`.
    pub backfill_rows_done: u64,
    pub backfill_rows_total: u64,
    /// Newest event time the view has seen, in microseconds since the epoch.
    pub max_event_time_micros: Option<i64>,
    /// The last error aggregating a batch, if any (the view then misses those rows).
    pub last_error: Option<String>,
}

impl RollupInfo {
    /// Rows of the source not yet in the view (only a backfill leaves any behind).
    pub fn lag_rows(&self) -> u64 {
        self.backfill_rows_total
            .saturating_sub(self.backfill_rows_done)
    }
}
