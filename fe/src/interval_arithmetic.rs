//! `interval * number`, `number * interval` and `interval / number`, as PostgreSQL
//! computes them.
//!
//! DataFusion plans none of them ("Invalid interval arithmetic operation"), yet they are
//! how people write relative time ranges (`now() - interval '1 day' * 7`, `n * interval
//! '1 minute'`). [`IntervalScale`] multiplies each field of a month-day-nanosecond
//! interval: by an integer exactly, by a fraction as PostgreSQL's `interval_mul` does,
//! spilling fractional months into days (30 a month) and fractional days into time (24
//! hours a day), rounded to microseconds. A result out of range is 22008.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, IntervalMonthDayNanoArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, IntervalMonthDayNano, IntervalUnit};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::{schema_name_from_exprs, ScalarFunction};
use datafusion::logical_expr::planner::RawBinaryExpr;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

const INTERVAL: DataType = DataType::Interval(IntervalUnit::MonthDayNano);
const NANOS_PER_DAY: f64 = 86_400e9;

/// How a factor multiplies an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Factor {
    /// An integer, exactly.
    Integer,
    /// A fraction, as PostgreSQL does (see the module).
    Fraction,
    /// The reciprocal of a number (`interval / n`).
    Divisor,
}

fn factor_kind(t: &DataType) -> Option<Factor> {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            Some(Factor::Integer)
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            Some(Factor::Integer)
        }
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Some(Factor::Fraction),
        _ => None,
    }
}

/// `left op right` as [`IntervalScale`] when it multiplies or divides an interval by a
/// number.
pub(crate) fn plan(expr: &RawBinaryExpr, schema: &DFSchema) -> Option<Expr> {
    let (l, r) = (
        expr.left.get_type(schema).ok()?,
        expr.right.get_type(schema).ok()?,
    );
    let (interval, number, factor) = match expr.op {
        BinaryOperator::Multiply if l == INTERVAL => (&expr.left, &expr.right, factor_kind(&r)?),
        BinaryOperator::Multiply if r == INTERVAL => (&expr.right, &expr.left, factor_kind(&l)?),
        BinaryOperator::Divide if l == INTERVAL => {
            factor_kind(&r)?;
            (&expr.left, &expr.right, Factor::Divisor)
        }
        _ => return None,
    };
    Some(Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(IntervalScale::new(factor))),
        vec![interval.clone(), number.clone()],
    )))
}

/// `date ± interval` (and `interval + date`) with the date read as a timestamp: in
/// PostgreSQL the sum is a `timestamp` (`date '2026-01-01' + interval '1 hour'` is
/// `2026-01-01 01:00:00`), where DataFusion keeps a date and drops the hours.
pub(crate) fn widen_date(expr: &mut RawBinaryExpr, schema: &DFSchema) {
    if !matches!(expr.op, BinaryOperator::Plus | BinaryOperator::Minus) {
        return;
    }
    let is = |e: &Expr, t: fn(&DataType) -> bool| e.get_type(schema).is_ok_and(|d| t(&d));
    let date = |t: &DataType| matches!(t, DataType::Date32 | DataType::Date64);
    let interval = |t: &DataType| matches!(t, DataType::Interval(_));
    let timestamp = |e: &Expr| {
        Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(e.clone()),
            DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
        ))
    };
    if is(&expr.left, date) && is(&expr.right, interval) {
        expr.left = timestamp(&expr.left);
    } else if expr.op == BinaryOperator::Plus && is(&expr.left, interval) && is(&expr.right, date) {
        expr.right = timestamp(&expr.right);
    }
}

/// Whether a call is an [`IntervalScale`] (an operator, which PostgreSQL names
/// `?column?`).
pub(crate) fn is_interval_scale(f: &ScalarFunction) -> bool {
    let any: &dyn std::any::Any = f.func.inner().as_ref();
    any.is::<IntervalScale>()
}

/// An interval (first argument) scaled by a number (second); see the module.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct IntervalScale {
    factor: Factor,
    signature: Signature,
}

impl IntervalScale {
    fn new(factor: Factor) -> Self {
        Self {
            factor,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

fn out_of_range() -> DataFusionError {
    crate::error::to_datafusion(eddy_proto::Error::new(
        eddy_proto::ErrorCode::DatetimeOverflow,
        "interval out of range",
    ))
}

/// `i * n` field by field, exactly.
fn times_integer(i: IntervalMonthDayNano, n: i64) -> Option<IntervalMonthDayNano> {
    let n32 = i32::try_from(n).ok();
    Some(IntervalMonthDayNano {
        months: if i.months == 0 {
            0
        } else {
            i.months.checked_mul(n32?)?
        },
        days: if i.days == 0 {
            0
        } else {
            i.days.checked_mul(n32?)?
        },
        nanoseconds: i.nanoseconds.checked_mul(n)?,
    })
}

/// `i * f` as PostgreSQL's `interval_mul`: whole months, the fraction of a month as
/// days, the fraction of a day as time, rounded to microseconds.
fn times_fraction(i: IntervalMonthDayNano, f: f64) -> Option<IntervalMonthDayNano> {
    let months = f64::from(i.months) * f;
    let days = f64::from(i.days) * f;
    if !months.is_finite() || !days.is_finite() {
        return None;
    }
    let whole_months = to_i32(months.trunc())?;
    let month_days = (months - months.trunc()) * 30.0;
    let whole_days = days.trunc();
    let mut rest = (days - whole_days + month_days.fract()) * NANOS_PER_DAY;
    rest = (rest / 1000.0).round() * 1000.0;
    let mut extra_days = month_days.trunc();
    if rest.abs() >= NANOS_PER_DAY {
        extra_days += (rest / NANOS_PER_DAY).trunc();
        rest -= (rest / NANOS_PER_DAY).trunc() * NANOS_PER_DAY;
    }
    let nanos = ((i.nanoseconds as f64 * f) / 1000.0).round() * 1000.0 + rest;
    if !nanos.is_finite() || nanos.abs() >= 9.2e18 {
        return None;
    }
    Some(IntervalMonthDayNano {
        months: whole_months,
        days: to_i32(whole_days + extra_days)?,
        nanoseconds: nanos as i64,
    })
}

fn to_i32(v: f64) -> Option<i32> {
    (v.is_finite() && v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX)).then_some(v as i32)
}

impl ScalarUDFImpl for IntervalScale {
    fn name(&self) -> &str {
        match self.factor {
            Factor::Divisor => "eddy_interval_divide",
            _ => "eddy_interval_multiply",
        }
    }

    /// Named as the operator would be (`IntervalMonthDayNano(..) * Int64(7)`).
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        let op = if self.factor == Factor::Divisor {
            " / "
        } else {
            " * "
        };
        let [a, b] = args else {
            return Ok(schema_name_from_exprs(args)?);
        };
        Ok(format!("{}{op}{}", a.schema_name(), b.schema_name()))
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(INTERVAL)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [interval, number] = args.args.as_slice() else {
            return datafusion::common::plan_err!("{} needs two arguments", self.name());
        };
        let scalar = matches!(
            (interval, number),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let n = if scalar { 1 } else { rows };
        let intervals = interval.to_array(n)?;
        let intervals = intervals.as_primitive::<arrow::datatypes::IntervalMonthDayNanoType>();
        let out: IntervalMonthDayNanoArray = match self.factor {
            Factor::Integer => {
                let ns = arrow::compute::cast(&number.to_array(n)?, &DataType::Int64)?;
                let ns = ns.as_primitive::<Int64Type>();
                scale(intervals, ns, |i, k| times_integer(i, k))?
            }
            Factor::Fraction | Factor::Divisor => {
                let fs = arrow::compute::cast(&number.to_array(n)?, &DataType::Float64)?;
                let fs = fs.as_primitive::<Float64Type>();
                let divide = self.factor == Factor::Divisor;
                if divide && fs.iter().any(|f| f == Some(0.0)) {
                    return Err(DataFusionError::ArrowError(
                        Box::new(arrow::error::ArrowError::DivideByZero),
                        None,
                    ));
                }
                scale(intervals, fs, |i, f| {
                    times_fraction(i, if divide { 1.0 / f } else { f })
                })?
            }
        };
        let out: ArrayRef = Arc::new(out);
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// Each interval scaled by its row's number; NULL where either is NULL.
fn scale<T: arrow::datatypes::ArrowPrimitiveType>(
    intervals: &arrow::array::PrimitiveArray<arrow::datatypes::IntervalMonthDayNanoType>,
    numbers: &arrow::array::PrimitiveArray<T>,
    f: impl Fn(IntervalMonthDayNano, T::Native) -> Option<IntervalMonthDayNano>,
) -> Result<IntervalMonthDayNanoArray> {
    intervals
        .iter()
        .zip(numbers.iter())
        .map(|(i, n)| match (i, n) {
            (Some(i), Some(n)) => f(i, n).map(Some).ok_or_else(out_of_range),
            _ => Ok(None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(months: i32, days: i32, nanoseconds: i64) -> IntervalMonthDayNano {
        IntervalMonthDayNano {
            months,
            days,
            nanoseconds,
        }
    }

    #[test]
    fn integers_scale_every_field() {
        assert_eq!(times_integer(iv(1, 2, 3), 7), Some(iv(7, 14, 21)));
        assert_eq!(times_integer(iv(0, 0, 3), 1 << 40), Some(iv(0, 0, 3 << 40)));
        assert_eq!(times_integer(iv(1, 0, 0), 1 << 40), None);
        assert_eq!(times_integer(iv(0, 0, i64::MAX), 2), None);
    }

    #[test]
    fn fractions_spill_into_smaller_fields_as_postgresql() {
        // '1 mon' * 1.5 = '1 mon 15 days'; '1 day' * 1.5 = '1 day 12:00:00'.
        assert_eq!(times_fraction(iv(1, 0, 0), 1.5), Some(iv(1, 15, 0)));
        assert_eq!(
            times_fraction(iv(0, 1, 0), 1.5),
            Some(iv(0, 1, 43_200_000_000_000))
        );
        // '1 hour' / 3 = 00:20:00.
        assert_eq!(
            times_fraction(iv(0, 0, 3_600_000_000_000), 1.0 / 3.0),
            Some(iv(0, 0, 1_200_000_000_000))
        );
        assert_eq!(times_fraction(iv(1, 0, 0), f64::INFINITY), None);
    }
}
