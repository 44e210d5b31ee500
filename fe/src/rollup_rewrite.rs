//! Query rewrite: an aggregate over a table that a materialized view can answer is
//! answered from the view.
//!
//! Runs as a DataFusion analyzer rule (after type coercion, before the optimizer), so it
//! sees `Aggregate([Filter](TableScan(t)))` as planned. A view over `t` answers it when:
//! its own `WHERE` conjuncts are all among the query's; every other query filter and every
//! `GROUP BY` expression is an expression over the view's keys, or a coarser time bucket
//! (`date_bin`/`date_trunc` of the view's bucket width times n) of the view's time column;
//! and every aggregate is one of the view's, re-aggregated when the grain is coarser
//! (`sum` of sums and counts, `min`, `max`, `first_value`/`last_value` ordered by the
//! bucket, `avg` from a sum and a count). At the view's own grain the aggregate becomes a
//! projection of the view's rows. A view that dropped late rows, is still backfilling or
//! failed a batch no longer equals its table and is not used. `EXPLAIN` says which view was
//! used, or why each view over the table was not.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, ScalarValue};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::Result as DfResult;
use datafusion::execution::SessionState;
use datafusion::functions_aggregate::expr_fn::{first_value, last_value, max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{cast, col, lit, Aggregate, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::{Analyzer, AnalyzerRule};
use eddy_proto::{BeService, RollupInfo, INTERNAL_COLUMN_PREFIX};
use parking_lot::RwLock;

use crate::provider::EddyTable;
use crate::rollup_catalog::view_internal_table;

/// A view's defining aggregate, normalized for matching.
#[derive(Debug)]
struct ViewPattern {
    info: RollupInfo,
    /// Why the view can never answer a query, if so (a session view, a cascade).
    unusable: Option<String>,
    table: String,
    keys: Vec<Expr>,
    aggs: Vec<Expr>,
    filters: Vec<Expr>,
    /// (key position, width in µs, time column) of the view's time bucket.
    bucket: Option<(usize, i64, String)>,
}

#[derive(Debug, Default)]
pub struct RollupRewrite {
    be: RwLock<Option<Arc<dyn BeService>>>,
    views: RwLock<HashMap<String, Arc<ViewPattern>>>,
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip(&a.expr),
        other => other,
    }
}

/// Unqualified, alias-free form, so `ticks.price` and `t.price` compare equal.
fn normalize(e: &Expr) -> Expr {
    strip(e)
        .clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) if c.relation.is_some() => {
                    Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
                }
                Expr::Alias(a) => Transformed::yes(*a.expr),
                other => Transformed::no(other),
            })
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| strip(e).clone())
}

/// Microseconds of a fixed-length interval literal (no months).
pub(crate) fn interval_micros(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => {
            Some(i.days as i64 * 86_400_000_000 + i.nanoseconds / 1000)
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            Some(i.days as i64 * 86_400_000_000 + i.milliseconds as i64 * 1000)
        }
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        Expr::Cast(c) => literal(&c.expr),
        _ => None,
    }
}

const DAY: i64 = 86_400_000_000;

/// A time bucket expression: (width in µs, or 0 for calendar units aligned to days; time
/// column name).
fn bucket_of(e: &Expr) -> Option<(i64, String)> {
    let Expr::ScalarFunction(f) = strip(e) else {
        return None;
    };
    let column = |e: &Expr| match strip(e) {
        Expr::Column(c) => Some(c.name.clone()),
        _ => None,
    };
    match (f.name(), f.args.as_slice()) {
        ("date_bin", [w, t]) => Some((interval_micros(literal(w)?)?, column(t)?)),
        ("date_trunc", [u, t]) => {
            let unit = match literal(u)? {
                ScalarValue::Utf8(Some(u))
                | ScalarValue::Utf8View(Some(u))
                | ScalarValue::LargeUtf8(Some(u)) => u.to_ascii_lowercase(),
                _ => return None,
            };
            let w = match unit.as_str() {
                "second" => 1_000_000,
                "minute" => 60_000_000,
                "hour" => 3_600_000_000,
                "day" => DAY,
                "week" | "month" | "quarter" | "year" => 0,
                _ => return None,
            };
            Some((w, column(t)?))
        }
        _ => None,
    }
}

fn peel(plan: &LogicalPlan) -> Option<(Vec<Expr>, &datafusion::logical_expr::TableScan)> {
    let mut preds = Vec::new();
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Filter(f) => {
                preds.extend(split_conjunction(&f.predicate).into_iter().map(normalize));
                node = f.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            LogicalPlan::TableScan(s) => return Some((preds, s)),
            _ => return None,
        }
    }
}

/// The eddy table a scan reads, if it is one (not a view, not a system table).
fn scanned_table(scan: &datafusion::logical_expr::TableScan) -> Option<String> {
    let p = source_as_provider(&scan.source).ok()?;
    let any: &dyn std::any::Any = p.as_ref();
    let t = any.downcast_ref::<EddyTable>()?;
    (!t.view).then(|| t.name.clone())
}

impl ViewPattern {
    fn from_plan(info: RollupInfo, plan: &LogicalPlan) -> Self {
        let mut p = ViewPattern {
            table: info.root_table.clone(),
            unusable: None,
            keys: Vec::new(),
            aggs: Vec::new(),
            filters: Vec::new(),
            bucket: None,
            info,
        };
        if p.info.source != p.info.root_table {
            p.unusable = Some(format!(
                "it cascades from view {}; queries on {} are answered from views that read it directly",
                p.info.source, p.info.root_table
            ));
            return p;
        }
        let agg = match plan {
            LogicalPlan::Projection(pr) => match pr.input.as_ref() {
                LogicalPlan::Aggregate(a) => a,
                _ => return p.unusable_because("its plan is not an aggregate"),
            },
            _ => return p.unusable_because("its plan is not an aggregate"),
        };
        let Some((filters, scan)) = peel(&agg.input) else {
            return p.unusable_because("it does not read a table directly");
        };
        if scanned_table(scan).as_deref() != Some(p.table.as_str()) {
            return p.unusable_because("it reads SESSION(), not the table's rows");
        }
        p.filters = filters;
        p.keys = agg.group_expr.iter().map(normalize).collect();
        p.aggs = agg.aggr_expr.iter().map(normalize).collect();
        p.bucket = p
            .keys
            .iter()
            .enumerate()
            .find_map(|(i, k)| bucket_of(k).filter(|(w, _)| *w > 0).map(|(w, t)| (i, w, t)));
        p
    }

    fn unusable_because(mut self, why: &str) -> Self {
        self.unusable = Some(why.into());
        self
    }

    fn internal(&self, i: usize) -> Expr {
        col(format!("{INTERNAL_COLUMN_PREFIX}{i}").as_str())
    }

    /// `e` over the view's internal columns, when it is an expression over its keys.
    fn over_keys(&self, e: &Expr) -> Option<Expr> {
        let mut ok = true;
        let out = e
            .clone()
            .transform_down(|x| {
                if let Some(i) = self.keys.iter().position(|k| *k == x) {
                    return Ok(Transformed::new(
                        self.internal(i),
                        true,
                        TreeNodeRecursion::Jump,
                    ));
                }
                if let Expr::Column(_) = x {
                    ok = false;
                }
                Ok(Transformed::no(x))
            })
            .ok()?
            .data;
        ok.then_some(out)
    }

    /// The view's bucket key when `g` buckets the same time column at the same width
    /// (`date_trunc('minute', ts)` and `date_bin(INTERVAL '1 minute', ts)` agree).
    fn same_bucket(&self, g: &Expr) -> Option<usize> {
        let (key, width, time) = self.bucket.as_ref()?;
        let (w, t) = bucket_of(g)?;
        (w == *width && &t == time).then_some(*key)
    }

    /// A coarser time bucket of the view's time column, over the view's bucket column.
    fn coarser_bucket(&self, g: &Expr) -> Option<Expr> {
        let (key, width, time) = self.bucket.as_ref()?;
        let (w, t) = bucket_of(g)?;
        if &t != time {
            return None;
        }
        let aligned = if w == 0 {
            DAY % width == 0
        } else {
            w % width == 0
        };
        if !aligned {
            return None;
        }
        let bucket = self.internal(*key);
        g.clone()
            .transform(|x| {
                Ok(match x {
                    Expr::Column(c) if &c.name == time => Transformed::yes(bucket.clone()),
                    other => Transformed::no(other),
                })
            })
            .ok()
            .map(|t| t.data)
    }

    /// `ts >= X` / `ts < X` with X on a bucket boundary, as the same bound on the bucket.
    fn aligned_time_filter(&self, p: &Expr) -> Option<Expr> {
        let (key, width, time) = self.bucket.as_ref()?;
        let Expr::BinaryExpr(b) = p else { return None };
        use datafusion::logical_expr::Operator::*;
        let is_time = |e: &Expr| matches!(strip(e), Expr::Column(c) if &c.name == time);
        let aligned = |e: &Expr| match literal(e) {
            Some(ScalarValue::TimestampMicrosecond(Some(v), _)) => v % width == 0,
            Some(ScalarValue::TimestampNanosecond(Some(v), _)) => {
                (v / 1000) % width == 0 && v % 1000 == 0
            }
            Some(ScalarValue::TimestampMillisecond(Some(v), _)) => (v * 1000) % width == 0,
            Some(ScalarValue::TimestampSecond(Some(v), _)) => (v * 1_000_000) % width == 0,
            _ => false,
        };
        let ok = match (is_time(&b.left), b.op, is_time(&b.right)) {
            (true, GtEq | Lt, false) => aligned(&b.right),
            (false, LtEq | Gt, true) => aligned(&b.left),
            _ => false,
        };
        ok.then(|| {
            let bucket = self.internal(*key);
            if is_time(&b.left) {
                Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                    Box::new(bucket),
                    b.op,
                    b.right.clone(),
                ))
            } else {
                Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                    b.left.clone(),
                    b.op,
                    Box::new(bucket),
                ))
            }
        })
    }

    /// Plans `agg` over this view, or says why it cannot.
    fn answer(
        &self,
        agg: &Aggregate,
        be: &Arc<dyn BeService>,
    ) -> Result<(LogicalPlan, bool), String> {
        if let Some(why) = &self.unusable {
            return Err(why.clone());
        }
        let info = &self.info;
        if info.late_rows_dropped > 0 {
            return Err(format!(
                "it dropped {} late rows, so it no longer equals {}",
                info.late_rows_dropped, self.table
            ));
        }
        if info.lag_rows() > 0 {
            return Err("it is still backfilling".into());
        }
        if let Some(e) = &info.last_error {
            return Err(format!("it missed rows after an error: {e}"));
        }
        let (mut preds, scan) = peel(&agg.input).ok_or("the query does not read one table")?;
        if scanned_table(scan).as_deref() != Some(self.table.as_str()) {
            return Err(format!("it reads {}", self.table));
        }
        if scan.fetch.is_some() {
            return Err("the scan has a limit".into());
        }
        for f in &self.filters {
            match preds.iter().position(|p| p == f) {
                Some(i) => {
                    preds.remove(i);
                }
                None => return Err(format!("it keeps only rows where {f}")),
            }
        }
        let mut filters = Vec::new();
        for p in &preds {
            let mapped = self
                .over_keys(p)
                .or_else(|| self.aligned_time_filter(p))
                .ok_or_else(|| format!("the filter {p} needs columns the view does not keep"))?;
            filters.push(mapped);
        }
        let mut groups = Vec::new();
        let mut used_keys = vec![false; self.keys.len()];
        let mut exact = true;
        for g in agg.group_expr.iter().map(normalize) {
            if let Some(i) = self
                .keys
                .iter()
                .position(|k| *k == g)
                .or_else(|| self.same_bucket(&g))
            {
                used_keys[i] = true;
                groups.push(self.internal(i));
            } else if let Some(e) = self.coarser_bucket(&g).or_else(|| self.over_keys(&g)) {
                exact = false;
                groups.push(e);
            } else {
                return Err(format!(
                    "GROUP BY {g} is not derivable from the view's keys"
                ));
            }
        }
        exact &= used_keys.iter().all(|u| *u);
        let nkeys = self.keys.len();
        let mut aggs = Vec::new();
        for a in agg.aggr_expr.iter().map(normalize) {
            let found = self
                .aggs
                .iter()
                .position(|v| *v == a)
                .map(|j| self.internal(nkeys + j));
            aggs.push(if exact {
                found.ok_or_else(|| format!("{a} is not among the view's aggregates"))?
            } else {
                self.merge(&a, found)?
            });
        }
        let source = provider_as_source(view_internal_table(be, info));
        let mut b = LogicalPlanBuilder::scan(info.def.name.as_str(), source, None)
            .map_err(|e| e.to_string())?;
        if let Some(f) = filters.into_iter().reduce(|a, b| a.and(b)) {
            b = b.filter(f).map_err(|e| e.to_string())?;
        }
        let b = if exact {
            b.project(
                groups
                    .into_iter()
                    .chain(aggs)
                    .enumerate()
                    .map(|(i, e)| e.alias(format!("__c{i}")))
                    .collect::<Vec<_>>(),
            )
        } else {
            b.aggregate(groups, aggs)
        }
        .map_err(|e| e.to_string())?;
        let plan = rename_to(b, &agg.schema).map_err(|e| e.to_string())?;
        Ok((plan, exact))
    }

    /// A query aggregate re-aggregated from the view's finer rows.
    fn merge(&self, a: &Expr, found: Option<Expr>) -> Result<Expr, String> {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = a else {
            return Err(format!("{a} is not an aggregate"));
        };
        let coarse = || format!("{a} cannot be re-aggregated from the view at a coarser grain");
        let name = func.name();
        if params.distinct {
            return Err(coarse());
        }
        if name == "avg" && params.filter.is_none() {
            let arg = params.args.first().ok_or_else(coarse)?;
            let find = |fname: &str| {
                self.aggs.iter().position(|v| match v {
                    Expr::AggregateFunction(f) => {
                        f.func.name() == fname
                            && !f.params.distinct
                            && f.params.filter.is_none()
                            && f.params.args.first() == Some(arg)
                    }
                    _ => false,
                })
            };
            let (Some(s), Some(c)) = (find("sum"), find("count")) else {
                return Err(format!(
                    "{a} needs the view to keep sum and count of its argument"
                ));
            };
            let nk = self.keys.len();
            return Ok(cast(sum(self.internal(nk + s)), DataType::Float64)
                / cast(sum(self.internal(nk + c)), DataType::Float64));
        }
        let c = found.ok_or_else(|| format!("{a} is not among the view's aggregates"))?;
        let time_ordered = || {
            let (key, _, time) = self.bucket.as_ref()?;
            match params.order_by.as_slice() {
                [s] if s.asc && matches!(strip(&s.expr), Expr::Column(x) if &x.name == time) => {
                    Some(self.internal(*key).sort(true, false))
                }
                _ => None,
            }
        };
        Ok(match name {
            "sum" => sum(c),
            "count" => datafusion::functions::expr_fn::coalesce(vec![sum(c), lit(0i64)]),
            "min" => min(c),
            "max" => max(c),
            "first_value" => first_value(c, vec![time_ordered().ok_or_else(coarse)?]),
            "last_value" => last_value(c, vec![time_ordered().ok_or_else(coarse)?]),
            _ => return Err(coarse()),
        })
    }
}

/// Projects `b`'s output to exactly `schema` (names, qualifiers, types).
fn rename_to(b: LogicalPlanBuilder, schema: &DFSchemaRef) -> DfResult<LogicalPlan> {
    let out = Arc::clone(b.schema());
    let exprs = (0..schema.fields().len())
        .map(|i| {
            let (q, f) = schema.qualified_field(i);
            let mut e = Expr::Column(Column::from(out.qualified_field(i)));
            if out.field(i).data_type() != f.data_type() {
                e = cast(e, f.data_type().clone());
            }
            e.alias_qualified(q.cloned(), f.name())
        })
        .collect::<Vec<_>>();
    b.project(exprs)?.build()
}

impl RollupRewrite {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_be(&self, be: Arc<dyn BeService>) {
        *self.be.write() = Some(be);
    }

    /// Brings the view patterns up to date with the BE's views (planned once per view).
    pub async fn refresh(&self, state: &SessionState) {
        let Some(be) = self.be.read().clone() else {
            return;
        };
        let infos = be.rollups();
        let mut next = HashMap::new();
        for info in infos {
            let cached = self.views.read().get(&info.def.name).cloned();
            let plan = match cached {
                Some(p) if p.info.def == info.def => {
                    // Keep the plan; take the fresh figures (drops, backfill).
                    Arc::new(ViewPattern {
                        info,
                        ..clone_pattern(&p)
                    })
                }
                _ => Arc::new(plan_view(state, info).await),
            };
            next.insert(plan.info.def.name.clone(), plan);
        }
        *self.views.write() = next;
    }

    fn candidates(&self, table: &str) -> Vec<Arc<ViewPattern>> {
        let mut v: Vec<_> = self
            .views
            .read()
            .values()
            .filter(|p| p.table == table)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.info.def.name.cmp(&b.info.def.name));
        v
    }

    /// The best view for `agg`: its own grain first, then the fewest rows.
    fn choose(&self, agg: &Aggregate) -> (Option<(LogicalPlan, String)>, Vec<String>) {
        let mut notes = Vec::new();
        let Some(be) = self.be.read().clone() else {
            return (None, notes);
        };
        let Some((_, scan)) = peel(&agg.input) else {
            return (None, notes);
        };
        let Some(table) = scanned_table(scan) else {
            return (None, notes);
        };
        let mut best: Option<(bool, u64, LogicalPlan, String)> = None;
        for v in self.candidates(&table) {
            match v.answer(agg, &be) {
                Ok((plan, exact)) => {
                    let better = best.as_ref().is_none_or(|(e, rows, _, _)| {
                        (exact, std::cmp::Reverse(v.info.rows)) > (*e, std::cmp::Reverse(*rows))
                    });
                    if better {
                        best = Some((exact, v.info.rows, plan, v.info.def.name.clone()));
                    }
                }
                Err(why) => notes.push(format!(
                    "materialized view {} not used: {why}",
                    v.info.def.name
                )),
            }
        }
        if let Some((exact, _, _, name)) = &best {
            notes.insert(
                0,
                format!(
                    "aggregate over {table} answered from materialized view {name} ({})",
                    if *exact {
                        "its own grain: no re-aggregation"
                    } else {
                        "re-aggregated to a coarser grain"
                    }
                ),
            );
        } else if notes.is_empty() {
            notes.push(format!("no materialized view reads {table}"));
        }
        (best.map(|(_, _, p, n)| (p, n)), notes)
    }

    /// What the rewrite decides for each aggregate of `plan` (for `EXPLAIN`).
    pub fn explain(&self, plan: &LogicalPlan, config: &ConfigOptions) -> Vec<String> {
        let Ok(plan) = Analyzer::new().execute_and_check(plan.clone(), config, |_, _| {}) else {
            return Vec::new();
        };
        let mut notes = Vec::new();
        let _ = plan.apply(|node| {
            if let LogicalPlan::Aggregate(a) = node {
                notes.extend(self.choose(a).1);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        notes
    }
}

fn clone_pattern(p: &ViewPattern) -> ViewPattern {
    ViewPattern {
        info: p.info.clone(),
        unusable: p.unusable.clone(),
        table: p.table.clone(),
        keys: p.keys.clone(),
        aggs: p.aggs.clone(),
        filters: p.filters.clone(),
        bucket: p.bucket.clone(),
    }
}

async fn plan_view(state: &SessionState, info: RollupInfo) -> ViewPattern {
    let planned = async {
        let plan = state.create_logical_plan(&info.def.sql).await?;
        Analyzer::new().execute_and_check(plan, state.config_options(), |_, _| {})
    }
    .await;
    match planned {
        Ok(plan) => ViewPattern::from_plan(info, &plan),
        Err(e) => ViewPattern {
            table: info.root_table.clone(),
            unusable: Some(format!("its definition does not plan here: {e}")),
            keys: Vec::new(),
            aggs: Vec::new(),
            filters: Vec::new(),
            bucket: None,
            info,
        },
    }
}

impl AnalyzerRule for RollupRewrite {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        if self.views.read().is_empty() {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            if let LogicalPlan::Aggregate(a) = &node {
                if let (Some((p, _)), _) = self.choose(a) {
                    return Ok(Transformed::yes(p));
                }
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "rollup_rewrite"
    }
}

/// `EXPLAIN` output plus one `rollup_rewrite` row per note, in the same two columns.
pub fn with_notes(
    stream: datafusion::execution::SendableRecordBatchStream,
    notes: Vec<String>,
) -> datafusion::execution::SendableRecordBatchStream {
    use arrow::array::{ArrayRef, StringArray};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use futures::StreamExt;
    let schema = stream.schema();
    let extra = (schema.fields().len() == 2).then(|| {
        let kinds: ArrayRef = Arc::new(StringArray::from(vec!["rollup_rewrite"; notes.len()]));
        let text: ArrayRef = Arc::new(StringArray::from(notes));
        arrow::record_batch::RecordBatch::try_new(Arc::clone(&schema), vec![kinds, text])
    });
    let tail = futures::stream::iter(extra.and_then(|r| r.ok()).map(Ok));
    Box::pin(RecordBatchStreamAdapter::new(schema, stream.chain(tail)))
}
