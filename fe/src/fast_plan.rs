//! Physical plans for the smallest queries, built without DataFusion's physical planner.
//!
//! A point query (`SELECT * FROM t WHERE id = $1`) or a constant (`SELECT 1`) runs in
//! microseconds, yet DataFusion's physical planner and its twenty-odd optimizer rules cost
//! several times that. For an optimized plan made only of projections and filters over one
//! table scan or an empty relation, [`plan`] builds what DataFusion builds for it: the
//! provider's scan (or `PlaceholderRowExec` / `EmptyExec`) wrapped in `CooperativeExec` as
//! the `EnsureCooperative` rule does, then `FilterExec` and `ProjectionExec` with the same
//! physical expressions and output names. None of the other optimizer rules changes such a
//! plan's result. Any other shape, or an expression needing more than plain planning (a
//! subquery, an async function), gets `None` and goes through DataFusion.
//!
//! A constant plan (over an empty relation) runs as a [`ConstantExec`]: the same physical
//! expressions evaluated on the same placeholder row, without the operators' per-run
//! metrics. A prepared constant query (`SELECT 1`, a pool's ping) keeps its physical plan
//! and runs it again and again; DataFusion's operators register new metrics on every
//! `execute`, so a kept plan of theirs would grow with each run, and formatting the
//! metrics' labels costs more than the query.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, NullArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::Result;
use datafusion::datasource::source_as_provider;
use datafusion::execution::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::physical_name;
use datafusion::logical_expr::expr_rewriter::unnormalize_cols;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{EmptyRelation, Expr, Filter, LogicalPlan, Projection, TableScan};
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_expr::projection::Projector;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::SchedulingType;
use datafusion::physical_plan::filter::batch_filter;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};

/// The physical plan of `plan` (already optimized) when it has one of the small shapes
/// this module plans, else `None`.
pub async fn plan(
    plan: &LogicalPlan,
    state: &SessionState,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some((chain, leaf)) = shape(plan) else {
        return Ok(None);
    };
    // For a constant plan: its leaf's row and the steps applied to it.
    let mut constant: Option<(Option<RecordBatch>, Vec<Step>)> = None;
    let mut exec = match leaf {
        LogicalPlan::TableScan(scan) => match scan_exec(scan, state).await? {
            Some(e) => e,
            None => return Ok(None),
        },
        LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row,
            schema,
        }) => {
            let schema = Arc::clone(schema.inner());
            constant = Some((
                produce_one_row
                    .then(|| placeholder_row(&schema))
                    .transpose()?,
                vec![],
            ));
            if *produce_one_row {
                Arc::new(PlaceholderRowExec::new(schema)) as Arc<dyn ExecutionPlan>
            } else {
                Arc::new(EmptyExec::new(schema))
            }
        }
        _ => return Ok(None),
    };
    if exec.properties().scheduling_type != SchedulingType::Cooperative {
        exec = Arc::new(CooperativeExec::new(exec));
    }
    let props = state.execution_props();
    let ctx = PhysicalPlanningContext::default();
    for node in chain.into_iter().rev() {
        exec = match node {
            LogicalPlan::Filter(Filter {
                predicate, input, ..
            }) => {
                let predicate = create_physical_expr(predicate, input.schema(), props, &ctx)?;
                if let Some((_, steps)) = &mut constant {
                    steps.push(Step::Filter(Arc::clone(&predicate)));
                }
                Arc::new(
                    FilterExecBuilder::new(predicate, exec)
                        .with_batch_size(state.config().batch_size())
                        .build()?,
                )
            }
            LogicalPlan::Projection(Projection {
                expr,
                input,
                schema,
                ..
            }) => {
                let input_schema = input.schema();
                let exprs = expr
                    .iter()
                    .map(|e| {
                        // As DataFusion's planner: a column keeps its input's physical name.
                        let name = match e {
                            Expr::Column(c) => match input_schema.index_of_column(c) {
                                Ok(i) => exec.schema().field(i).name().clone(),
                                Err(_) => physical_name(e)?,
                            },
                            _ => physical_name(e)?,
                        };
                        Ok(ProjectionExpr {
                            expr: create_physical_expr(e, input_schema, props, &ctx)?,
                            alias: name,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let p =
                    ProjectionExec::try_new_with_schema_metadata(exprs, exec, schema.as_arrow())?;
                if let Some((_, steps)) = &mut constant {
                    steps.push(Step::Project(
                        p.projection_expr().make_projector_with_schema_metadata(
                            &p.input().schema(),
                            &p.schema(),
                        )?,
                    ));
                }
                Arc::new(p)
            }
            _ => unreachable!("the chain holds projections and filters"),
        };
    }
    if let Some((row, steps)) = constant {
        exec = Arc::new(ConstantExec {
            inner: exec,
            row,
            steps: steps.into(),
        });
    }
    Ok(Some(exec))
}

/// The one row `PlaceholderRowExec` produces for `schema`: a null per field.
fn placeholder_row(schema: &Schema) -> Result<RecordBatch> {
    let n = schema.fields().len();
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(
            (0..n)
                .map(|i| Field::new(format!("placeholder_{i}"), DataType::Null, true))
                .collect::<Vec<_>>(),
        )),
        (0..n)
            .map(|_| Arc::new(NullArray::new(1)) as ArrayRef)
            .collect(),
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?)
}

/// What a constant plan does to its row, bottom up.
#[derive(Debug)]
enum Step {
    Filter(Arc<dyn PhysicalExpr>),
    Project(Projector),
}

/// A constant plan, run as its operators would run it (see the module documentation).
#[derive(Debug)]
pub struct ConstantExec {
    /// DataFusion's operators: the plan's properties, and how EXPLAIN shows it.
    inner: Arc<dyn ExecutionPlan>,
    /// The placeholder row, or none for an empty relation without one.
    row: Option<RecordBatch>,
    steps: Arc<[Step]>,
}

impl ConstantExec {
    /// The result: none when a filter left no row (as `FilterExec` sends no empty batch).
    fn run(row: &RecordBatch, steps: &[Step]) -> Result<Option<RecordBatch>> {
        let mut batch = row.clone();
        for step in steps {
            batch = match step {
                Step::Filter(predicate) => {
                    let b = batch_filter(&batch, predicate)?;
                    if b.num_rows() == 0 {
                        return Ok(None);
                    }
                    b
                }
                Step::Project(p) => p.project_batch(&batch)?,
            };
        }
        Ok(Some(batch))
    }
}

impl DisplayAs for ConstantExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for ConstantExec {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for step in self.steps.iter() {
            let exprs: Vec<&Arc<dyn PhysicalExpr>> = match step {
                Step::Filter(p) => vec![p],
                Step::Project(p) => p.projection().iter().map(|e| &e.expr).collect(),
            };
            for e in exprs {
                if f(e)? == TreeNodeRecursion::Stop {
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let row = self.row.clone();
        let steps = Arc::clone(&self.steps);
        let batches = row
            .into_iter()
            .filter_map(move |row| Self::run(&row, &steps).transpose());
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::iter(batches),
        )))
    }
}

/// The projections and filters from the top of a plan this module plans, and its leaf.
fn shape(plan: &LogicalPlan) -> Option<(Vec<&LogicalPlan>, &LogicalPlan)> {
    let mut chain = Vec::new();
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Projection(Projection { input, expr, .. }) if plain(expr) => {
                chain.push(node);
                node = input;
            }
            LogicalPlan::Filter(Filter {
                input, predicate, ..
            }) if plain(std::slice::from_ref(predicate)) => {
                chain.push(node);
                node = input;
            }
            LogicalPlan::TableScan(scan) if plain(&scan.filters) => return Some((chain, node)),
            LogicalPlan::EmptyRelation(_) => return Some((chain, node)),
            _ => return None,
        }
    }
}

/// Whether [`plan`] plans `plan` into operators that read no table and keep no state
/// between runs (projections and filters of an empty relation), so its physical plan
/// can run again.
pub fn is_constant(plan: &LogicalPlan) -> bool {
    matches!(shape(plan), Some((_, LogicalPlan::EmptyRelation(_))))
}

/// The provider's scan, as DataFusion's planner asks for it.
async fn scan_exec(
    scan: &TableScan,
    state: &SessionState,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Ok(provider) = source_as_provider(&scan.source) else {
        return Ok(None);
    };
    if !scan.statistics_requests.is_empty() {
        return Ok(None);
    }
    // The provider does not know how the query named the table.
    let filters: Vec<Expr> = unnormalize_cols(scan.filters.iter().cloned());
    let exec = provider
        .scan(state, scan.projection.as_ref(), &filters, scan.fetch)
        .await?;
    Ok(Some(exec))
}

/// Whether expressions plan without subqueries or async functions.
fn plain(exprs: &[Expr]) -> bool {
    exprs.iter().all(|e| {
        !e.exists(|e| {
            Ok(match e {
                Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::SetComparison(_)
                | Expr::OuterReferenceColumn(..)
                | Expr::Placeholder(_) => true,
                Expr::ScalarFunction(f) => f.func.as_async().is_some(),
                _ => false,
            })
        })
        .unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::SessionContext;

    fn context() -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(4)])),
                Arc::new(StringArray::from(vec![
                    Some("x"),
                    None,
                    Some("z"),
                    Some("w"),
                ])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![batch.clone()], vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    /// The fast plan's output (names, types and rows, in order) against DataFusion's.
    async fn same_as_datafusion(sql: &str) -> bool {
        let ctx = context();
        let state = ctx.state();
        let logical = state.create_logical_plan(sql).await.unwrap();
        let optimized = state.optimize(&logical).unwrap();
        let Some(fast) = plan(&optimized, &state).await.unwrap() else {
            return false;
        };
        let fast_rows = collect(Arc::clone(&fast), state.task_ctx()).await.unwrap();
        let df = ctx.sql(sql).await.unwrap();
        let df_schema = df.schema().as_arrow().clone();
        let df_rows = df.collect().await.unwrap();
        let names = |s: &Schema| {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&fast.schema()), names(&df_schema), "{sql}");
        assert_eq!(
            pretty_format_batches(&fast_rows).unwrap().to_string(),
            pretty_format_batches(&df_rows).unwrap().to_string(),
            "{sql}"
        );
        true
    }

    #[tokio::test]
    async fn small_shapes_plan_as_datafusion_does() {
        for sql in [
            "SELECT 1",
            "SELECT 1 AS one, 'a' || 'b', 2 * 3",
            "SELECT * FROM t",
            "SELECT b, a FROM t WHERE a = 2",
            "SELECT a + 1 AS x, upper(b) FROM t WHERE a > 1 AND b IS NOT NULL",
            "SELECT a FROM t WHERE b = 'z' OR a = 1",
            "SELECT t.a AS renamed FROM t WHERE false",
            "SELECT a, a * 2 FROM t WHERE a IN (1, 4)",
            "SELECT 1 AS x WHERE random() < 0",
            "SELECT 2 AS x WHERE random() >= 0",
            "SELECT 1 WHERE false",
            "SELECT 'a' AS s, NULL AS n, 1.5 AS f",
        ] {
            assert!(same_as_datafusion(sql).await, "not planned fast: {sql}");
        }
    }

    #[tokio::test]
    async fn a_constant_plan_runs_again_without_growing() {
        let ctx = context();
        let state = ctx.state();
        let logical = state
            .create_logical_plan("SELECT 1 AS one, 'x' || 'y' AS s")
            .await
            .unwrap();
        let optimized = state.optimize(&logical).unwrap();
        let fast = plan(&optimized, &state).await.unwrap().unwrap();
        assert!(fast.is::<ConstantExec>());
        for _ in 0..3 {
            let rows = collect(Arc::clone(&fast), state.task_ctx()).await.unwrap();
            assert_eq!(
                pretty_format_batches(&rows).unwrap().to_string(),
                "+-----+----+\n| one | s  |\n+-----+----+\n| 1   | xy |\n+-----+----+"
            );
        }
        assert!(fast.metrics().is_none());
    }

    #[tokio::test]
    async fn other_shapes_go_to_datafusion() {
        for sql in [
            "SELECT count(*) FROM t",
            "SELECT a FROM t ORDER BY a",
            "SELECT a FROM t LIMIT 1",
            "SELECT a FROM t WHERE a = (SELECT max(a) FROM t)",
            "SELECT x.a FROM t x JOIN t y ON x.a = y.a",
            "SELECT a FROM t UNION ALL SELECT a FROM t",
        ] {
            assert!(!same_as_datafusion(sql).await, "planned fast: {sql}");
        }
    }
}
