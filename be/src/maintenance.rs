//! Seal, compaction and retention: everything that rewrites a table's manifest.
//!
//! Each runs under [`Table::maintenance`], builds new segments without holding the table
//! lock, installs them under the lock (moving delete marks and primary-key entries to the
//! new rows), writes the manifest, and only then lets replaced segments be deleted. A crash
//! at any point leaves either the old manifest (new files are orphans, removed at start) or
//! the new one (old files are orphans).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{AsArray, UInt32Array};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use eddy_proto::{Error, ErrorCode, PartitionBy, Result, TableDef};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::manifest::{manifest_path, table_dir, write_json, Manifest};
use crate::metrics;
use crate::pk::RowLoc;
use crate::scan::{read_segment, SegmentRead};
use crate::segment::{encode_bitmap, encode_segment, put_segment, SegmentHandle, SegmentSpec};
use crate::table::{adapt_batch, Memtable, Table, TableState};

/// What maintenance needs from the engine.
#[derive(Debug, Clone)]
pub struct StorageCtx {
    pub store: Arc<dyn ObjectStore>,
    pub cache: Arc<crate::cache::SegmentCache>,
    pub ids: Arc<AtomicU64>,
    pub row_group_rows: usize,
    pub compaction_min_segments: usize,
    pub compaction_target_rows: u64,
}

impl StorageCtx {
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::SeqCst)
    }
}

fn internal(action: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Internal, format!("{action}: {e}"))
}

/// Partition key and [start, end) in micros of a time value.
pub fn partition_of(micros: i64, by: Option<PartitionBy>) -> (String, i64, i64) {
    let Some(by) = by else {
        return (String::new(), i64::MIN, i64::MAX);
    };
    let t: DateTime<Utc> = DateTime::from_timestamp_micros(micros).unwrap_or_default();
    let (start, end, key) = match by {
        PartitionBy::Hour => {
            let s = Utc
                .with_ymd_and_hms(t.year(), t.month(), t.day(), t.hour(), 0, 0)
                .single()
                .unwrap_or(t);
            (
                s,
                s + chrono::Duration::hours(1),
                s.format("%Y-%m-%dT%H").to_string(),
            )
        }
        PartitionBy::Day => {
            let s = Utc
                .with_ymd_and_hms(t.year(), t.month(), t.day(), 0, 0, 0)
                .single()
                .unwrap_or(t);
            (
                s,
                s + chrono::Duration::days(1),
                s.format("%Y-%m-%d").to_string(),
            )
        }
        PartitionBy::Month => {
            let s = Utc
                .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
                .single()
                .unwrap_or(t);
            let (y, m) = if t.month() == 12 {
                (t.year() + 1, 1)
            } else {
                (t.year(), t.month() + 1)
            };
            let e = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(t);
            (s, e, s.format("%Y-%m").to_string())
        }
    };
    (key, start.timestamp_micros(), end.timestamp_micros())
}

/// The time column of `batch` as micros, if the table has one.
fn time_micros(batch: &RecordBatch, def: &TableDef) -> Option<Vec<Option<i64>>> {
    let col = batch.column_by_name(def.time_column.as_ref()?)?;
    Some(match col.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => col
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .iter()
            .collect(),
        DataType::Date32 => col
            .as_primitive::<arrow::datatypes::Date32Type>()
            .iter()
            .map(|d| d.map(|d| d as i64 * 86_400_000_000))
            .collect(),
        _ => return None,
    })
}

/// A segment built in memory, ready to upload, and where each input row went.
pub(crate) struct Built {
    specs: Vec<(SegmentSpec, bytes::Bytes, crate::segment::SegmentMeta)>,
    /// Input row → (index into `specs`, row in that segment).
    mapping: Vec<(u32, u32)>,
}

/// Splits `batch` by time partition, sorts each part by time, and encodes the parts.
pub(crate) fn build_segments(
    ctx: &StorageCtx,
    table_id: u64,
    def: &TableDef,
    batch: &RecordBatch,
    level: u32,
) -> Result<Built> {
    let times = time_micros(batch, def);
    let mut parts: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    match &times {
        Some(ts) => {
            // Rows come mostly in time order: the partition of the previous row is checked
            // first (a comparison), and named (a strftime) only when the row leaves it.
            let mut last: Option<(String, i64, i64)> = None;
            let mut nulls = Vec::new();
            let mut run: Vec<u32> = Vec::new();
            for (i, t) in ts.iter().enumerate() {
                let Some(t) = *t else {
                    nulls.push(i as u32);
                    continue;
                };
                if !last.as_ref().is_some_and(|(_, s, e)| *s <= t && t < *e) {
                    if let Some((key, _, _)) = last.take() {
                        parts.entry(key).or_default().append(&mut run);
                    }
                    last = Some(partition_of(t, def.partition_by));
                }
                run.push(i as u32);
            }
            if let Some((key, _, _)) = last {
                parts.entry(key).or_default().append(&mut run);
            }
            if !nulls.is_empty() {
                parts.insert("null".to_string(), nulls);
            }
        }
        None => parts
            .insert(String::new(), (0..batch.num_rows() as u32).collect())
            .map_or((), |_| ()),
    }
    // Each partition is taken, sorted and encoded on its own thread.
    let encode = |partition: String,
                  idx: Vec<u32>|
     -> Result<(
        SegmentSpec,
        bytes::Bytes,
        crate::segment::SegmentMeta,
        Vec<u32>,
    )> {
        // Rows mostly arrive in time order: a partition that is one run of the memtable is a
        // slice of it (sorted below if need be), and one already in time order is not sorted
        // again.
        let contiguous = idx
            .first()
            .is_some_and(|f| idx.last() == Some(&(f + idx.len() as u32 - 1)));
        let in_order = times.as_ref().is_some_and(|ts| {
            idx.windows(2).all(
                |w| matches!((ts[w[0] as usize], ts[w[1] as usize]), (Some(a), Some(b)) if a <= b),
            )
        });
        let idx = UInt32Array::from(idx);
        let mut part = if contiguous {
            batch.slice(idx.value(0) as usize, idx.len())
        } else {
            take_record_batch(batch, &idx).map_err(|e| internal("partition rows", e))?
        };
        let mut order: Vec<u32> = idx.values().to_vec();
        if let (Some(ts), false) = (&times, in_order) {
            // Stable, so equal times keep their arrival order.
            let keys: Vec<i64> = order
                .iter()
                .map(|src| ts[*src as usize].unwrap_or(i64::MIN))
                .collect();
            let sorted = UInt32Array::from(crate::time_order::stable_order(&keys));
            part = take_record_batch(&part, &sorted).map_err(|e| internal("sort by time", e))?;
            order = sorted.values().iter().map(|j| order[*j as usize]).collect();
        } else if let (Some(tc), false) = (&def.time_column, in_order) {
            let col = part.column_by_name(tc).expect("time column exists");
            let sorted =
                sort_to_indices(col, None, None).map_err(|e| internal("sort by time", e))?;
            part = take_record_batch(&part, &sorted).map_err(|e| internal("sort by time", e))?;
            order = sorted.values().iter().map(|i| order[*i as usize]).collect();
        }
        let id = ctx.next_id();
        let spec = SegmentSpec {
            id,
            partition,
            path: format!(
                "{}/seg-{id:012}-{}.parquet",
                table_dir(table_id),
                chrono::Utc::now().timestamp_micros()
            ),
            level,
            time_column: def.time_column.clone(),
            row_group_rows: ctx.row_group_rows,
        };
        let (data, meta) = encode_segment(&spec, &part)?;
        Ok((spec, data, meta, order))
    };
    // At most one thread per core, however many partitions a memtable spans.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let parts: Vec<(String, Vec<u32>)> = parts.into_iter().collect();
    let mut results: Vec<Result<_>> = Vec::with_capacity(parts.len());
    let mut parts = parts.into_iter().peekable();
    while parts.peek().is_some() {
        let wave: Vec<(String, Vec<u32>)> = parts.by_ref().take(threads).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = wave
                .into_iter()
                .map(|(p, idx)| s.spawn(|| encode(p, idx)))
                .collect();
            for h in handles {
                results.push(
                    h.join()
                        .unwrap_or_else(|_| Err(internal("encode segment", "thread panicked"))),
                );
            }
        });
    }
    let mut mapping = vec![(0u32, 0u32); batch.num_rows()];
    let mut specs = Vec::new();
    for (si, r) in results.into_iter().enumerate() {
        let (spec, data, meta, order) = r?;
        for (j, src) in order.iter().enumerate() {
            mapping[*src as usize] = (si as u32, j as u32);
        }
        specs.push((spec, data, meta));
    }
    Ok(Built { specs, mapping })
}

pub(crate) async fn upload(ctx: &StorageCtx, built: &Built) -> Result<Vec<Arc<SegmentHandle>>> {
    let mut handles = Vec::new();
    for (_, data, meta) in &built.specs {
        put_segment(&ctx.store, data.clone(), meta).await?;
        handles.push(Arc::new(SegmentHandle::new(
            meta.clone(),
            Arc::clone(&ctx.store),
            Arc::clone(&ctx.cache),
        )));
    }
    Ok(handles)
}

pub(crate) fn manifest_of(table_id: u64, st: &TableState) -> Manifest {
    Manifest {
        table_id,
        version: st.flushed_seq,
        flushed_seq: st.flushed_seq,
        segments: st.segments.values().map(|s| s.meta.path.clone()).collect(),
        deletes: st
            .deletes
            .iter()
            .filter(|(id, b)| st.segments.contains_key(id) && !b.is_empty())
            .map(|(id, b)| (*id, encode_bitmap(b)))
            .collect(),
        source_offsets: st.flushed_offsets.clone(),
        rollups: st.flushed_views.clone(),
    }
}

pub(crate) fn update_gauges(name: &str, st: &TableState) {
    metrics::SEGMENTS
        .with_label_values(&[name])
        .set(st.segments.len() as i64);
    metrics::SEGMENT_BYTES
        .with_label_values(&[name])
        .set(st.segments.values().map(|s| s.meta.bytes as i64).sum());
    metrics::MEMTABLE_BYTES
        .with_label_values(&[name])
        .set(st.memtable_bytes() as i64);
}

pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal("background task", e))?
}

/// Seals the active memtable (and any left by a failed seal) into segments and writes the
/// manifest. Returns false when there was nothing to do.
pub async fn seal(ctx: &StorageCtx, table: &Arc<Table>) -> Result<bool> {
    let _guard = table.maintenance.lock().await;
    if table.dropped.load(Ordering::SeqCst) {
        return Ok(false);
    }
    let (alerts, frozen, seq, offsets, def, schema, snapshots) = {
        let mut st = table.state.lock();
        if st.active.rows == 0 && st.frozen.is_empty() && !st.dirty() {
            return Ok(false);
        }
        if st.active.rows > 0 {
            let old = std::mem::replace(&mut st.active, Memtable::new(ctx.next_id()));
            st.frozen.push(Arc::new(old));
        }
        // The views' states as of exactly the rows being frozen (see crate::rollups).
        let snapshots = crate::rollups::take_snapshots(&mut st, table.id, ctx.next_id());
        // Alerts fired by the rows being frozen are in system.alerts' memtable by now.
        let alerts = st.alerts.as_ref().filter(|a| !a.is_empty()).and_then(|a| {
            Some((
                a.hub.table().cloned()?,
                Arc::clone(&a.hub),
                a.hub.last_detected(),
            ))
        });
        (
            alerts,
            st.frozen.clone(),
            st.applied_seq,
            st.applied_offsets.clone(),
            st.def.clone(),
            Arc::clone(&st.schema),
            snapshots,
        )
    };
    for s in &snapshots {
        let bytes = crate::engine::encode_ipc(&s.batch.schema(), std::slice::from_ref(&s.batch))?;
        ctx.store
            .put(
                &object_store::path::Path::from(s.reference.path.as_str()),
                bytes.into(),
            )
            .await
            .map_err(|e| internal("write view snapshot", e))?;
    }
    let mut installs = Vec::new();
    for m in &frozen {
        let (m2, def2, schema2, ctx2, tid) = (
            Arc::clone(m),
            def.clone(),
            Arc::clone(&schema),
            ctx.clone(),
            table.id,
        );
        let built = run_blocking(move || {
            let batches = m2
                .batches
                .iter()
                .map(|b| adapt_batch(&schema2, b))
                .collect::<Result<Vec<_>>>()?;
            let batch =
                concat_batches(&schema2, &batches).map_err(|e| internal("concat memtable", e))?;
            build_segments(&ctx2, tid, &def2, &batch, 0)
        })
        .await?;
        let handles = upload(ctx, &built).await?;
        installs.push((Arc::clone(m), built.mapping, handles));
    }
    let mut replaced = Vec::new();
    let manifest = {
        let mut st = table.state.lock();
        for (m, mapping, handles) in installs {
            let ids: Vec<u64> = handles.iter().map(|h| h.meta.id).collect();
            for h in handles {
                st.segments.insert(h.meta.id, h);
            }
            if let Some(del) = st.deletes.remove(&m.id) {
                for r in del {
                    let (si, row) = mapping[r as usize];
                    st.deletes.entry(ids[si as usize]).or_default().insert(row);
                }
            }
            if st.pk.is_some() {
                let mut base = 0u32;
                for b in &m.batches {
                    let keys = st.pk.as_ref().expect("checked").keys(b)?;
                    let n = b.num_rows() as u32;
                    let from: Vec<RowLoc> = (base..base + n)
                        .map(|row| RowLoc { unit: m.id, row })
                        .collect();
                    let to: Vec<RowLoc> = (base..base + n)
                        .map(|r| {
                            let (si, row) = mapping[r as usize];
                            RowLoc {
                                unit: ids[si as usize],
                                row,
                            }
                        })
                        .collect();
                    st.pk.as_mut().expect("checked").relocate(&keys, &from, &to);
                    base += n;
                }
            }
            st.frozen.retain(|f| f.id != m.id);
            metrics::SEALS.inc();
        }
        st.flushed_seq = seq;
        st.flushed_offsets = offsets;
        for s in snapshots {
            if let Some(i) = crate::rollups::view_index(&st, &s.view) {
                st.views[i].snapshot_version = Some(s.version);
                if let Some(old) = st.flushed_views.insert(s.view, s.reference) {
                    replaced.push(old.path);
                }
            } else {
                replaced.push(s.reference.path);
            }
        }
        let live: Vec<String> = st.views.iter().map(|v| v.name().to_string()).collect();
        let gone: Vec<String> = st
            .flushed_views
            .keys()
            .filter(|k| !live.contains(k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(old) = st.flushed_views.remove(&k) {
                replaced.push(old.path);
            }
        }
        update_gauges(&def.name, &st);
        manifest_of(table.id, &st)
    };
    // Once this manifest says the rows are sealed, no replay fires their alerts again:
    // those alerts must be durable first.
    if let Some((t, _, _)) = &alerts {
        if t.id != table.id {
            Box::pin(seal(ctx, t)).await?;
        }
    }
    write_json(&ctx.store, &manifest_path(table.id), &manifest).await?;
    tracing::debug!(table = %def.name, segments = manifest.segments.len(), offsets = ?manifest.source_offsets, "sealed");
    if let Some((_, hub, through)) = alerts {
        hub.mark_sealed(&def.name, through);
    }
    for path in replaced {
        let _ = ctx
            .store
            .delete(&object_store::path::Path::from(path))
            .await;
    }
    Ok(true)
}

/// Merges small segments of one partition (and rewrites segments that are mostly deleted
/// rows), dropping deleted rows. Returns false when nothing qualified.
pub async fn compact(ctx: &StorageCtx, table: &Arc<Table>) -> Result<bool> {
    let _guard = table.maintenance.lock().await;
    if table.dropped.load(Ordering::SeqCst) {
        return Ok(false);
    }
    let (victims, snap_deletes, def, schema) = {
        let st = table.state.lock();
        let mut by_part: BTreeMap<&str, Vec<&Arc<SegmentHandle>>> = BTreeMap::new();
        for s in st.segments.values() {
            let deleted = st.deletes.get(&s.meta.id).map(|b| b.len()).unwrap_or(0);
            let small = s.meta.rows < ctx.compaction_target_rows;
            if small || deleted * 5 > s.meta.rows {
                by_part.entry(&s.meta.partition).or_default().push(s);
            }
        }
        let pick = by_part.into_values().find(|v| {
            v.len() >= ctx.compaction_min_segments
                || v.iter().any(|s| {
                    st.deletes
                        .get(&s.meta.id)
                        .map(|b| b.len() * 5 > s.meta.rows)
                        .unwrap_or(false)
                })
        });
        let Some(mut victims) = pick.map(|v| v.into_iter().cloned().collect::<Vec<_>>()) else {
            return Ok(false);
        };
        victims.truncate(32);
        let snap: Vec<Option<roaring::RoaringBitmap>> = victims
            .iter()
            .map(|s| st.deletes.get(&s.meta.id).cloned())
            .collect();
        (victims, snap, st.def.clone(), Arc::clone(&st.schema))
    };
    // Read the live rows of every victim, remembering where each came from.
    let mut batches = Vec::new();
    let mut sources: Vec<RowLoc> = Vec::new();
    for (seg, del) in victims.iter().zip(&snap_deletes) {
        let read = SegmentRead {
            segment: Arc::clone(seg),
            row_groups: (0..seg.meta.row_groups.len()).collect(),
            deleted: del.clone().map(Arc::new),
            selected: None,
        };
        let got: Vec<RecordBatch> = read_segment(read, Arc::clone(&schema))
            .await?
            .try_collect()
            .await?;
        batches.extend(got);
        let id = seg.meta.id;
        sources.extend(
            (0..seg.meta.rows as u32)
                .filter(|r| !del.as_ref().is_some_and(|d| d.contains(*r)))
                .map(|row| RowLoc { unit: id, row }),
        );
    }
    let level = victims.iter().map(|s| s.meta.level).max().unwrap_or(0) + 1;
    let (ctx2, def2, schema2, tid) = (ctx.clone(), def.clone(), Arc::clone(&schema), table.id);
    let (built, merged) = run_blocking(move || {
        let merged =
            concat_batches(&schema2, &batches).map_err(|e| internal("concat segments", e))?;
        let built = build_segments(&ctx2, tid, &def2, &merged, level)?;
        Ok((built, merged))
    })
    .await?;
    let handles = if merged.num_rows() > 0 {
        upload(ctx, &built).await?
    } else {
        Vec::new()
    };
    let manifest = {
        let mut st = table.state.lock();
        let ids: Vec<u64> = handles.iter().map(|h| h.meta.id).collect();
        let to = |i: usize| {
            let (si, row) = built.mapping[i];
            RowLoc {
                unit: ids[si as usize],
                row,
            }
        };
        // Deletes that arrived while we were merging move to the new rows.
        let position: ahash::AHashMap<(u64, u32), usize> = sources
            .iter()
            .enumerate()
            .map(|(i, l)| ((l.unit, l.row), i))
            .collect();
        for (seg, snap) in victims.iter().zip(&snap_deletes) {
            let cur = st.deletes.remove(&seg.meta.id).unwrap_or_default();
            let fresh = match snap {
                Some(s) => cur - s,
                None => cur,
            };
            for r in fresh {
                if let Some(i) = position.get(&(seg.meta.id, r)) {
                    let loc = to(*i);
                    st.deletes.entry(loc.unit).or_default().insert(loc.row);
                }
            }
            st.segments.remove(&seg.meta.id);
        }
        for h in handles {
            st.segments.insert(h.meta.id, h);
        }
        if merged.num_rows() > 0 {
            if let Some(pk) = st.pk.as_mut() {
                let keys = pk.keys(&merged)?;
                let to_all: Vec<RowLoc> = (0..sources.len()).map(to).collect();
                pk.relocate(&keys, &sources, &to_all);
            }
        }
        update_gauges(&def.name, &st);
        manifest_of(table.id, &st)
    };
    write_json(&ctx.store, &manifest_path(table.id), &manifest).await?;
    metrics::COMPACTIONS.inc();
    metrics::COMPACTED_SEGMENTS.inc_by(victims.len() as u64);
    for v in &victims {
        v.mark_obsolete();
    }
    Ok(true)
}

/// Drops segments whose whole time partition ended before `now - retention`.
pub async fn apply_retention(ctx: &StorageCtx, table: &Arc<Table>, now_micros: i64) -> Result<u64> {
    let _guard = table.maintenance.lock().await;
    let (victims, manifest) = {
        let mut st = table.state.lock();
        let Some(ret) = st.def.retention_secs else {
            return Ok(0);
        };
        let cutoff = now_micros - ret as i64 * 1_000_000;
        let by = st.def.partition_by;
        let victims: Vec<Arc<SegmentHandle>> = st
            .segments
            .values()
            .filter(|s| match s.meta.time_max_micros {
                Some(max) => {
                    let end = if by.is_some() {
                        partition_of(max, by).2
                    } else {
                        max + 1
                    };
                    end <= cutoff
                }
                None => false,
            })
            .cloned()
            .collect();
        if victims.is_empty() {
            return Ok(0);
        }
        for v in &victims {
            st.segments.remove(&v.meta.id);
            st.deletes.remove(&v.meta.id);
            if let Some(pk) = st.pk.as_mut() {
                pk.forget_unit(v.meta.id);
            }
        }
        update_gauges(&st.def.name, &st);
        (victims, manifest_of(table.id, &st))
    };
    write_json(&ctx.store, &manifest_path(table.id), &manifest).await?;
    metrics::RETENTION_DROPPED_SEGMENTS.inc_by(victims.len() as u64);
    for v in &victims {
        v.mark_obsolete();
    }
    Ok(victims.len() as u64)
}

/// Loads the live rows' keys of a segment into the primary-key index (recovery).
pub async fn load_keys(table: &Arc<Table>, seg: &Arc<SegmentHandle>) -> Result<()> {
    let (schema, deleted) = {
        let st = table.state.lock();
        if st.pk.is_none() {
            return Ok(());
        }
        (st.key_schema(), st.deletes.get(&seg.meta.id).cloned())
    };
    let read = SegmentRead {
        segment: Arc::clone(seg),
        row_groups: (0..seg.meta.row_groups.len()).collect(),
        deleted: deleted.clone().map(Arc::new),
        selected: None,
    };
    let batches: Vec<RecordBatch> = read_segment(read, schema).await?.try_collect().await?;
    let mut live =
        (0..seg.meta.rows as u32).filter(|r| !deleted.as_ref().is_some_and(|d| d.contains(*r)));
    let mut st = table.state.lock();
    let pk = st.pk.as_mut().expect("checked above");
    for b in batches {
        let rows: Vec<u32> = live.by_ref().take(b.num_rows()).collect();
        let keys = pk.keys(&b)?;
        pk.load(&keys, seg.meta.id, &rows);
    }
    Ok(())
}
