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
//! In arithmetic (`+ - * / %`) with an int4 or int2 operand, an integer literal that
//! fits is int4 too, as in PostgreSQL: `$1::int + 1` and `int4_col * 100` are int4,
//! while `int8_col + 1` and `int4_col + 3000000000` stay int8. DataFusion's Int32
//! arithmetic wraps on overflow where PostgreSQL raises 22003 ("integer out of
//! range"), so such an operation (and int4 with int4 or int2) is planned as
//! [`Int4Arithmetic`], which computes in int8 and checks the result's range. Two
//! literals (`1 + 1`) are left to DataFusion, as are two int2 operands.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, Scalar};
use arrow::compute::kernels::numeric;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::{schema_name_from_exprs, ScalarFunction};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// Reads a string compared with a boolean as a boolean, and plans int4 arithmetic
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
        if let Some(planned) = int4_arithmetic(&expr, schema) {
            return Ok(PlannerResult::Planned(planned));
        }
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

/// How an arithmetic operand takes part in int4 arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Int4Operand {
    /// An integer literal that fits in int4 (DataFusion types it Int64).
    Literal,
    /// An expression of type int4.
    Int4,
    /// An expression of type int2.
    Int2,
}

fn int4_operand(e: &Expr, schema: &DFSchema) -> Option<Int4Operand> {
    match e {
        Expr::Literal(ScalarValue::Int64(Some(v)), _) => {
            i32::try_from(*v).ok().map(|_| Int4Operand::Literal)
        }
        _ => match e.get_type(schema).ok()? {
            DataType::Int32 => Some(Int4Operand::Int4),
            DataType::Int16 => Some(Int4Operand::Int2),
            _ => None,
        },
    }
}

/// `left op right` as [`Int4Arithmetic`] when PostgreSQL makes it int4 (see the module).
fn int4_arithmetic(expr: &RawBinaryExpr, schema: &DFSchema) -> Option<Expr> {
    let op = match expr.op {
        BinaryOperator::Plus => Operator::Plus,
        BinaryOperator::Minus => Operator::Minus,
        BinaryOperator::Multiply => Operator::Multiply,
        BinaryOperator::Divide => Operator::Divide,
        BinaryOperator::Modulo => Operator::Modulo,
        _ => return None,
    };
    let left = int4_operand(&expr.left, schema)?;
    let right = int4_operand(&expr.right, schema)?;
    use Int4Operand::*;
    match (left, right) {
        (Literal, Literal) | (Int2, Int2) => return None,
        _ => {}
    }
    Some(Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(Int4Arithmetic::new(op))),
        vec![expr.left.clone(), expr.right.clone()],
    )))
}

/// Whether a call is an [`Int4Arithmetic`] (an operator, which PostgreSQL names
/// `?column?`).
pub(crate) fn is_int4_arithmetic(f: &ScalarFunction) -> bool {
    let any: &dyn std::any::Any = f.func.inner().as_ref();
    any.is::<Int4Arithmetic>()
}

/// int4 `+ - * / %` of two integer operands (int2, int4 or int8 within int4's range),
/// computed in int8 (where no int4 operands overflow) and checked against int4's
/// range: PostgreSQL's `integer out of range` (22003) rather than a wrapped value.
/// Division by zero is DataFusion's (22012).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Int4Arithmetic {
    op: Operator,
    signature: Signature,
}

impl Int4Arithmetic {
    fn new(op: Operator) -> Self {
        Self {
            op,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// An operand as int8, and whether it is a scalar.
fn as_int8(v: &ColumnarValue) -> Result<(ArrayRef, bool)> {
    Ok(match v {
        ColumnarValue::Array(a) => (arrow::compute::cast(a, &DataType::Int64)?, false),
        ColumnarValue::Scalar(s) => (s.cast_to(&DataType::Int64)?.to_array()?, true),
    })
}

fn out_of_range() -> DataFusionError {
    crate::error::to_datafusion(eddy_proto::Error::new(
        eddy_proto::ErrorCode::OutOfRange,
        "integer out of range",
    ))
}

impl ScalarUDFImpl for Int4Arithmetic {
    fn name(&self) -> &str {
        match self.op {
            Operator::Plus => "eddy_int4_plus",
            Operator::Minus => "eddy_int4_minus",
            Operator::Multiply => "eddy_int4_multiply",
            Operator::Divide => "eddy_int4_divide",
            _ => "eddy_int4_modulo",
        }
    }

    /// Named as the operator DataFusion would have planned (`a + Int64(1)`).
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        let names = schema_name_from_exprs(args)?;
        Ok(names.replacen(", ", &format!(" {} ", self.op), 1))
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return datafusion::common::plan_err!("{} needs two arguments", self.name());
        };
        let (l, l_scalar) = as_int8(left)?;
        let (r, r_scalar) = as_int8(right)?;
        let datum = |a: &ArrayRef, scalar: bool| -> Box<dyn arrow::array::Datum> {
            if scalar {
                Box::new(Scalar::new(Arc::clone(a)))
            } else {
                Box::new(Arc::clone(a))
            }
        };
        let (l, r) = (datum(&l, l_scalar), datum(&r, r_scalar));
        let (l, r) = (l.as_ref(), r.as_ref());
        let wide = match self.op {
            Operator::Plus => numeric::add_wrapping(l, r)?,
            Operator::Minus => numeric::sub_wrapping(l, r)?,
            Operator::Multiply => numeric::mul_wrapping(l, r)?,
            Operator::Divide => numeric::div(l, r)?,
            _ => numeric::rem(l, r)?,
        };
        let wide = wide.as_primitive::<Int64Type>();
        let mut values = Vec::with_capacity(wide.len());
        for v in wide.values().iter() {
            // A NULL slot may hold anything; only valid ones are checked below.
            values.push(i32::try_from(*v).unwrap_or_default());
        }
        if let Some(nulls) = wide.nulls() {
            if nulls
                .valid_indices()
                .any(|i| i32::try_from(wide.value(i)).is_err())
            {
                return Err(out_of_range());
            }
        } else if wide.values().iter().any(|v| i32::try_from(*v).is_err()) {
            return Err(out_of_range());
        }
        let out = Int32Array::new(values.into(), wide.nulls().cloned());
        Ok(if l_scalar && r_scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(out))
        })
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
    }

    fn with_planner() -> SessionContext {
        let mut ctx = SessionContext::new();
        datafusion::execution::FunctionRegistry::register_expr_planner(
            &mut ctx,
            std::sync::Arc::new(PgLiterals),
        )
        .unwrap();
        ctx
    }

    const INTS: &str =
        "(VALUES (CAST(2147483647 AS INT), CAST(7 AS SMALLINT), CAST(5 AS BIGINT))) t(i, s, b)";

    #[tokio::test]
    async fn literals_with_int4_operands_are_int4() {
        let ctx = with_planner();
        let sql = format!(
            "SELECT i - 1, s + 1, 2 * s, i / 2, i % 10, s + s, b + 1, i + 3000000000, i + 1.5, 1 + 1,              -i - 1 FROM {INTS}"
        );
        let df = ctx.sql(&sql).await.unwrap();
        let types: Vec<DataType> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        use DataType::*;
        assert_eq!(
            types,
            vec![Int32, Int32, Int32, Int32, Int32, Int16, Int64, Int64, Float64, Int64, Int32]
        );
        // Named as DataFusion names the operator.
        assert_eq!(df.schema().field(0).name(), "t.i - Int64(1)");
        let batch = &df.collect().await.unwrap()[0];
        let int4 = |c: usize| {
            batch
                .column(c)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0)
        };
        assert_eq!(
            (int4(0), int4(1), int4(2), int4(3), int4(4), int4(10)),
            (2147483646, 8, 14, 1073741823, 7, -2147483648)
        );
        let types = |sql: String| async move {
            let plan = with_planner()
                .state()
                .create_logical_plan(&sql)
                .await
                .unwrap();
            plan.schema().field(0).data_type().clone()
        };
        assert_eq!(types("SELECT $1::int + 1".into()).await, Int32);
    }

    #[tokio::test]
    async fn int4_overflow_is_out_of_range() {
        let ctx = with_planner();
        for sql in [
            format!("SELECT i + 1 FROM {INTS}"),
            format!("SELECT 1 + i FROM {INTS}"),
            format!("SELECT i * s FROM {INTS}"),
            format!("SELECT -i - 2 FROM {INTS}"),
            format!("SELECT (-i - 1) / -1 FROM {INTS}"),
        ] {
            let err = ctx.sql(&sql).await.unwrap().collect().await.unwrap_err();
            let e = crate::error::classify(err);
            assert_eq!(e.code.sqlstate(), "22003", "{sql}: {e}");
            assert_eq!(e.message, "integer out of range", "{sql}");
        }
        let err = ctx
            .sql(&format!("SELECT i / (s - 7) FROM {INTS}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert_eq!(crate::error::classify(err).code.sqlstate(), "22012");
        // NULLs stay NULL, and what they hide is not checked.
        let batches = ctx
            .sql("SELECT i + 1 FROM (VALUES (CAST(NULL AS INT)), (CAST(3 AS INT))) t(i)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let c = batches[0].column(0);
        assert_eq!(
            (
                c.is_null(0),
                c.as_primitive::<arrow::datatypes::Int32Type>().value(1)
            ),
            (true, 4)
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
