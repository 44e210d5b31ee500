//! Large writes straight to segments, as a Doris stream load or a ClickHouse INSERT part.
//!
//! A write of at least `be.bulk_write_rows_min` rows into a plain append table (no primary
//! key, no materialized view or alert rule fed by it) skips the WAL and the memtable: its
//! rows are split into chunks of about `be.compaction_target_rows` rows (segments that
//! compaction would not merge further), each chunk is partitioned, sorted
//! and encoded into segments on its own thread, the segments are uploaded, and one
//! manifest naming them all is written. The write is acknowledged only then, and becomes
//! visible at once, whole: a crash before the manifest leaves orphan files (removed at the
//! next start) and no row of the write; after it, every row. Logging such a write first
//! would write it twice and seal it later a third time, which is what made large COPYs
//! slow. Tables with keys, views or alerts keep the WAL path, since their state depends on
//! the order of writes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use eddy_proto::{Error, ErrorCode, Result};

use crate::maintenance::{
    build_segments, manifest_of, run_blocking, update_gauges, upload, StorageCtx,
};
use crate::manifest::{manifest_path, write_json};
use crate::metrics;
use crate::segment::SegmentHandle;
use crate::table::{Table, TableState};

/// Whether writes to this table may bypass the WAL (see the module docs).
pub(crate) fn eligible(st: &TableState) -> bool {
    st.pk.is_none() && st.views.is_empty() && st.alerts.is_none()
}

/// Consecutive runs of `batches` of at least `target` rows each (the last run takes the
/// remainder, so no run but a lone one is smaller than `target`).
fn chunks(batches: &[RecordBatch], target: usize) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let (mut start, mut rows) = (0, 0);
    for (i, b) in batches.iter().enumerate() {
        rows += b.num_rows();
        if rows >= target {
            out.push(start..i + 1);
            (start, rows) = (i + 1, 0);
        }
    }
    if start < batches.len() {
        match out.last_mut() {
            Some(last) => last.end = batches.len(),
            None => out.push(start..batches.len()),
        }
    }
    out
}

/// Encodes `batches` (already conformed to the table's schema) into segments on all
/// cores, uploads them and commits them in one manifest. Returns the rows written.
pub(crate) async fn write(
    ctx: &StorageCtx,
    table: &Arc<Table>,
    batches: Vec<RecordBatch>,
    chunk_rows: usize,
) -> Result<u64> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let (def, schema) = {
        let st = table.state.lock();
        (st.def.clone(), Arc::clone(&st.schema))
    };
    let (ctx2, tid) = (ctx.clone(), table.id);
    let runtime = tokio::runtime::Handle::current();
    let started = std::time::Instant::now();
    // Each encoder thread also uploads what it built, so writing one chunk's files overlaps
    // encoding the next (uploaded one after another, they were a quarter of a 10M-row
    // COPY's write with one core idle).
    let uploaded: Vec<Result<Vec<Arc<SegmentHandle>>>> = run_blocking(move || {
        let runs = chunks(&batches, chunk_rows.max(1));
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(runs.len());
        let next = AtomicUsize::new(0);
        // After a failure nothing will be committed: the other threads stop taking chunks.
        let failed = AtomicBool::new(false);
        let mut results: Vec<Option<Result<Vec<Arc<SegmentHandle>>>>> =
            (0..runs.len()).map(|_| None).collect();
        let slots: Vec<parking_lot::Mutex<&mut Option<Result<_>>>> =
            results.iter_mut().map(parking_lot::Mutex::new).collect();
        std::thread::scope(|s| {
            for _ in 0..threads {
                let spawned = std::thread::Builder::new()
                    .name("eddy-encode".into())
                    .spawn_scoped(s, || loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(run) = runs.get(i) else { break };
                        if failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let r = concat_batches(&schema, &batches[run.clone()])
                            .map_err(|e| {
                                Error::new(ErrorCode::Internal, format!("concat rows: {e}"))
                            })
                            .and_then(|chunk| build_segments(&ctx2, tid, &def, &chunk, 0))
                            .and_then(|built| runtime.block_on(upload(&ctx2, &built)));
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        **slots[i].lock() = Some(r);
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "could not start an encoder thread");
                }
            }
        });
        drop(slots);
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Error::new(
                        ErrorCode::Internal,
                        "chunk not written: no encoder thread started, or another chunk failed",
                    ))
                })
            })
            .collect())
    })
    .await?;
    let written_ms = started.elapsed().as_millis() as u64;
    let mut handles: Vec<Arc<SegmentHandle>> = Vec::new();
    let mut result = Ok(());
    for r in uploaded {
        match r {
            Ok(h) => handles.extend(h),
            Err(e) if result.is_ok() => result = Err(e),
            Err(_) => {}
        }
    }
    if result.is_ok() {
        result = commit(ctx, table, &handles).await;
    }
    if let Err(e) = result {
        // Nothing names these files; removing them now saves the next start the work.
        for h in &handles {
            h.mark_obsolete();
        }
        return Err(e);
    }
    metrics::BULK_WRITES.inc();
    tracing::debug!(
        table = %table.state.lock().def.name,
        rows,
        segments = handles.len(),
        written_ms,
        committed_ms = started.elapsed().as_millis() as u64,
        "bulk write"
    );
    Ok(rows as u64)
}

/// Writes a manifest naming the new segments besides the live ones, then makes them
/// visible. Under the table's maintenance lock, so no seal or compaction writes a manifest
/// in between.
async fn commit(
    ctx: &StorageCtx,
    table: &Arc<Table>,
    handles: &[Arc<SegmentHandle>],
) -> Result<()> {
    let _guard = table.maintenance.lock().await;
    let manifest = {
        let st = table.state.lock();
        if table.dropped.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorCode::TableNotFound,
                format!("table \"{}\" was dropped during the write", st.def.name),
            ));
        }
        let mut m = manifest_of(table.id, &st);
        m.segments
            .extend(handles.iter().map(|h| h.meta.path.clone()));
        m
    };
    write_json(&ctx.store, &manifest_path(table.id), &manifest).await?;
    let mut st = table.state.lock();
    for h in handles {
        st.segments.insert(h.meta.id, Arc::clone(h));
    }
    update_gauges(&st.def.name.clone(), &st);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![0; n]))]).unwrap()
    }

    #[test]
    fn chunks_reach_the_target_and_the_remainder_joins_the_last() {
        let b: Vec<RecordBatch> = [4, 4, 4, 4, 1].iter().map(|n| batch(*n)).collect();
        assert_eq!(chunks(&b, 8), vec![0..2, 2..5]);
        assert_eq!(chunks(&b, 100), vec![0..5]);
        assert_eq!(chunks(&b, 1), vec![0..1, 1..2, 2..3, 3..4, 4..5]);
        assert!(chunks(&[], 8).is_empty());
    }
}
