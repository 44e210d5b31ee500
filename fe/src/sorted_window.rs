//! Window functions over sorted input, one vectorized pass per batch.
//!
//! DataFusion's `BoundedWindowAggExec` keeps state per window partition and evaluates
//! running aggregates row by row through `ScalarValue`s: 400-900 ns per row when
//! partitions are small (a `lag` per user over 100k users), most of a sessionization
//! query's time. When its input is sorted on the partition keys (`InputOrderMode::Sorted`,
//! the usual case after a sort) and every function is one of
//!
//! - `lag(x [, k [, default]])` (k >= 0, without IGNORE NULLS),
//! - `row_number()`,
//! - `sum(x)` or `count(x)` / `count(*)` over `ROWS BETWEEN UNBOUNDED PRECEDING AND
//!   CURRENT ROW` (not DISTINCT, no FILTER),
//!
//! [`SortedWindows`] replaces it with [`SortedWindowExec`], which finds the partitions of
//! each batch with arrow's `partition` kernel and computes each function with a `take`
//! or a running loop over primitive values, carrying the last partition's state (its
//! last k values, its running sum) into the next batch. Same schema, same ordering, same
//! results; anything else keeps DataFusion's operator.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    make_comparator, Array, ArrayRef, ArrowNativeTypeOp, ArrowPrimitiveType, AsArray, Int64Array,
    PrimitiveArray, RecordBatch, Scalar, UInt32Array, UInt64Array,
};
use arrow::compute::kernels::partition::partition;
use arrow::compute::kernels::zip::zip;
use arrow::compute::{cast, concat, is_null, take};
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{internal_err, Result, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
use datafusion::physical_expr::window::{PlainAggregateWindowExpr, StandardWindowExpr, WindowExpr};
use datafusion::physical_expr::{OrderingRequirements, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::expressions::Literal;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowUDFExpr};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputDistributionRequirements, InputOrderMode,
    PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

/// The physical optimizer rule described in the module documentation.
#[derive(Debug, Default)]
pub struct SortedWindows;

impl PhysicalOptimizerRule for SortedWindows {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|p| {
            let Some(bw) = p.downcast_ref::<BoundedWindowAggExec>() else {
                return Ok(Transformed::no(p));
            };
            Ok(match SortedWindowExec::replacing(bw) {
                Some(exec) => Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(p),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "eddy_sorted_windows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One window function this module computes.
#[derive(Debug, Clone)]
enum Func {
    RowNumber,
    Lag {
        arg: Arc<dyn PhysicalExpr>,
        offset: usize,
        default: ScalarValue,
    },
    /// Running sum in `out` (Int64 or Float64), the argument cast to it.
    Sum {
        arg: Arc<dyn PhysicalExpr>,
        out: DataType,
    },
    /// Running count of non-null values.
    Count {
        arg: Arc<dyn PhysicalExpr>,
    },
}

fn literal(e: &Arc<dyn PhysicalExpr>) -> Option<&ScalarValue> {
    e.downcast_ref::<Literal>().map(|l| l.value())
}

fn running_frame(w: &dyn WindowExpr) -> bool {
    let f = w.get_window_frame();
    f.units == WindowFrameUnits::Rows
        && matches!(f.start_bound, WindowFrameBound::Preceding(ref v) if v.is_null())
        && f.end_bound == WindowFrameBound::CurrentRow
}

/// `w` as a [`Func`], or `None` when this module does not compute it.
fn func(w: &Arc<dyn WindowExpr>) -> Option<Func> {
    let out = w.field().ok()?.data_type().clone();
    if let Some(s) = w.as_any().downcast_ref::<StandardWindowExpr>() {
        let udf = s
            .get_standard_func_expr()
            .as_any()
            .downcast_ref::<WindowUDFExpr>()?;
        // Neither accessor exists for these two flags; the derived Debug shows both.
        let debug = format!("{udf:?}");
        if !debug.contains("is_reversed: false") || !debug.contains("ignore_nulls: false") {
            return None;
        }
        let args = udf.args();
        return match (udf.fun().name(), args.len()) {
            ("row_number", 0) => Some(Func::RowNumber),
            ("lag", 1..=3) => {
                let offset = match args.get(1) {
                    None => 1,
                    Some(e) => match literal(e)?.cast_to(&DataType::Int64).ok()? {
                        ScalarValue::Int64(Some(k)) if k >= 0 => usize::try_from(k).ok()?,
                        _ => return None,
                    },
                };
                let default = match args.get(2) {
                    None => ScalarValue::try_from(&out).ok()?,
                    Some(e) => literal(e)?.cast_to(&out).ok()?,
                };
                Some(Func::Lag {
                    arg: Arc::clone(&args[0]),
                    offset,
                    default,
                })
            }
            _ => None,
        };
    }
    let a = w.as_any().downcast_ref::<PlainAggregateWindowExpr>()?;
    // No accessor for the FILTER clause outside DataFusion; it is the last field shown.
    if !running_frame(w.as_ref()) || !format!("{a:?}").ends_with("filter: None }") {
        return None;
    }
    let agg = a.get_aggregate_expr();
    if agg.is_distinct() || agg.ignore_nulls() {
        return None;
    }
    let [arg] = agg.expressions().try_into().ok()?;
    match (agg.fun().name(), &out) {
        ("sum", DataType::Int64 | DataType::Float64) => Some(Func::Sum { arg, out }),
        ("count", DataType::Int64) => Some(Func::Count { arg }),
        _ => None,
    }
}

/// [`BoundedWindowAggExec`]'s replacement over sorted input.
#[derive(Debug)]
pub struct SortedWindowExec {
    input: Arc<dyn ExecutionPlan>,
    exprs: Vec<Arc<dyn WindowExpr>>,
    funcs: Arc<[Func]>,
    partition_by: Arc<[Arc<dyn PhysicalExpr>]>,
    properties: Arc<PlanProperties>,
    ordering: Vec<Option<OrderingRequirements>>,
    distribution: InputDistributionRequirements,
    metrics: ExecutionPlanMetricsSet,
}

impl SortedWindowExec {
    /// The replacement of `bw`, when its input is sorted on the partition keys and this
    /// module computes every one of its functions.
    fn replacing(bw: &BoundedWindowAggExec) -> Option<Self> {
        if bw.input_order_mode != InputOrderMode::Sorted || bw.state_observer().is_some() {
            return None;
        }
        let exprs = bw.window_expr().to_vec();
        let first = exprs.first()?;
        let partition_by = first.partition_by().to_vec();
        if exprs
            .iter()
            .any(|e| e.partition_by() != partition_by.as_slice())
        {
            return None;
        }
        let funcs = exprs.iter().map(func).collect::<Option<Vec<_>>>()?;
        Some(Self {
            input: Arc::clone(bw.input()),
            funcs: funcs.into(),
            partition_by: partition_by.into(),
            properties: Arc::clone(bw.properties()),
            ordering: bw.required_input_ordering(),
            distribution: bw.input_distribution_requirements(),
            exprs,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for SortedWindowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self.exprs.iter().map(|e| e.name()).collect();
        write!(f, "SortedWindowExec: wdw=[{}]", names.join(", "))
    }
}

#[allow(deprecated)]
impl ExecutionPlan for SortedWindowExec {
    fn name(&self) -> &'static str {
        "SortedWindowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for e in &self.exprs {
            for x in e.all_expressions().args {
                if f(&x)? == TreeNodeRecursion::Stop {
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.distribution.clone()
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        self.ordering.clone()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return internal_err!("SortedWindowExec takes one child");
        };
        Ok(Arc::new(Self {
            input,
            exprs: self.exprs.clone(),
            funcs: Arc::clone(&self.funcs),
            partition_by: Arc::clone(&self.partition_by),
            properties: Arc::clone(&self.properties),
            ordering: self.ordering.clone(),
            distribution: self.distribution.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = self.schema();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let mut state = Running::new(
            Arc::clone(&self.funcs),
            Arc::clone(&self.partition_by),
            Arc::clone(&schema),
        );
        let out = input.map(move |b| {
            let _timer = baseline.elapsed_compute().timer();
            let b = state.next(&b?)?;
            baseline.record_output(b.num_rows());
            Ok(b)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, out)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// What one function carries from a batch into the next: the state of the last
/// partition seen, which the next batch may continue.
#[derive(Debug)]
enum Carry {
    /// Rows of the partition so far.
    Rows(u64),
    /// The partition's last values, at most the lag's offset of them.
    Tail(Option<ArrayRef>),
    SumI(Option<i64>),
    SumF(Option<f64>),
}

/// One partition's (one stream's) evaluation state.
struct Running {
    funcs: Arc<[Func]>,
    partition_by: Arc<[Arc<dyn PhysicalExpr>]>,
    schema: SchemaRef,
    /// The partition keys of the last row seen (one-row arrays), `None` before any row.
    last_key: Option<Vec<ArrayRef>>,
    carry: Vec<Carry>,
}

impl Running {
    fn new(
        funcs: Arc<[Func]>,
        partition_by: Arc<[Arc<dyn PhysicalExpr>]>,
        schema: SchemaRef,
    ) -> Self {
        let carry = funcs
            .iter()
            .map(|f| match f {
                Func::RowNumber | Func::Count { .. } => Carry::Rows(0),
                Func::Lag { .. } => Carry::Tail(None),
                Func::Sum { out, .. } if out == &DataType::Int64 => Carry::SumI(None),
                Func::Sum { .. } => Carry::SumF(None),
            })
            .collect();
        Self {
            funcs,
            partition_by,
            schema,
            last_key: None,
            carry,
        }
    }

    /// `batch` with the window columns appended.
    fn next(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        let keys = self
            .partition_by
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(n))
            .collect::<Result<Vec<_>>>()?;
        let ranges = if keys.is_empty() {
            vec![0..n]
        } else {
            partition(&keys)?.ranges()
        };
        let continues = match &self.last_key {
            None => false,
            Some(last) => last.iter().zip(&keys).try_fold(true, |eq, (a, b)| {
                let cmp = make_comparator(a.as_ref(), b.as_ref(), Default::default())?;
                Ok::<_, arrow::error::ArrowError>(eq && cmp(0, 0).is_eq())
            })?,
        };
        let mut columns = batch.columns().to_vec();
        for (f, carry) in self.funcs.iter().zip(self.carry.iter_mut()) {
            columns.push(evaluate(f, carry, batch, &ranges, continues)?);
        }
        self.last_key = Some(keys.iter().map(|k| k.slice(n - 1, 1)).collect());
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// The start of each range's partition: `None` for a first range that continues the
/// previous batch's partition.
fn starts(
    ranges: &[Range<usize>],
    continues: bool,
) -> impl Iterator<Item = (Option<usize>, &Range<usize>)> {
    ranges
        .iter()
        .enumerate()
        .map(move |(i, r)| ((i > 0 || !continues).then_some(r.start), r))
}

/// The running sum of `x` within each range, NULL until a range's first non-NULL value
/// (integers wrap, as DataFusion's `sum` does); `acc` carries the last range's sum.
fn running_sum<T: ArrowPrimitiveType>(
    x: &PrimitiveArray<T>,
    acc: &mut Option<T::Native>,
    ranges: &[Range<usize>],
    continues: bool,
) -> PrimitiveArray<T> {
    let mut out = Vec::with_capacity(x.len());
    for (start, r) in starts(ranges, continues) {
        if start.is_some() {
            *acc = None;
        }
        for i in r.clone() {
            if x.is_valid(i) {
                *acc = Some(acc.unwrap_or_default().add_wrapping(x.value(i)));
            }
            out.push(*acc);
        }
    }
    PrimitiveArray::from_iter(out)
}

fn evaluate(
    f: &Func,
    carry: &mut Carry,
    batch: &RecordBatch,
    ranges: &[Range<usize>],
    continues: bool,
) -> Result<ArrayRef> {
    let n = batch.num_rows();
    match (f, carry) {
        (Func::RowNumber, Carry::Rows(seen)) => {
            let mut out = Vec::with_capacity(n);
            for (start, r) in starts(ranges, continues) {
                let base = if start.is_some() { 0 } else { *seen };
                out.extend((1..=r.len() as u64).map(|i| base + i));
                *seen = base + r.len() as u64;
            }
            Ok(Arc::new(UInt64Array::from(out)))
        }
        (Func::Count { arg }, Carry::Rows(seen)) => {
            let x = arg.evaluate(batch)?.into_array(n)?;
            let mut out = Vec::with_capacity(n);
            for (start, r) in starts(ranges, continues) {
                let mut c = if start.is_some() { 0 } else { *seen as i64 };
                for i in r.clone() {
                    c += x.is_valid(i) as i64;
                    out.push(c);
                }
                *seen = c as u64;
            }
            Ok(Arc::new(Int64Array::from(out)))
        }
        (Func::Sum { arg, out }, Carry::SumI(acc)) => {
            let x = cast(&arg.evaluate(batch)?.into_array(n)?, out)?;
            Ok(Arc::new(running_sum::<Int64Type>(
                x.as_primitive(),
                acc,
                ranges,
                continues,
            )))
        }
        (Func::Sum { arg, out }, Carry::SumF(acc)) => {
            let x = cast(&arg.evaluate(batch)?.into_array(n)?, out)?;
            Ok(Arc::new(running_sum::<Float64Type>(
                x.as_primitive(),
                acc,
                ranges,
                continues,
            )))
        }
        (
            Func::Lag {
                arg,
                offset,
                default,
            },
            Carry::Tail(slot),
        ) => {
            let x = arg.evaluate(batch)?.into_array(n)?;
            // The previous batch's tail (kept only while its partition lasts), then x.
            let tail = slot.take().filter(|_| continues);
            let c = tail.as_ref().map_or(0, |t| t.len());
            let all = match &tail {
                Some(t) => concat(&[t.as_ref(), x.as_ref()])?,
                None => Arc::clone(&x),
            };
            let k = *offset;
            let mut idx = Vec::with_capacity(n);
            let mut last_start = 0;
            for (start, r) in starts(ranges, continues) {
                let from = start.map_or(0, |s| c + s);
                idx.extend(r.clone().map(|i| {
                    let j = c + i;
                    (j >= from + k).then(|| (j - k) as u32)
                }));
                last_start = from;
            }
            let idx = UInt32Array::from(idx);
            let mut out = take(all.as_ref(), &idx, None)?;
            if !default.is_null() {
                let outside = is_null(&idx)?;
                out = zip(&outside, &Scalar::new(default.to_array()?), &out)?;
            }
            let keep = last_start.max(all.len().saturating_sub(k));
            *slot = Some(all.slice(keep, all.len() - keep));
            Ok(out)
        }
        _ => internal_err!("window state does not match its function"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// 600 rows over 7 users and 2 groups, unique times, some NULLs, in 13 batches.
    fn table() -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("u", DataType::Utf8, true),
            Field::new("g", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("x", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
        ]));
        let mut seed = 42u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let batches = (0..13)
            .map(|b| {
                let n = 40 + b * 3;
                let mut cols: (Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>) = Default::default();
                for i in 0..n {
                    let u = rnd() % 8;
                    cols.0.push((u < 7).then(|| format!("user{u}")));
                    cols.1.push((rnd() % 2) as i64);
                    cols.2.push((b * 1000 + i) as i64 * 7 + (rnd() % 5) as i64);
                    cols.3
                        .push((rnd() % 5 > 0).then(|| rnd() as i64 % 100 - 30));
                    cols.4
                        .push((rnd() % 4 > 0).then(|| (rnd() % 1000) as f64 / 8.0));
                }
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(StringArray::from(cols.0)),
                        Arc::new(Int64Array::from(cols.1)),
                        Arc::new(TimestampMicrosecondArray::from(cols.2)),
                        Arc::new(Int64Array::from(cols.3)),
                        Arc::new(Float64Array::from(cols.4)),
                    ],
                )
                .unwrap()
            })
            .collect();
        Arc::new(MemTable::try_new(schema, vec![batches]).unwrap())
    }

    fn context(ours: bool) -> SessionContext {
        let config = SessionConfig::new()
            .with_batch_size(5)
            .with_target_partitions(2);
        let mut b = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if ours {
            b = b.with_physical_optimizer_rule(Arc::new(SortedWindows));
        }
        let ctx = SessionContext::new_with_state(b.build());
        ctx.register_table("t", table()).unwrap();
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> (String, String) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let plan = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(false)
            .to_string();
        let batches = df.collect().await.unwrap();
        (plan, pretty_format_batches(&batches).unwrap().to_string())
    }

    /// Each query answers the same with and without the rule, and with it the plan
    /// computes its windows in [`SortedWindowExec`] (`replaced`) or not.
    async fn same(sql: &str, replaced: bool) {
        let (theirs_plan, theirs) = run(&context(false), sql).await;
        let (ours_plan, ours) = run(&context(true), sql).await;
        assert!(!theirs_plan.contains("SortedWindowExec"), "{theirs_plan}");
        assert_eq!(
            ours_plan.contains("SortedWindowExec"),
            replaced,
            "{ours_plan}"
        );
        assert_eq!(ours, theirs, "{sql}\n{ours_plan}");
    }

    const RUNNING: &str = "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW";

    #[tokio::test]
    async fn lag_row_number_and_running_aggregates_match_datafusion() {
        let w = "PARTITION BY u ORDER BY ts";
        same(
            &format!(
                "SELECT u, ts, x, f, lag(ts) OVER ({w}) AS l1, lag(x, 3) OVER ({w}) AS l3, \
                 lag(x, 2, -1) OVER ({w}) AS ld, lag(f, 0) OVER ({w}) AS l0, \
                 row_number() OVER ({w}) AS rn, sum(x) OVER ({w} {RUNNING}) AS sx, \
                 sum(f) OVER ({w} {RUNNING}) AS sf, count(x) OVER ({w} {RUNNING}) AS cx, \
                 count(*) OVER ({w} {RUNNING}) AS c FROM t ORDER BY ts"
            ),
            true,
        )
        .await;
        // Two keys, one of them NULL for some rows; and no PARTITION BY at all.
        let w2 = "PARTITION BY g, u ORDER BY ts DESC";
        same(
            &format!(
                "SELECT ts, lag(x, 7) OVER ({w2}) AS l, sum(x) OVER ({w2} {RUNNING}) AS s, \
                 row_number() OVER (ORDER BY ts) AS rn, lag(f) OVER (ORDER BY ts) AS lf \
                 FROM t ORDER BY ts"
            ),
            true,
        )
        .await;
    }

    #[tokio::test]
    async fn other_windows_keep_datafusions_operator() {
        let w = "PARTITION BY u ORDER BY ts";
        for f in [
            format!("lead(x) OVER ({w})"),
            format!("sum(x) OVER ({w} ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)"),
            format!("max(x) OVER ({w} {RUNNING})"),
            format!("lag(x) IGNORE NULLS OVER ({w})"),
            format!("sum(DISTINCT x) OVER ({w} {RUNNING})"),
        ] {
            same(&format!("SELECT ts, {f} AS w FROM t ORDER BY ts"), false).await;
        }
    }
}
