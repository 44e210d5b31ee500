//! DataFusion's view of an eddy table: a `TableProvider` that asks the BE for a pruned,
//! consistent snapshot ([`eddy_proto::ScanSnapshot`]) with projection and predicates pushed
//! down, and a sink that writes `INSERT` results through the BE's durable write path.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{ScalarValue, Statistics};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use eddy_proto::{BeService, Predicate, PredicateOp, Scalar, ScanRequest, ScanSnapshot};
use futures::TryStreamExt;

use crate::error::to_datafusion;

/// A user table stored by the BE.
#[derive(Debug)]
pub struct EddyTable {
    pub be: Arc<dyn BeService>,
    pub name: String,
    pub schema: SchemaRef,
    /// A materialized view (reads its current state) rather than a table.
    pub view: bool,
    /// The primary-key columns (none for an append table or a view).
    pub key: Vec<String>,
}

#[async_trait]
impl TableProvider for EddyTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        if self.view {
            TableType::View
        } else {
            TableType::Base
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Predicates prune, and DataFusion filters every row again, except for the
        // primary-key equalities a key lookup answers exactly.
        Ok(crate::key_filter::pushdown(
            &self.key,
            &self.schema,
            filters,
        ))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let guard = crate::key_filter::guard(&self.key, &self.schema, projection, filters);
        let read = match &guard {
            Some(g) => g.read.as_ref(),
            None => projection,
        };
        let names = read.map(|p| {
            p.iter()
                .map(|i| self.schema.field(*i).name().clone())
                .collect()
        });
        let request = ScanRequest {
            table: self.name.clone(),
            projection: names,
            predicates: filters.iter().flat_map(to_predicates).collect(),
            // A guarded scan may filter after the BE: the limit (DataFusion keeps its own
            // above the scan) must not cut rows before that.
            limit: if guard.is_some() { None } else { limit },
            target_partitions: state.config().target_partitions(),
        };
        let snapshot = self.be.scan(request).await.map_err(to_datafusion)?;
        let looked_up = snapshot.stats().key_lookup_rows.is_some();
        let scan = Arc::new(EddyScanExec::new(self.name.clone(), snapshot));
        match guard {
            Some(g) => g.finish(&self.key, &self.schema, state, scan, looked_up),
            None => Ok(scan),
        }
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(to_datafusion(eddy_proto::Error::new(
                eddy_proto::ErrorCode::Unsupported,
                format!("{insert_op} is not supported; use INSERT INTO"),
            )));
        }
        let sink = EddySink {
            be: Arc::clone(&self.be),
            table: self.name.clone(),
            schema: Arc::clone(&self.schema),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

pub(crate) fn scalar_of(v: &ScalarValue) -> Option<Scalar> {
    Some(match v {
        ScalarValue::Boolean(Some(b)) => Scalar::Bool(*b),
        ScalarValue::Int8(Some(x)) => Scalar::Int(*x as i64),
        ScalarValue::Int16(Some(x)) => Scalar::Int(*x as i64),
        ScalarValue::Int32(Some(x)) => Scalar::Int(*x as i64),
        ScalarValue::Int64(Some(x)) => Scalar::Int(*x),
        ScalarValue::UInt8(Some(x)) => Scalar::Int(*x as i64),
        ScalarValue::UInt16(Some(x)) => Scalar::Int(*x as i64),
        ScalarValue::UInt32(Some(x)) => Scalar::Int(*x as i64),
        ScalarValue::Float32(Some(x)) => Scalar::Float(*x as f64),
        ScalarValue::Float64(Some(x)) => Scalar::Float(*x),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Scalar::Str(s.clone()),
        ScalarValue::Date32(Some(d)) => Scalar::Date(*d),
        ScalarValue::TimestampSecond(Some(t), _) => {
            Scalar::TimestampMicros(t.saturating_mul(1_000_000))
        }
        ScalarValue::TimestampMillisecond(Some(t), _) => {
            Scalar::TimestampMicros(t.saturating_mul(1_000))
        }
        ScalarValue::TimestampMicrosecond(Some(t), _) => Scalar::TimestampMicros(*t),
        ScalarValue::TimestampNanosecond(Some(t), _) => {
            Scalar::TimestampMicros(t.div_euclid(1_000))
        }
        ScalarValue::Decimal128(Some(v), _, s) => Scalar::Decimal(*v, *s),
        _ => return None,
    })
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<Scalar> {
    match e {
        Expr::Literal(v, _) => scalar_of(v),
        _ => None,
    }
}

/// The pruning predicates implied by a filter expression (a conjunction of simple
/// comparisons between a column and literals); anything else implies none.
pub fn to_predicates(e: &Expr) -> Vec<Predicate> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            let mut v = to_predicates(left);
            v.extend(to_predicates(right));
            v
        }
        // `c = 1 OR c = 2` (DataFusion's form of a short IN list): `c IN (1, 2)`.
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let one_eq = |e: &Expr| match to_predicates(e).as_slice() {
                [p] if p.op == PredicateOp::Eq => Some(p.clone()),
                _ => None,
            };
            match (one_eq(left), one_eq(right)) {
                (Some(mut a), Some(b)) if a.column == b.column => {
                    a.values.extend(b.values);
                    vec![a]
                }
                _ => vec![],
            }
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (col, lit, flipped) = match (
                column_name(left),
                literal(right),
                column_name(right),
                literal(left),
            ) {
                (Some(c), Some(l), _, _) => (c, l, false),
                (_, _, Some(c), Some(l)) => (c, l, true),
                _ => return vec![],
            };
            let op = match (op, flipped) {
                (Operator::Eq, _) => PredicateOp::Eq,
                (Operator::Lt, false) | (Operator::Gt, true) => PredicateOp::Lt,
                (Operator::LtEq, false) | (Operator::GtEq, true) => PredicateOp::LtEq,
                (Operator::Gt, false) | (Operator::Lt, true) => PredicateOp::Gt,
                (Operator::GtEq, false) | (Operator::LtEq, true) => PredicateOp::GtEq,
                _ => return vec![],
            };
            vec![Predicate {
                column: col,
                op,
                values: vec![lit],
            }]
        }
        Expr::InList(l) if !l.negated => {
            let Some(col) = column_name(&l.expr) else {
                return vec![];
            };
            let values: Option<Vec<Scalar>> = l.list.iter().map(literal).collect();
            values.map_or(vec![], |values| {
                vec![Predicate {
                    column: col,
                    op: PredicateOp::Eq,
                    values,
                }]
            })
        }
        Expr::Between(b) if !b.negated => {
            let (Some(col), Some(lo), Some(hi)) =
                (column_name(&b.expr), literal(&b.low), literal(&b.high))
            else {
                return vec![];
            };
            vec![
                Predicate {
                    column: col.clone(),
                    op: PredicateOp::GtEq,
                    values: vec![lo],
                },
                Predicate {
                    column: col,
                    op: PredicateOp::LtEq,
                    values: vec![hi],
                },
            ]
        }
        _ => vec![],
    }
}

/// Reads a BE scan snapshot, one DataFusion partition per snapshot partition.
#[derive(Debug)]
pub struct EddyScanExec {
    table: String,
    snapshot: Arc<dyn ScanSnapshot>,
    properties: Arc<PlanProperties>,
    /// Rows and batches sent, for EXPLAIN ANALYZE.
    metrics: ExecutionPlanMetricsSet,
    /// Computed when the planner first asks (it may cost a pass over memtable rows).
    statistics: std::sync::OnceLock<Arc<Statistics>>,
}

impl EddyScanExec {
    pub fn new(table: String, snapshot: Arc<dyn ScanSnapshot>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(snapshot.schema()),
            Partitioning::UnknownPartitioning(snapshot.partitions()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            table,
            snapshot,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            statistics: std::sync::OnceLock::new(),
        }
    }
}

impl DisplayAs for EddyScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let s = self.snapshot.stats();
        write!(
            f,
            "EddyScanExec: table={}, partitions_pruned={}/{}, segments_pruned={}/{}, row_groups_pruned={}/{}, memtable_rows={}",
            self.table,
            s.partitions_pruned,
            s.partitions_total,
            s.segments_pruned,
            s.segments_total,
            s.row_groups_pruned,
            s.row_groups_total,
            s.memtable_rows
        )?;
        if let Some(n) = s.key_lookup_rows {
            write!(f, ", key_lookup_rows={n}")?;
        }
        Ok(())
    }
}

#[allow(deprecated)]
impl ExecutionPlan for EddyScanExec {
    fn name(&self) -> &'static str {
        "EddyScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    /// Exact row count and column min/max/nulls of the whole snapshot, from segment
    /// metadata and memtable rows: DataFusion answers `count(*)`, `min` and `max` from
    /// them without a scan, and skips repartitioning a handful of rows across threads.
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        if partition.is_some() {
            return Ok(Arc::new(Statistics::new_unknown(&self.snapshot.schema())));
        }
        let stats = self
            .statistics
            .get_or_init(|| Arc::new(datafusion_statistics(&self.snapshot)));
        Ok(Arc::clone(stats))
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.snapshot.execute(partition).map_err(to_datafusion)?;
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.snapshot.schema(),
            stream
                .map_err(to_datafusion)
                .inspect_ok(move |b| baseline.record_output(b.num_rows())),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The snapshot's statistics in DataFusion's terms, every value exact or absent.
fn datafusion_statistics(snapshot: &Arc<dyn ScanSnapshot>) -> Statistics {
    let schema = snapshot.schema();
    let s = snapshot.statistics();
    let mut stats = Statistics::new_unknown(&schema);
    stats.num_rows = Precision::Exact(s.rows as usize);
    for ((out, c), f) in stats
        .column_statistics
        .iter_mut()
        .zip(&s.columns)
        .zip(schema.fields())
    {
        let Some(c) = c else { continue };
        let (Some(min), Some(max)) = (
            scalar_value(&c.min, f.data_type()),
            scalar_value(&c.max, f.data_type()),
        ) else {
            continue;
        };
        out.min_value = Precision::Exact(min);
        out.max_value = Precision::Exact(max);
        out.null_count = Precision::Exact(c.nulls as usize);
    }
    stats
}

/// A BE scalar as a DataFusion value of the column's type (`Null` as a typed NULL).
fn scalar_value(s: &Scalar, t: &DataType) -> Option<ScalarValue> {
    let v = match (s, t) {
        (Scalar::Null, _) => return ScalarValue::try_from(t).ok(),
        (Scalar::TimestampMicros(v), DataType::Timestamp(TimeUnit::Microsecond, tz)) => {
            return Some(ScalarValue::TimestampMicrosecond(Some(*v), tz.clone()))
        }
        (Scalar::TimestampMicros(_), _) => return None,
        (Scalar::Bool(b), _) => ScalarValue::Boolean(Some(*b)),
        (Scalar::Int(i), _) => ScalarValue::Int64(Some(*i)),
        (Scalar::Float(f), _) => ScalarValue::Float64(Some(*f)),
        (Scalar::Str(s), _) => ScalarValue::Utf8(Some(s.clone())),
        (Scalar::Date(d), _) => ScalarValue::Date32(Some(*d)),
        (Scalar::Decimal(v, s), _) => ScalarValue::Decimal128(Some(*v), 38, *s),
    };
    let v = v.cast_to(t).ok()?;
    (v.data_type() == *t).then_some(v)
}

/// Writes INSERT results through the BE; the statement succeeds only when they are durable.
#[derive(Debug)]
struct EddySink {
    be: Arc<dyn BeService>,
    table: String,
    schema: SchemaRef,
}

impl DisplayAs for EddySink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "EddySink: table={}", self.table)
    }
}

#[async_trait]
impl DataSink for EddySink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        // One statement is one write, so a bad row rejects all of it.
        let batches: Vec<_> = data.try_collect().await?;
        self.be
            .write(&self.table, batches)
            .await
            .map_err(to_datafusion)
    }
}
