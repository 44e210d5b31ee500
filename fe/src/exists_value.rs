//! `EXISTS (subquery)` as a value in a select list, as PostgreSQL runs it.
//!
//! DataFusion plans `EXISTS` in a WHERE clause (as a semi join) but not as a value:
//! `SELECT o.id, EXISTS (SELECT 1 FROM lines l WHERE l.order_id = o.id) FROM orders o`
//! failed in physical planning. This analyzer rule turns such an `EXISTS` into the scalar
//! subquery `(SELECT count(*) > 0 FROM ...)` over the same rows (`= 0` for `NOT EXISTS`),
//! which DataFusion decorrelates into a left join on the correlation keys, and whose
//! empty case it answers `false` (the count of no rows is 0). A `LIMIT` of at least one
//! row on the subquery does not change whether a row exists and is dropped, as a
//! decorrelated subquery cannot hold one.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::expr::Exists;
use datafusion::logical_expr::{lit, Expr, LogicalPlan, LogicalPlanBuilder, Subquery};
use datafusion::optimizer::analyzer::AnalyzerRule;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct ExistsValues;

/// The rows an `EXISTS` subquery looks at: its plan without the select list and a
/// `LIMIT` of at least one row, neither of which changes whether there is a row.
fn rows(plan: &LogicalPlan) -> &LogicalPlan {
    match plan {
        LogicalPlan::Projection(p) if !has_outer_refs(&p.expr) => rows(&p.input),
        LogicalPlan::Limit(l)
            if matches!(
                l.get_skip_type(),
                Ok(datafusion::logical_expr::SkipType::Literal(0))
            ) && matches!(l.get_fetch_type(), Ok(datafusion::logical_expr::FetchType::Literal(Some(n))) if n > 0) =>
        {
            rows(&l.input)
        }
        other => other,
    }
}

fn has_outer_refs(exprs: &[Expr]) -> bool {
    exprs.iter().any(|e| {
        e.exists(|e| Ok(matches!(e, Expr::OuterReferenceColumn(..))))
            .unwrap_or(true)
    })
}

/// `EXISTS (q)` as `(SELECT count(*) > 0 FROM q's rows)`.
fn as_scalar(exists: &Exists) -> Result<Expr> {
    let plan = LogicalPlanBuilder::from(rows(&exists.subquery.subquery).clone())
        .aggregate(
            Vec::<Expr>::new(),
            vec![count(lit(ScalarValue::Int64(Some(1))))],
        )?
        .build()?;
    let n = Expr::Column(plan.schema().qualified_field(0).into());
    let test = if exists.negated {
        n.eq(lit(0i64))
    } else {
        n.gt(lit(0i64))
    };
    // Named as PostgreSQL names the column: `exists`, but `?column?` for the operator NOT.
    let name = if exists.negated { "?column?" } else { "exists" };
    let plan = LogicalPlanBuilder::from(plan)
        .project(vec![test.alias(name)])?
        .build()?;
    Ok(Expr::ScalarSubquery(Subquery {
        subquery: Arc::new(plan),
        outer_ref_columns: exists.subquery.outer_ref_columns.clone(),
        spans: exists.subquery.spans.clone(),
    }))
}

impl AnalyzerRule for ExistsValues {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let any = crate::plan_exprs::any_node(&plan, |node| match node {
            LogicalPlan::Projection(_) => {
                crate::plan_exprs::any_expr(node, |e| matches!(e, Expr::Exists(_)))
            }
            _ => Ok(false),
        })?;
        if !any {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|node| {
            if !matches!(node, LogicalPlan::Projection(_)) {
                return Ok(Transformed::no(node));
            }
            crate::plan_exprs::map_named_exprs(node, |e| {
                e.transform_up(|e| match &e {
                    Expr::Exists(x) => Ok(Transformed::yes(as_scalar(x)?)),
                    _ => Ok(Transformed::no(e)),
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "eddy_exists_values"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    fn context() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.add_analyzer_rule(Arc::new(ExistsValues));
        let table = |name: &str, values: Vec<i64>| {
            let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Int64, false)]));
            let rows = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(values))],
            )
            .unwrap();
            Arc::new(MemTable::try_new(schema, vec![vec![rows]]).unwrap())
        };
        ctx.register_table("orders", table("id", vec![1, 2, 3]))
            .unwrap();
        ctx.register_table("lines", table("order_id", vec![1, 1, 3]))
            .unwrap();
        ctx
    }

    async fn column(ctx: &SessionContext, sql: &str, i: usize) -> Vec<Option<bool>> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let b = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let c = b.column(i).as_boolean();
        (0..c.len())
            .map(|r| c.is_valid(r).then(|| c.value(r)))
            .collect()
    }

    #[tokio::test]
    async fn exists_in_a_select_list_is_a_value_per_row() {
        let ctx = context();
        let correlated = "SELECT o.id, EXISTS (SELECT 1 FROM lines l WHERE l.order_id = o.id), \
             NOT EXISTS (SELECT 1 FROM lines l WHERE l.order_id = o.id LIMIT 1) \
             FROM orders o ORDER BY o.id";
        assert_eq!(
            column(&ctx, correlated, 1).await,
            [Some(true), Some(false), Some(true)]
        );
        assert_eq!(
            column(&ctx, correlated, 2).await,
            [Some(false), Some(true), Some(false)]
        );
        // (DataFusion names every EXISTS alike.)
        let uncorrelated = "SELECT EXISTS (SELECT 1 FROM lines WHERE order_id = 2) AS a, \
             EXISTS (SELECT 1 FROM lines WHERE order_id = 3) AS b";
        assert_eq!(column(&ctx, uncorrelated, 0).await, [Some(false)]);
        assert_eq!(column(&ctx, uncorrelated, 1).await, [Some(true)]);
    }
}
