//! Rules on a materialized view: once per key and bucket.
//!
//! A [`ViewWatch`] follows one view for all the rules on it. It keeps its own aggregate
//! state of the view's *open* buckets only (a [`Rollup`] of the same plan, fed the same rows
//! the view accepts), so evaluating a rule after a write costs the open buckets, not the
//! view's whole history. A bucket closes when the newest event time passes its end plus
//! the view's lateness (zero for a view without one); then `EMIT ON CLOSE` rules see its
//! final values, its values for `prev()` / `zscore()` move into a short per-key history,
//! and it leaves the open state. A row that reaches an already closed bucket (a view
//! without lateness accepts any late row) updates the view but fires nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, RecordBatch, UInt32Array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use eddy_proto::{AlertDef, Emit, Error, ErrorCode, Result};

use super::{alert_id, compile_rule, json_rows, micros_of, project, CompiledRule, Firing};
use crate::rollup::{Feed, Grouping, Rollup, RollupPlan};

fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Internal, format!("alert on view {what}: {e}"))
}

/// Earlier buckets of one key: (bucket start, value of each history column).
type History = VecDeque<(i64, Vec<Option<f64>>)>;

#[derive(Debug)]
pub struct ViewWatch {
    plan: Arc<RollupPlan>,
    /// Open buckets; `None` until [`Self::start`] copied them from the view.
    open: Option<Rollup>,
    width: i64,
    lateness: i64,
    bucket_col: String,
    key_cols: Vec<String>,
    /// Buckets ending at or before this are closed (µs).
    closed_through: i64,
    history: HashMap<String, History>,
    history_cols: Vec<String>,
    depth: usize,
    pub rules: Vec<CompiledRule>,
}

impl ViewWatch {
    /// Checks that `plan` can carry alerts: a keyed view with a time bucket whose every
    /// `GROUP BY` key is in its `SELECT` list.
    pub fn new(plan: Arc<RollupPlan>) -> Result<Self> {
        let name = plan.def.name.clone();
        let refuse = |why: &str| {
            Error::new(
                ErrorCode::Unsupported,
                format!("alerts on materialized view \"{name}\" are not supported: {why}"),
            )
        };
        let Grouping::Keys { bucket: Some(b) } = &plan.grouping else {
            return Err(refuse(
                "a rule on a view fires per key and time bucket, and this view has no date_bin/date_trunc bucket",
            ));
        };
        let nkeys = plan.group_exprs.len();
        let mut bucket_col = None;
        let mut key_cols = Vec::new();
        for k in 0..nkeys {
            let Some(out) = plan.output_columns.iter().position(|c| *c == Some(k)) else {
                return Err(refuse("every GROUP BY key must be a column of the view"));
            };
            let col = plan.schema.field(out).name().clone();
            if k == b.key {
                bucket_col = Some(col);
            } else {
                key_cols.push(col);
            }
        }
        Ok(Self {
            width: b.width_micros,
            lateness: plan.lateness_micros.unwrap_or(0),
            bucket_col: bucket_col.expect("bucket is a key"),
            key_cols,
            plan,
            open: None,
            closed_through: i64::MIN,
            history: HashMap::new(),
            history_cols: Vec::new(),
            depth: 0,
            rules: Vec::new(),
        })
    }

    pub fn view(&self) -> &str {
        &self.plan.def.name
    }

    /// Compiles `def` against the view's columns and adds it.
    pub fn add_rule(&mut self, def: &AlertDef) -> Result<()> {
        let rule = compile_rule(def, &self.plan.schema, true)?;
        for l in &rule.lookbacks {
            if !self.history_cols.contains(&l.column) {
                self.history_cols.push(l.column.clone());
                // Buckets recorded so far lack the new column; start the history again.
                self.history.clear();
            }
            self.depth = self.depth.max(l.depth());
        }
        self.rules.push(rule);
        Ok(())
    }

    pub fn remove_rule(&mut self, name: &str) {
        self.rules.retain(|r| r.def.name != name);
    }

    pub fn started(&self) -> bool {
        self.open.is_some()
    }

    /// Copies the view's open buckets and the latest closed ones (for `prev()` and
    /// `zscore()`); from then on [`Self::on_rows`] must see every row the view accepts.
    pub fn start(&mut self, view: &mut Rollup) -> Result<()> {
        let counters = view.counters.clone();
        let mut open = Rollup::new(Arc::clone(&self.plan))?;
        self.history.clear();
        let Some(max) = counters.max_time_micros else {
            open.counters = counters;
            self.open = Some(open);
            return Ok(());
        };
        let close_before = max - self.lateness;
        if self.depth > 0 {
            let out = view.output_batch()?;
            let starts = micros_of(out.column_by_name(&self.bucket_col).expect("bucket"))?;
            let closed: Vec<u32> = (0..out.num_rows())
                .filter(|&i| starts.is_valid(i) && starts.value(i) + self.width <= close_before)
                .map(|i| i as u32)
                .collect();
            let closed = take_record_batch(&out, &UInt32Array::from(closed))
                .map_err(|e| internal("start", e))?;
            self.remember(&closed)?;
        }
        let snap = view.snapshot()?;
        open.restore(&snap, counters)?;
        open.retain_buckets_ending_after(close_before)?;
        self.closed_through = close_before;
        self.open = Some(open);
        Ok(())
    }

    /// Records closed buckets' values in the per-key history.
    fn remember(&mut self, closed: &RecordBatch) -> Result<()> {
        if self.depth == 0 || closed.num_rows() == 0 {
            return Ok(());
        }
        let keys = json_rows(&project(closed, &self.key_cols)?)?;
        let starts = micros_of(closed.column_by_name(&self.bucket_col).expect("bucket"))?;
        let cols = self.float_columns(closed)?;
        for (i, key) in keys.into_iter().enumerate() {
            if !starts.is_valid(i) {
                continue;
            }
            let values = cols
                .iter()
                .map(|c| c.is_valid(i).then(|| c.value(i)))
                .collect();
            let h = self.history.entry(key).or_default();
            let at = h.partition_point(|(s, _)| *s < starts.value(i));
            if h.get(at).is_some_and(|(s, _)| *s == starts.value(i)) {
                h[at].1 = values;
            } else {
                h.insert(at, (starts.value(i), values));
            }
            while h.len() > self.depth {
                h.pop_front();
            }
        }
        Ok(())
    }

    fn float_columns(&self, batch: &RecordBatch) -> Result<Vec<Float64Array>> {
        self.history_cols
            .iter()
            .map(|c| {
                let a = cast(
                    batch.column_by_name(c).expect("view column"),
                    &DataType::Float64,
                )
                .map_err(|e| internal("history", e))?;
                Ok(a.as_any()
                    .downcast_ref::<Float64Array>()
                    .cloned()
                    .expect("f64"))
            })
            .collect()
    }

    /// Feeds the rows the view just accepted and appends the alerts they fire.
    pub fn on_rows(&mut self, accepted: &RecordBatch, out: &mut Vec<Firing>) -> Result<()> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        if accepted.num_rows() == 0 {
            return Ok(());
        }
        open.apply(accepted, Feed::Live)?;
        let mut touched = open.last_groups().to_vec();
        touched.sort_unstable();
        touched.dedup();
        let Some(max) = open.counters.max_time_micros else {
            return Ok(());
        };
        let close_before = max - self.lateness;
        let output = open.output_batch()?;
        let starts = micros_of(output.column_by_name(&self.bucket_col).expect("bucket"))?;
        let end = |i: usize| starts.is_valid(i).then(|| starts.value(i) + self.width);
        let live = |i: usize| end(i).is_some_and(|e| e > self.closed_through);
        let closing: Vec<usize> = (0..output.num_rows())
            .filter(|&i| live(i) && end(i).is_some_and(|e| e <= close_before))
            .collect();
        let any_closed = (0..output.num_rows()).any(|i| end(i).is_some_and(|e| e <= close_before));
        touched.retain(|&i| live(i));
        if touched.is_empty() && closing.is_empty() {
            return Ok(());
        }
        let ctx = EvalContext::new(self, &output)?;
        for rule in &self.rules {
            let rows = match rule.def.emit {
                Emit::OnUpdate => &touched,
                Emit::OnClose => &closing,
            };
            if !rows.is_empty() {
                ctx.fire(self, rule, rows, out)?;
            }
        }
        if !closing.is_empty() {
            let idx = UInt32Array::from(closing.iter().map(|&i| i as u32).collect::<Vec<_>>());
            let closed = take_record_batch(&output, &idx).map_err(|e| internal("close", e))?;
            self.remember(&closed)?;
        }
        if close_before > self.closed_through {
            // Drop closed buckets (including stale ones late rows re-created) only when
            // there are some: it rebuilds the open state.
            if any_closed {
                let open = self.open.as_mut().expect("checked");
                open.retain_buckets_ending_after(close_before)?;
            }
            self.closed_through = close_before;
        }
        Ok(())
    }
}

/// What evaluating rules over one output of the open buckets needs.
struct EvalContext<'a> {
    output: &'a RecordBatch,
    starts: arrow::array::TimestampMicrosecondArray,
    /// Key JSON of every open row, and the open rows of each key (only with history).
    keys: Vec<String>,
    by_key: HashMap<String, Vec<usize>>,
    floats: Vec<Float64Array>,
}

impl<'a> EvalContext<'a> {
    fn new(w: &ViewWatch, output: &'a RecordBatch) -> Result<Self> {
        let starts = micros_of(output.column_by_name(&w.bucket_col).expect("bucket"))?;
        let (keys, by_key, floats) = if w.depth > 0 {
            let keys = json_rows(&project(output, &w.key_cols)?)?;
            let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, k) in keys.iter().enumerate() {
                by_key.entry(k.clone()).or_default().push(i);
            }
            (keys, by_key, w.float_columns(output)?)
        } else {
            (Vec::new(), HashMap::new(), Vec::new())
        };
        Ok(Self {
            output,
            starts,
            keys,
            by_key,
            floats,
        })
    }

    /// Values of history column `col` in the buckets of row `row`'s key before its
    /// bucket, newest first, at most `n`.
    fn earlier(&self, w: &ViewWatch, row: usize, col: usize, n: usize) -> Vec<Option<f64>> {
        let start = self.starts.value(row);
        let key = &self.keys[row];
        let mut found: Vec<(i64, Option<f64>)> = Vec::new();
        for &j in self.by_key.get(key).into_iter().flatten() {
            if self.starts.is_valid(j) && self.starts.value(j) < start {
                let c = &self.floats[col];
                found.push((self.starts.value(j), c.is_valid(j).then(|| c.value(j))));
            }
        }
        for (s, v) in w.history.get(key).into_iter().flatten() {
            if *s < start && !found.iter().any(|(f, _)| f == s) {
                found.push((*s, v[col]));
            }
        }
        found.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
        found.truncate(n);
        found.into_iter().map(|(_, v)| v).collect()
    }

    fn lookback_value(&self, w: &ViewWatch, l: &super::Lookback, row: usize) -> Option<f64> {
        let col = w.history_cols.iter().position(|c| *c == l.column)?;
        match l.kind {
            super::LookbackKind::Prev => self.earlier(w, row, col, 1).first().copied().flatten(),
            super::LookbackKind::ZScore(n) => {
                let prior: Vec<f64> = self.earlier(w, row, col, n).into_iter().flatten().collect();
                if prior.len() < n {
                    return None;
                }
                let x = self.floats[col]
                    .is_valid(row)
                    .then(|| self.floats[col].value(row))?;
                let mean = prior.iter().sum::<f64>() / n as f64;
                let var = prior.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
                let sd = var.sqrt();
                (sd > 0.0).then(|| (x - mean) / sd)
            }
        }
    }

    fn fire(
        &self,
        w: &ViewWatch,
        rule: &CompiledRule,
        rows: &[usize],
        out: &mut Vec<Firing>,
    ) -> Result<()> {
        let idx = UInt32Array::from(rows.iter().map(|&i| i as u32).collect::<Vec<_>>());
        let sel = take_record_batch(self.output, &idx).map_err(|e| internal("take", e))?;
        let mut cols: Vec<ArrayRef> = sel.columns().to_vec();
        for l in &rule.lookbacks {
            let v: Float64Array = rows.iter().map(|&r| self.lookback_value(w, l, r)).collect();
            cols.push(Arc::new(v));
        }
        let input = RecordBatch::try_new(Arc::clone(&rule.input_schema), cols)
            .map_err(|e| internal("input", e))?;
        let m = rule.matches(&input)?;
        if m.true_count() == 0 {
            return Ok(());
        }
        let fired =
            arrow::compute::filter_record_batch(&input, &m).map_err(|e| internal("filter", e))?;
        let severity = rule.severities(&fired)?;
        let keys = json_rows(&project(&fired, &w.key_cols)?)?;
        let mut value_fields: Vec<Field> = Vec::new();
        let mut value_cols: Vec<ArrayRef> = Vec::new();
        for r in &rule.reads {
            let c = fired.column_by_name(r).expect("read column");
            value_fields.push(Field::new(r, c.data_type().clone(), true));
            value_cols.push(Arc::clone(c));
        }
        for l in &rule.lookbacks {
            let c = fired
                .column_by_name(&l.column_name)
                .expect("lookback column");
            value_fields.push(Field::new(&l.label, DataType::Float64, true));
            value_cols.push(Arc::clone(c));
        }
        let values = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(value_fields)),
            value_cols,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(fired.num_rows())),
        )
        .map_err(|e| internal("values", e))?;
        let values = json_rows(&values)?;
        let starts = micros_of(fired.column_by_name(&w.bucket_col).expect("bucket"))?;
        for i in 0..fired.num_rows() {
            let bucket = starts.value(i);
            out.push(Firing {
                id: alert_id(&rule.def, &[keys[i].as_bytes(), &bucket.to_le_bytes()]),
                rule: rule.def.name.clone(),
                severity: severity.is_valid(i).then(|| severity.value(i).to_string()),
                source: rule.def.source.clone(),
                key: keys[i].clone(),
                bucket_micros: Some(bucket),
                event_micros: None,
                values: values[i].clone(),
            });
        }
        Ok(())
    }
}
