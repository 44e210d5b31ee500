//! Correlated scalar subqueries that return a plain column, as PostgreSQL runs them.
//!
//! `SELECT o.id, (SELECT p.name FROM products p WHERE p.id = o.product_id) FROM orders o`
//! is everyday SQL: a lookup by key, at most one row per outer row. DataFusion decorrelates
//! a correlated scalar subquery into a join only when it is aggregated, and refuses the
//! plain one ("must be aggregated to return at most one row"), because nothing would check
//! that a key matches at most one row.
//!
//! This analyzer rule aggregates it and makes the check itself. The subquery's column `e`
//! becomes `array_agg(e)`, which DataFusion decorrelates into a left join on the
//! correlation keys, and the subquery is wrapped in [`SINGLE_ROW`], which unwraps the one
//! element per outer row: NULL when no row matched (as PostgreSQL's subquery over no rows
//! is NULL), the value when one did, and PostgreSQL's error 21000 ("more than one row
//! returned by a subquery used as an expression") when more did. The check runs on the
//! joined rows, so only an outer row that really meets several rows fails, as in
//! PostgreSQL.
//!
//! Left to DataFusion: subqueries it can already plan (aggregated, or at most one row by
//! construction), those under `LIMIT`, `ORDER BY`, `DISTINCT` or a window, and subqueries
//! outside filters and select lists.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, GenericListArray, OffsetSizeTrait, UInt64Array};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{exec_err, DataFusionError, Result};
use datafusion::functions_aggregate::expr_fn::array_agg;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Subquery, Volatility,
};
use datafusion::optimizer::analyzer::AnalyzerRule;
use eddy_proto::{Error, ErrorCode};

/// Name of the function that unwraps a rewritten subquery's rows.
pub const SINGLE_ROW: &str = "eddy_single_row";

/// See the module documentation.
#[derive(Debug, Default)]
pub struct SingleRowSubqueries;

/// The projection's one expression and its input, when `plan` is a plain correlated
/// subquery DataFusion would refuse.
fn plain_column(plan: &LogicalPlan) -> Option<(&Expr, &LogicalPlan)> {
    if plan.max_rows().is_some_and(|n| n <= 1) {
        return None;
    }
    let LogicalPlan::Projection(p) = plan else {
        return None;
    };
    let [e] = p.expr.as_slice() else {
        return None;
    };
    let mut input = p.input.as_ref();
    // What a subquery's rows pass through before its select list, in SQL's order.
    loop {
        match input {
            LogicalPlan::Filter(f) => input = f.input.as_ref(),
            LogicalPlan::SubqueryAlias(_) | LogicalPlan::TableScan(_) | LogicalPlan::Join(_) => {
                break
            }
            _ => return None,
        }
    }
    Some((e, p.input.as_ref()))
}

/// `subquery` aggregated to `array_agg(e)` under its column's name, or `None` when it is
/// not a plain correlated column.
fn aggregated(subquery: &Subquery) -> Result<Option<Subquery>> {
    if subquery.outer_ref_columns.is_empty() {
        return Ok(None);
    }
    let Some((e, input)) = plain_column(&subquery.subquery) else {
        return Ok(None);
    };
    let (qualifier, name) = subquery.subquery.schema().qualified_field(0);
    let column = name.name().clone();
    let qualifier = qualifier.cloned();
    let plan = LogicalPlanBuilder::from(input.clone())
        .aggregate(Vec::<Expr>::new(), vec![array_agg(e.clone().unalias())])?
        .build()?;
    let agg = Expr::Column(plan.schema().qualified_field(0).into());
    let plan = LogicalPlanBuilder::from(plan)
        .project(vec![agg.alias_qualified(qualifier, column)])?
        .build()?;
    Ok(Some(Subquery {
        subquery: Arc::new(plan),
        outer_ref_columns: subquery.outer_ref_columns.clone(),
        spans: subquery.spans.clone(),
    }))
}

/// `e` with its plain correlated scalar subqueries aggregated and unwrapped.
fn rewrite_expr(e: Expr, unwrap: &Arc<ScalarUDF>) -> Result<Transformed<Expr>> {
    e.transform_up(|e| {
        let Expr::ScalarSubquery(s) = &e else {
            return Ok(Transformed::no(e));
        };
        Ok(match aggregated(s)? {
            Some(s) => Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::clone(unwrap),
                vec![Expr::ScalarSubquery(s)],
            ))),
            None => Transformed::no(e),
        })
    })
}

impl AnalyzerRule for SingleRowSubqueries {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let mut any = false;
        plan.apply_with_subqueries(|node| {
            node.apply_expressions(|e| {
                e.apply(|e| {
                    if let Expr::ScalarSubquery(s) = e {
                        any |= !s.outer_ref_columns.is_empty();
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        })?;
        if !any {
            return Ok(plan);
        }
        let unwrap = Arc::new(udf());
        plan.transform_up_with_subqueries(|node| {
            if !matches!(node, LogicalPlan::Projection(_) | LogicalPlan::Filter(_)) {
                return Ok(Transformed::no(node));
            }
            crate::plan_exprs::map_named_exprs(node, |e| rewrite_expr(e, &unwrap))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "eddy_single_row_subqueries"
    }
}

/// What a rewritten subquery computed per row, and the plan it read it from: the
/// original select-list expression (for the column's PostgreSQL name).
pub fn original(f: &ScalarFunction) -> Option<(&Expr, &LogicalPlan)> {
    if f.func.name() != SINGLE_ROW {
        return None;
    }
    let [Expr::ScalarSubquery(s)] = f.args.as_slice() else {
        return None;
    };
    let LogicalPlan::Projection(p) = s.subquery.as_ref() else {
        return None;
    };
    let LogicalPlan::Aggregate(agg) = p.input.as_ref() else {
        return None;
    };
    match agg.aggr_expr.first() {
        Some(Expr::AggregateFunction(a)) => a.params.args.first().map(|e| (e, agg.input.as_ref())),
        _ => None,
    }
}

/// The function unwrapping a rewritten subquery's list of rows (see the module
/// documentation).
pub fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(SingleRow {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SingleRow {
    signature: Signature,
}

fn element(list: &DataType) -> Result<&FieldRef> {
    match list {
        DataType::List(f) | DataType::LargeList(f) => Ok(f),
        other => exec_err!("{SINGLE_ROW} expects a list, got {other}"),
    }
}

fn too_many_rows() -> DataFusionError {
    DataFusionError::External(Box::new(Error::new(
        ErrorCode::CardinalityViolation,
        "more than one row returned by a subquery used as an expression",
    )))
}

impl ScalarUDFImpl for SingleRow {
    fn name(&self) -> &str {
        SINGLE_ROW
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(element(&args[0])?.data_type().clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let element = element(args.arg_fields[0].data_type())?;
        Ok(Arc::new(Field::new(
            self.name(),
            element.data_type().clone(),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.args[0].to_array(args.number_rows)?;
        let (values, take) = match rows.data_type() {
            DataType::List(_) => one_each(rows.as_list::<i32>())?,
            DataType::LargeList(_) => one_each(rows.as_list::<i64>())?,
            other => return exec_err!("{SINGLE_ROW} expects a list, got {other}"),
        };
        let out = arrow::compute::take(values.as_ref(), &take, None)?;
        Ok(ColumnarValue::Array(out))
    }
}

/// The lists' values, and per list the index of its only value (NULL for a NULL or empty
/// list); an error for a list of more than one.
fn one_each<O: OffsetSizeTrait>(lists: &GenericListArray<O>) -> Result<(ArrayRef, UInt64Array)> {
    let offsets = lists.value_offsets();
    let mut take = Vec::with_capacity(lists.len());
    for i in 0..lists.len() {
        let (start, end) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
        take.push(match end - start {
            _ if lists.is_null(i) => None,
            0 => None,
            1 => Some(start as u64),
            _ => return Err(too_many_rows()),
        });
    }
    Ok((Arc::clone(lists.values()), UInt64Array::from(take)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::Schema;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// `orders(id, product)` and `products(id, name)`; product 4 is listed twice, product
    /// 5 twice and ordered, product 9 is not listed.
    fn context() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.add_analyzer_rule(Arc::new(SingleRowSubqueries));
        ctx.register_udf(udf());
        let table = |names: [&str; 2], ids: Vec<i64>, second: Arc<dyn Array>| {
            let schema = Arc::new(Schema::new(vec![
                Field::new(names[0], DataType::Int64, false),
                Field::new(names[1], second.data_type().clone(), true),
            ]));
            let rows = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(ids)), second],
            )
            .unwrap();
            Arc::new(MemTable::try_new(schema, vec![vec![rows]]).unwrap())
        };
        ctx.register_table(
            "orders",
            table(
                ["id", "product"],
                vec![1, 2, 3, 4],
                Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(9), None])),
            ),
        )
        .unwrap();
        ctx.register_table(
            "products",
            table(
                ["id", "name"],
                vec![1, 2, 4, 4, 5, 5],
                Arc::new(StringArray::from(vec![
                    Some("one"),
                    None,
                    Some("four"),
                    Some("four again"),
                    Some("five"),
                    Some("five again"),
                ])),
            ),
        )
        .unwrap();
        ctx
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<String>> {
        let batches = ctx.sql(sql).await?.collect().await?;
        let text = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        Ok(text.lines().map(|l| l.replace(' ', "")).collect())
    }

    #[tokio::test]
    async fn a_lookup_answers_each_row_or_null() {
        let ctx = context();
        let got = rows(
            &ctx,
            "SELECT o.id, (SELECT p.name FROM products p WHERE p.id = o.product) AS name \
             FROM orders o ORDER BY o.id",
        )
        .await
        .unwrap();
        // Order 2's product has a NULL name, order 3's is not listed, order 4 has none: all
        // NULL. Products 4 and 5, listed twice, are not ordered, so no error.
        assert_eq!(
            got[3..7],
            ["|1|one|", "|2||", "|3||", "|4||"].map(String::from),
            "{got:?}"
        );
        // In a filter, and over an expression of the column.
        let got = rows(
            &ctx,
            "SELECT o.id FROM orders o \
             WHERE (SELECT upper(p.name) FROM products p WHERE p.id = o.product) = 'ONE'",
        )
        .await
        .unwrap();
        assert_eq!(got[3], "|1|", "{got:?}");
    }

    #[tokio::test]
    async fn a_row_meeting_two_rows_is_an_error_and_only_such_a_row() {
        let ctx = context();
        // Products 4 and 5 are listed twice; no order asks for them.
        let sql =
            "SELECT o.id, (SELECT p.name FROM products p WHERE p.id = o.id + 3) FROM orders o";
        let e = rows(&ctx, sql).await.unwrap_err();
        let e = crate::error::classify(e);
        assert_eq!(e.code, ErrorCode::CardinalityViolation, "{e:?}");
        assert_eq!(
            e.message,
            "more than one row returned by a subquery used as an expression"
        );
        let ok =
            "SELECT o.id, (SELECT p.name FROM products p WHERE p.id = o.product) FROM orders o";
        assert_eq!(rows(&ctx, ok).await.unwrap().len(), 8);
    }

    #[tokio::test]
    async fn what_datafusion_plans_itself_is_left_alone() {
        let ctx = context();
        for sql in [
            "SELECT (SELECT max(p.name) FROM products p WHERE p.id = o.product) FROM orders o",
            "SELECT (SELECT p.name FROM products p WHERE p.id = 1) FROM orders o",
            "SELECT o.id FROM orders o",
        ] {
            let plan = ctx.sql(sql).await.unwrap().into_unoptimized_plan();
            let analyzed = SingleRowSubqueries
                .analyze(plan.clone(), &ConfigOptions::default())
                .unwrap();
            assert_eq!(analyzed, plan, "{sql}");
        }
    }
}
