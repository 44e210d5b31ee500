//! A scalar function evaluated on whole argument arrays, with PostgreSQL's coercions
//! given as a function: the shape the PostgreSQL functions DataFusion lacks
//! (`age`, `make_timestamp`, `justify_hours`, `format`, `width_bucket` ...) share, so
//! that each of them is only its types and its arithmetic.

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Argument types → the types the arguments are cast to (an error names what is wrong).
pub(crate) type Coerce = fn(&[DataType]) -> Result<Vec<DataType>>;
/// Coerced argument types → the result type.
pub(crate) type Returns = fn(&[DataType]) -> Result<DataType>;
/// Coerced arguments (arrays of one length) and the session's options → the result.
pub(crate) type Eval = fn(&[ArrayRef], &ConfigOptions) -> Result<ArrayRef>;

#[derive(Debug)]
pub(crate) struct RowFn {
    name: &'static str,
    signature: Signature,
    coerce: Coerce,
    returns: Returns,
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
    ScalarUDF::new_from_impl(RowFn {
        name,
        signature: Signature::user_defined(volatility),
        coerce,
        returns,
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
