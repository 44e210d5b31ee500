//! Relations known to hold no rows, propagated before subqueries are decorrelated.
//!
//! pg_catalog tables eddy never fills (`pg_policy`, `pg_inherits`, ...) are served as
//! [`EmptyTable`]s. DataFusion knows an empty relation only once its optimizer reaches
//! `propagate_empty_relation`, after it has tried (and, for some shapes, failed) to
//! decorrelate the subqueries over it. psql's `\dp` lists each table's row security
//! policies with a correlated `ARRAY(SELECT ... ARRAY(SELECT rolname FROM pg_roles WHERE
//! oid = ANY (polroles)) ... FROM pg_policy WHERE polrelid = c.oid)`: the inner subquery
//! is correlated by a non-equality, which DataFusion cannot decorrelate at all.
//!
//! This analyzer rule turns each scan of an [`EmptyTable`] into an `EmptyRelation` and
//! propagates it with DataFusion's own [`PropagateEmptyRelation`] through the plan and
//! every subquery, before the optimizer runs: a projection or filter over no rows is
//! itself no rows, so the subqueries it held (never evaluated over no rows) go with it,
//! and a subquery whose correlated filter went is uncorrelated. Its outer references are
//! recomputed to say so. Exact for any query: only what no row can reach is removed.

use std::sync::Arc;

use datafusion::catalog::empty::EmptyTable;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::source_as_provider;
use datafusion::error::Result;
use datafusion::logical_expr::{EmptyRelation, Expr, LogicalPlan, Subquery};
use datafusion::optimizer::analyzer::AnalyzerRule;
use datafusion::optimizer::propagate_empty_relation::PropagateEmptyRelation;
use datafusion::optimizer::{OptimizerContext, OptimizerRule};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct EmptyRelations;

/// Whether a node scans a table that is known to be empty.
fn is_empty_scan(node: &LogicalPlan) -> bool {
    let LogicalPlan::TableScan(scan) = node else {
        return false;
    };
    source_as_provider(&scan.source).is_ok_and(|p| {
        let any: &dyn std::any::Any = p.as_ref();
        any.is::<EmptyTable>()
    })
}

/// A subquery with its outer references as its (possibly pruned) plan has them.
fn recompute(mut s: Subquery) -> Transformed<Subquery> {
    let refs = s.subquery.all_out_ref_exprs();
    if refs == s.outer_ref_columns {
        return Transformed::no(s);
    }
    s.outer_ref_columns = refs;
    Transformed::yes(s)
}

/// The node with the outer references of the subqueries in its expressions recomputed.
fn recompute_subqueries(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    node.map_expressions(|e| {
        e.transform_up(|e| {
            Ok(match e {
                Expr::ScalarSubquery(s) => recompute(s).update_data(Expr::ScalarSubquery),
                Expr::Exists(mut x) => {
                    let t = recompute(x.subquery);
                    let transformed = t.transformed;
                    x.subquery = t.data;
                    Transformed::new_transformed(Expr::Exists(x), transformed)
                }
                Expr::InSubquery(mut x) => {
                    let t = recompute(x.subquery);
                    let transformed = t.transformed;
                    x.subquery = t.data;
                    Transformed::new_transformed(Expr::InSubquery(x), transformed)
                }
                Expr::SetComparison(mut x) => {
                    let t = recompute(x.subquery);
                    let transformed = t.transformed;
                    x.subquery = t.data;
                    Transformed::new_transformed(Expr::SetComparison(x), transformed)
                }
                other => Transformed::no(other),
            })
        })
    })
}

impl AnalyzerRule for EmptyRelations {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let any = crate::plan_exprs::any_node(&plan, |node| Ok(is_empty_scan(node)))?;
        if !any {
            return Ok(plan);
        }
        let propagate = PropagateEmptyRelation::new();
        let config = OptimizerContext::new();
        plan.transform_up_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = &node {
                if is_empty_scan(&node) {
                    return Ok(Transformed::yes(LogicalPlan::EmptyRelation(
                        EmptyRelation {
                            produce_one_row: false,
                            schema: Arc::clone(&scan.projected_schema),
                        },
                    )));
                }
            }
            let node = recompute_subqueries(node)?;
            let transformed = node.transformed;
            let out = propagate.rewrite(node.data, &config)?;
            Ok(Transformed::new_transformed(
                out.data,
                transformed || out.transformed,
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "eddy_empty_relations"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int32Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// `base(oid)` with rows 1 and 2, `roles(oid, name)` with rows, and the empty
    /// `policy(name, relid, roles)`.
    fn context(rule: bool) -> SessionContext {
        let ctx = SessionContext::new();
        if rule {
            ctx.add_analyzer_rule(Arc::new(EmptyRelations));
        }
        let base = Arc::new(Schema::new(vec![Field::new("oid", DataType::Int32, false)]));
        let rows = RecordBatch::try_new(
            Arc::clone(&base),
            vec![Arc::new(Int32Array::from(vec![1, 2]))],
        )
        .unwrap();
        let base = MemTable::try_new(base, vec![vec![rows]]).unwrap();
        ctx.register_table("base", Arc::new(base)).unwrap();
        let roles = Arc::new(Schema::new(vec![
            Field::new("oid", DataType::Int32, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let rows = RecordBatch::try_new(
            Arc::clone(&roles),
            vec![
                Arc::new(Int32Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .unwrap();
        let roles = MemTable::try_new(roles, vec![vec![rows]]).unwrap();
        ctx.register_table("roles", Arc::new(roles)).unwrap();
        let policy = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("relid", DataType::Int32, false),
            Field::new(
                "roles",
                DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
                true,
            ),
        ]));
        ctx.register_table("policy", Arc::new(EmptyTable::new(policy)))
            .unwrap();
        ctx
    }

    /// psql's `\dp` shape: an element with a subquery correlated by a non-equality,
    /// over a correlated derived table of an empty table; and a correlated count.
    const NESTED: &str = "SELECT b.oid, \
        (SELECT array_agg(e) FROM (SELECT p.name || (SELECT max(r.name) FROM roles r \
            WHERE array_has(p.roles, r.oid)) AS e FROM policy p WHERE p.relid = b.oid) x) AS a, \
        (SELECT count(*) FROM policy p WHERE p.relid = b.oid) AS n \
        FROM base b ORDER BY b.oid";

    #[tokio::test]
    async fn subqueries_over_an_empty_table_plan() {
        let batches = context(true)
            .sql(NESTED)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(batch.num_rows(), 2);
        // No policies: NULL from array_agg over nothing, 0 from count.
        assert_eq!(batch.column(1).null_count(), 2);
        let n = batch.column(2).as_primitive::<Int64Type>();
        assert_eq!(n.values().to_vec(), vec![0, 0]);
    }

    #[tokio::test]
    async fn without_the_rule_datafusion_cannot_plan_it() {
        let ctx = context(false);
        let result = match ctx.sql(NESTED).await {
            Ok(df) => df.collect().await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(
            result.is_err(),
            "DataFusion now plans this: the rule may be moot"
        );
    }

    #[tokio::test]
    async fn plans_without_empty_tables_are_untouched() {
        let ctx = context(true);
        let plan = ctx
            .state()
            .create_logical_plan("SELECT oid FROM base WHERE oid IN (SELECT oid FROM roles)")
            .await
            .unwrap();
        let analyzed = EmptyRelations
            .analyze(plan.clone(), &ConfigOptions::default())
            .unwrap();
        assert_eq!(analyzed, plan);
    }
}
