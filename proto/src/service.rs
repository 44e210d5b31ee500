//! The one boundary between FE and BE.

use std::fmt::Debug;
use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::alert::{AlertDef, AlertRuleInfo};
use crate::error::Result;
use crate::rollup::{RollupDef, RollupInfo};
use crate::scalar::{Predicate, Scalar};
use crate::source::{SourceDef, SourceStatus};
use crate::table::{ColumnDef, SegmentInfo, TableDef, TableInfo};

/// A stream of Arrow batches produced by the BE.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

/// A request body in the pieces it arrives in (HTTP frames, COPY messages). An error
/// item (a vanished client, a size limit) aborts the write with that error.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Encoded rows as a client sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFormat {
    /// Newline-delimited JSON objects keyed by column name.
    NdJson,
    /// Comma-separated values in table column order (or header order when `header`).
    Csv { header: bool, delimiter: u8 },
}

/// What the FE asks the BE to read.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    pub table: String,
    /// Column names to return, in this order; `None` for all columns.
    pub projection: Option<Vec<String>>,
    /// Conjunctive predicates the BE may use for pruning (never for exact filtering).
    pub predicates: Vec<Predicate>,
    /// Upper bound on rows the FE will consume (a hint).
    pub limit: Option<usize>,
    /// How many partitions the FE will execute in parallel.
    pub target_partitions: usize,
}

/// How much the BE skipped for a scan, reported by `EXPLAIN` and `EXPLAIN ANALYZE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub partitions_total: u64,
    pub partitions_pruned: u64,
    pub segments_total: u64,
    pub segments_pruned: u64,
    pub row_groups_total: u64,
    pub row_groups_pruned: u64,
    pub memtable_rows: u64,
    /// Rows found through the primary-key index (`Some` when the scan was a key lookup).
    pub key_lookup_rows: Option<u64>,
}

/// What a snapshot returns, known without reading it: the planner answers `count(*)`,
/// `min` and `max` from these, so everything here MUST be exact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotStatistics {
    /// Rows the snapshot returns.
    pub rows: u64,
    /// Per column of the snapshot's schema; `None` when not known exactly (for example
    /// when deleted rows may have held the minimum).
    pub columns: Vec<Option<ColumnStatistics>>,
}

/// Exact statistics of one column over a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnStatistics {
    /// Smallest and largest non-NULL value; `Null` when every value is NULL.
    pub min: Scalar,
    pub max: Scalar,
    pub nulls: u64,
}

/// A consistent, point-in-time view of a table for one query.
///
/// MUST stay readable for as long as it lives, whatever seals or compactions happen
/// meanwhile: every partition of it sees the same rows.
pub trait ScanSnapshot: Send + Sync + Debug {
    fn schema(&self) -> SchemaRef;
    fn stats(&self) -> ScanStats;
    fn partitions(&self) -> usize;
    /// Exact statistics of what the snapshot returns; may cost a pass over memtable rows,
    /// so the FE asks only when planning needs them.
    fn statistics(&self) -> SnapshotStatistics;
    /// Streams the rows of one partition (`0..partitions()`).
    fn execute(&self, partition: usize) -> Result<BatchStream>;
}

/// The BE as the FE sees it. Every write method returns only once the data is durable.
#[async_trait]
pub trait BeService: Send + Sync + Debug {
    async fn create_table(&self, def: TableDef, if_not_exists: bool) -> Result<()>;
    async fn drop_table(&self, name: &str, if_exists: bool) -> Result<()>;
    async fn add_column(&self, table: &str, column: ColumnDef, if_not_exists: bool) -> Result<()>;
    fn table(&self, name: &str) -> Option<TableDef>;
    fn tables(&self) -> Vec<TableInfo>;
    fn segments(&self) -> Vec<SegmentInfo>;

    /// Appends (or, on primary-key tables, upserts) rows; returns the row count.
    /// Batches are validated against the table schema first; nothing of a rejected
    /// request is applied.
    async fn write(&self, table: &str, batches: Vec<RecordBatch>) -> Result<u64>;
    /// Decodes rows in `format` with the table's schema, then writes them like [`Self::write`].
    /// `body` yields the request body in the pieces it arrives in; records may span
    /// pieces, they are decoded without being joined, and decoding starts before the body
    /// has ended. Nothing is written unless the whole body decodes.
    async fn write_encoded(
        &self,
        table: &str,
        format: WriteFormat,
        body: ByteStream,
    ) -> Result<u64>;
    /// Deletes rows by primary key; `keys` holds the key columns. Returns rows deleted.
    async fn delete_keys(&self, table: &str, keys: RecordBatch) -> Result<u64>;

    async fn scan(&self, request: ScanRequest) -> Result<Arc<dyn ScanSnapshot>>;

    /// Registers a source and starts it (unless `def.paused`). Options are validated first.
    async fn create_source(&self, def: SourceDef, if_not_exists: bool) -> Result<()>;
    /// Stops a source and forgets it; rows it wrote stay.
    async fn drop_source(&self, name: &str, if_exists: bool) -> Result<()>;
    /// Pauses or resumes a source; the state survives restarts.
    async fn set_source_paused(&self, name: &str, paused: bool) -> Result<()>;
    /// Progress of every source, one row per source partition.
    fn sources(&self) -> Vec<SourceStatus>;

    /// Compiles and registers a materialized view, then backfills it from its source's
    /// existing rows in the background (progress in [`RollupInfo`]).
    async fn create_rollup(&self, def: RollupDef, if_not_exists: bool) -> Result<()>;
    /// Forgets a view and its state; refused while another view cascades from it.
    async fn drop_rollup(&self, name: &str, if_exists: bool) -> Result<()>;
    fn rollup(&self, name: &str) -> Option<RollupInfo>;
    fn rollups(&self) -> Vec<RollupInfo>;

    /// Compiles and registers an alert rule; it watches writes from now on.
    async fn create_alert(&self, def: AlertDef, if_not_exists: bool) -> Result<()>;
    /// Stops a rule; the alerts it fired stay in `system.alerts`.
    async fn drop_alert(&self, name: &str, if_exists: bool) -> Result<()>;
    /// Every rule with its counters (`system.alert_rules`).
    fn alert_rules(&self) -> Vec<AlertRuleInfo>;

    /// Seals every memtable into segments now.
    async fn checkpoint(&self) -> Result<()>;
    /// Prometheus text of the BE's metrics.
    fn metrics_text(&self) -> String;
}
