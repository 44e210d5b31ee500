//! Source definitions (`CREATE SOURCE`) and the progress `system.sources` shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::table::{ColumnDef, ColumnType, PartitionBy, TableDef};

/// The BE table that holds records a source could not decode (`system.rejected`). Its name
/// has a dot, so no `CREATE TABLE` can collide with it.
pub const REJECTED_TABLE: &str = "system.rejected";

/// A source as the catalog stores it: where records come from, how to read them (connector
/// options, validated by the ingest crate) and the table they go into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceDef {
    pub name: String,
    /// `kafka` or `generator`.
    pub connector: String,
    pub options: BTreeMap<String, String>,
    pub table: String,
    #[serde(default)]
    pub paused: bool,
}

/// One row of `system.sources`: a source's progress on one partition (Kafka), or on its
/// whole stream (`partition` is `None` for the generator).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub source: String,
    pub table: String,
    pub connector: String,
    /// `running`, `paused`, `disconnected` (broker unreachable; retrying) or `failed`.
    pub state: String,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    /// Next offset whose record is not yet durable in the table (what a restart resumes at).
    pub committed_offset: Option<i64>,
    /// Next offset to apply: records before it are queryable.
    pub consumed_offset: Option<i64>,
    pub high_watermark: Option<i64>,
    /// `high_watermark - consumed_offset`.
    pub lag: Option<i64>,
    pub rows: u64,
    pub rows_per_second: f64,
    pub rejected: u64,
    /// Records the broker sent again after they were applied; dropped, never applied twice.
    pub redelivered: u64,
    pub last_error: Option<String>,
    /// Milliseconds between the last applied record's timestamp and its application.
    pub freshness_ms: Option<i64>,
}

/// The definition of [`REJECTED_TABLE`]. Keyed by where the record came from, so a record
/// re-read after a crash replaces its earlier rejection instead of doubling it.
pub fn rejected_table_def() -> TableDef {
    let col = |name: &str, ty: ColumnType, nullable: bool| ColumnDef {
        name: name.into(),
        ty,
        nullable,
    };
    TableDef {
        name: REJECTED_TABLE.into(),
        columns: vec![
            col("source", ColumnType::Text, false),
            col("topic", ColumnType::Text, true),
            col("partition", ColumnType::Int32, false),
            col("offset", ColumnType::Int64, false),
            col("key", ColumnType::Text, true),
            col("payload", ColumnType::Text, true),
            col("error", ColumnType::Text, false),
            col("rejected_at", ColumnType::TimestampTz, false),
        ],
        primary_key: vec!["source".into(), "partition".into(), "offset".into()],
        time_column: Some("rejected_at".into()),
        partition_by: Some(PartitionBy::Day),
        retention_secs: Some(7 * 86_400),
    }
}
