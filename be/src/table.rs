//! One table's in-memory state: the active memtable, memtables being sealed, live segments,
//! delete bitmaps and the primary-key index, all behind one mutex.
//!
//! Writes are applied by the WAL writer thread in sequence order (see [`crate::wal`]); seal,
//! compaction and retention hold [`Table::maintenance`] so that only one of them rewrites
//! the table's manifest at a time.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{new_null_array, ArrayRef, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use eddy_proto::{nullable_schema, Error, ErrorCode, Result, TableDef};
use parking_lot::Mutex;
use roaring::RoaringBitmap;

use crate::alerts::TableAlerts;
use crate::pk::{Deletes, PkIndex};
use crate::rollups::{SnapshotRef, ViewState};
use crate::segment::SegmentHandle;

/// Rows written since the last seal, as Arrow batches in arrival order.
#[derive(Debug)]
pub struct Memtable {
    pub id: u64,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub bytes: usize,
    pub created: Instant,
}

impl Memtable {
    pub fn new(id: u64) -> Self {
        Self {
            id,
            batches: Vec::new(),
            rows: 0,
            bytes: 0,
            created: Instant::now(),
        }
    }
}

#[derive(Debug)]
pub struct TableState {
    pub def: TableDef,
    /// The table's columns; changed only through [`TableState::set_schema`].
    pub schema: SchemaRef,
    /// `schema` with every column nullable, as scans report it.
    scan_schema: SchemaRef,
    pub active: Memtable,
    pub frozen: Vec<Arc<Memtable>>,
    pub segments: BTreeMap<u64, Arc<SegmentHandle>>,
    pub deletes: Deletes,
    pub pk: Option<PkIndex>,
    /// Highest WAL sequence number applied to this table.
    pub applied_seq: u64,
    /// Every record up to this one is reflected in the manifest.
    pub flushed_seq: u64,
    /// Source → partition → next offset, of the records applied to this table (queryable).
    pub applied_offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// The same as of the last manifest: where sources resume after a restart.
    pub flushed_offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Materialized views fed by this table, parents before the views cascading from them.
    pub views: Vec<ViewState>,
    /// The view snapshots the manifest names.
    pub flushed_views: BTreeMap<String, SnapshotRef>,
    /// Alert rules watching this table's writes (and its views).
    pub alerts: Option<TableAlerts>,
    /// When the rows being applied arrived, if earlier than now (a Kafka record's
    /// timestamp); alert latency counts from it.
    pub origin_micros: Option<i64>,
}

#[derive(Debug)]
pub struct Table {
    pub id: u64,
    pub state: Mutex<TableState>,
    pub maintenance: tokio::sync::Mutex<()>,
    pub dropped: AtomicBool,
}

/// Reorders and fills `batch` to `schema` by column name (missing columns become NULL).
/// Used for batches written before an `ALTER TABLE ... ADD COLUMN`.
pub fn adapt_batch(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let cols = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => Arc::clone(c),
            None => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect::<Vec<ArrayRef>>();
    let options =
        arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(schema), cols, &options)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("adapt batch: {e}")))
}

/// Drops the rows of `batch` (rows `base..base+len` of its unit) marked in `deleted`.
pub fn filter_deleted(
    batch: &RecordBatch,
    base: u32,
    deleted: Option<&RoaringBitmap>,
) -> Result<RecordBatch> {
    let Some(deleted) = deleted else {
        return Ok(batch.clone());
    };
    let end = base + batch.num_rows() as u32;
    if deleted.range_cardinality(base..end) == 0 {
        return Ok(batch.clone());
    }
    let mask: BooleanArray = (base..end).map(|r| Some(!deleted.contains(r))).collect();
    filter_record_batch(batch, &mask)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("filter: {e}")))
}

impl TableState {
    pub fn new(def: TableDef, memtable_id: u64) -> Result<Self> {
        let schema = def.arrow_schema();
        let pk = if def.has_primary_key() {
            Some(PkIndex::new(&schema, &def.primary_key)?)
        } else {
            None
        };
        Ok(Self {
            def,
            scan_schema: nullable_schema(&schema),
            schema,
            active: Memtable::new(memtable_id),
            frozen: Vec::new(),
            segments: BTreeMap::new(),
            deletes: Deletes::new(),
            pk,
            applied_seq: 0,
            flushed_seq: 0,
            applied_offsets: BTreeMap::new(),
            flushed_offsets: BTreeMap::new(),
            views: Vec::new(),
            flushed_views: BTreeMap::new(),
            alerts: None,
            origin_micros: None,
        })
    }

    /// Replaces the table's columns (ALTER TABLE).
    pub fn set_schema(&mut self, schema: SchemaRef) {
        self.scan_schema = nullable_schema(&schema);
        self.schema = schema;
    }

    /// The columns as scans report them, every one nullable ([`nullable_schema`]); built
    /// once per schema rather than per scan.
    pub fn scan_schema(&self) -> &SchemaRef {
        &self.scan_schema
    }

    /// Applies a durable write. Returns rows written.
    pub fn apply_write(&mut self, seq: u64, batch: RecordBatch) -> Result<u64> {
        let batch = adapt_batch(&self.schema, &batch)?;
        let n = batch.num_rows();
        if let Some(pk) = &mut self.pk {
            let keys = pk.keys(&batch)?;
            pk.upsert(
                &keys,
                self.active.id,
                self.active.rows as u32,
                &mut self.deletes,
            );
        }
        if let Some(a) = self.alerts.as_mut() {
            a.before_feed(&mut self.views);
        }
        let alerts = &self.alerts;
        let accepted = crate::rollups::feed(&mut self.views, &batch, &|v| {
            alerts.as_ref().is_some_and(|a| a.watches(v))
        });
        if let Some(a) = self.alerts.as_mut() {
            let origin = self
                .origin_micros
                .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
            a.after_feed(&batch, &accepted, origin);
        }
        self.active.rows += n;
        self.active.bytes += batch.get_array_memory_size();
        self.active.batches.push(batch);
        self.applied_seq = self.applied_seq.max(seq);
        Ok(n as u64)
    }

    /// Applies a durable delete by key. Returns rows deleted.
    pub fn apply_delete(&mut self, seq: u64, keys: &RecordBatch) -> Result<u64> {
        self.applied_seq = self.applied_seq.max(seq);
        let Some(pk) = &mut self.pk else {
            return Err(Error::new(
                ErrorCode::InvalidStatement,
                "DELETE needs a primary-key table",
            ));
        };
        let rows = pk.keys(keys)?;
        Ok(pk.delete(&rows, &mut self.deletes))
    }

    /// The schema of the primary-key columns (validated at CREATE TABLE, so they exist).
    pub fn key_schema(&self) -> SchemaRef {
        let fields = self
            .def
            .primary_key
            .iter()
            .filter_map(|k| self.schema.field_with_name(k).ok().cloned())
            .collect::<Vec<_>>();
        Arc::new(arrow::datatypes::Schema::new(fields))
    }

    pub fn memtable_bytes(&self) -> usize {
        self.active.bytes + self.frozen.iter().map(|m| m.bytes).sum::<usize>()
    }

    pub fn memtable_rows(&self) -> usize {
        self.active.rows + self.frozen.iter().map(|m| m.rows).sum::<usize>()
    }

    /// Live rows: everything written minus everything deleted.
    pub fn live_rows(&self) -> u64 {
        let total: u64 =
            self.memtable_rows() as u64 + self.segments.values().map(|s| s.meta.rows).sum::<u64>();
        let deleted: u64 = self.deletes.values().map(|b| b.len()).sum();
        total.saturating_sub(deleted)
    }

    /// Whether some applied record is not yet reflected in the manifest.
    pub fn dirty(&self) -> bool {
        self.applied_seq > self.flushed_seq || self.offsets_dirty()
    }

    /// Whether source offsets moved since the manifest was written.
    pub fn offsets_dirty(&self) -> bool {
        self.applied_offsets != self.flushed_offsets
    }
}
