//! Sources: long-running readers that feed a table (`CREATE SOURCE`).
//!
//! A source runs on its own threads and talks to storage only through [`SourceSink`], which
//! the BE implements. Kafka sources ([`kafka`]) deliver each poll's records as one batch of
//! [`Change`]s together with the offsets that follow them; the BE applies both atomically
//! and persists the offsets with the segment that holds the rows, so after a crash a source
//! resumes exactly after the last durable record (Kafka is the write-ahead log). Records
//! that do not decode become [`Rejection`]s; the source keeps going. The generator source
//! ([`generator`]) writes demo rows through the BE's ordinary durable write path.

pub mod assign;
pub mod generator;
pub mod kafka;
pub mod options;
mod order;
pub mod records;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow::record_batch::RecordBatch;
use eddy_proto::{Result, SourceDef, SourceStatus, TableDef};

pub use options::SourceSpec;
pub use records::Change;
pub use status::SourceShared;

/// A record a source could not turn into a row, for `system.rejected`.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub source: String,
    pub topic: Option<String>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<String>,
    pub error: String,
}

/// What a source needs from storage. Calls block; implementations bound their waiting.
pub trait SourceSink: Send + Sync + 'static {
    /// The table's current definition.
    fn table_def(&self, table: &str) -> Option<TableDef>;
    /// Next offset per partition that `source` has applied to `table` (queryable) and that
    /// is durable (in the table's manifest). After a restart the two are equal.
    fn offsets(
        &self,
        source: &str,
        table: &str,
    ) -> Result<(BTreeMap<i32, i64>, BTreeMap<i32, i64>)>;
    /// Applies `changes` in order and advances `source`'s offsets, atomically with respect
    /// to seals. Waits while the table's memtable is full. `origin_ms` is the oldest record
    /// timestamp among them (alert latency counts from it).
    fn deliver(
        &self,
        source: &str,
        table: &str,
        changes: Vec<Change>,
        offsets: &BTreeMap<i32, i64>,
        origin_ms: Option<i64>,
    ) -> Result<()>;
    /// Records rejections durably; recording the same record twice keeps one row.
    fn reject(&self, rejections: Vec<Rejection>) -> Result<()>;
    /// Writes rows through the ordinary durable write path.
    fn write(&self, table: &str, batch: RecordBatch) -> Result<()>;
}

/// A started source: its shared progress and the threads to join when it stops.
#[derive(Debug)]
pub struct RunningSource {
    pub shared: Arc<SourceShared>,
    threads: Vec<JoinHandle<()>>,
}

impl RunningSource {
    /// Asks the source to stop and waits for its threads. Records consumed but not yet
    /// applied are dropped; their offsets were not advanced, so they are read again.
    pub fn stop(mut self) {
        self.shared.request_stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    pub fn set_paused(&self, paused: bool) {
        self.shared.set_paused(paused);
    }

    /// One row per partition; `durable` are the table's persisted offsets for the source.
    pub fn status(&self, durable: &BTreeMap<i32, i64>) -> Vec<SourceStatus> {
        self.shared.status(durable)
    }
}

/// Validates `def` against its table; the error names the bad option or column.
pub fn validate(def: &SourceDef, table: &TableDef) -> Result<SourceSpec> {
    let spec = SourceSpec::parse(def)?;
    if let SourceSpec::Kafka(k) = &spec {
        records::RecordDecoder::new(
            table.arrow_schema(),
            table.primary_key.clone(),
            k.decode.clone(),
        )?;
    }
    Ok(spec)
}

/// The table a source creates when its target is missing: a generator's own schema.
pub fn default_table(def: &SourceDef) -> Option<TableDef> {
    match SourceSpec::parse(def).ok()? {
        SourceSpec::Generator(g) => {
            let mut t = g.kind.demo_table();
            t.name = def.table.clone();
            Some(t)
        }
        SourceSpec::Kafka(_) => None,
    }
}

/// Starts `def`'s threads. A paused definition starts paused.
pub fn start(def: &SourceDef, sink: Arc<dyn SourceSink>) -> Result<RunningSource> {
    let table = sink.table_def(&def.table).ok_or_else(|| {
        eddy_proto::Error::new(
            eddy_proto::ErrorCode::TableNotFound,
            format!("relation \"{}\" does not exist", def.table),
        )
    })?;
    let spec = validate(def, &table)?;
    let shared = Arc::new(SourceShared::new(def));
    let threads = match spec {
        SourceSpec::Kafka(k) => kafka::spawn(def, k, sink, Arc::clone(&shared))?,
        SourceSpec::Generator(g) => generator::spawn(def, g, sink, Arc::clone(&shared))?,
    };
    Ok(RunningSource { shared, threads })
}
