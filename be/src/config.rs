//! BE configuration: the `[be]` section of the TOML config, each key also settable by env.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BeConfig {
    /// Local directory for the WAL and, by default, the segments.
    pub data_dir: PathBuf,
    /// Where segments and manifests live: unset for `DATA_DIR/store`, `file:///path`, or
    /// `s3://bucket/prefix` (credentials from the standard `AWS_*` environment variables).
    pub object_store_url: Option<String>,
    /// S3-compatible endpoint (MinIO, moto, Ceph); unset for AWS.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// Allow plain-HTTP endpoints (local test servers).
    pub s3_allow_http: bool,
    /// A table's memtable seals into segments when it holds this many bytes; this bounds
    /// memtable memory per table (roughly twice it while a seal runs).
    pub memtable_bytes_max: u64,
    /// ...or when its oldest row is this old.
    pub seal_interval_ms: u64,
    /// Writes that may wait for the WAL writer before writers block.
    pub wal_queue_capacity: usize,
    /// A WAL file rolls over at this size.
    pub wal_file_bytes_max: u64,
    /// Rows per Parquet row group: the unit of row-group pruning.
    pub row_group_rows: usize,
    pub compaction_interval_ms: u64,
    /// Merge a partition's small segments once it has this many.
    pub compaction_min_segments: usize,
    /// Segments below this many rows count as small.
    pub compaction_target_rows: u64,
    /// A write of at least this many rows into a table without primary key, views or
    /// alerts is encoded straight into segments of up to about `compaction_target_rows`
    /// rows (no WAL, no memtable), as a Doris stream load; 0 turns this off. Logging such
    /// a write would cost a copy, an fsync of all of it and a seal later.
    pub bulk_write_rows_min: u64,
    pub retention_interval_ms: u64,
    /// Decoded segment columns kept in memory for repeated scans (0 disables the cache).
    pub segment_cache_bytes: u64,
    /// Free heap memory the allocator keeps for reuse instead of returning it to the
    /// kernel (see [`crate::malloc`]); past it, free memory is returned (checked every
    /// second). 0 leaves glibc's own policy.
    pub malloc_retain_bytes: u64,
    /// Largest aggregate state one materialized view may hold; a view that outgrows it
    /// stops (system.rollups.last_error says so) instead of exhausting memory.
    pub rollup_state_bytes_max: u64,
    /// Alerts waiting in memory for one rule's Kafka sink (a broker outage). Past it they
    /// wait only in system.alerts, and the sink catches up from there when the broker
    /// returns: none is lost, and ingest never waits for a sink.
    pub alert_sink_queue_max: usize,
}

impl Default for BeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("eddy-data"),
            object_store_url: None,
            s3_endpoint: None,
            s3_region: None,
            s3_allow_http: false,
            memtable_bytes_max: 128 * 1024 * 1024,
            seal_interval_ms: 60_000,
            wal_queue_capacity: 1024,
            wal_file_bytes_max: 256 * 1024 * 1024,
            row_group_rows: 128 * 1024,
            compaction_interval_ms: 10_000,
            compaction_min_segments: 4,
            compaction_target_rows: 1_000_000,
            bulk_write_rows_min: 100_000,
            retention_interval_ms: 60_000,
            segment_cache_bytes: 2 * 1024 * 1024 * 1024,
            malloc_retain_bytes: 512 * 1024 * 1024,
            rollup_state_bytes_max: 4 * 1024 * 1024 * 1024,
            alert_sink_queue_max: 100_000,
        }
    }
}

impl BeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.memtable_bytes_max < 1024 {
            return Err("be.memtable_bytes_max must be at least 1024".into());
        }
        if self.row_group_rows == 0 || self.wal_queue_capacity == 0 {
            return Err("be.row_group_rows and be.wal_queue_capacity must be positive".into());
        }
        if self.compaction_min_segments < 2 {
            return Err("be.compaction_min_segments must be at least 2".into());
        }
        Ok(())
    }
}
