//! Interval (and duration) result columns, encoded here rather than by arrow-pg.
//!
//! arrow-pg 0.16 encodes an interval column's NULL as the zero interval (`00:00:00`)
//! and `CASE WHEN .. THEN NULL ELSE interval '1 day' END` as `1 day` in every row. So
//! each interval column is re-spelled before arrow-pg sees it: as PostgreSQL's text
//! (IntervalStyle postgres) for text results, as its 16-byte binary form (microseconds,
//! days, months, big-endian) for binary ones; NULL stays NULL in both. The text is
//! PostgreSQL's `EncodeInterval` rather than the pg_interval crate's, which drops the
//! `+` before a positive part that follows a negative one (`-1 days +02:00:00`).
//! A duration (a difference of timestamps) is an interval of whole days and the rest, as
//! PostgreSQL prints `'2026-01-02'::timestamp - '2026-01-01'` as `1 day`, not `24:00:00`.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BinaryBuilder, RecordBatch, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, DurationMicrosecondType, Field, IntervalMonthDayNanoType, IntervalUnit, Schema,
    TimeUnit,
};
use pgwire::error::{PgWireError, PgWireResult};

const MONTH_DAY_NANO: DataType = DataType::Interval(IntervalUnit::MonthDayNano);

const MICROS: DataType = DataType::Duration(TimeUnit::Microsecond);
const DAY_MICROS: i64 = 86_400_000_000;

/// Whether a column of this type is re-spelled here: intervals, and the durations
/// timestamp arithmetic gives (`ts - lag(ts)`).
pub(crate) fn is_interval(t: &DataType) -> bool {
    matches!(t, DataType::Interval(_) | DataType::Duration(_))
}

/// (months, days, nanoseconds) of each row of an interval or duration column. A duration
/// is the difference of two timestamps, which PostgreSQL gives in whole days and the
/// rest (`1 day 01:00:00`, `-1 days -01:00:00`), as its `timestamp_mi` does.
fn parts(a: &ArrayRef) -> arrow::error::Result<Vec<Option<(i32, i32, i64)>>> {
    if let DataType::Duration(_) = a.data_type() {
        let a = cast(a, &MICROS)?;
        return Ok(a
            .as_primitive::<DurationMicrosecondType>()
            .iter()
            .map(|v| {
                v.map(|us| {
                    let days = us / DAY_MICROS;
                    (0, days as i32, (us - days * DAY_MICROS) * 1000)
                })
            })
            .collect());
    }
    let a = cast(a, &MONTH_DAY_NANO)?;
    Ok(a.as_primitive::<IntervalMonthDayNanoType>()
        .iter()
        .map(|v| v.map(|v| (v.months, v.days, v.nanoseconds)))
        .collect())
}

/// `batch` with the interval columns `cols` (position, text format?) re-spelled (see the
/// module).
pub(crate) fn encode(batch: RecordBatch, cols: &[(usize, bool)]) -> PgWireResult<RecordBatch> {
    if cols.is_empty() {
        return Ok(batch);
    }
    let api = |e: arrow::error::ArrowError| PgWireError::ApiError(Box::new(e));
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for &(i, as_text) in cols {
        let a = parts(&columns[i]).map_err(api)?;
        let f = &fields[i];
        if as_text {
            let mut b = StringBuilder::with_capacity(a.len(), a.len() * 16);
            for v in a {
                b.append_option(v.map(|(m, d, ns)| text(m, d, ns / 1000)));
            }
            columns[i] = Arc::new(b.finish());
            fields[i] = Field::new(f.name(), DataType::Utf8, true);
        } else {
            let mut b = BinaryBuilder::with_capacity(a.len(), a.len() * 16);
            for v in a {
                b.append_option(v.map(|(m, d, ns)| binary(m, d, ns)));
            }
            columns[i] = Arc::new(b.finish());
            fields[i] = Field::new(f.name(), DataType::Binary, true);
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(api)
}

/// Each value of an interval or duration column as PostgreSQL's text.
pub(crate) fn texts(a: &ArrayRef) -> arrow::error::Result<Vec<Option<String>>> {
    Ok(parts(a)?
        .into_iter()
        .map(|v| v.map(|(m, d, ns)| text(m, d, ns / 1000)))
        .collect())
}

/// PostgreSQL's text for an interval (IntervalStyle postgres): `1 year 2 mons -3 days
/// +04:05:06.5`.
fn text(months: i32, days: i32, micros: i64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    // Whether nothing is written yet, and whether the last part written was negative.
    let (mut zero, mut before) = (true, false);
    for (value, unit) in [
        (i64::from(months / 12), "year"),
        (i64::from(months % 12), "mon"),
        (i64::from(days), "day"),
    ] {
        if value == 0 {
            continue;
        }
        let sep = if zero { "" } else { " " };
        let plus = if before && value > 0 { "+" } else { "" };
        let s = if value != 1 { "s" } else { "" };
        let _ = write!(out, "{sep}{plus}{value} {unit}{s}");
        before = value < 0;
        zero = false;
    }
    if zero || micros != 0 {
        let sign = if micros < 0 {
            "-"
        } else if before {
            "+"
        } else {
            ""
        };
        let sep = if zero { "" } else { " " };
        let abs = micros.unsigned_abs();
        let (h, m, sec, frac) = (
            abs / 3_600_000_000,
            abs / 60_000_000 % 60,
            abs / 1_000_000 % 60,
            abs % 1_000_000,
        );
        let _ = write!(out, "{sep}{sign}{h:02}:{m:02}:{sec:02}");
        if frac != 0 {
            let f = format!("{frac:06}");
            let _ = write!(out, ".{}", f.trim_end_matches('0'));
        }
    }
    out
}

/// PostgreSQL's binary interval: int8 microseconds, int4 days, int4 months.
fn binary(months: i32, days: i32, nanoseconds: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&(nanoseconds / 1000).to_be_bytes());
    out[8..12].copy_from_slice(&days.to_be_bytes());
    out[12..].copy_from_slice(&months.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, IntervalMonthDayNanoArray};
    use arrow::datatypes::IntervalMonthDayNano;

    #[test]
    fn text_is_postgresql_s() {
        let hour = 3_600_000_000;
        for (m, d, us, want) in [
            (0, 0, 0, "00:00:00"),
            (
                14,
                3,
                4 * hour + 5_500_000,
                "1 year 2 mons 3 days 04:00:05.5",
            ),
            (0, -1, 2 * hour, "-1 days +02:00:00"),
            (-1, 1, -hour, "-1 mons +1 day -01:00:00"),
            (0, 0, 30 * hour + 1, "30:00:00.000001"),
            (12, 0, 0, "1 year"),
        ] {
            assert_eq!(text(m, d, us), want);
        }
    }

    #[test]
    fn nulls_stay_null_in_text_and_binary() {
        let a: IntervalMonthDayNanoArray = vec![
            Some(IntervalMonthDayNano::new(1, 15, 0)),
            None,
            Some(IntervalMonthDayNano::new(0, 0, 1_200_000_000_000)),
        ]
        .into();
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", MONTH_DAY_NANO, true),
            Field::new("b", MONTH_DAY_NANO, true),
        ]));
        let a: ArrayRef = Arc::new(a);
        let batch = RecordBatch::try_new(schema, vec![Arc::clone(&a), a]).unwrap();
        let out = encode(batch, &[(0, true), (1, false)]).unwrap();
        let t = out.column(0).as_string::<i32>();
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            [Some("1 mon 15 days"), None, Some("00:20:00")]
        );
        let b = out.column(1).as_binary::<i32>();
        assert!(b.is_null(1));
        assert_eq!(
            b.value(0),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0, 0, 1]
        );
        assert_eq!(&b.value(2)[..8], 1_200_000_000i64.to_be_bytes());
    }

    #[test]
    fn durations_are_days_and_the_rest() {
        use arrow::array::DurationNanosecondArray;
        let hour = 3_600_000_000_000i64;
        let a: DurationNanosecondArray = vec![
            Some(25 * hour),
            None,
            Some(-25 * hour),
            Some(hour),
            Some(48 * hour),
        ]
        .into();
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", a.data_type().clone(), true),
            Field::new("b", a.data_type().clone(), true),
        ]));
        let a: ArrayRef = Arc::new(a);
        let batch = RecordBatch::try_new(schema, vec![Arc::clone(&a), a]).unwrap();
        let out = encode(batch, &[(0, true), (1, false)]).unwrap();
        let t = out.column(0).as_string::<i32>();
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            [
                Some("1 day 01:00:00"),
                None,
                Some("-1 days -01:00:00"),
                Some("01:00:00"),
                Some("2 days")
            ]
        );
        let b = out.column(1).as_binary::<i32>();
        assert!(b.is_null(1));
        assert_eq!(&b.value(0)[..8], 3_600_000_000i64.to_be_bytes());
        assert_eq!(&b.value(0)[8..12], 1i32.to_be_bytes());
    }
}
