//! PostgreSQL's limit on the size of one value (1 GB), for the functions that build a
//! value as long as an argument asks: `repeat`, `lpad` and `rpad`.
//!
//! DataFusion's build whatever length they are given, in one call that neither the
//! memory pool, `statement_timeout` nor a cancel request reaches: `repeat('x',
//! 1500000000)` took the server past 3 GB in 1.9 s (found by fuzzing). PostgreSQL
//! refuses such a call with 54000 `requested length too large`, and so does eddy now,
//! before the value is built. The functions are DataFusion's, wrapped.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::compute::kernels::length::length;
use arrow::compute::{cast, CastOptions};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

use crate::error::data_error;
use eddy_proto::ErrorCode;

/// PostgreSQL's MaxAllocSize: the largest value, in bytes.
const MAX_VALUE_BYTES: i64 = (1 << 30) - 1;

/// `repeat`, `lpad` and `rpad`, bounded; to register after DataFusion's, which they
/// replace.
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    let string = datafusion::functions::string::repeat();
    let unicode = [
        datafusion::functions::unicode::lpad(),
        datafusion::functions::unicode::rpad(),
    ];
    std::iter::once((string, Bound::Repeat))
        .chain(unicode.into_iter().map(|f| (f, Bound::Pad)))
        .map(|(inner, bound)| ScalarUDF::new_from_impl(Bounded { inner, bound }))
        .collect()
}

/// How a call's result size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bound {
    /// `repeat(s, n)`: n times the bytes of `s`.
    Repeat,
    /// `lpad(s, n [, fill])`: n characters of up to 4 bytes (PostgreSQL's own bound).
    Pad,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    bound: Bound,
}

impl Bounded {
    /// The largest result a batch's arguments ask for, in bytes.
    fn largest(&self, args: &[ColumnarValue]) -> Result<i64> {
        let (Some(text), Some(count)) = (args.first(), args.get(1)) else {
            return Ok(0);
        };
        let arrays = ColumnarValue::values_to_arrays(&[text.clone(), count.clone()])?;
        let options = CastOptions::default();
        let counts = arrow::compute::cast_with_options(&arrays[1], &DataType::Int64, &options)?;
        let counts = counts.as_primitive::<Int64Type>();
        let bytes = match self.bound {
            Bound::Repeat => Some(cast(&length(&arrays[0])?, &DataType::Int64)?),
            Bound::Pad => None,
        };
        let mut largest = 0i64;
        for row in 0..counts.len() {
            if counts.is_null(row) {
                continue;
            }
            let n = counts.value(row).max(0);
            let size = match &bytes {
                Some(b) if b.is_valid(row) => {
                    b.as_primitive::<Int64Type>().value(row).saturating_mul(n)
                }
                Some(_) => 0,
                None => n.saturating_mul(4),
            };
            largest = largest.max(size);
        }
        Ok(largest)
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if self.largest(&args.args)? > MAX_VALUE_BYTES {
            return data_error(
                ErrorCode::ProgramLimitExceeded,
                format!(
                    "requested length too large: {}() would build a value of more than 1 GB",
                    self.inner.name()
                ),
            );
        }
        self.inner.invoke_with_args(args)
    }
}
