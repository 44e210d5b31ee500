//! eddy-proto: the contract between eddy's front end (FE) and back end (BE).
//!
//! Data flows `ingest → be` for writes and `fe → be` for reads; the FE reaches the BE only
//! through [`service::BeService`]. Standalone mode implements that trait in-process; cluster
//! mode will put the same trait on the network, which is why every type crossing it is plain
//! data (serde-able) or Arrow. [`error::ErrorCode`] is the one error vocabulary that crosses
//! nodes and is mapped exhaustively to SQLSTATE (pgwire) and HTTP status at the edges.

pub mod alert;
pub mod error;
pub mod rollup;
pub mod scalar;
pub mod service;
pub mod source;
pub mod table;

pub use alert::{alerts_table_def, AlertDef, AlertRuleInfo, Emit, KafkaSinkDef, ALERTS_TABLE};
pub use error::{Error, ErrorCode, Result};
pub use rollup::{RollupDef, RollupInfo, INTERNAL_COLUMN_PREFIX};
pub use scalar::{Predicate, PredicateOp, Scalar};
pub use service::{
    BatchStream, BeService, ByteStream, ColumnStatistics, ScanRequest, ScanSnapshot, ScanStats,
    SnapshotStatistics, WriteFormat,
};
pub use source::{rejected_table_def, SourceDef, SourceStatus, REJECTED_TABLE};
pub use table::{
    nullable_schema, ColumnDef, ColumnType, PartitionBy, SegmentInfo, TableDef, TableInfo,
};
