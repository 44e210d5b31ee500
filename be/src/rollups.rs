//! Materialized views stored with the table that feeds them.
//!
//! A view's state lives in its root table's [`TableState`], so it changes under the same
//! lock, in the same order, as the rows it aggregates: every write path (WAL-logged writes,
//! Kafka deliveries, WAL replay) goes through [`TableState::apply_write`], which feeds the
//! views. Durability follows the table's: at each seal, under the lock that freezes the
//! memtable, every view's partial state is snapshotted, written next to the segments and
//! named in the same manifest, so the snapshot and the table's `flushed_seq` (and Kafka
//! offsets) always describe the same rows. Recovery restores the snapshot, then the WAL
//! replay (or the Kafka re-read from the manifest's offsets) feeds the views the rest.
//! A view without a usable snapshot (created since the last seal, or still backfilling then)
//! is rebuilt from the table's rows after replay, like a new view.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use eddy_ingest::rollup::{Feed, Rollup, RollupCounters, RollupPlan};
use eddy_proto::{Error, ErrorCode, Result, RollupInfo, INTERNAL_COLUMN_PREFIX};
use serde::{Deserialize, Serialize};

use crate::table::TableState;

/// One view in its root table's state.
#[derive(Debug)]
pub struct ViewState {
    pub rollup: Rollup,
    /// False while a backfill is still adding the table's earlier rows.
    pub complete: bool,
    pub backfill_done: u64,
    pub backfill_total: u64,
    pub last_error: Option<String>,
    /// State version of the last snapshot written (a view that did not change since keeps
    /// its snapshot).
    pub snapshot_version: Option<u64>,
    /// No longer updated (its state outgrew `be.rollup_state_bytes_max`).
    pub stopped: bool,
}

impl ViewState {
    pub fn new(rollup: Rollup, complete: bool) -> Self {
        Self {
            rollup,
            complete,
            backfill_done: 0,
            backfill_total: 0,
            last_error: None,
            snapshot_version: None,
            stopped: false,
        }
    }

    pub fn name(&self) -> &str {
        self.rollup.name()
    }

    pub fn plan(&self) -> &Arc<RollupPlan> {
        &self.rollup.plan
    }

    fn record(&mut self, r: Result<Option<BooleanArray>>) -> Option<BooleanArray> {
        match r {
            Ok(m) => m,
            Err(e) => {
                if self.last_error.is_none() {
                    tracing::error!(view = %self.name(), error = %e, "a view could not aggregate a batch");
                }
                self.last_error = Some(e.message);
                // Nothing reached the view: cascades from it must not see these rows either.
                Some(BooleanArray::from(vec![false; 0]))
            }
        }
    }

    pub fn info(&mut self) -> Result<RollupInfo> {
        let plan = Arc::clone(self.plan());
        Ok(RollupInfo {
            def: plan.def.clone(),
            source: plan.source.clone(),
            root_table: plan.root_table.clone(),
            schema: Arc::clone(&plan.schema),
            internal_schema: Arc::clone(&plan.internal_schema),
            rows: self.rollup.groups() as u64,
            open_buckets: self.rollup.open_buckets()?,
            late_rows_accepted: self.rollup.counters.late_rows_accepted,
            late_rows_dropped: self.rollup.counters.late_rows_dropped,
            state_bytes: self.rollup.state_bytes() as u64,
            backfill_rows_done: self.backfill_done,
            backfill_rows_total: self.backfill_total,
            max_event_time_micros: self.rollup.counters.max_time_micros,
            last_error: self.last_error.clone(),
        })
    }
}

/// `be.rollup_state_bytes_max`, set once at start.
pub static STATE_BYTES_MAX: AtomicU64 = AtomicU64::new(u64::MAX);

/// Feeds one written batch to every view of the table, parents before the views that
/// cascade from them (which see only the rows their parent took). Returns the rows each
/// view `watched` names took (for alert rules on it).
pub fn feed(
    views: &mut [ViewState],
    batch: &RecordBatch,
    watched: &dyn Fn(&str) -> bool,
) -> BTreeMap<String, RecordBatch> {
    if views.is_empty() {
        return BTreeMap::new();
    }
    let max = STATE_BYTES_MAX.load(Ordering::Relaxed);
    let mut took: BTreeMap<String, RecordBatch> = BTreeMap::new();
    for i in 0..views.len() {
        if views[i].stopped {
            continue;
        }
        let input = match views[i].plan().parent.clone() {
            Some(p) => match took.get(&p) {
                Some(b) => b.clone(),
                None => continue,
            },
            None => batch.clone(),
        };
        let r = views[i].rollup.apply(&input, Feed::Live);
        let mask = views[i].record(r);
        let bytes = views[i].rollup.state_bytes() as u64;
        if bytes > max {
            let v = &mut views[i];
            v.stopped = true;
            v.last_error = Some(format!(
                "stopped: its state ({bytes} bytes) outgrew be.rollup_state_bytes_max ({max}); drop it or raise the limit"
            ));
            tracing::error!(view = %v.name(), bytes, max, "materialized view stopped at its state limit");
        }
        let name = views[i].name().to_string();
        if watched(&name)
            || views
                .iter()
                .any(|c| c.plan().parent.as_deref() == Some(name.as_str()))
        {
            let rows = match mask {
                Some(m) if m.len() == input.num_rows() => {
                    filter_record_batch(&input, &m).unwrap_or_else(|_| input.slice(0, 0))
                }
                Some(_) => input.slice(0, 0),
                None => input,
            };
            took.insert(name, rows);
        }
    }
    took
}

/// Where a view's snapshot is, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRef {
    pub path: String,
    /// The definition the state was built for; a view re-created since is rebuilt.
    pub sql: String,
    pub lateness_secs: Option<u64>,
    pub late_rows_accepted: u64,
    pub late_rows_dropped: u64,
    pub max_time_micros: Option<i64>,
}

impl SnapshotRef {
    pub fn matches(&self, plan: &RollupPlan) -> bool {
        self.sql == plan.def.sql && self.lateness_secs == plan.def.lateness_secs
    }

    pub fn counters(&self) -> RollupCounters {
        RollupCounters {
            late_rows_accepted: self.late_rows_accepted,
            late_rows_dropped: self.late_rows_dropped,
            max_time_micros: self.max_time_micros,
        }
    }
}

/// A view's state to be written at a seal.
pub struct PendingSnapshot {
    pub view: String,
    pub batch: RecordBatch,
    pub reference: SnapshotRef,
    pub version: u64,
}

/// Snapshots every complete view that changed since its last snapshot (called under the
/// table lock, at the moment the memtable freezes).
pub fn take_snapshots(st: &mut TableState, table_id: u64, seal_id: u64) -> Vec<PendingSnapshot> {
    let mut out = Vec::new();
    for (i, v) in st.views.iter_mut().enumerate() {
        if !v.complete || v.stopped || v.snapshot_version == Some(v.rollup.version()) {
            continue;
        }
        match v.rollup.snapshot() {
            Ok(batch) => {
                let c = &v.rollup.counters;
                out.push(PendingSnapshot {
                    view: v.name().to_string(),
                    reference: SnapshotRef {
                        path: format!("tables/{table_id}/rollup-{seal_id}-{i}.arrow"),
                        sql: v.plan().def.sql.clone(),
                        lateness_secs: v.plan().def.lateness_secs,
                        late_rows_accepted: c.late_rows_accepted,
                        late_rows_dropped: c.late_rows_dropped,
                        max_time_micros: c.max_time_micros,
                    },
                    version: v.rollup.version(),
                    batch,
                });
            }
            Err(e) => tracing::error!(view = %v.name(), error = %e, "view snapshot failed"),
        }
    }
    out
}

/// The rows of a view for a scan: output columns by name, internal ones (`$0`, ...) too.
pub fn view_batch(v: &mut ViewState, projection: Option<&[String]>) -> Result<RecordBatch> {
    let wants_internal =
        projection.is_some_and(|p| p.iter().any(|c| c.starts_with(INTERNAL_COLUMN_PREFIX)));
    let wants_output =
        projection.is_none_or(|p| p.iter().any(|c| !c.starts_with(INTERNAL_COLUMN_PREFIX)));
    let internal = if wants_internal || !wants_output {
        Some(v.rollup.internal_batch()?)
    } else {
        None
    };
    let output = if wants_output {
        Some(v.rollup.output_batch()?)
    } else {
        None
    };
    let Some(cols) = projection else {
        return Ok(output.expect("wanted"));
    };
    let mut fields = Vec::new();
    let mut arrays = Vec::new();
    for c in cols {
        let from = if c.starts_with(INTERNAL_COLUMN_PREFIX) {
            internal.as_ref()
        } else {
            output.as_ref()
        }
        .expect("computed above");
        let i = from.schema().index_of(c).map_err(|_| {
            Error::new(
                ErrorCode::ColumnNotFound,
                format!("column \"{c}\" does not exist in view \"{}\"", v.name()),
            )
        })?;
        fields.push(from.schema().field(i).clone().with_nullable(true));
        arrays.push(Arc::clone(from.column(i)));
    }
    let rows = internal
        .as_ref()
        .or(output.as_ref())
        .map(|b| b.num_rows())
        .unwrap_or(0);
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    RecordBatch::try_new_with_options(
        schema,
        arrays,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| Error::new(ErrorCode::Internal, format!("view batch: {e}")))
}

pub fn view_index(st: &TableState, name: &str) -> Option<usize> {
    st.views.iter().position(|v| v.name() == name)
}
