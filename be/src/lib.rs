//! eddy-be: durable columnar tables.
//!
//! Data flow: a write is validated against the table schema, appended to the WAL
//! ([`wal`], group commit, fsync), applied to the table's memtable ([`table`]) and only
//! then acknowledged; writes of a million rows or more into plain append tables go straight
//! to segments instead ([`bulk`]). Memtables seal by size or age into immutable Parquet segments on an
//! object store ([`segment`], [`maintenance`]), split by time partition and sorted by time,
//! with zone maps and bitmap indexes in a sidecar; a per-table manifest ([`manifest`]),
//! replaced atomically, names the live segments and their delete bitmaps. Primary-key
//! tables upsert through [`pk`] (merge-on-write). Scans ([`scan`]) take a consistent
//! snapshot and prune partitions, segments and row groups before reading Parquet.
//! [`engine::Engine`] ties it together and implements [`eddy_proto::BeService`].

pub mod alerts;
mod bulk;
pub mod cache;
pub mod config;
pub mod engine;
pub mod lookup;
pub mod maintenance;
pub mod malloc;
pub mod manifest;
pub mod metrics;
pub mod pk;
pub mod rollups;
pub mod scan;
pub mod segment;
mod snapshot_stats;
pub mod sources;
pub mod store;
pub mod table;
mod time_order;
pub mod wal;

pub use config::BeConfig;
pub use engine::Engine;
