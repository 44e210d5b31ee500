//! Constants typed as PostgreSQL types them.
//!
//! An untyped string compared with a boolean is a boolean in PostgreSQL (`indisprimary =
//! 'f'`, which SQLAlchemy's index reflection sends); DataFusion refuses to compare
//! Boolean with Utf8. [`PgLiterals`], consulted while SQL becomes a plan, reads such a
//! string as PostgreSQL's boolean input does.
//!
//! PostgreSQL gives an integer literal the type `integer` (int4) when it fits and
//! `bigint` otherwise, so `SELECT 1` answers int4, which drivers decode as a number
//! (node-postgres returns int8 as a string). DataFusion types every integer literal
//! Int64. This pass, run on each freshly planned statement (before its result types are
//! described to the client), narrows the result columns that are integer constants to
//! Int32.
//!
//! Integer arithmetic is typed and checked as PostgreSQL's (see [`crate::int_arithmetic`]),
//! also while SQL becomes a plan.

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// Reads a string compared with a boolean as a boolean, and plans integer arithmetic
/// (see the module).
#[derive(Debug, Default)]
pub struct PgLiterals;

impl ExprPlanner for PgLiterals {
    fn plan_binary_op(
        &self,
        mut expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        use BinaryOperator::*;
        if let Some(planned) = crate::int_arithmetic::plan(&expr, schema)
            .or_else(|| crate::interval_arithmetic::plan(&expr, schema))
            .or_else(|| crate::pg::plan_json_operator(&expr))
        {
            return Ok(PlannerResult::Planned(planned));
        }
        crate::interval_arithmetic::widen_date(&mut expr, schema);
        if matches!(expr.op, Eq | NotEq | Lt | LtEq | Gt | GtEq) {
            let is_bool = |e: &Expr| matches!(e.get_type(schema), Ok(DataType::Boolean));
            if is_bool(&expr.left) {
                if let Some(b) = boolean_input(&expr.right) {
                    expr.right = b;
                }
            } else if is_bool(&expr.right) {
                if let Some(b) = boolean_input(&expr.left) {
                    expr.left = b;
                }
            }
        }
        Ok(PlannerResult::Original(expr))
    }
}

/// A string literal spelled as PostgreSQL's boolean input accepts it (`t`, `true`, `yes`,
/// `on`, `1` and their false counterparts, any case, unique prefixes), as a boolean.
fn boolean_input(e: &Expr) -> Option<Expr> {
    let Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) = e else {
        return None;
    };
    let s = s.trim().to_ascii_lowercase();
    let prefix_of = |word: &str| !s.is_empty() && word.starts_with(s.as_str());
    let v = if prefix_of("true") || prefix_of("yes") || s == "on" || s == "1" {
        true
    } else if prefix_of("false") || prefix_of("no") || s == "off" || s == "of" || s == "0" {
        false
    } else {
        return None;
    };
    Some(Expr::Literal(ScalarValue::Boolean(Some(v)), None))
}

/// The plan with the integer constants of its result columns narrowed (see the module).
pub fn narrow(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
            let t = plan.map_children(|c| narrow(c).map(Transformed::yes))?;
            Ok(t.data)
        }
        LogicalPlan::Projection(_) => {
            let t = plan.map_expressions(|e| Ok(narrow_output(e)))?;
            if t.transformed {
                t.data.recompute_schema()
            } else {
                Ok(t.data)
            }
        }
        other => Ok(other),
    }
}

/// A result column that is an integer constant (possibly named): int4 when it fits.
fn narrow_output(e: Expr) -> Transformed<Expr> {
    match e {
        Expr::Literal(ScalarValue::Int64(Some(v)), meta) if i32::try_from(v).is_ok() => {
            Transformed::yes(Expr::Literal(ScalarValue::Int32(Some(v as i32)), meta))
        }
        e @ Expr::ScalarFunction(_) => match int4_array(&e) {
            // Under the name it had, which a sort above may refer to.
            Some(narrowed) => {
                let name = e.schema_name().to_string();
                Transformed::yes(narrowed.alias(name))
            }
            None => Transformed::no(e),
        },
        Expr::Alias(mut a) => {
            let inner = narrow_output(*a.expr);
            a.expr = Box::new(inner.data);
            Transformed::new(
                Expr::Alias(a),
                inner.transformed,
                TreeNodeRecursion::Continue,
            )
        }
        other => Transformed::no(other),
    }
}

/// `ARRAY[1, 2]` as PostgreSQL types it: an array of integer constants that all fit int4
/// (NULLs aside) is `integer[]`; `None` for anything else.
pub(crate) fn int4_array(e: &Expr) -> Option<Expr> {
    let Expr::ScalarFunction(f) = e else {
        return None;
    };
    if f.func.name() != "make_array" {
        return None;
    }
    let mut ints = false;
    let args = f
        .args
        .iter()
        .map(|a| match a {
            Expr::Literal(ScalarValue::Int64(Some(v)), meta) => {
                ints = true;
                let v = i32::try_from(*v).ok()?;
                Some(Expr::Literal(ScalarValue::Int32(Some(v)), meta.clone()))
            }
            Expr::Literal(ScalarValue::Int64(None) | ScalarValue::Null, meta) => {
                Some(Expr::Literal(ScalarValue::Int32(None), meta.clone()))
            }
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    ints.then(|| {
        Expr::ScalarFunction(ScalarFunction::new_udf(
            std::sync::Arc::clone(&f.func),
            args,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;
    use datafusion::prelude::SessionContext;

    async fn types(sql: &str) -> Vec<DataType> {
        let ctx = SessionContext::new();
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        let plan = narrow(plan).unwrap();
        plan.schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect()
    }

    #[test]
    fn boolean_input_spellings() {
        let b = |s: &str| boolean_input(&Expr::Literal(ScalarValue::Utf8(Some(s.into())), None));
        let t = Some(Expr::Literal(ScalarValue::Boolean(Some(true)), None));
        let f = Some(Expr::Literal(ScalarValue::Boolean(Some(false)), None));
        for s in ["t", "TRUE", " yes ", "on", "1", "tr"] {
            assert_eq!(b(s), t, "{s}");
        }
        for s in ["f", "false", "No", "off", "0", "fal"] {
            assert_eq!(b(s), f, "{s}");
        }
        for s in ["o", "", "maybe", "2"] {
            assert_eq!(b(s), None, "{s}");
        }
    }

    #[tokio::test]
    async fn strings_compared_with_booleans_are_booleans() {
        let mut ctx = SessionContext::new();
        datafusion::execution::FunctionRegistry::register_expr_planner(
            &mut ctx,
            std::sync::Arc::new(PgLiterals),
        )
        .unwrap();
        let df = ctx
            .sql("SELECT x FROM (VALUES (true), (false)) v(x) WHERE x = 'f' OR 't' <> x")
            .await
            .unwrap();
        let batches = df.collect().await.unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    }

    #[tokio::test]
    async fn result_constants_are_int4_when_they_fit() {
        assert_eq!(
            types("SELECT 1, 1 AS one, 2147483648, -5, 1.5, 1 + 1").await,
            vec![
                DataType::Int32,
                DataType::Int32,
                DataType::Int64,
                DataType::Int32,
                DataType::Float64,
                DataType::Int64
            ]
        );
        assert_eq!(
            types("SELECT 1 ORDER BY 1 LIMIT 1").await,
            vec![DataType::Int32]
        );
        let int4 = |t| {
            DataType::List(std::sync::Arc::new(
                arrow::datatypes::Field::new_list_field(t, true),
            ))
        };
        assert_eq!(
            types("SELECT ARRAY[1, 2], ARRAY[1, NULL] AS a, ARRAY[1, 2147483648], ARRAY[1, 1 + 1]")
                .await,
            vec![
                int4(DataType::Int32),
                int4(DataType::Int32),
                int4(DataType::Int64),
                int4(DataType::Int64)
            ]
        );
    }

    #[tokio::test]
    async fn operands_keep_int8() {
        // Only result columns are narrowed: a constant inside an expression or a derived
        // table stays int8 (int4 arithmetic is the planner's, see above).
        assert_eq!(
            types("SELECT x * 50000 FROM (SELECT 50000 AS x) s").await,
            vec![DataType::Int64]
        );
        assert_eq!(types("SELECT abs(1)").await, vec![DataType::Int64]);
        assert_eq!(
            types("SELECT 1 UNION ALL SELECT 2").await,
            vec![DataType::Int64]
        );
    }
}
