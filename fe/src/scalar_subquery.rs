//! Uncorrelated scalar subqueries in filters are evaluated while the query is planned, as
//! ClickHouse does, and their values planned in as literals. A filter such as
//! `ts > (SELECT max(ts) FROM ticks) - INTERVAL '1 hour'` then folds to a constant bound
//! that prunes partitions, segments and row groups, where DataFusion's own plan
//! (`ScalarSubqueryExec`) learns the bound only once the scan is already planned in full.
//!
//! Each subquery runs once per execution, before the query's own scans are planned, so it
//! sees the same or older data than they do; a prepared statement keeps the subquery, not
//! its value.

use std::sync::Arc;

use arrow::array::Array;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan, Subquery};
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use eddy_proto::{Error, ErrorCode};
use futures::TryStreamExt;

/// Whether the node is a filter, the only place a folded value pays: elsewhere (a select
/// list, an aggregate's argument) the literal would also rename the output column.
fn is_filter(node: &LogicalPlan) -> bool {
    matches!(node, LogicalPlan::Filter(_) | LogicalPlan::TableScan(_))
}

/// The uncorrelated scalar subqueries in the filters of `plan` (not those nested inside
/// subqueries, which are folded when the subquery itself is planned), each once.
pub fn collect(plan: &LogicalPlan) -> Vec<Subquery> {
    let mut found: Vec<Subquery> = Vec::new();
    let _ = plan.apply(|node| {
        if !is_filter(node) {
            return Ok(TreeNodeRecursion::Continue);
        }
        for e in node.expressions() {
            let _ = e.apply(|e| {
                if let Expr::ScalarSubquery(sq) = e {
                    if sq.outer_ref_columns.is_empty() && !found.contains(sq) {
                        found.push(sq.clone());
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The single value a subquery's plan returns: NULL for no row, an error (SQLSTATE
/// 21000, PostgreSQL's words) for more than one.
pub async fn value(plan: Arc<dyn ExecutionPlan>, task: Arc<TaskContext>) -> Result<ScalarValue> {
    let field = plan.schema().field(0).clone();
    let mut stream = execute_stream(plan, task)?;
    let mut value: Option<ScalarValue> = None;
    while let Some(batch) = stream.try_next().await? {
        let column = batch.column(0);
        if column.is_empty() {
            continue;
        }
        if value.is_some() || column.len() > 1 {
            return Err(DataFusionError::External(Box::new(Error::new(
                ErrorCode::CardinalityViolation,
                "more than one row returned by a subquery used as an expression",
            ))));
        }
        value = Some(ScalarValue::try_from_array(column, 0)?);
    }
    match value {
        Some(v) => Ok(v),
        None => ScalarValue::try_from(field.data_type()),
    }
}

/// `plan` with each subquery of `values` in its filters replaced by its value.
pub fn replace(plan: LogicalPlan, values: &[(Subquery, ScalarValue)]) -> Result<LogicalPlan> {
    plan.transform_down(|node| {
        if !is_filter(&node) {
            return Ok(Transformed::no(node));
        }
        node.map_expressions(|e| {
            e.transform(|e| match &e {
                Expr::ScalarSubquery(sq) => match values.iter().find(|(s, _)| s == sq) {
                    Some((_, v)) => Ok(Transformed::yes(Expr::Literal(v.clone(), None))),
                    None => Ok(Transformed::no(e)),
                },
                _ => Ok(Transformed::no(e)),
            })
        })
    })
    .map(|t| t.data)
}
