//! Alert rules in the write path.
//!
//! Rules live with the table whose writes they watch ([`TableAlerts`] in its
//! [`TableState`]), so they run under the same lock, in the same order, as the rows and
//! views they read: every write path (WAL-logged writes, Kafka deliveries, WAL replay)
//! passes through [`TableState::apply_write`]. A firing is recorded at once, still under
//! that lock, in the `system.alerts` memtable, then offered to the rule's sink.
//!
//! Durability without a log of its own: alerts are derived from rows, and a row that is
//! not yet sealed into its table's segments is replayed after a crash (from the WAL, or
//! from Kafka at the manifest's offsets), firing the same alert ids again. So a seal of a
//! table with rules first seals `system.alerts` (see `maintenance::seal`): alerts of
//! sealed rows are durable, alerts of unsealed rows are re-fired. The [`AlertHub`]
//! remembers recent ids, loaded from `system.alerts` at start, and drops repeats.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use arrow::record_batch::RecordBatch;
use eddy_ingest::alert::sink::{AlertSink, AlertStore, Outgoing, SinkProgress};
use eddy_ingest::alert::view::ViewWatch;
use eddy_ingest::alert::{alerts_batch, firings_of, message_json, Firing, RowRule};
use eddy_proto::{AlertDef, Error, ErrorCode, Result, ScanSnapshot};
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;

use crate::engine::Engine;
use crate::metrics;
use crate::rollups::ViewState;
use crate::table::Table;

/// Alert ids remembered to drop repeats: those of the last day, at most this many.
const SEEN_MAX: usize = 1_000_000;
const SEEN_WINDOW_MICROS: i64 = 86_400_000_000;

fn id_bits(id: &str) -> u128 {
    u128::from_str_radix(id, 16).unwrap_or_else(|_| {
        let h = blake3::hash(id.as_bytes());
        u128::from_le_bytes(h.as_bytes()[..16].try_into().expect("16 bytes"))
    })
}

/// Recently fired alert ids.
#[derive(Debug, Default)]
struct Seen {
    ids: HashMap<u128, i64>,
    order: VecDeque<(i64, u128)>,
}

impl Seen {
    /// Remembers `id`; false if it was fired before.
    fn insert(&mut self, id: u128, detected: i64) -> bool {
        if self.ids.contains_key(&id) {
            return false;
        }
        self.ids.insert(id, detected);
        self.order.push_back((detected, id));
        while let Some((t, old)) = self.order.front().copied() {
            if self.order.len() > SEEN_MAX || t < detected - SEEN_WINDOW_MICROS {
                self.order.pop_front();
                self.ids.remove(&old);
            } else {
                break;
            }
        }
        true
    }
}

/// What every table's rules share: `system.alerts`, the seen ids, the sinks, counters.
#[derive(Debug)]
pub struct AlertHub {
    table: OnceLock<Arc<Table>>,
    seen: Mutex<Seen>,
    last_detected: AtomicI64,
    /// Every rule by name, with the table it watches.
    pub defs: RwLock<BTreeMap<String, (AlertDef, String)>>,
    pub sinks: RwLock<BTreeMap<String, Arc<AlertSink>>>,
    pub fired: Mutex<BTreeMap<String, u64>>,
    pub errors: Mutex<BTreeMap<String, String>>,
    /// Table → detection time up to which its alerts' rows are sealed.
    sealed: Mutex<HashMap<String, i64>>,
}

impl Default for AlertHub {
    fn default() -> Self {
        Self {
            table: OnceLock::new(),
            seen: Mutex::new(Seen::default()),
            last_detected: AtomicI64::new(0),
            defs: RwLock::new(BTreeMap::new()),
            sinks: RwLock::new(BTreeMap::new()),
            fired: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(BTreeMap::new()),
            sealed: Mutex::new(HashMap::new()),
        }
    }
}

impl AlertHub {
    pub fn table(&self) -> Option<&Arc<Table>> {
        self.table.get()
    }

    /// Detection time of the newest alert.
    pub fn last_detected(&self) -> i64 {
        self.last_detected.load(Ordering::Relaxed)
    }

    /// A seal of `table` made every alert detected up to `through` final.
    pub fn mark_sealed(&self, table: &str, through: i64) {
        let mut s = self.sealed.lock();
        let e = s.entry(table.to_string()).or_insert(through);
        *e = (*e).max(through);
    }

    pub fn set_table(&self, t: Arc<Table>) {
        let _ = self.table.set(t);
    }

    /// Remembers the ids of alerts already recorded (at start, before any replay).
    pub fn remember(&self, batch: &RecordBatch) -> Result<()> {
        let mut seen = self.seen.lock();
        for (f, detected) in firings_of(batch)? {
            seen.insert(id_bits(&f.id), detected);
            self.last_detected.fetch_max(detected, Ordering::Relaxed);
        }
        Ok(())
    }

    fn error(&self, rule: &str, e: &Error) {
        let mut errors = self.errors.lock();
        if !errors.contains_key(rule) {
            tracing::error!(rule, error = %e, "alert rule could not evaluate a batch");
        }
        errors.insert(rule.to_string(), e.message.clone());
    }

    /// Records new firings in `system.alerts` and offers them to their sinks.
    fn record(&self, firings: Vec<Firing>, origin_micros: i64) {
        let Some(table) = self.table.get() else {
            return;
        };
        let mut seen = self.seen.lock();
        let now = chrono::Utc::now().timestamp_micros();
        let mut fresh = Vec::new();
        let mut detected = Vec::new();
        for f in firings {
            let d = now.max(self.last_detected.load(Ordering::Relaxed) + 1);
            if seen.insert(id_bits(&f.id), d) {
                self.last_detected.store(d, Ordering::Relaxed);
                detected.push(d);
                fresh.push(f);
            }
        }
        if fresh.is_empty() {
            return;
        }
        let batch = match alerts_batch(&fresh, &detected) {
            Ok(b) => b,
            Err(e) => return self.error(&fresh[0].rule, &e),
        };
        if let Err(e) = table.state.lock().apply_write(0, batch) {
            return self.error(&fresh[0].rule, &e);
        }
        drop(seen);
        let sinks = self.sinks.read();
        let mut fired = self.fired.lock();
        for (f, d) in fresh.iter().zip(&detected) {
            *fired.entry(f.rule.clone()).or_default() += 1;
            metrics::ALERTS_FIRED.with_label_values(&[&f.rule]).inc();
            if let Some(s) = sinks.get(&f.rule) {
                s.offer(Outgoing {
                    id: f.id.clone(),
                    key: f.key.clone(),
                    payload: message_json(f, *d),
                    detected_micros: *d,
                    origin_micros: Some(origin_micros),
                });
            }
        }
    }
}

/// The rules watching one table's writes.
#[derive(Debug)]
pub struct TableAlerts {
    pub hub: Arc<AlertHub>,
    pub rows: Vec<RowRule>,
    pub views: Vec<ViewWatch>,
}

impl TableAlerts {
    pub fn new(hub: Arc<AlertHub>) -> Self {
        Self {
            hub,
            rows: Vec::new(),
            views: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.views.iter().all(|w| w.rules.is_empty())
    }

    /// Whether a rule watches `view`.
    pub fn watches(&self, view: &str) -> bool {
        self.views.iter().any(|w| w.view() == view)
    }

    pub fn rule_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.rows.iter().map(|r| r.name().to_string()).collect();
        for w in &self.views {
            names.extend(w.rules.iter().map(|r| r.def.name.clone()));
        }
        names
    }

    /// Starts watches whose view is complete (before the view sees the next batch).
    pub fn before_feed(&mut self, views: &mut [ViewState]) {
        for w in &mut self.views {
            if w.started() {
                continue;
            }
            let Some(v) = views.iter_mut().find(|v| v.name() == w.view()) else {
                continue;
            };
            if v.complete && !v.stopped {
                if let Err(e) = w.start(&mut v.rollup) {
                    for r in &w.rules {
                        self.hub.error(&r.def.name, &e);
                    }
                }
            }
        }
    }

    /// Evaluates the rules on a written batch and the rows each watched view accepted.
    /// `origin_micros` is when the data arrived (a Kafka record's timestamp, or the write).
    pub fn after_feed(
        &mut self,
        batch: &RecordBatch,
        accepted: &BTreeMap<String, RecordBatch>,
        origin_micros: i64,
    ) {
        let mut out = Vec::new();
        for r in &self.rows {
            if let Err(e) = r.fire(batch, &mut out) {
                self.hub.error(r.name(), &e);
            }
        }
        for w in &mut self.views {
            if let Some(rows) = accepted.get(w.view()) {
                if let Err(e) = w.on_rows(rows, &mut out) {
                    for r in &w.rules {
                        self.hub.error(&r.def.name, &e);
                    }
                }
            }
        }
        if !out.is_empty() {
            self.hub.record(out, origin_micros);
        }
    }
}

/// Where a rule's sink progress is stored.
fn progress_path(def: &AlertDef) -> String {
    format!("alerts/{}-{}.json", def.name, def.created_micros)
}

/// The engine as a sink sees it.
pub struct HubStore {
    pub engine: Weak<Engine>,
    pub rt: Handle,
}

impl HubStore {
    fn engine(&self) -> Result<Arc<Engine>> {
        self.engine
            .upgrade()
            .ok_or_else(|| Error::new(ErrorCode::Cancelled, "the server is shutting down"))
    }
}

/// Every row of `table` (memtables and segments).
pub async fn read_all(table: &Arc<Table>) -> Result<Vec<RecordBatch>> {
    let scan = {
        let st = table.state.lock();
        crate::scan::plan_scan(&st, None, &[], 1)?
    };
    let mut out = Vec::new();
    for p in 0..scan.partitions() {
        let mut stream = scan.execute(p)?;
        while let Some(b) = stream.next().await {
            out.push(b?);
        }
    }
    Ok(out)
}

impl AlertStore for HubStore {
    fn recorded(&self, rule: &AlertDef, since_micros: i64) -> Result<Vec<Outgoing>> {
        let engine = self.engine()?;
        let Some(table) = engine.alerts.table().cloned() else {
            return Ok(Vec::new());
        };
        let batches = self.rt.block_on(read_all(&table))?;
        let mut out = Vec::new();
        for b in &batches {
            for (f, d) in firings_of(b)? {
                if f.rule == rule.name && d >= since_micros {
                    out.push(Outgoing {
                        id: f.id.clone(),
                        key: f.key.clone(),
                        payload: message_json(&f, d),
                        detected_micros: d,
                        origin_micros: None,
                    });
                }
            }
        }
        out.sort_by_key(|m| m.detected_micros);
        Ok(out)
    }

    fn load_progress(&self, rule: &AlertDef) -> Result<Option<SinkProgress>> {
        let engine = self.engine()?;
        self.rt.block_on(crate::manifest::read_json(
            &engine.ctx.store,
            &progress_path(rule),
        ))
    }

    fn save_progress(&self, rule: &AlertDef, progress: &SinkProgress) -> Result<()> {
        let engine = self.engine()?;
        self.rt.block_on(crate::manifest::write_json(
            &engine.ctx.store,
            &progress_path(rule),
            progress,
        ))
    }

    fn sealed_through(&self, rule: &AlertDef) -> i64 {
        let Ok(engine) = self.engine() else {
            return i64::MIN;
        };
        let hub = &engine.alerts;
        let Some(root) = hub.defs.read().get(&rule.name).map(|(_, r)| r.clone()) else {
            return i64::MIN;
        };
        let Ok(t) = engine.table_handle(&root) else {
            return i64::MIN;
        };
        let st = t.state.lock();
        if st.memtable_rows() == 0 && !st.dirty() {
            // Nothing of the table is unsealed; alerts fire under this lock.
            return hub.last_detected();
        }
        let through = hub.sealed.lock().get(&root).copied().unwrap_or(i64::MIN);
        through
    }

    fn delivered(&self, rule: &str, latency_secs: Option<f64>) {
        metrics::ALERTS_DELIVERED.with_label_values(&[rule]).inc();
        if let Some(s) = latency_secs {
            metrics::ALERT_LATENCY.observe(s);
        }
    }
}
