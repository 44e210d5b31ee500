//! The storage engine: the in-process implementation of [`BeService`].
//!
//! Start-up recovers from the catalog, each table's manifest, and the WAL records after the
//! manifest's `flushed_seq`, then removes orphan files a crash may have left. A background
//! task seals memtables by size or age, compacts small segments, applies retention and
//! truncates the WAL behind the oldest unsealed record.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use eddy_ingest::decode_stream::decode_stream;
use eddy_ingest::source::{self as sources, RunningSource};
use eddy_ingest::validate::conform_batch;
use eddy_proto::{
    rejected_table_def, AlertDef, AlertRuleInfo, BeService, ByteStream, ColumnDef, Error,
    ErrorCode, Result, RollupDef, RollupInfo, ScanRequest, ScanSnapshot, SegmentInfo, SourceDef,
    SourceStatus, TableDef, TableInfo, WriteFormat,
};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::RwLock;
use tokio::sync::Notify;

use crate::config::BeConfig;
use crate::maintenance::{self, StorageCtx};
use crate::manifest::{self, Catalog, CatalogEntry, Manifest};
use crate::metrics;
use crate::scan::plan_scan;
use crate::segment::{decode_bitmap, load_segment_meta, SegmentHandle};
use crate::table::{Table, TableState};
use crate::wal::{self, Wal, KIND_DELETE, KIND_WRITE};

mod alerts;
mod lengths;
mod views;

pub struct Engine {
    config: BeConfig,
    pub(crate) ctx: StorageCtx,
    wal: Wal,
    tables: RwLock<BTreeMap<String, Arc<Table>>>,
    catalog: tokio::sync::Mutex<Catalog>,
    seal_wanted: Notify,
    /// Running sources by name (every source of the catalog, paused ones included).
    sources: parking_lot::Mutex<BTreeMap<String, RunningSource>>,
    /// Materialized views by name (their state is in their root table's state).
    views: RwLock<BTreeMap<String, Arc<eddy_ingest::rollup::RollupPlan>>>,
    /// Alert rules, `system.alerts` and the sinks (rule state is in the tables' states).
    pub(crate) alerts: Arc<crate::alerts::AlertHub>,
    me: Weak<Engine>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.config.data_dir)
            .finish()
    }
}

fn relation_missing(name: &str) -> Error {
    Error::new(
        ErrorCode::TableNotFound,
        format!("relation \"{name}\" does not exist"),
    )
}

pub(crate) fn encode_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    // Sized up front: growing by doubling would copy (and fault in) the payload repeatedly.
    let data: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    let mut buf = Vec::with_capacity(data + 4096 * (batches.len() + 1));
    let mut w = StreamWriter::try_new(&mut buf, schema)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("encode WAL record: {e}")))?;
    for b in batches {
        w.write(b)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("encode WAL record: {e}")))?;
    }
    w.finish()
        .map_err(|e| Error::new(ErrorCode::Internal, format!("encode WAL record: {e}")))?;
    Ok(buf)
}

pub(crate) fn decode_ipc(payload: &[u8]) -> Result<Vec<RecordBatch>> {
    let r = StreamReader::try_new(payload, None)
        .map_err(|e| Error::new(ErrorCode::StorageCorrupt, format!("decode WAL record: {e}")))?;
    r.collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::new(ErrorCode::StorageCorrupt, format!("decode WAL record: {e}")))
}

impl Engine {
    /// Opens (recovering if needed) the engine and starts its background maintenance.
    pub async fn open(config: BeConfig) -> Result<Arc<Engine>> {
        config
            .validate()
            .map_err(|m| Error::new(ErrorCode::InvalidTableDefinition, m))?;
        metrics::init(config.memtable_bytes_max);
        metrics::BULK_WRITE_ROWS_MIN.set(config.bulk_write_rows_min as i64);
        crate::malloc::start_trimming();
        crate::rollups::STATE_BYTES_MAX.store(config.rollup_state_bytes_max, Ordering::Relaxed);
        metrics::VIEW_STATE_BYTES_MAX.set(config.rollup_state_bytes_max as i64);
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::new(
                ErrorCode::StorageIo,
                format!("create {}: {e}", config.data_dir.display()),
            )
        })?;
        let store = crate::store::open_store(&config)?;
        let catalog: Catalog = manifest::read_json(&store, manifest::CATALOG_PATH)
            .await?
            .unwrap_or_default();

        // Load manifests and segment metadata.
        let mut loaded = Vec::new();
        let mut max_id = 0u64;
        for entry in &catalog.tables {
            let m: Manifest = manifest::read_json(&store, &manifest::manifest_path(entry.id))
                .await?
                .unwrap_or_default();
            let mut segs = Vec::new();
            for path in &m.segments {
                let meta = load_segment_meta(&store, path).await?;
                max_id = max_id.max(meta.id);
                segs.push(meta);
            }
            loaded.push((entry.clone(), m, segs));
        }
        let ids = Arc::new(AtomicU64::new(max_id + 1));
        let cache = Arc::new(crate::cache::SegmentCache::new(
            config.segment_cache_bytes as usize,
        ));
        let ctx = StorageCtx {
            store: Arc::clone(&store),
            cache: Arc::clone(&cache),
            ids: Arc::clone(&ids),
            row_group_rows: config.row_group_rows,
            compaction_min_segments: config.compaction_min_segments,
            compaction_target_rows: config.compaction_target_rows,
        };
        let mut tables = BTreeMap::new();
        let mut live_paths = HashSet::new();
        for (entry, m, segs) in loaded {
            let mut st = TableState::new(entry.def.clone(), ctx.next_id())?;
            st.flushed_seq = m.flushed_seq;
            st.applied_seq = m.flushed_seq;
            st.flushed_offsets = m.source_offsets.clone();
            st.applied_offsets = m.source_offsets.clone();
            st.flushed_views = m.rollups.clone();
            live_paths.extend(views::snapshot_paths(&m));
            for meta in segs {
                live_paths.insert(meta.path.clone());
                live_paths.insert(meta.meta_path());
                st.segments.insert(
                    meta.id,
                    Arc::new(SegmentHandle::new(
                        meta,
                        Arc::clone(&store),
                        Arc::clone(&cache),
                    )),
                );
            }
            for (id, enc) in &m.deletes {
                st.deletes.insert(*id, decode_bitmap(enc)?);
            }
            let table = Arc::new(Table {
                id: entry.id,
                state: parking_lot::Mutex::new(st),
                maintenance: tokio::sync::Mutex::new(()),
                dropped: Default::default(),
            });
            let segs: Vec<Arc<SegmentHandle>> =
                table.state.lock().segments.values().cloned().collect();
            for s in &segs {
                maintenance::load_keys(&table, s).await?;
            }
            tables.insert(entry.def.name.clone(), table);
        }
        remove_orphans(&store, &catalog, &live_paths).await;
        // Views restored from their snapshots see the replay; the others are rebuilt after.
        let (view_plans, rebuild) =
            Engine::compile_views_at_open(&store, &catalog.rollups, &tables).await;
        // Rules see the replay, which re-fires the alerts of rows not yet sealed.
        let alert_hub = Engine::open_alerts(&catalog.alerts, &tables, &view_plans).await?;
        metrics::ALERT_SINK_QUEUE_MAX.set(config.alert_sink_queue_max as i64);

        // Replay the WAL past each table's manifest.
        let wal_dir = config.data_dir.join("wal");
        let (records, next_seq) = wal::replay(&wal_dir)?;
        let by_id: BTreeMap<u64, Arc<Table>> =
            tables.values().map(|t| (t.id, Arc::clone(t))).collect();
        let mut replayed = 0u64;
        for rec in records {
            let Some(t) = by_id.get(&rec.table_id) else {
                continue;
            };
            let mut st = t.state.lock();
            if rec.seq <= st.flushed_seq {
                continue;
            }
            for b in decode_ipc(&rec.payload)? {
                match rec.kind {
                    KIND_WRITE => replayed += st.apply_write(rec.seq, b)?,
                    KIND_DELETE => {
                        st.apply_delete(rec.seq, &b)?;
                    }
                    _ => {}
                }
            }
        }
        if replayed > 0 {
            tracing::info!(rows = replayed, "replayed WAL");
        }
        let wal = Wal::start(
            wal_dir,
            next_seq,
            config.wal_queue_capacity,
            config.wal_file_bytes_max,
        )?;
        let source_defs = catalog.sources.clone();
        let alert_defs = catalog.alerts.clone();
        let engine = Arc::new_cyclic(|me| Engine {
            config,
            ctx,
            wal,
            tables: RwLock::new(tables),
            catalog: tokio::sync::Mutex::new(catalog),
            seal_wanted: Notify::new(),
            sources: parking_lot::Mutex::new(BTreeMap::new()),
            views: RwLock::new(view_plans),
            alerts: alert_hub,
            me: std::sync::Weak::clone(me),
        });
        for plan in rebuild {
            let name = plan.def.name.clone();
            let attached = engine
                .get(&plan.root_table)
                .and_then(|t| engine.attach_with_backfill(&t, plan));
            match attached {
                Ok(()) => tracing::info!(view = %name, "rebuilding materialized view"),
                Err(e) => {
                    tracing::error!(view = %name, error = %e, "materialized view rebuild failed")
                }
            }
        }
        for (name, t) in engine.tables.read().iter() {
            let st = t.state.lock();
            metrics::SEGMENTS
                .with_label_values(&[name])
                .set(st.segments.len() as i64);
            metrics::MEMTABLE_BYTES
                .with_label_values(&[name])
                .set(st.memtable_bytes() as i64);
        }
        let weak = Arc::downgrade(&engine);
        tokio::spawn(async move { background(weak).await });
        for def in &alert_defs {
            if let Err(e) = engine.start_sink(def) {
                tracing::error!(rule = %def.name, error = %e, "alert sink did not start");
            }
        }
        for def in source_defs {
            if let Err(e) = engine.start_source(&def) {
                tracing::error!(source = %def.name, error = %e, "source did not start");
            }
        }
        Ok(engine)
    }

    fn start_source(&self, def: &SourceDef) -> Result<()> {
        let sink = Arc::new(crate::sources::EngineSink {
            engine: std::sync::Weak::clone(&self.me),
            rt: tokio::runtime::Handle::current(),
        });
        let running = sources::start(def, sink)?;
        tracing::info!(source = %def.name, table = %def.table, "source started");
        self.sources.lock().insert(def.name.clone(), running);
        Ok(())
    }

    pub(crate) fn table_handle(&self, name: &str) -> Result<Arc<Table>> {
        self.get(name)
    }

    pub(crate) fn memtable_bytes_max(&self) -> u64 {
        self.config.memtable_bytes_max
    }

    pub(crate) fn want_seal(&self) {
        self.seal_wanted.notify_one();
    }

    /// Replaces the catalog with `next` (durably) while holding its lock.
    async fn store_catalog(&self, cat: &mut Catalog, next: Catalog) -> Result<()> {
        manifest::write_json(&self.ctx.store, manifest::CATALOG_PATH, &next).await?;
        *cat = next;
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Arc<Table>> {
        self.tables
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| relation_missing(name))
    }

    /// Removes WAL files no table needs any more.
    fn truncate_wal(&self) {
        let keep_from = self
            .tables
            .read()
            .values()
            .map(|t| {
                let st = t.state.lock();
                if st.dirty() {
                    st.flushed_seq + 1
                } else {
                    u64::MAX
                }
            })
            .min()
            .unwrap_or(u64::MAX);
        if let Err(e) = self.wal.truncate_before(keep_from) {
            tracing::warn!(error = %e, "WAL truncation failed");
        }
    }

    async fn seal_due(&self, force: bool) -> Result<()> {
        let tables: Vec<Arc<Table>> = self.tables.read().values().cloned().collect();
        let max_age = Duration::from_millis(self.config.seal_interval_ms);
        let mut first_err = None;
        for t in tables {
            let due = {
                let st = t.state.lock();
                force && (st.active.rows > 0 || st.dirty() || !st.frozen.is_empty())
                    || st.memtable_bytes() as u64 >= self.config.memtable_bytes_max
                    || ((st.active.rows > 0 || st.offsets_dirty())
                        && st.active.created.elapsed() >= max_age)
                    || !st.frozen.is_empty()
            };
            if due {
                if let Err(e) = maintenance::seal(&self.ctx, &t).await {
                    tracing::error!(table = t.id, error = %e, "seal failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        self.truncate_wal();
        first_err.map_or(Ok(()), Err)
    }

    async fn compact_all(&self) {
        let tables: Vec<Arc<Table>> = self.tables.read().values().cloned().collect();
        for t in tables {
            for _ in 0..8 {
                match maintenance::compact(&self.ctx, &t).await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::error!(table = t.id, error = %e, "compaction failed");
                        break;
                    }
                }
            }
        }
    }

    async fn retention_all(&self) {
        let now = chrono::Utc::now().timestamp_micros();
        let tables: Vec<Arc<Table>> = self.tables.read().values().cloned().collect();
        for t in tables {
            if let Err(e) = maintenance::apply_retention(&self.ctx, &t, now).await {
                tracing::error!(table = t.id, error = %e, "retention failed");
            }
        }
    }

    /// Runs compaction and retention now (tests and `CHECKPOINT` use the background loop's
    /// work synchronously).
    pub async fn run_maintenance(&self) {
        self.compact_all().await;
        self.retention_all().await;
    }

    /// Backpressure: a table's memtables (active plus sealing) may hold at most twice
    /// `memtable_bytes_max`. Past that, writers wait for seals, and fail with a retryable
    /// error if sealing stays behind for 30 s (e.g. the object store is down).
    pub(crate) async fn wait_for_memtable_room(
        &self,
        table: &Arc<Table>,
        name: &str,
    ) -> Result<()> {
        let limit = 2 * self.config.memtable_bytes_max;
        let start = tokio::time::Instant::now();
        loop {
            let held = table.state.lock().memtable_bytes() as u64;
            if held <= limit {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(Error::new(
                    ErrorCode::ResourceExhausted,
                    format!("memtable of \"{name}\" holds {held} bytes (limit {limit}) and sealing is behind; retry later"),
                ));
            }
            self.seal_wanted.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn write_validated(
        &self,
        table: &Arc<Table>,
        name: &str,
        batches: Vec<RecordBatch>,
    ) -> Result<u64> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Ok(0);
        }
        // Only tables with varchar(n) / char(n) columns pay for a copy of their definition.
        let limited = {
            let st = table.state.lock();
            st.def
                .columns
                .iter()
                .any(|c| c.ty.max_chars().is_some())
                .then(|| st.def.clone())
        };
        let batches = match limited {
            Some(def) => lengths::conform_lengths(&def, batches)?,
            None => batches,
        };
        let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
        let bulk_min = self.config.bulk_write_rows_min;
        if bulk_min > 0 && rows as u64 >= bulk_min && crate::bulk::eligible(&table.state.lock()) {
            // Segments of a compacted size, whatever the threshold: a lower threshold
            // only sends smaller writes this way.
            let chunk_rows = bulk_min.max(self.config.compaction_target_rows) as usize;
            let n = crate::bulk::write(&self.ctx, table, batches, chunk_rows).await?;
            metrics::ROWS_INGESTED.with_label_values(&[name]).inc_by(n);
            metrics::BYTES_INGESTED
                .with_label_values(&[name])
                .inc_by(bytes as u64);
            return Ok(n);
        }
        self.wait_for_memtable_room(table, name).await?;
        let schema = batches[0].schema();
        let payload = encode_ipc(&schema, &batches)?;
        let t = Arc::clone(table);
        let n = self
            .wal
            .append(
                table.id,
                KIND_WRITE,
                payload,
                Box::new(move |seq| {
                    let mut st = t.state.lock();
                    let mut n = 0;
                    for b in batches {
                        match st.apply_write(seq, b) {
                            Ok(k) => n += k,
                            Err(e) => {
                                tracing::error!(error = %e, "applying a durable write failed")
                            }
                        }
                    }
                    n
                }),
            )
            .await?;
        metrics::ROWS_INGESTED.with_label_values(&[name]).inc_by(n);
        metrics::BYTES_INGESTED
            .with_label_values(&[name])
            .inc_by(bytes as u64);
        let over = {
            let st = table.state.lock();
            metrics::MEMTABLE_BYTES
                .with_label_values(&[name])
                .set(st.memtable_bytes() as i64);
            st.memtable_bytes() as u64 >= self.config.memtable_bytes_max
        };
        if over {
            self.seal_wanted.notify_one();
        }
        Ok(n)
    }
}

/// Deletes objects that no manifest names: segments of a seal or compaction that crashed
/// before its manifest, and files of dropped tables.
async fn remove_orphans(store: &Arc<dyn ObjectStore>, catalog: &Catalog, live: &HashSet<String>) {
    let ids: HashSet<String> = catalog.tables.iter().map(|t| t.id.to_string()).collect();
    let mut listing = store.list(Some(&Path::from("tables")));
    while let Some(item) = listing.next().await {
        let Ok(obj) = item else { continue };
        let path = obj.location.to_string();
        let mut parts = path.split('/');
        let (_, id, file) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let orphan = !ids.contains(id)
            || ((file.starts_with("seg-") || file.starts_with("rollup-")) && !live.contains(&path));
        if orphan {
            tracing::info!(path = %path, "removing orphan file");
            let _ = store.delete(&obj.location).await;
        }
    }
}

async fn background(engine: std::sync::Weak<Engine>) {
    let mut last_compaction = tokio::time::Instant::now();
    let mut last_retention = tokio::time::Instant::now();
    loop {
        let Some(e) = engine.upgrade() else { return };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = e.seal_wanted.notified() => {}
        }
        let _ = e.seal_due(false).await;
        if last_compaction.elapsed() >= Duration::from_millis(e.config.compaction_interval_ms) {
            e.compact_all().await;
            last_compaction = tokio::time::Instant::now();
        }
        if last_retention.elapsed() >= Duration::from_millis(e.config.retention_interval_ms) {
            e.retention_all().await;
            last_retention = tokio::time::Instant::now();
        }
    }
}

#[async_trait]
impl BeService for Engine {
    async fn create_table(&self, def: TableDef, if_not_exists: bool) -> Result<()> {
        def.validate()?;
        let mut cat = self.catalog.lock().await;
        if self.tables.read().contains_key(&def.name) {
            if if_not_exists {
                return Ok(());
            }
            return Err(Error::new(
                ErrorCode::TableAlreadyExists,
                format!("relation \"{}\" already exists", def.name),
            ));
        }
        let id = cat.next_table_id;
        let mut next = cat.clone();
        next.next_table_id += 1;
        next.tables.push(CatalogEntry {
            id,
            def: def.clone(),
        });
        manifest::write_json(&self.ctx.store, manifest::CATALOG_PATH, &next).await?;
        *cat = next;
        let st = TableState::new(def.clone(), self.ctx.next_id())?;
        let table = Arc::new(Table {
            id,
            state: parking_lot::Mutex::new(st),
            maintenance: tokio::sync::Mutex::new(()),
            dropped: Default::default(),
        });
        self.tables.write().insert(def.name, table);
        Ok(())
    }

    async fn drop_table(&self, name: &str, if_exists: bool) -> Result<()> {
        if let Some(r) = self.rule_on(name) {
            return Err(Error::new(
                ErrorCode::DependentObjects,
                format!(
                    "cannot drop table {name} because alert rule {r} watches it; DROP ALERT {r} first"
                ),
            ));
        }
        if let Some(v) = self.view_over(name) {
            return Err(Error::new(
                ErrorCode::DependentObjects,
                format!(
                    "cannot drop table {name} because materialized view {v} depends on it; DROP MATERIALIZED VIEW {v} first"
                ),
            ));
        }
        let mut cat = self.catalog.lock().await;
        if let Some(s) = cat.sources.iter().find(|s| s.table == name) {
            return Err(Error::new(
                ErrorCode::DependentObjects,
                format!(
                    "cannot drop table {name} because source {} writes into it; DROP SOURCE {} first",
                    s.name, s.name
                ),
            ));
        }
        let Some(table) = self.tables.read().get(name).cloned() else {
            return if if_exists {
                Ok(())
            } else {
                Err(relation_missing(name))
            };
        };
        let mut next = cat.clone();
        next.tables.retain(|t| t.id != table.id);
        manifest::write_json(&self.ctx.store, manifest::CATALOG_PATH, &next).await?;
        *cat = next;
        table.dropped.store(true, Ordering::SeqCst);
        self.tables.write().remove(name);
        for s in table.state.lock().segments.values() {
            s.mark_obsolete();
        }
        let _ = self
            .ctx
            .store
            .delete(&Path::from(manifest::manifest_path(table.id)))
            .await;
        for m in [
            &metrics::SEGMENTS,
            &metrics::SEGMENT_BYTES,
            &metrics::MEMTABLE_BYTES,
        ] {
            let _ = m.remove_label_values(&[name]);
        }
        Ok(())
    }

    async fn add_column(&self, table: &str, column: ColumnDef, if_not_exists: bool) -> Result<()> {
        let mut cat = self.catalog.lock().await;
        let t = self.get(table)?;
        let mut def = t.state.lock().def.clone();
        if def.column(&column.name).is_some() {
            if if_not_exists {
                return Ok(());
            }
            return Err(Error::new(
                ErrorCode::ColumnAlreadyExists,
                format!(
                    "column \"{}\" of relation \"{table}\" already exists",
                    column.name
                ),
            ));
        }
        if !column.nullable && t.state.lock().live_rows() > 0 {
            return Err(Error::new(
                ErrorCode::NotNullViolation,
                format!(
                    "column \"{}\" of relation \"{table}\" contains null values",
                    column.name
                ),
            ));
        }
        def.columns.push(column);
        let mut next = cat.clone();
        for e in next.tables.iter_mut().filter(|e| e.id == t.id) {
            e.def = def.clone();
        }
        manifest::write_json(&self.ctx.store, manifest::CATALOG_PATH, &next).await?;
        *cat = next;
        let mut st = t.state.lock();
        st.set_schema(def.arrow_schema());
        st.def = def;
        Ok(())
    }

    fn table(&self, name: &str) -> Option<TableDef> {
        self.tables
            .read()
            .get(name)
            .map(|t| t.state.lock().def.clone())
    }

    fn tables(&self) -> Vec<TableInfo> {
        self.tables
            .read()
            .values()
            .map(|t| {
                let st = t.state.lock();
                TableInfo {
                    def: st.def.clone(),
                    rows: st.live_rows(),
                    memtable_rows: st.memtable_rows() as u64,
                    memtable_bytes: st.memtable_bytes() as u64,
                    segments: st.segments.len() as u64,
                    segment_bytes: st.segments.values().map(|s| s.meta.bytes).sum(),
                }
            })
            .collect()
    }

    fn segments(&self) -> Vec<SegmentInfo> {
        let mut out = Vec::new();
        for (name, t) in self.tables.read().iter() {
            let st = t.state.lock();
            for s in st.segments.values() {
                let m = &s.meta;
                out.push(SegmentInfo {
                    table: name.clone(),
                    partition: m.partition.clone(),
                    segment_id: m.id,
                    rows: m.rows,
                    deleted_rows: st.deletes.get(&m.id).map(|b| b.len()).unwrap_or(0),
                    bytes: m.bytes,
                    min_time_micros: m.time_min_micros,
                    max_time_micros: m.time_max_micros,
                    created_micros: m.created_micros,
                    level: m.level,
                });
            }
        }
        out
    }

    async fn write(&self, table: &str, batches: Vec<RecordBatch>) -> Result<u64> {
        let t = self.get(table)?;
        let schema = Arc::clone(&t.state.lock().schema);
        let mut offset = 0;
        let mut ok = Vec::with_capacity(batches.len());
        for b in &batches {
            ok.push(conform_batch(&schema, b, offset)?);
            offset += b.num_rows();
        }
        self.write_validated(&t, table, ok).await
    }

    async fn write_encoded(
        &self,
        table: &str,
        format: WriteFormat,
        body: ByteStream,
    ) -> Result<u64> {
        let t = self.get(table)?;
        let schema = Arc::clone(&t.state.lock().schema);
        let started = std::time::Instant::now();
        let batches = decode_stream(schema, format, body).await?;
        tracing::debug!(
            table,
            ms = started.elapsed().as_millis() as u64,
            "received and decoded"
        );
        self.write_validated(&t, table, batches).await
    }

    async fn delete_keys(&self, table: &str, keys: RecordBatch) -> Result<u64> {
        let t = self.get(table)?;
        let key_schema: SchemaRef = {
            let st = t.state.lock();
            if !st.def.has_primary_key() {
                return Err(Error::new(
                    ErrorCode::InvalidStatement,
                    format!("DELETE needs a primary key, and \"{table}\" has none"),
                ));
            }
            st.key_schema()
        };
        let keys = conform_batch(&key_schema, &keys, 0)?;
        if keys.num_rows() == 0 {
            return Ok(0);
        }
        let payload = encode_ipc(&key_schema, std::slice::from_ref(&keys))?;
        let t2 = Arc::clone(&t);
        self.wal
            .append(
                t.id,
                KIND_DELETE,
                payload,
                Box::new(move |seq| t2.state.lock().apply_delete(seq, &keys).unwrap_or(0)),
            )
            .await
    }

    async fn scan(&self, request: ScanRequest) -> Result<Arc<dyn ScanSnapshot>> {
        let view = self.views.read().get(&request.table).cloned();
        if let Some(plan) = view {
            let t = self.get(&plan.root_table)?;
            let batch = {
                let mut st = t.state.lock();
                let i = crate::rollups::view_index(&st, &request.table)
                    .ok_or_else(|| relation_missing(&request.table))?;
                crate::rollups::view_batch(&mut st.views[i], request.projection.as_deref())?
            };
            return Ok(Arc::new(crate::scan::TableScan::from_batch(
                batch,
                request.target_partitions,
            )));
        }
        let t = self.get(&request.table)?;
        let st = t.state.lock();
        let scan = plan_scan(
            &st,
            request.projection.as_deref(),
            &request.predicates,
            request.target_partitions,
        )?;
        Ok(Arc::new(scan))
    }

    async fn create_source(&self, def: SourceDef, if_not_exists: bool) -> Result<()> {
        let cat = self.catalog.lock().await;
        if cat.sources.iter().any(|s| s.name == def.name) {
            if if_not_exists {
                return Ok(());
            }
            return Err(Error::new(
                ErrorCode::SourceAlreadyExists,
                format!("source \"{}\" already exists", def.name),
            ));
        }
        drop(cat);
        if self.get(&def.table).is_err() {
            if let Some(t) = sources::default_table(&def) {
                self.create_table(t, true).await?;
            }
        }
        let table = self.get(&def.table)?.state.lock().def.clone();
        sources::validate(&def, &table)?;
        // Rejected records need somewhere to go before the first record is read.
        self.create_table(rejected_table_def(), true).await?;
        let mut cat = self.catalog.lock().await;
        if cat.sources.iter().any(|s| s.name == def.name) {
            return Err(Error::new(
                ErrorCode::SourceAlreadyExists,
                format!("source \"{}\" already exists", def.name),
            ));
        }
        let mut next = cat.clone();
        next.sources.push(def.clone());
        self.store_catalog(&mut cat, next).await?;
        self.start_source(&def)
    }

    async fn drop_source(&self, name: &str, if_exists: bool) -> Result<()> {
        let mut cat = self.catalog.lock().await;
        let Some(def) = cat.sources.iter().find(|s| s.name == name).cloned() else {
            if if_exists {
                return Ok(());
            }
            return Err(Error::new(
                ErrorCode::SourceNotFound,
                format!("source \"{name}\" does not exist"),
            ));
        };
        let mut next = cat.clone();
        next.sources.retain(|s| s.name != name);
        self.store_catalog(&mut cat, next).await?;
        let running = self.sources.lock().remove(name);
        if let Some(running) = running {
            tokio::task::spawn_blocking(move || running.stop())
                .await
                .map_err(|e| Error::new(ErrorCode::Internal, format!("stop source: {e}")))?;
        }
        // Forget its offsets, so a new source of the same name starts afresh.
        if let Ok(t) = self.get(&def.table) {
            let mut st = t.state.lock();
            st.applied_offsets.remove(name);
        }
        Ok(())
    }

    async fn set_source_paused(&self, name: &str, paused: bool) -> Result<()> {
        let mut cat = self.catalog.lock().await;
        if !cat.sources.iter().any(|s| s.name == name) {
            return Err(Error::new(
                ErrorCode::SourceNotFound,
                format!("source \"{name}\" does not exist"),
            ));
        }
        let mut next = cat.clone();
        for s in next.sources.iter_mut().filter(|s| s.name == name) {
            s.paused = paused;
        }
        let table = next
            .sources
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.table.clone());
        self.store_catalog(&mut cat, next).await?;
        drop(cat);
        let shared = self.sources.lock().get(name).map(|r| {
            r.set_paused(paused);
            Arc::clone(&r.shared)
        });
        if let (true, Some(shared)) = (paused, shared) {
            let quiet =
                tokio::task::spawn_blocking(move || shared.wait_quiet(Duration::from_secs(30)))
                    .await
                    .unwrap_or(false);
            if !quiet {
                tracing::warn!(source = %name, "source did not settle within 30 s of PAUSE");
            }
        }
        // Make what the source applied durable now: a paused source re-reads nothing after
        // a restart, so rows only in the memtable would stay missing until it resumes.
        if paused {
            if let Some(t) = table.and_then(|t| self.get(&t).ok()) {
                maintenance::seal(&self.ctx, &t).await?;
            }
        }
        Ok(())
    }

    fn sources(&self) -> Vec<SourceStatus> {
        let running = self.sources.lock();
        let mut out = Vec::new();
        for (name, r) in running.iter() {
            let durable = self
                .get(&r.shared.table)
                .map(|t| {
                    t.state
                        .lock()
                        .flushed_offsets
                        .get(name)
                        .cloned()
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            out.extend(r.status(&durable));
        }
        out
    }

    async fn create_rollup(&self, def: RollupDef, if_not_exists: bool) -> Result<()> {
        self.create_view(def, if_not_exists).await
    }

    async fn drop_rollup(&self, name: &str, if_exists: bool) -> Result<()> {
        self.drop_view(name, if_exists).await
    }

    fn rollup(&self, name: &str) -> Option<RollupInfo> {
        self.view_info(name)
    }

    fn rollups(&self) -> Vec<RollupInfo> {
        self.view_names()
            .iter()
            .filter_map(|n| self.view_info(n))
            .collect()
    }

    async fn checkpoint(&self) -> Result<()> {
        self.wal.rotate().await?;
        self.seal_due(true).await?;
        self.truncate_wal();
        Ok(())
    }

    async fn create_alert(&self, def: AlertDef, if_not_exists: bool) -> Result<()> {
        self.create_rule(def, if_not_exists).await
    }

    async fn drop_alert(&self, name: &str, if_exists: bool) -> Result<()> {
        self.drop_rule(name, if_exists).await
    }

    fn alert_rules(&self) -> Vec<AlertRuleInfo> {
        self.rules_info()
    }

    fn metrics_text(&self) -> String {
        metrics::ALERT_SINK_QUEUED.reset();
        for r in self.rules_info() {
            if let Some(d) = r.def.as_ref().filter(|d| d.sink.is_some()) {
                metrics::ALERT_SINK_QUEUED
                    .with_label_values(&[&d.name])
                    .set(r.queued as i64);
            }
        }
        metrics::set_source_gauges(&self.sources());
        metrics::set_view_gauges(&self.rollups());
        metrics::render()
    }
}
