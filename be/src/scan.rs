//! Scans: a consistent snapshot of a table, pruned by partition, zone map (min/max),
//! bitmap index and row group, split into parallel partitions of similar size.
//!
//! The snapshot holds `Arc`s of the segments it reads and copies of their delete bitmaps,
//! so a seal or compaction that happens while the query runs changes nothing it sees.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, BooleanArray, BooleanBufferBuilder, UInt32Array};
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use eddy_proto::{
    BatchStream, Error, ErrorCode, Predicate, PredicateOp, Result, ScanSnapshot, ScanStats,
    SnapshotStatistics,
};
use futures::{stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
#[allow(deprecated)]
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use parquet::arrow::ProjectionMask;
use roaring::RoaringBitmap;

use crate::pk::RowLoc;
use crate::segment::{SegmentHandle, SegmentMeta};
use crate::table::{adapt_batch, filter_deleted, TableState};

/// Rows per batch read from segments.
const READ_BATCH_ROWS: usize = 8192;

/// A segment to read: which row groups, which rows are deleted, and which rows the
/// query's equality predicates can match by the segment's bitmap indexes (`None`: any).
#[derive(Debug, Clone)]
pub struct SegmentRead {
    pub segment: Arc<SegmentHandle>,
    pub row_groups: Vec<usize>,
    pub deleted: Option<Arc<RoaringBitmap>>,
    pub selected: Option<Arc<RoaringBitmap>>,
}

#[derive(Debug, Clone)]
pub(crate) enum Work {
    Batch(RecordBatch),
    Segment(SegmentRead),
    /// These rows (numbered within the segment, ascending) of a segment: a key lookup.
    Rows(Arc<SegmentHandle>, Vec<u32>),
}

/// The snapshot behind one query of one table.
#[derive(Debug)]
pub struct TableScan {
    schema: SchemaRef,
    stats: ScanStats,
    partitions: Vec<Vec<Work>>,
}

impl ScanSnapshot for TableScan {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn stats(&self) -> ScanStats {
        self.stats.clone()
    }

    fn partitions(&self) -> usize {
        self.partitions.len()
    }

    fn statistics(&self) -> SnapshotStatistics {
        let fields: Vec<_> = self
            .schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        crate::snapshot_stats::statistics(&fields, self.partitions.iter().flatten())
    }

    fn execute(&self, partition: usize) -> Result<BatchStream> {
        let work = self.partitions.get(partition).cloned().ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                format!("scan partition {partition} out of range"),
            )
        })?;
        let schema = Arc::clone(&self.schema);
        let s = stream::iter(work)
            .then(move |w| {
                let schema = Arc::clone(&schema);
                async move {
                    match w {
                        Work::Batch(b) => Ok(stream::once(async { Ok(b) }).boxed()),
                        Work::Segment(r) => read_segment(r, schema).await,
                        Work::Rows(seg, rows) => read_rows(seg, rows, schema).await,
                    }
                }
            })
            .try_flatten();
        Ok(Box::pin(s))
    }
}

impl TableScan {
    /// A snapshot of rows already in memory (a materialized view), split for parallelism.
    pub fn from_batch(batch: RecordBatch, target_partitions: usize) -> Self {
        let n = target_partitions.max(1);
        let rows = batch.num_rows();
        let per = rows.div_ceil(n).max(1);
        let mut partitions = Vec::new();
        let mut at = 0;
        while at < rows {
            let len = per.min(rows - at);
            partitions.push(vec![Work::Batch(batch.slice(at, len))]);
            at += len;
        }
        if partitions.is_empty() {
            partitions.push(Vec::new());
        }
        let stats = ScanStats {
            memtable_rows: rows as u64,
            ..Default::default()
        };
        Self {
            schema: batch.schema(),
            stats,
            partitions,
        }
    }
}

/// Whether any row of a range may satisfy every predicate.
fn range_may_match(
    columns: &std::collections::BTreeMap<String, crate::segment::ColumnRange>,
    preds: &[Predicate],
) -> bool {
    preds.iter().all(|p| match columns.get(&p.column) {
        Some(r) => p.may_match(&r.min, &r.max),
        None => true,
    })
}

/// Rows that the bitmap indexes allow (intersection over equality predicates), if any apply.
fn bitmap_rows(meta: &SegmentMeta, preds: &[Predicate]) -> Option<RoaringBitmap> {
    let mut out: Option<RoaringBitmap> = None;
    for p in preds.iter().filter(|p| p.op == PredicateOp::Eq) {
        if let Some(rows) = meta.bitmap_rows(&p.column, &p.values) {
            out = Some(match out {
                Some(o) => o & rows,
                None => rows,
            });
        }
    }
    out
}

/// Builds the snapshot under the table lock. `projection` names columns of the table.
pub fn plan_scan(
    st: &TableState,
    projection: Option<&[String]>,
    preds: &[Predicate],
    target_partitions: usize,
) -> Result<TableScan> {
    let all = st.scan_schema();
    let schema: SchemaRef = match projection {
        Some(cols)
            if cols
                .iter()
                .map(String::as_str)
                .eq(all.fields().iter().map(|f| f.name().as_str())) =>
        {
            Arc::clone(all)
        }
        Some(cols) => {
            let fields = cols
                .iter()
                .map(|c| {
                    let i = all.index_of(c).map_err(|_| {
                        Error::new(
                            ErrorCode::ColumnNotFound,
                            format!("column \"{c}\" does not exist"),
                        )
                    })?;
                    Ok(Arc::clone(&all.fields()[i]))
                })
                .collect::<Result<Vec<_>>>()?;
            Arc::new(Schema::new(fields))
        }
        None => Arc::clone(all),
    };
    if let Some(found) = crate::lookup::locate(st, preds)? {
        return lookup_scan(st, schema, found);
    }
    let n = target_partitions.max(1);
    let mut stats = ScanStats::default();
    let mut mem_batches = Vec::new();
    let memtables = std::iter::once(&st.active).chain(st.frozen.iter().map(|m| m.as_ref()));
    for m in memtables {
        let mut base = 0u32;
        for b in &m.batches {
            let b2 = filter_deleted(b, base, st.deletes.get(&m.id))?;
            base += b.num_rows() as u32;
            stats.memtable_rows += b2.num_rows() as u64;
            if b2.num_rows() > 0 {
                mem_batches.push(adapt_batch(&schema, &b2)?);
            }
        }
    }

    let mut partitions_all = BTreeSet::<&str>::new();
    let mut partitions_live = BTreeSet::<&str>::new();
    // (segment read with one row group, rows) in table order, to be split by size.
    let mut pieces: Vec<(SegmentRead, u64)> = Vec::new();
    for seg in st.segments.values() {
        let meta = &seg.meta;
        stats.segments_total += 1;
        stats.row_groups_total += meta.row_groups.len() as u64;
        partitions_all.insert(&meta.partition);
        let bitmap = bitmap_rows(meta, preds);
        if !range_may_match(&meta.columns, preds) || bitmap.as_ref().is_some_and(|b| b.is_empty()) {
            stats.segments_pruned += 1;
            stats.row_groups_pruned += meta.row_groups.len() as u64;
            continue;
        }
        let deleted = st
            .deletes
            .get(&meta.id)
            .filter(|d| !d.is_empty())
            .map(|d| Arc::new(d.clone()));
        // Rows the bitmap indexes rule out are not read out at all: `kind = 'purchase'` over
        // events hands the filter above 5% of the rows rather than all of them.
        let selected = bitmap
            .as_ref()
            .filter(|b| b.len() < meta.rows)
            .map(|b| Arc::new(b.clone()));
        let starts = meta.row_group_starts();
        let mut kept = 0;
        for (i, rg) in meta.row_groups.iter().enumerate() {
            let in_bitmap = bitmap.as_ref().is_none_or(|b| {
                b.range_cardinality(starts[i] as u32..(starts[i] + rg.rows) as u32) > 0
            });
            if in_bitmap && range_may_match(&rg.columns, preds) {
                kept += 1;
                let read = SegmentRead {
                    segment: Arc::clone(seg),
                    row_groups: vec![i],
                    deleted: deleted.clone(),
                    selected: selected.clone(),
                };
                pieces.push((read, rg.rows));
            } else {
                stats.row_groups_pruned += 1;
            }
        }
        if kept == 0 {
            stats.segments_pruned += 1;
        } else {
            partitions_live.insert(&meta.partition);
        }
    }
    stats.partitions_total = partitions_all.len() as u64;
    stats.partitions_pruned = (partitions_all.len() - partitions_live.len()) as u64;
    crate::metrics::SEGMENTS_PRUNED.inc_by(stats.segments_pruned);

    // Split row groups into `n` contiguous runs of similar row counts; merge adjacent row
    // groups of one segment into one read.
    let total: u64 = pieces.iter().map(|(_, r)| *r).sum();
    let target = total.div_ceil(n as u64).max(1);
    let mut partitions: Vec<Vec<Work>> = vec![Vec::new(); n];
    let (mut p, mut acc) = (0, 0u64);
    for (read, rows) in pieces {
        if acc >= target && p + 1 < n {
            p += 1;
            acc = 0;
        }
        acc += rows;
        let part = &mut partitions[p];
        match part.last_mut() {
            Some(Work::Segment(last)) if Arc::ptr_eq(&last.segment, &read.segment) => {
                last.row_groups.extend(read.row_groups);
            }
            _ => part.push(Work::Segment(read)),
        }
    }
    for (i, b) in mem_batches.into_iter().enumerate() {
        partitions[i % n].push(Work::Batch(b));
    }
    partitions.retain(|p| !p.is_empty());
    if partitions.is_empty() {
        partitions.push(Vec::new());
    }
    Ok(TableScan {
        schema,
        stats,
        partitions,
    })
}

/// The snapshot of a key lookup: the rows the primary-key index found, in one partition
/// (a handful of rows gains nothing from parallelism). Every segment and memtable not
/// holding one counts as pruned.
fn lookup_scan(st: &TableState, schema: SchemaRef, mut found: Vec<RowLoc>) -> Result<TableScan> {
    found.sort_by_key(|l| (l.unit, l.row));
    found.dedup();
    let mut stats = ScanStats {
        segments_total: st.segments.len() as u64,
        row_groups_total: st
            .segments
            .values()
            .map(|s| s.meta.row_groups.len() as u64)
            .sum(),
        ..Default::default()
    };
    let mut partitions_all: BTreeSet<&str> = BTreeSet::new();
    let mut partitions_live: BTreeSet<&str> = BTreeSet::new();
    let mut work = Vec::new();
    let mut row_groups_read = 0u64;
    let memtables = std::iter::once(&st.active).chain(st.frozen.iter().map(|m| m.as_ref()));
    for m in memtables {
        let rows: Vec<u32> = found
            .iter()
            .filter(|l| l.unit == m.id)
            .map(|l| l.row)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let mut base = 0u32;
        for b in &m.batches {
            let end = base + b.num_rows() as u32;
            let local: Vec<u32> = rows
                .iter()
                .filter(|r| (base..end).contains(*r))
                .map(|r| r - base)
                .collect();
            base = end;
            if local.is_empty() {
                continue;
            }
            let taken = pick_rows(b, &local)
                .map_err(|e| Error::new(ErrorCode::Internal, format!("key lookup: {e}")))?;
            stats.memtable_rows += taken.num_rows() as u64;
            work.push(Work::Batch(adapt_batch(&schema, &taken)?));
        }
    }
    for seg in st.segments.values() {
        partitions_all.insert(&seg.meta.partition);
        let rows: Vec<u32> = found
            .iter()
            .filter(|l| l.unit == seg.meta.id)
            .map(|l| l.row)
            .collect();
        if rows.is_empty() {
            stats.segments_pruned += 1;
            continue;
        }
        partitions_live.insert(&seg.meta.partition);
        let starts = seg.meta.row_group_starts();
        let mut groups: Vec<usize> = rows
            .iter()
            .map(|r| starts.partition_point(|s| *s <= *r as u64) - 1)
            .collect();
        groups.dedup();
        row_groups_read += groups.len() as u64;
        work.push(Work::Rows(Arc::clone(seg), rows));
    }
    stats.row_groups_pruned = stats.row_groups_total - row_groups_read;
    stats.key_lookup_rows = Some(found.len() as u64);
    stats.partitions_total = partitions_all.len() as u64;
    stats.partitions_pruned = (partitions_all.len() - partitions_live.len()) as u64;
    crate::metrics::SEGMENTS_PRUNED.inc_by(stats.segments_pruned);
    crate::metrics::KEY_LOOKUPS.inc();
    Ok(TableScan {
        schema,
        stats,
        partitions: vec![work],
    })
}

/// Streams rows of a segment by number (ascending), each row group decoded (or taken from
/// the cache) once.
async fn read_rows(
    seg: Arc<SegmentHandle>,
    rows: Vec<u32>,
    schema: SchemaRef,
) -> Result<BatchStream> {
    let starts = seg.meta.row_group_starts();
    let mut out = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let rg = starts.partition_point(|s| *s <= rows[i] as u64) - 1;
        let end = starts.get(rg + 1).copied().unwrap_or(u64::MAX);
        let start = starts[rg];
        let mut local = Vec::new();
        while i < rows.len() && (rows[i] as u64) < end {
            local.push((rows[i] as u64 - start) as u32);
            i += 1;
        }
        let batch = row_group_batch(&seg, rg, &schema).await?;
        let taken = pick_rows(&batch, &local).map_err(|e| read_err(&seg.meta.path, e))?;
        out.push(Ok(taken));
    }
    Ok(Box::pin(stream::iter(out)))
}

/// Rows `local` (ascending, distinct) of `batch`: a zero-copy slice when they are
/// consecutive, as the one row of a point lookup is, else copied out.
fn pick_rows(
    batch: &RecordBatch,
    local: &[u32],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    if let (Some(&first), Some(&last)) = (local.first(), local.last()) {
        if (last - first) as usize + 1 == local.len() {
            return Ok(batch.slice(first as usize, local.len()));
        }
    }
    take_record_batch(batch, &UInt32Array::from(local.to_vec()))
}

fn read_err(path: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::StorageIo, format!("read segment {path}: {e}"))
}

/// Streams the selected row groups of a segment in `schema` (columns the file lacks, added
/// by a later ALTER TABLE, read as NULL), without deleted rows. Decoded columns come from
/// and go to the segment cache.
pub async fn read_segment(read: SegmentRead, schema: SchemaRef) -> Result<BatchStream> {
    let s = stream::iter(read.row_groups.clone())
        .then(move |rg| {
            let (segment, deleted, selected, schema) = (
                Arc::clone(&read.segment),
                read.deleted.clone(),
                read.selected.clone(),
                Arc::clone(&schema),
            );
            async move {
                let rows = Rows {
                    deleted: deleted.as_deref(),
                    selected: selected.as_deref(),
                };
                read_row_group(&segment, rg, rows, &schema).await
            }
        })
        .map_ok(|batches| stream::iter(batches.into_iter().map(Ok)))
        .try_flatten();
    Ok(Box::pin(s))
}

/// The decoded Parquet footer of a segment, read once and cached.
async fn footer(seg: &SegmentHandle) -> Result<ArrowReaderMetadata> {
    if let Some(m) = seg.cache.footer(seg.meta.id) {
        return Ok(m);
    }
    let path = &seg.meta.path;
    let mut reader = object_reader(seg);
    let m = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
        .await
        .map_err(|e| read_err(path, e))?;
    seg.cache.insert_footer(seg.meta.id, m.clone());
    Ok(m)
}

#[allow(deprecated)]
fn object_reader(seg: &SegmentHandle) -> ParquetObjectReader {
    ParquetObjectReader::new(Arc::clone(&seg.store), Path::from(seg.meta.path.as_str()))
        .with_file_size(seg.meta.bytes)
}

/// Which rows of a segment a read returns, numbered within the segment.
#[derive(Debug, Clone, Copy, Default)]
struct Rows<'a> {
    deleted: Option<&'a RoaringBitmap>,
    /// `None`: all.
    selected: Option<&'a RoaringBitmap>,
}

impl Rows<'_> {
    /// `batch`, whose first row is row `base` of the segment, without the rows not read.
    fn keep(&self, batch: &RecordBatch, base: u32) -> Result<RecordBatch> {
        let end = base + batch.num_rows() as u32;
        // A row group the bitmaps select whole (most of them, for a common value) needs
        // no mask of its own.
        let Some(selected) = self
            .selected
            .filter(|s| s.range_cardinality(base..end) < u64::from(end - base))
        else {
            return filter_deleted(batch, base, self.deleted);
        };
        let mut mask = BooleanBufferBuilder::new(batch.num_rows());
        mask.append_n(batch.num_rows(), false);
        for r in selected.range(base..end) {
            if !self.deleted.is_some_and(|d| d.contains(r)) {
                mask.set_bit((r - base) as usize, true);
            }
        }
        filter_record_batch(batch, &BooleanArray::new(mask.finish(), None))
            .map_err(|e| Error::new(ErrorCode::Internal, format!("filter: {e}")))
    }
}

/// Reads one row group without the rows `rows` leaves out, in batches of DataFusion's
/// usual size.
async fn read_row_group(
    seg: &SegmentHandle,
    rg: usize,
    rows: Rows<'_>,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let mut batch = row_group_batch(seg, rg, schema).await?;
    if rows.deleted.is_some() || rows.selected.is_some() {
        let start = seg.meta.row_group_starts()[rg] as u32;
        batch = rows.keep(&batch, start)?;
    }
    // Hand DataFusion batches of its usual size (zero-copy slices).
    let mut out = Vec::with_capacity(batch.num_rows().div_ceil(READ_BATCH_ROWS));
    let mut off = 0;
    while off < batch.num_rows() {
        let len = READ_BATCH_ROWS.min(batch.num_rows() - off);
        out.push(batch.slice(off, len));
        off += len;
    }
    Ok(out)
}

/// One whole row group, deleted rows included: cached columns from memory, the rest
/// decoded from Parquet (and cached).
async fn row_group_batch(
    seg: &SegmentHandle,
    rg: usize,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let meta = &seg.meta;
    let path = &meta.path;
    let rows = meta.row_groups[rg].rows as usize;
    let mut arrays = seg.cache.columns(
        meta.id,
        rg as u32,
        schema.fields().iter().map(|f| f.name().as_str()),
    );
    let missing: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, f)| arrays[*i].is_none() && meta.columns.contains_key(f.name()))
        .map(|(i, _)| i)
        .collect();
    if !missing.is_empty() {
        let footer = footer(seg).await?;
        let file_schema = Arc::clone(footer.schema());
        let indices: Vec<usize> = missing
            .iter()
            .filter_map(|i| file_schema.index_of(schema.field(*i).name()).ok())
            .collect();
        let mask = ProjectionMask::roots(footer.parquet_schema(), indices);
        let batches: Vec<RecordBatch> =
            ParquetRecordBatchStreamBuilder::new_with_metadata(object_reader(seg), footer)
                .with_projection(mask)
                .with_row_groups(vec![rg])
                .with_batch_size(rows.max(1))
                .build()
                .map_err(|e| read_err(path, e))?
                .try_collect()
                .await
                .map_err(|e| read_err(path, e))?;
        let decoded = match batches.len() {
            1 => batches.into_iter().next().expect("one batch"),
            _ => {
                let s = batches
                    .first()
                    .map(|b| b.schema())
                    .unwrap_or_else(|| Arc::new(Schema::empty()));
                arrow::compute::concat_batches(&s, &batches).map_err(|e| read_err(path, e))?
            }
        };
        for i in &missing {
            let name = schema.field(*i).name();
            if let Some(col) = decoded.column_by_name(name) {
                seg.cache
                    .insert_column(meta.id, rg as u32, name, Arc::clone(col));
                arrays[*i] = Some(Arc::clone(col));
            }
        }
    }
    let cols: Vec<ArrayRef> = arrays
        .into_iter()
        .zip(schema.fields())
        .map(|(a, f)| a.unwrap_or_else(|| new_null_array(f.data_type(), rows)))
        .collect();
    let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::clone(schema), cols, &options)
        .map_err(|e| read_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field};

    /// Rows `base..base + n` of a segment, each holding its own row number.
    fn numbered(base: u32, n: u32) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("row", DataType::Int64, false)]));
        let col = Int64Array::from_iter_values((base..base + n).map(i64::from));
        RecordBatch::try_new(schema, vec![Arc::new(col)]).unwrap()
    }

    fn row_numbers(b: &RecordBatch) -> Vec<u32> {
        let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        a.values().iter().map(|v| *v as u32).collect()
    }

    #[test]
    fn a_read_keeps_the_selected_rows_that_are_not_deleted() {
        let batch = numbered(100, 50);
        let selected: RoaringBitmap = [3, 99, 100, 101, 120, 130, 149, 150, 400]
            .into_iter()
            .collect();
        let deleted: RoaringBitmap = [101, 130, 7].into_iter().collect();
        let all = Rows::default();
        assert_eq!(
            row_numbers(&all.keep(&batch, 100).unwrap()),
            (100..150).collect::<Vec<_>>()
        );
        let only_deleted = Rows {
            deleted: Some(&deleted),
            selected: None,
        };
        let kept = row_numbers(&only_deleted.keep(&batch, 100).unwrap());
        assert_eq!(kept.len(), 48);
        assert!(!kept.contains(&101) && !kept.contains(&130));
        let only_selected = Rows {
            deleted: None,
            selected: Some(&selected),
        };
        assert_eq!(
            row_numbers(&only_selected.keep(&batch, 100).unwrap()),
            [100, 101, 120, 130, 149]
        );
        let both = Rows {
            deleted: Some(&deleted),
            selected: Some(&selected),
        };
        assert_eq!(
            row_numbers(&both.keep(&batch, 100).unwrap()),
            [100, 120, 149]
        );
        let whole: RoaringBitmap = (90..160).collect();
        let whole_and_deleted = Rows {
            deleted: Some(&deleted),
            selected: Some(&whole),
        };
        assert_eq!(
            row_numbers(&whole_and_deleted.keep(&batch, 100).unwrap()),
            kept
        );
        let none: RoaringBitmap = [1, 2].into_iter().collect();
        let nothing = Rows {
            deleted: None,
            selected: Some(&none),
        };
        assert_eq!(nothing.keep(&batch, 100).unwrap().num_rows(), 0);
    }
}
