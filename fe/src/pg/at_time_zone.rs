//! `value AT TIME ZONE zone` as PostgreSQL means it.
//!
//! For a `timestamptz` it is the local time in `zone`, a `timestamp` without zone; for a
//! `timestamp` it is that local time in `zone` as an instant, a `timestamptz`. DataFusion
//! plans it as a cast that relabels the zone, so `ts AT TIME ZONE 'UTC'` stayed a
//! `timestamptz` and a `timestamp` was read as UTC. The pgwire rewrite turns the syntax
//! into [`NAME`], which does the conversion with chrono-tz. Zones are names (`UTC`,
//! `America/New_York`); PostgreSQL reads a numeric zone such as `'+05'` the POSIX way
//! (west of Greenwich), which is refused rather than guessed.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, NaiveDateTime, Offset, TimeZone};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// The function `AT TIME ZONE` is planned as.
pub(super) const NAME: &str = "eddy_at_time_zone";

pub(super) fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(AtTimeZone {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AtTimeZone {
    signature: Signature,
}

/// The result type: a `timestamp` for a `timestamptz` and the other way round.
fn result_type(arg: &DataType) -> Result<DataType> {
    match arg {
        DataType::Timestamp(_, Some(_)) => Ok(DataType::Timestamp(TimeUnit::Microsecond, None)),
        DataType::Timestamp(_, None) => Ok(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some(Arc::from("UTC")),
        )),
        other => plan_err!("AT TIME ZONE needs a timestamp, not {other}"),
    }
}

fn zone(name: &str) -> Result<Tz> {
    let numeric = name.starts_with(['+', '-']) || name.starts_with(|c: char| c.is_ascii_digit());
    match (numeric, Tz::from_str(name)) {
        (false, Ok(tz)) => Ok(tz),
        _ => exec_err!(
            "time zone \"{name}\" not recognized (give a zone name such as UTC or Europe/Paris)"
        ),
    }
}

impl ScalarUDFImpl for AtTimeZone {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        result_type(&args[0])
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let t = result_type(args.arg_fields[0].data_type())?;
        Ok(Arc::new(Field::new(self.name(), t, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let tz = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(z)))
            | ColumnarValue::Scalar(ScalarValue::Utf8View(Some(z)))
            | ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(z))) => zone(z)?,
            ColumnarValue::Scalar(s) if s.is_null() => {
                return Ok(ColumnarValue::Scalar(ScalarValue::try_from(&result_type(
                    &args.args[0].data_type(),
                )?)?))
            }
            _ => return exec_err!("AT TIME ZONE needs a constant zone name"),
        };
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let values = args.args[0].to_array(if scalar { 1 } else { args.number_rows })?;
        let aware = matches!(values.data_type(), DataType::Timestamp(_, Some(_)));
        let us = cast(&values, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let us = us.as_primitive::<TimestampMicrosecondType>();
        let out: arrow::array::PrimitiveArray<TimestampMicrosecondType> = us
            .iter()
            .map(|v| {
                let v = v?;
                let t = DateTime::from_timestamp_micros(v)?.naive_utc();
                Some(if aware {
                    // The instant's wall-clock time in the zone.
                    let offset = tz.offset_from_utc_datetime(&t).fix().local_minus_utc();
                    v + i64::from(offset) * 1_000_000
                } else {
                    local_to_utc_micros(&tz, &t, v)
                })
            })
            .collect();
        let out = out.with_timezone_opt(if aware { None } else { Some("UTC") });
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out as &dyn Array, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(out))
        })
    }
}

/// The instant (µs since the epoch) at which the wall clock in `tz` reads `local`; in a
/// DST gap, the offset from before it (as PostgreSQL does), for an ambiguous time the
/// earlier instant.
fn local_to_utc_micros(tz: &Tz, local: &NaiveDateTime, local_us: i64) -> i64 {
    let offset = match tz.offset_from_local_datetime(local).earliest() {
        Some(o) => o.fix().local_minus_utc(),
        None => tz.offset_from_utc_datetime(local).fix().local_minus_utc(),
    };
    local_us - i64::from(offset) * 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn one(sql: &str) -> String {
        let ctx = SessionContext::new();
        ctx.register_udf(udf());
        let b = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let c = cast(b[0].column(0), &DataType::Utf8).unwrap();
        c.as_string::<i32>().value(0).to_string()
    }

    #[tokio::test]
    async fn instants_become_local_times_and_back() {
        let tstz = "arrow_cast('2026-01-01T20:00:00Z', 'Timestamp(Microsecond, Some(\"UTC\"))')";
        assert_eq!(
            one(&format!("SELECT eddy_at_time_zone({tstz}, 'Asia/Kolkata')")).await,
            "2026-01-02T01:30:00"
        );
        assert_eq!(
            one(&format!(
                "SELECT eddy_at_time_zone({tstz}, 'America/New_York')"
            ))
            .await,
            "2026-01-01T15:00:00"
        );
        // Summer time: New York is four hours behind UTC in July.
        let ts = "arrow_cast('2026-07-01T12:00:00', 'Timestamp(Microsecond, None)')";
        assert_eq!(
            one(&format!(
                "SELECT eddy_at_time_zone({ts}, 'America/New_York')"
            ))
            .await,
            "2026-07-01T16:00:00Z"
        );
        let ctx = SessionContext::new();
        ctx.register_udf(udf());
        let e = ctx
            .sql(&format!("SELECT eddy_at_time_zone({tstz}, '+05')"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not recognized"), "{e}");
    }
}
