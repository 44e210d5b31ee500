//! `pg_typeof(any)`: the name of its argument's type as PostgreSQL prints a `regtype`
//! (`integer`, `timestamp with time zone`, `text[]`).
//!
//! The type is the one eddy describes the value as on the wire, so `pg_typeof(col)` agrees
//! with RowDescription. An integer literal that fits is `integer`, as PostgreSQL types it
//! (DataFusion types every integer literal Int64; the pgwire front end casts such an
//! argument to int4 before planning, see `pg::rewrite`). The answer depends only on types, so it
//! is folded into a constant while planning; evaluated unfolded, it reads the argument's
//! Arrow type.

use arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTypeof {
    signature: Signature,
}

pub(crate) fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(PgTypeof {
        // Not immutable although it is: DataFusion's constant folding would call it with
        // the literal's Arrow type (Int64) before `simplify` could see the literal itself.
        // `simplify` folds it all the same.
        signature: Signature::any(1, Volatility::Volatile),
    })
}

/// PostgreSQL's name for the type eddy sends `field` as.
fn type_name(field: &Field) -> String {
    match arrow_pg::datatypes::field_into_pg_type(&std::sync::Arc::new(field.clone())) {
        Ok(t) => crate::catalog::pg::display_name(t.name()),
        // What eddy cannot send has no PostgreSQL name; say what it is.
        Err(_) => field.data_type().to_string(),
    }
}

impl ScalarUDFImpl for PgTypeof {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let [arg] = args.as_slice() else {
            return Ok(ExprSimplifyResult::Original(args));
        };
        let name = match arg {
            // PostgreSQL's unknown-typed string literal resolves to text here.
            Expr::Literal(ScalarValue::Utf8(_), _) => "text".to_string(),
            _ => match arg.to_field(info.schema()) {
                Ok((_, f)) => type_name(&f),
                Err(_) => return Ok(ExprSimplifyResult::Original(args)),
            },
        };
        Ok(ExprSimplifyResult::Simplified(Expr::Literal(
            ScalarValue::Utf8(Some(name)),
            None,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = type_name(&args.arg_fields[0]);
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}
