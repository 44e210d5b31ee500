//! A scalar function evaluated on whole argument arrays, with PostgreSQL's coercions
//! given as a function: the shape the PostgreSQL functions DataFusion lacks
//! (`age`, `make_timestamp`, `justify_hours`, `format`, `width_bucket` ...) share, so
//! that each of them is only its types and its arithmetic.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// Argument types → the types the arguments are cast to (an error names what is wrong).
pub(crate) type Coerce = fn(&[DataType]) -> Result<Vec<DataType>>;
/// Coerced argument types → the result type.
pub(crate) type Returns = fn(&[DataType]) -> Result<DataType>;
/// Coerced arguments (arrays of one length) and the session's options → the result.
pub(crate) type Eval = fn(&[ArrayRef], &ConfigOptions) -> Result<ArrayRef>;
/// The argument fields → the PostgreSQL type clients are told the result is, where its
/// Arrow type says less (`"jsonb"` for a Utf8 result; see [`super::encode::PG_TYPE`]).
pub(crate) type PgType = fn(&[FieldRef]) -> Option<&'static str>;

#[derive(Debug)]
pub(crate) struct RowFn {
    name: &'static str,
    signature: Signature,
    coerce: Coerce,
    returns: Returns,
    pg_type: Option<PgType>,
    eval: Eval,
}

// One function per name: equal names are the same function (function pointers do not
// compare meaningfully).
impl PartialEq for RowFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for RowFn {}

impl std::hash::Hash for RowFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// A function `name` of these coercions, result type and evaluation.
pub(crate) fn udf(
    name: &'static str,
    volatility: Volatility,
    coerce: Coerce,
    returns: Returns,
    eval: Eval,
) -> ScalarUDF {
    new_udf(name, volatility, coerce, returns, None, eval)
}

/// A function as [`udf`] makes, whose result field also names its PostgreSQL type.
pub(crate) fn typed_udf(
    name: &'static str,
    volatility: Volatility,
    coerce: Coerce,
    returns: Returns,
    pg_type: PgType,
    eval: Eval,
) -> ScalarUDF {
    new_udf(name, volatility, coerce, returns, Some(pg_type), eval)
}

fn new_udf(
    name: &'static str,
    volatility: Volatility,
    coerce: Coerce,
    returns: Returns,
    pg_type: Option<PgType>,
    eval: Eval,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(RowFn {
        name,
        signature: Signature::user_defined(volatility),
        coerce,
        returns,
        pg_type,
        eval,
    })
}

impl ScalarUDFImpl for RowFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        (self.coerce)(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        (self.returns)(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let field = Field::new(self.name, (self.returns)(&types)?, true);
        Ok(Arc::new(
            match self.pg_type.and_then(|f| f(args.arg_fields)) {
                Some(t) => field.with_metadata(HashMap::from([(
                    super::encode::PG_TYPE.to_owned(),
                    t.to_owned(),
                )])),
                None => field,
            },
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = (self.eval)(&arrays, &args.config_options)?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}
