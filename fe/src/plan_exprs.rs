//! Rewriting every expression of one logical plan node, bottom up, with the node's input
//! columns in view and the expressions' output names kept: the shape of an analyzer rule
//! that runs after type coercion (see `fixed_intervals` and `pg::local_time`).

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Expr, LogicalPlan};

/// `plan` with `rewrite` applied to every sub-expression of its expressions, given the
/// schema they are evaluated against (the inputs', or the table's for a scan's filters).
pub fn rewrite_exprs(
    plan: LogicalPlan,
    rewrite: impl Fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<Transformed<LogicalPlan>> {
    let mut schema = merge_schema(&plan.inputs());
    if let LogicalPlan::TableScan(ts) = &plan {
        schema.merge(&DFSchema::try_from_qualified_schema(
            ts.table_name.clone(),
            &ts.source.schema(),
        )?);
    }
    let names = NamePreserver::new(&plan);
    plan.map_expressions(|e| {
        let saved = names.save(&e);
        let new = e.transform_up(|e| rewrite(e, &schema))?;
        Ok(new.update_data(|e| saved.restore(e)))
    })
}

/// `plan` with `rewrite` applied to each of its expressions, their output names kept, and
/// its schema recomputed when one changed (a rewritten expression may change type or
/// nullability): the shape of a rule that replaces subquery expressions.
pub fn map_named_exprs(
    plan: LogicalPlan,
    rewrite: impl Fn(Expr) -> Result<Transformed<Expr>>,
) -> Result<Transformed<LogicalPlan>> {
    let names = NamePreserver::new(&plan);
    let plan = plan.map_expressions(|e| {
        let saved = names.save(&e);
        Ok(rewrite(e)?.update_data(|e| saved.restore(e)))
    })?;
    if !plan.transformed {
        return Ok(plan);
    }
    plan.map_data(|p| p.recompute_schema())
}

/// Whether some node of `plan`, its subqueries included, is `found`; the walk stops at
/// the first. Rules use it to leave the many statements they do not concern untouched.
pub fn any_node(
    plan: &LogicalPlan,
    mut found: impl FnMut(&LogicalPlan) -> Result<bool>,
) -> Result<bool> {
    let mut any = false;
    plan.apply_with_subqueries(|node| {
        any = found(node)?;
        Ok(if any {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(any)
}

/// Whether some expression of `node` (not of its inputs) contains one that is `found`.
pub fn any_expr(node: &LogicalPlan, found: impl Fn(&Expr) -> bool) -> Result<bool> {
    let mut any = false;
    node.apply_expressions(|e| {
        any = e.exists(|e| Ok(found(e)))?;
        Ok(if any {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(any)
}
