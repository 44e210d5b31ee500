//! Integer `+ - * / %` typed and checked as PostgreSQL's.
//!
//! In arithmetic with an int4 or int2 operand, an integer literal that fits is int4 too,
//! as in PostgreSQL: `$1::int + 1` and `int4_col * 100` are int4, while `int8_col + 1`
//! and `int4_col + 3000000000` are int8, and int2 with int2 is int2. DataFusion types
//! every integer literal Int64 and its integer arithmetic wraps on overflow, where
//! PostgreSQL raises 22003 (`integer out of range`, `bigint out of range`, `smallint out
//! of range`). So an operation on two integer operands is planned as
//! [`IntArithmetic`] of the width PostgreSQL gives its result: int2 and int4 compute in
//! int8 and check the result's range, int8 uses Arrow's checked kernels. int8 `/` and
//! `%` are left to DataFusion, whose kernels already fail on overflow.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int16Array, Int32Array, Scalar};
use arrow::compute::kernels::numeric;
use arrow::datatypes::{DataType, Int64Type};
use arrow::error::ArrowError;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::RawBinaryExpr;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// How an arithmetic operand takes part in integer arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Operand {
    /// An integer literal that fits in int4 (DataFusion types it Int64).
    Literal,
    /// An integer literal that does not (int8).
    BigLiteral,
    Int2,
    Int4,
    Int8,
}

fn operand(e: &Expr, schema: &DFSchema) -> Option<Operand> {
    match e {
        Expr::Literal(ScalarValue::Int64(Some(v)), _) => Some(if i32::try_from(*v).is_ok() {
            Operand::Literal
        } else {
            Operand::BigLiteral
        }),
        // An inner operation's width is known without typing its whole subtree again,
        // which made `1 + 1 + ... + 1` quadratic to plan.
        Expr::ScalarFunction(f) if is_int_arithmetic(f) => {
            let any: &dyn std::any::Any = f.func.inner().as_ref();
            Some(match any.downcast_ref::<IntArithmetic>()?.width {
                Width::Int2 => Operand::Int2,
                Width::Int4 => Operand::Int4,
                Width::Int8 => Operand::Int8,
            })
        }
        _ => match e.get_type(schema).ok()? {
            DataType::Int16 => Some(Operand::Int2),
            DataType::Int32 => Some(Operand::Int4),
            DataType::Int64 => Some(Operand::Int8),
            _ => None,
        },
    }
}

/// The integer type of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Width {
    Int2,
    Int4,
    Int8,
}

impl Width {
    fn data_type(self) -> DataType {
        match self {
            Width::Int2 => DataType::Int16,
            Width::Int4 => DataType::Int32,
            Width::Int8 => DataType::Int64,
        }
    }

    fn pg_name(self) -> &'static str {
        match self {
            Width::Int2 => "smallint",
            Width::Int4 => "integer",
            Width::Int8 => "bigint",
        }
    }
}

/// `left op right` as [`IntArithmetic`] when both operands are integers (see the
/// module).
pub(crate) fn plan(expr: &RawBinaryExpr, schema: &DFSchema) -> Option<Expr> {
    let op = match expr.op {
        BinaryOperator::Plus => Operator::Plus,
        BinaryOperator::Minus => Operator::Minus,
        BinaryOperator::Multiply => Operator::Multiply,
        BinaryOperator::Divide => Operator::Divide,
        BinaryOperator::Modulo => Operator::Modulo,
        _ => return None,
    };
    let left = operand(&expr.left, schema)?;
    let right = operand(&expr.right, schema)?;
    use Operand::*;
    let width = match (left, right) {
        (Int2, Int2) => Width::Int2,
        (Int8 | BigLiteral, _) | (_, Int8 | BigLiteral) => Width::Int8,
        _ => Width::Int4,
    };
    if width == Width::Int8 && matches!(op, Operator::Divide | Operator::Modulo) {
        return None;
    }
    // `a + b + c`: one call over all the terms, folded left to right, rather than a call
    // per operator. DataFusion types and names a nested call by walking all of it again
    // at every level, so a chain of a thousand terms took minutes to plan.
    if let Expr::ScalarFunction(f) = &expr.left {
        let any: &dyn std::any::Any = f.func.inner().as_ref();
        if any
            .downcast_ref::<IntArithmetic>()
            .is_some_and(|inner| inner.op == op && inner.width == width)
        {
            let mut args = f.args.clone();
            args.push(expr.right.clone());
            return Some(Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::clone(&f.func),
                args,
            )));
        }
    }
    Some(Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(IntArithmetic::new(op, width))),
        vec![expr.left.clone(), expr.right.clone()],
    )))
}

/// Whether a call is an [`IntArithmetic`] (an operator, which PostgreSQL names
/// `?column?`).
pub(crate) fn is_int_arithmetic(f: &ScalarFunction) -> bool {
    let any: &dyn std::any::Any = f.func.inner().as_ref();
    any.is::<IntArithmetic>()
}

/// `+ - * / %` of two integer operands giving a `width` result, checked against its
/// range: PostgreSQL's `... out of range` (22003) rather than a wrapped value. Division
/// by zero is DataFusion's (22012).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct IntArithmetic {
    op: Operator,
    width: Width,
    name: String,
    signature: Signature,
}

impl IntArithmetic {
    fn new(op: Operator, width: Width) -> Self {
        let op_name = match op {
            Operator::Plus => "plus",
            Operator::Minus => "minus",
            Operator::Multiply => "multiply",
            Operator::Divide => "divide",
            _ => "modulo",
        };
        let bits = match width {
            Width::Int2 => 2,
            Width::Int4 => 4,
            Width::Int8 => 8,
        };
        Self {
            op,
            width,
            name: format!("eddy_int{bits}_{op_name}"),
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    fn out_of_range(&self) -> DataFusionError {
        crate::error::to_datafusion(eddy_proto::Error::new(
            eddy_proto::ErrorCode::OutOfRange,
            format!("{} out of range", self.width.pg_name()),
        ))
    }

    /// The operation in int8; int8's own checked for overflow.
    fn wide(&self, l: &dyn arrow::array::Datum, r: &dyn arrow::array::Datum) -> Result<ArrayRef> {
        let checked = self.width == Width::Int8;
        let out = match self.op {
            Operator::Plus if checked => numeric::add(l, r),
            Operator::Minus if checked => numeric::sub(l, r),
            Operator::Multiply if checked => numeric::mul(l, r),
            Operator::Plus => numeric::add_wrapping(l, r),
            Operator::Minus => numeric::sub_wrapping(l, r),
            Operator::Multiply => numeric::mul_wrapping(l, r),
            Operator::Divide => numeric::div(l, r),
            _ => numeric::rem(l, r),
        };
        out.map_err(|e| match e {
            ArrowError::ArithmeticOverflow(_) => self.out_of_range(),
            other => other.into(),
        })
    }

    /// Fails unless every valid value of `wide` fits the result's width.
    fn check_fits(&self, wide: &ArrayRef) -> Result<()> {
        let wide = wide.as_primitive::<Int64Type>();
        let fits = |v: i64| match self.width {
            Width::Int2 => i16::try_from(v).is_ok(),
            Width::Int4 => i32::try_from(v).is_ok(),
            Width::Int8 => true,
        };
        // A NULL slot may hold anything; only valid ones are checked.
        let all_fit = match wide.nulls() {
            Some(nulls) => nulls.valid_indices().all(|i| fits(wide.value(i))),
            None => wide.values().iter().all(|v| fits(*v)),
        };
        if all_fit {
            Ok(())
        } else {
            Err(self.out_of_range())
        }
    }

    /// `wide` (checked to fit) as the result's width.
    fn narrow(&self, wide: ArrayRef) -> ArrayRef {
        let values = wide.as_primitive::<Int64Type>();
        let nulls = values.nulls().cloned();
        match self.width {
            Width::Int8 => wide,
            Width::Int2 => Arc::new(Int16Array::new(
                values.values().iter().map(|v| *v as i16).collect(),
                nulls,
            )),
            Width::Int4 => Arc::new(Int32Array::new(
                values.values().iter().map(|v| *v as i32).collect(),
                nulls,
            )),
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

impl ScalarUDFImpl for IntArithmetic {
    fn name(&self) -> &str {
        &self.name
    }

    /// Named as the operator DataFusion would have planned (`a + Int64(1)`).
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        // Written out directly: searching the joined names for the separator cost time
        // quadratic in a chain's length, and found a `, ` inside the left operand's name.
        let mut name = String::new();
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                name.push_str(&format!(" {} ", self.op));
            }
            name.push_str(&a.schema_name().to_string());
        }
        Ok(name)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.width.data_type())
    }

    /// `((a op b) op c) ...`, each step checked to fit the result's width, as PostgreSQL
    /// checks each operator.
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some((first, rest)) = args.args.split_first().filter(|(_, r)| !r.is_empty()) else {
            return datafusion::common::plan_err!("{} needs two arguments", self.name());
        };
        let datum = |a: &ArrayRef, scalar: bool| -> Box<dyn arrow::array::Datum> {
            if scalar {
                Box::new(Scalar::new(Arc::clone(a)))
            } else {
                Box::new(Arc::clone(a))
            }
        };
        let (mut acc, mut acc_scalar) = as_int8(first)?;
        for next in rest {
            let (r, r_scalar) = as_int8(next)?;
            let wide = self.wide(
                datum(&acc, acc_scalar).as_ref(),
                datum(&r, r_scalar).as_ref(),
            )?;
            self.check_fits(&wide)?;
            acc = wide;
            acc_scalar &= r_scalar;
        }
        let out = self.narrow(acc);
        Ok(if acc_scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    fn with_planner() -> SessionContext {
        let mut ctx = SessionContext::new();
        datafusion::execution::FunctionRegistry::register_expr_planner(
            &mut ctx,
            std::sync::Arc::new(crate::pg_literals::PgLiterals),
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
            vec![Int32, Int32, Int32, Int32, Int32, Int16, Int64, Int64, Float64, Int32, Int32]
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
            // A chain is checked at each step, as nested operators are: the product
            // overflows before the last factor brings it back to 0.
            format!("SELECT s * 1000000 * 1000 * 0 FROM {INTS}"),
            format!("SELECT i + 1 + -5 FROM {INTS}"),
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
        // A chain folds left to right into one call, named as the operators would be.
        let df = ctx
            .sql(&format!("SELECT s - 1 - 2 - 3, i / 2 / 3 FROM {INTS}"))
            .await
            .unwrap();
        assert_eq!(
            df.schema().field(0).name(),
            "t.s - Int64(1) - Int64(2) - Int64(3)"
        );
        let b = &df.collect().await.unwrap()[0];
        assert_eq!(
            b.column(0)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0),
            1
        );
        assert_eq!(
            b.column(1)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0),
            357913941
        );
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
    async fn int8_and_int2_overflow_is_out_of_range() {
        let ctx = with_planner();
        for (sql, msg) in [
            (
                format!("SELECT b * 9223372036854775807 FROM {INTS}"),
                "bigint out of range",
            ),
            (
                format!("SELECT b + 9223372036854775807 FROM {INTS}"),
                "bigint out of range",
            ),
            (
                "SELECT 9223372036854775807 + 1".to_string(),
                "bigint out of range",
            ),
            (
                format!("SELECT -b - 9223372036854775807 FROM {INTS}"),
                "bigint out of range",
            ),
            (
                format!("SELECT s * s * s * s * s * s FROM {INTS}"),
                "smallint out of range",
            ),
        ] {
            let err = match ctx.sql(&sql).await {
                Ok(df) => df.collect().await.unwrap_err(),
                Err(e) => e,
            };
            let e = crate::error::classify(err);
            assert_eq!(e.code.sqlstate(), "22003", "{sql}: {e}");
            assert_eq!(e.message, msg, "{sql}");
        }
        let batch = &ctx
            .sql(&format!("SELECT b * 3, s * 7, b - i FROM {INTS}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()[0];
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), 15);
        assert_eq!(
            batch
                .column(1)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0),
            49
        );
        assert_eq!(
            batch.column(2).as_primitive::<Int64Type>().value(0),
            5 - 2147483647
        );
    }
}
