//! The BE side of sources: starting and stopping them, and the [`SourceSink`] through which
//! they write.
//!
//! Kafka records skip the WAL: they go straight into the memtable together with the
//! offsets that follow them (one lock, so a seal sees rows and offsets of the same
//! records), and a seal persists both in the table's manifest. On restart a source resumes
//! at the manifest's offsets, so records that were only in the memtable are read again and
//! nothing is applied twice. Re-applying an upsert or a delete by key gives the same state,
//! so a primary-key table also converges to exactly the records produced.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use eddy_ingest::source::{Change, Rejection, SourceSink};
use eddy_proto::{rejected_table_def, Error, ErrorCode, Result, TableDef, REJECTED_TABLE};
use tokio::runtime::Handle;

use crate::engine::Engine;
use crate::metrics;

/// What sources see of the engine. Holds it weakly: sources stop before it drops.
pub struct EngineSink {
    pub engine: Weak<Engine>,
    pub rt: Handle,
}

impl EngineSink {
    fn engine(&self) -> Result<Arc<Engine>> {
        self.engine
            .upgrade()
            .ok_or_else(|| Error::new(ErrorCode::Cancelled, "the server is shutting down"))
    }
}

/// `system.rejected` rows for `rejections`.
pub fn rejected_batch(rejections: &[Rejection]) -> Result<RecordBatch> {
    let schema = rejected_table_def().arrow_schema();
    let now = chrono::Utc::now().timestamp_micros();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rejections.iter().map(|r| r.source.as_str()),
        )),
        Arc::new(StringArray::from_iter(
            rejections.iter().map(|r| r.topic.as_deref()),
        )),
        Arc::new(Int32Array::from_iter_values(
            rejections.iter().map(|r| r.partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            rejections.iter().map(|r| r.offset),
        )),
        Arc::new(StringArray::from_iter(
            rejections.iter().map(|r| r.key.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            rejections.iter().map(|r| r.payload.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            rejections.iter().map(|r| r.error.as_str()),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rejections.iter().map(|_| now))
                .with_timezone("UTC"),
        ),
    ];
    RecordBatch::try_new(schema, cols)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("rejected rows: {e}")))
}

impl SourceSink for EngineSink {
    fn table_def(&self, table: &str) -> Option<TableDef> {
        use eddy_proto::BeService;
        self.engine().ok()?.table(table)
    }

    fn offsets(
        &self,
        source: &str,
        table: &str,
    ) -> Result<(BTreeMap<i32, i64>, BTreeMap<i32, i64>)> {
        let t = self.engine()?.table_handle(table)?;
        let st = t.state.lock();
        Ok((
            st.applied_offsets.get(source).cloned().unwrap_or_default(),
            st.flushed_offsets.get(source).cloned().unwrap_or_default(),
        ))
    }

    fn deliver(
        &self,
        source: &str,
        table: &str,
        changes: Vec<Change>,
        offsets: &BTreeMap<i32, i64>,
        origin_ms: Option<i64>,
    ) -> Result<()> {
        let engine = self.engine()?;
        let t = engine.table_handle(table)?;
        self.rt.block_on(engine.wait_for_memtable_room(&t, table))?;
        let (rows, bytes, over) = {
            let mut st = t.state.lock();
            let (mut rows, mut bytes) = (0u64, 0usize);
            let seq = st.applied_seq;
            st.origin_micros = origin_ms.map(|ms| ms * 1000);
            let apply = || -> Result<()> {
                for c in changes {
                    match c {
                        Change::Upsert(b) => {
                            bytes += b.get_array_memory_size();
                            rows += st.apply_write(seq, b)?;
                        }
                        Change::Delete(keys) => {
                            st.apply_delete(seq, &keys)?;
                        }
                    }
                }
                Ok(())
            };
            let applied = apply();
            st.origin_micros = None;
            applied?;
            let e = st.applied_offsets.entry(source.to_string()).or_default();
            for (p, o) in offsets {
                let cur = e.entry(*p).or_insert(*o);
                *cur = (*cur).max(*o);
            }
            metrics::MEMTABLE_BYTES
                .with_label_values(&[table])
                .set(st.memtable_bytes() as i64);
            (
                rows,
                bytes,
                st.memtable_bytes() as u64 >= engine.memtable_bytes_max(),
            )
        };
        metrics::ROWS_INGESTED
            .with_label_values(&[table])
            .inc_by(rows);
        metrics::BYTES_INGESTED
            .with_label_values(&[table])
            .inc_by(bytes as u64);
        if over {
            engine.want_seal();
        }
        Ok(())
    }

    fn reject(&self, rejections: Vec<Rejection>) -> Result<()> {
        use eddy_proto::BeService;
        let engine = self.engine()?;
        let batch = rejected_batch(&rejections)?;
        self.rt
            .block_on(engine.write(REJECTED_TABLE, vec![batch]))
            .map(|_| ())
    }

    fn write(&self, table: &str, batch: RecordBatch) -> Result<()> {
        use eddy_proto::BeService;
        let engine = self.engine()?;
        self.rt
            .block_on(engine.write(table, vec![batch]))
            .map(|_| ())
    }
}
