//! Incremental aggregators behind materialized views (rollups).
//!
//! [`compile`] turns a view's defining query into a [`RollupPlan`]; a [`Rollup`] holds one
//! view's state and is updated with every batch its root table accepts. The state is
//! DataFusion's own partial aggregate state (`GroupsAccumulator`), so reading a view is
//! merging partial states and evaluating them, as DataFusion's final aggregation does.
//!
//! Lateness: a row whose bucket ended `lateness` or more before the newest event time the
//! view has accepted (`bucket_end + lateness <= max_time`) is dropped and counted; for
//! session views the row's own `time + gap` stands for the bucket end. Rows the view drops
//! never reach the views that cascade from it.

mod compile;
mod distinct;
mod sessions;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions,
};
use arrow::compute::{cast, concat, filter_record_batch, prep_null_mask_filter};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::{new_group_values, GroupValues};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use eddy_proto::{Error, ErrorCode, Result};

pub use compile::{
    compile, interval_micros, AggPlan, Bucket, Grouping, Relation, RollupPlan, SessionSpec,
    SESSION_FUNCTION,
};
use sessions::Sessions;

fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Internal, format!("rollup {what}: {e}"))
}

fn eval(e: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef> {
    e.evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(|e| Error::new(ErrorCode::InvalidValue, format!("view expression: {e}")))
}

fn eval_mask(e: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<BooleanArray> {
    let a = eval(e, batch)?;
    let b = a
        .as_boolean_opt()
        .ok_or_else(|| internal("filter", "not a boolean"))?;
    Ok(if b.null_count() > 0 {
        prep_null_mask_filter(b)
    } else {
        b.clone()
    })
}

/// Event times as microseconds (NULL stays NULL).
fn micros(a: &ArrayRef) -> Result<arrow::array::PrimitiveArray<TimestampMicrosecondType>> {
    let c = cast(
        a,
        &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
    )
    .map_err(|e| internal("time", e))?;
    Ok(c.as_primitive::<TimestampMicrosecondType>().clone())
}

enum Groups {
    Keys {
        values: Box<dyn GroupValues>,
        /// Key columns of the groups, in group order, as appended batches.
        chunks: Vec<Vec<ArrayRef>>,
        /// Memory of `chunks`, kept as they are added.
        chunk_bytes: usize,
        len: usize,
    },
    Session(Sessions),
}

/// How a batch reaches a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// A write as it happens: lateness applies.
    Live,
    /// Rows that were in the table before the view (or its state) existed: all count.
    Backfill,
}

/// Counters `system.rollups` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupCounters {
    pub late_rows_accepted: u64,
    pub late_rows_dropped: u64,
    pub max_time_micros: Option<i64>,
}

/// One view's state.
pub struct Rollup {
    pub plan: Arc<RollupPlan>,
    groups: Groups,
    accs: Vec<Acc>,
    pub counters: RollupCounters,
    version: u64,
    cache: Option<(u64, RecordBatch)>,
    scratch: Vec<usize>,
}

impl std::fmt::Debug for Rollup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollup")
            .field("view", &self.plan.def.name)
            .field("groups", &self.groups())
            .finish()
    }
}

/// One aggregate's state: DataFusion's accumulator, or eddy's exact distinct count, whose
/// partial state can be read without draining it (see [`Rollup::take_states`]).
enum Acc {
    DataFusion(Box<dyn GroupsAccumulator>),
    Distinct(distinct::RoaringDistinct),
}

impl Acc {
    fn get(&mut self) -> &mut dyn GroupsAccumulator {
        match self {
            Acc::DataFusion(a) => a.as_mut(),
            Acc::Distinct(d) => d,
        }
    }

    fn size(&self) -> usize {
        match self {
            Acc::DataFusion(a) => a.size(),
            Acc::Distinct(d) => d.size(),
        }
    }
}

fn new_accs(plan: &RollupPlan) -> Result<Vec<Acc>> {
    plan.aggs
        .iter()
        .map(|a| {
            if a.roaring {
                Ok(Acc::Distinct(distinct::RoaringDistinct::default()))
            } else if a.expr.groups_accumulator_supported() {
                a.expr.create_groups_accumulator().map(Acc::DataFusion)
            } else {
                let expr = Arc::clone(&a.expr);
                Ok(Acc::DataFusion(Box::new(
                    datafusion::physical_expr::GroupsAccumulatorAdapter::new(move || {
                        expr.create_accumulator()
                    }),
                )))
            }
        })
        .collect::<datafusion::error::Result<Vec<_>>>()
        .map_err(|e| internal("accumulator", e))
}

fn key_schema(plan: &RollupPlan) -> SchemaRef {
    let n = plan.group_exprs.len();
    Arc::new(Schema::new(
        plan.agg_schema.fields()[..n]
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

impl Rollup {
    pub fn new(plan: Arc<RollupPlan>) -> Result<Self> {
        let groups = match &plan.grouping {
            Grouping::Keys { .. } => Groups::Keys {
                values: new_group_values(key_schema(&plan), &GroupOrdering::None)
                    .map_err(|e| internal("group keys", e))?,
                chunks: Vec::new(),
                chunk_bytes: 0,
                len: 0,
            },
            Grouping::Session(s) => Groups::Session(Sessions::new(&s.key_type, s.gap_micros)?),
        };
        Ok(Self {
            accs: new_accs(&plan)?,
            plan,
            groups,
            counters: RollupCounters::default(),
            version: 0,
            cache: None,
            scratch: Vec::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.plan.def.name
    }

    /// Changes whenever the state does.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Groups (buckets or sessions) in the view.
    pub fn groups(&self) -> usize {
        match &self.groups {
            Groups::Keys { len, .. } => *len,
            Groups::Session(s) => s.live_groups(),
        }
    }

    fn total_groups(&self) -> usize {
        match &self.groups {
            Groups::Keys { len, .. } => *len,
            Groups::Session(s) => s.total_groups(),
        }
    }

    pub fn state_bytes(&self) -> usize {
        let groups = match &self.groups {
            Groups::Keys {
                values,
                chunk_bytes,
                ..
            } => values.size() + chunk_bytes,
            Groups::Session(s) => s.size(),
        };
        groups + self.accs.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Buckets or sessions late rows can still reach.
    pub fn open_buckets(&mut self) -> Result<u64> {
        let (Some(late), Some(max)) = (self.plan.lateness_micros, self.counters.max_time_micros)
        else {
            return Ok(self.groups() as u64);
        };
        match (&self.plan.grouping, &self.groups) {
            (Grouping::Keys { bucket: Some(b) }, Groups::Keys { chunks, .. }) => {
                let mut open = 0u64;
                for c in chunks {
                    let starts = micros(&c[b.key])?;
                    open += starts
                        .iter()
                        .flatten()
                        .filter(|s| s + b.width_micros + late > max)
                        .count() as u64;
                }
                Ok(open)
            }
            (Grouping::Session(s), Groups::Session(sessions)) => {
                Ok(sessions.open_after(max - late - s.gap_micros))
            }
            _ => Ok(self.groups() as u64),
        }
    }

    /// The input batch with NULL `session_start`/`session_end` appended for session views.
    fn input_batch(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let schema = Arc::new(self.plan.input_schema.as_arrow().clone());
        if schema.fields().len() == batch.num_columns() {
            return RecordBatch::try_new(schema, batch.columns().to_vec())
                .map_err(|e| internal("input", e));
        }
        let mut cols = batch.columns().to_vec();
        for f in &schema.fields()[batch.num_columns()..] {
            cols.push(new_null_array(f.data_type(), batch.num_rows()));
        }
        let opts = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(schema, cols, &opts).map_err(|e| internal("input", e))
    }

    /// Event time of each row and the time its bucket (or session reach) ends, in µs.
    fn times(
        &self,
        batch: &RecordBatch,
        keys: &[ArrayRef],
    ) -> Result<Option<(Vec<Option<i64>>, Vec<Option<i64>>)>> {
        match &self.plan.grouping {
            Grouping::Keys { bucket: Some(b) } => {
                let t = micros(&eval(&b.time, batch)?)?;
                let start = micros(&keys[b.key])?;
                let ends = start
                    .iter()
                    .map(|s| s.map(|s| s + b.width_micros))
                    .collect();
                Ok(Some((t.iter().collect(), ends)))
            }
            Grouping::Session(s) => {
                let t = micros(&eval(&s.time, batch)?)?;
                let ends = t.iter().map(|t| t.map(|t| t + s.gap_micros)).collect();
                Ok(Some((t.iter().collect(), ends)))
            }
            Grouping::Keys { bucket: None } => Ok(None),
        }
    }

    /// Applies one batch of the root table's rows (in the table's schema). Returns which
    /// rows the view took (passed `WHERE` and were not too late); `None` means all.
    pub fn apply(&mut self, batch: &RecordBatch, feed: Feed) -> Result<Option<BooleanArray>> {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let input = self.input_batch(batch)?;
        let mut mask = match &self.plan.filter {
            Some(f) => Some(eval_mask(f, &input)?),
            None => None,
        };
        // Grouping keys are evaluated once: lateness needs the bucket, grouping all of them.
        let keys = match &self.plan.grouping {
            Grouping::Keys { .. } => self
                .plan
                .group_exprs
                .iter()
                .map(|e| eval(e, &input))
                .collect::<Result<Vec<_>>>()?,
            Grouping::Session(_) => Vec::new(),
        };
        if let Some((times, ends)) = self.times(&input, &keys)? {
            let lateness = match feed {
                Feed::Live => self.plan.lateness_micros,
                Feed::Backfill => None,
            };
            let mut max = self.counters.max_time_micros;
            let mut keep = Vec::with_capacity(times.len());
            for i in 0..times.len() {
                let passes = mask.as_ref().is_none_or(|m| m.value(i));
                let (Some(t), Some(end)) = (times[i], ends[i]) else {
                    keep.push(passes);
                    continue;
                };
                if !passes {
                    keep.push(false);
                    continue;
                }
                match (lateness, max) {
                    (Some(late), Some(m)) if end + late <= m => {
                        self.counters.late_rows_dropped += 1;
                        keep.push(false);
                    }
                    (_, Some(m)) if t < m => {
                        self.counters.late_rows_accepted += 1;
                        keep.push(true);
                    }
                    _ => {
                        max = Some(t);
                        keep.push(true);
                    }
                }
            }
            self.counters.max_time_micros = max;
            mask = Some(BooleanArray::from(keep));
        }
        let mask = mask.filter(|m| m.true_count() < m.len());
        let (rows, keys) = match &mask {
            Some(m) => (
                filter_record_batch(&input, m).map_err(|e| internal("filter", e))?,
                keys.iter()
                    .map(|k| arrow::compute::filter(k, m))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| internal("filter", e))?,
            ),
            None => (input, keys),
        };
        self.update_with(&rows, Some(keys))?;
        Ok(mask)
    }

    fn update(&mut self, rows: &RecordBatch) -> Result<()> {
        self.update_with(rows, None)
    }

    /// Aggregates `rows`; `keys` are their grouping keys when already evaluated.
    fn update_with(&mut self, rows: &RecordBatch, keys: Option<Vec<ArrayRef>>) -> Result<()> {
        if rows.num_rows() == 0 {
            self.scratch.clear();
            return Ok(());
        }
        let mut gids = std::mem::take(&mut self.scratch);
        let plan = Arc::clone(&self.plan);
        match (&mut self.groups, &plan.grouping) {
            (Groups::Keys { .. }, _) => {
                let keys = match keys {
                    Some(k) => k,
                    None => plan
                        .group_exprs
                        .iter()
                        .map(|e| eval(e, rows))
                        .collect::<Result<Vec<_>>>()?,
                };
                self.intern(&keys, &mut gids)?;
            }
            (Groups::Session(sessions), Grouping::Session(spec)) => {
                let key = eval(&spec.key, rows)?;
                let t = micros(&eval(&spec.time, rows)?)?;
                // Rows without a key or time belong to no session (SESSION() drops them too).
                let valid: BooleanArray = (0..rows.num_rows())
                    .map(|i| Some(key.is_valid(i) && t.is_valid(i)))
                    .collect();
                if valid.true_count() < rows.num_rows() {
                    let r = filter_record_batch(rows, &valid).map_err(|e| internal("filter", e))?;
                    self.scratch = gids;
                    return self.update(&r);
                }
                sessions.assign(&key, t.values(), &mut gids)?;
            }
            _ => return Err(internal("grouping", "mismatched state")),
        }
        let total = self.total_groups();
        for (acc, agg) in self.accs.iter_mut().zip(&self.plan.aggs) {
            let values = agg
                .inputs
                .iter()
                .map(|e| eval(e, rows))
                .collect::<Result<Vec<_>>>()?;
            let filter = agg
                .filter
                .as_ref()
                .map(|f| eval_mask(f, rows))
                .transpose()?;
            acc.get()
                .update_batch(&values, &gids, filter.as_ref(), total)
                .map_err(|e| internal("aggregate", e))?;
        }
        self.scratch = gids;
        self.version += 1;
        Ok(())
    }

    /// Group ids of `keys` rows, creating groups (and remembering their keys) as needed.
    fn intern(&mut self, keys: &[ArrayRef], gids: &mut Vec<usize>) -> Result<()> {
        let Groups::Keys {
            values,
            chunks,
            len,
            chunk_bytes,
        } = &mut self.groups
        else {
            return Err(internal("grouping", "mismatched state"));
        };
        values
            .intern(keys, gids)
            .map_err(|e| internal("group keys", e))?;
        let before = *len;
        let now = values.len();
        if now > before {
            // First row of every new group, in group order.
            let mut first = vec![u32::MAX; now - before];
            for (row, g) in gids.iter().enumerate() {
                if *g >= before && first[*g - before] == u32::MAX {
                    first[*g - before] = row as u32;
                }
            }
            let idx = arrow::array::UInt32Array::from(first);
            let chunk = keys
                .iter()
                .map(|k| arrow::compute::take(k, &idx, None))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| internal("group keys", e))?;
            *chunk_bytes += chunk
                .iter()
                .map(|a| a.get_array_memory_size())
                .sum::<usize>();
            chunks.push(chunk);
            *len = now;
        }
        Ok(())
    }

    /// Drains every accumulator's partial state and puts it back (merged by `map` for
    /// session views, which also compacts merged-away sessions). Returns the states. Exact
    /// distinct counts are read in place instead (their union-merge was the costliest part
    /// of a snapshot), and only when `distinct` is set: otherwise their state is empty.
    fn take_states(&mut self, distinct: bool) -> Result<Vec<Vec<ArrayRef>>> {
        let total = self.total_groups();
        if total == 0 {
            // Some accumulators cannot emit zero groups; nothing to take anyway.
            return self
                .plan
                .aggs
                .iter()
                .map(|a| {
                    Ok(a.state_types()?
                        .iter()
                        .map(arrow::array::new_empty_array)
                        .collect())
                })
                .collect();
        }
        let (map, groups) = match &mut self.groups {
            Groups::Session(s) if s.live_groups() < s.total_groups() => {
                let c = s.compaction();
                let groups = c.groups;
                s.compact(&c);
                (c.map, groups)
            }
            _ => ((0..total).collect(), total),
        };
        let in_place = groups == total;
        let fresh = new_accs(&self.plan)?;
        let old = std::mem::take(&mut self.accs);
        let mut states = Vec::with_capacity(old.len());
        for (acc, new) in old.into_iter().zip(fresh) {
            match (acc, new) {
                (Acc::Distinct(d), _) if in_place => {
                    states.push(if distinct {
                        d.peek_state().map_err(|e| internal("state", e))?
                    } else {
                        Vec::new()
                    });
                    self.accs.push(Acc::Distinct(d));
                }
                (mut acc, mut new) => {
                    let st = acc
                        .get()
                        .state(EmitTo::All)
                        .map_err(|e| internal("state", e))?;
                    new.get()
                        .merge_batch(&st, &map, groups)
                        .map_err(|e| internal("merge", e))?;
                    states.push(st);
                    self.accs.push(new);
                }
            }
        }
        if !in_place {
            // States were merged: read them again in the new numbering.
            return self.take_states(distinct);
        }
        Ok(states)
    }

    /// Key columns of every group, in group order; for keyed views the appended chunks are
    /// merged into one on the way, so reads do not concatenate thousands of small arrays.
    fn key_columns(&mut self) -> Result<Vec<ArrayRef>> {
        let cols = self.key_columns_of()?;
        if let Groups::Keys {
            chunks,
            chunk_bytes,
            ..
        } = &mut self.groups
        {
            if chunks.len() > 1 {
                *chunk_bytes = cols.iter().map(|a| a.get_array_memory_size()).sum();
                *chunks = vec![cols.clone()];
            }
        }
        Ok(cols)
    }

    fn key_columns_of(&self) -> Result<Vec<ArrayRef>> {
        let schema = key_schema(&self.plan);
        match (&self.groups, &self.plan.grouping) {
            (Groups::Keys { chunks, .. }, _) => (0..schema.fields().len())
                .map(|i| {
                    if chunks.is_empty() {
                        return Ok(arrow::array::new_empty_array(schema.field(i).data_type()));
                    }
                    let parts: Vec<&dyn Array> = chunks.iter().map(|c| c[i].as_ref()).collect();
                    concat(&parts).map_err(|e| internal("keys", e))
                })
                .collect(),
            (Groups::Session(s), Grouping::Session(spec)) => {
                let (key, start, end) = s.columns(&spec.time_type)?;
                let mut cols = vec![None; schema.fields().len()];
                if let Some(p) = spec.key_pos {
                    cols[p] = Some(key);
                }
                if let Some(p) = spec.start_pos {
                    cols[p] = Some(start);
                }
                if let Some(p) = spec.end_pos {
                    cols[p] = Some(end);
                }
                Ok(cols
                    .into_iter()
                    .map(|c| c.expect("all positions set"))
                    .collect())
            }
            _ => Err(internal("grouping", "mismatched state")),
        }
    }

    /// The view's internal columns (keys, then aggregate results), named `$0..`.
    pub fn internal_batch(&mut self) -> Result<RecordBatch> {
        if let Some((v, b)) = &self.cache {
            if *v == self.version {
                return Ok(b.clone());
            }
        }
        let states = self.take_states(false)?;
        let n = self.total_groups();
        if n == 0 {
            return Ok(RecordBatch::new_empty(Arc::clone(
                &self.plan.internal_schema,
            )));
        }
        let idx: Vec<usize> = (0..n).collect();
        let mut cols = self.key_columns()?;
        let mut tmp = new_accs(&self.plan)?;
        for ((st, acc), own) in states.iter().zip(tmp.iter_mut()).zip(&self.accs) {
            if let Acc::Distinct(d) = own {
                cols.push(d.counts());
                continue;
            }
            let acc = acc.get();
            acc.merge_batch(st, &idx, n)
                .map_err(|e| internal("merge", e))?;
            cols.push(
                acc.evaluate(EmitTo::All)
                    .map_err(|e| internal("evaluate", e))?,
            );
        }
        let schema = Arc::clone(&self.plan.internal_schema);
        let cols = cols
            .into_iter()
            .zip(schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    cast(&c, f.data_type()).map_err(|e| internal("cast", e))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let opts = RecordBatchOptions::new().with_row_count(Some(n));
        let batch = RecordBatch::try_new_with_options(schema, cols, &opts)
            .map_err(|e| internal("batch", e))?;
        self.cache = Some((self.version, batch.clone()));
        Ok(batch)
    }

    /// The rows `SELECT * FROM view` returns.
    pub fn output_batch(&mut self) -> Result<RecordBatch> {
        let internal = self.internal_batch()?;
        project_outputs(&self.plan, &internal)
    }

    /// Keys then every accumulator's partial state, for a durable snapshot.
    pub fn snapshot(&mut self) -> Result<RecordBatch> {
        let states = self.take_states(true)?;
        let n = self.total_groups();
        let mut fields: Vec<Field> = key_schema(&self.plan)
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut cols = self.key_columns()?;
        for (i, st) in states.into_iter().enumerate() {
            for (j, c) in st.into_iter().enumerate() {
                fields.push(Field::new(format!("s{i}_{j}"), c.data_type().clone(), true));
                cols.push(c);
            }
        }
        let opts = RecordBatchOptions::new().with_row_count(Some(n));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), cols, &opts)
            .map_err(|e| internal("snapshot", e))
    }

    /// Loads a snapshot made by [`Self::snapshot`] into an empty view.
    pub fn restore(&mut self, snap: &RecordBatch, counters: RollupCounters) -> Result<()> {
        let nkeys = self.plan.group_exprs.len();
        let n = snap.num_rows();
        let keys: Vec<ArrayRef> = snap.columns()[..nkeys].to_vec();
        let mut gids = Vec::new();
        match (&mut self.groups, &self.plan.grouping) {
            (
                Groups::Keys {
                    values,
                    chunks,
                    len,
                    chunk_bytes,
                },
                _,
            ) => {
                values
                    .intern(&keys, &mut gids)
                    .map_err(|e| internal("restore", e))?;
                if n > 0 {
                    *chunk_bytes += keys
                        .iter()
                        .map(|a| a.get_array_memory_size())
                        .sum::<usize>();
                    chunks.push(keys);
                }
                *len = values.len();
            }
            (Groups::Session(s), Grouping::Session(spec)) => {
                let pos = |p: Option<usize>| p.map(|p| micros(&keys[p])).transpose();
                let starts = pos(spec.start_pos)?;
                let ends = pos(spec.end_pos)?;
                let (starts, ends) = match (starts, ends) {
                    (Some(s), Some(e)) => (s.values().to_vec(), e.values().to_vec()),
                    (Some(s), None) => (s.values().to_vec(), s.values().to_vec()),
                    (None, Some(e)) => (e.values().to_vec(), e.values().to_vec()),
                    (None, None) => return Err(internal("restore", "session view without bounds")),
                };
                let key = &keys[spec.key_pos.expect("compile checked")];
                s.restore(key, &starts, &ends)?;
                gids = (0..n).collect();
            }
            _ => return Err(internal("restore", "mismatched state")),
        }
        if gids != (0..n).collect::<Vec<_>>() {
            return Err(Error::new(
                ErrorCode::StorageCorrupt,
                format!("view \"{}\": snapshot has duplicate groups", self.name()),
            ));
        }
        let mut col = nkeys;
        for (acc, agg) in self.accs.iter_mut().zip(&self.plan.aggs) {
            let width = agg.state_types()?.len();
            let st = snap.columns()[col..col + width].to_vec();
            col += width;
            acc.get()
                .merge_batch(&st, &gids, n)
                .map_err(|e| internal("restore", e))?;
        }
        self.counters = counters;
        self.version += 1;
        Ok(())
    }

    /// Group of each row the last [`Self::apply`] aggregated (keyed views; group ids index
    /// the rows of [`Self::output_batch`]).
    pub fn last_groups(&self) -> &[usize] {
        &self.scratch
    }

    /// Keeps only the groups whose time bucket ends after `end_after` (µs), renumbering
    /// them; a no-op for views without a time bucket. Returns the groups dropped.
    pub fn retain_buckets_ending_after(&mut self, end_after: i64) -> Result<usize> {
        let Grouping::Keys { bucket: Some(b) } = &self.plan.grouping else {
            return Ok(0);
        };
        let (key, width) = (b.key, b.width_micros);
        let snap = self.snapshot()?;
        let starts = micros(snap.column(key))?;
        let keep: BooleanArray = starts
            .iter()
            .map(|s| Some(s.is_none_or(|s| s + width > end_after)))
            .collect();
        let dropped = keep.false_count();
        if dropped == 0 {
            return Ok(0);
        }
        let kept = filter_record_batch(&snap, &keep).map_err(|e| internal("retain", e))?;
        let counters = self.counters.clone();
        let version = self.version;
        *self = Rollup::new(Arc::clone(&self.plan))?;
        self.restore(&kept, counters)?;
        self.version = version + 1;
        Ok(dropped)
    }

    /// Merges another view's partial states into this one (a cascade created over a view
    /// that already has data): `parent` rows are re-keyed with this view's keys.
    pub fn absorb(&mut self, parent: &mut Rollup) -> Result<()> {
        let outputs = parent.output_batch()?;
        let states = parent.take_states(true)?;
        let n = outputs.num_rows();
        if n == 0 {
            return Ok(());
        }
        // This view's own GROUP BY and WHERE, over the parent's output rows.
        let mut rows: Vec<usize> = (0..n).collect();
        let mut outputs = outputs;
        let mut states = states;
        if let Some(f) = &self.plan.cascade.filter {
            let m = eval_mask(f, &outputs)?;
            outputs = filter_record_batch(&outputs, &m).map_err(|e| internal("filter", e))?;
            states = states
                .iter()
                .map(|st| {
                    st.iter()
                        .map(|c| arrow::compute::filter(c, &m))
                        .collect::<std::result::Result<Vec<_>, _>>()
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| internal("filter", e))?;
            rows.truncate(outputs.num_rows());
        }
        let keys = self
            .plan
            .cascade
            .keys
            .iter()
            .map(|e| eval(e, &outputs))
            .collect::<Result<Vec<_>>>()?;
        let mut gids = Vec::new();
        self.intern(&keys, &mut gids)?;
        let total = self.total_groups();
        for (acc, p) in self.accs.iter_mut().zip(&self.plan.cascade.aggs) {
            acc.get()
                .merge_batch(&states[*p], &gids, total)
                .map_err(|e| internal("merge", e))?;
        }
        self.counters.max_time_micros = parent.counters.max_time_micros;
        self.version += 1;
        Ok(())
    }
}

/// Applies a view's `SELECT` list to its internal columns.
pub fn project_outputs(plan: &RollupPlan, internal: &RecordBatch) -> Result<RecordBatch> {
    let agg = RecordBatch::try_new_with_options(
        Arc::new(plan.agg_schema.as_arrow().clone()),
        internal.columns().to_vec(),
        &RecordBatchOptions::new().with_row_count(Some(internal.num_rows())),
    )
    .map_err(|e| internal_err("project", e))?;
    let cols = plan
        .outputs
        .iter()
        .map(|e| eval(e, &agg))
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new_with_options(
        Arc::clone(&plan.schema),
        cols,
        &RecordBatchOptions::new().with_row_count(Some(internal.num_rows())),
    )
    .map_err(|e| internal_err("project", e))
}

fn internal_err(what: &str, e: impl std::fmt::Display) -> Error {
    internal(what, e)
}
