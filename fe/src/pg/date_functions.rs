//! PostgreSQL's date and interval functions DataFusion lacks: `age`, `make_timestamp`,
//! `justify_hours`, `justify_days` and `justify_interval`, computed as PostgreSQL's
//! `timestamp_age`, `make_timestamp` and `interval_justify_*` compute them.
//!
//! `age` is the "symbolic" difference in years, months and days (`age('2026-03-01',
//! '2026-01-31')` is `1 mon 1 day`), not a number of hours. For `timestamptz` arguments
//! it is taken between the local times in the session's zone, as PostgreSQL does.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{
    Array, ArrayRef, AsArray, IntervalMonthDayNanoArray, TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Float64Type, Int64Type, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit,
    TimeUnit, TimestampMicrosecondType,
};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::{ScalarUDF, Volatility};

use super::row_fn;
use crate::error::data_error;
use eddy_proto::ErrorCode;

const INTERVAL: DataType = DataType::Interval(IntervalUnit::MonthDayNano);
const LOCAL_US: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);
const NANOS_PER_DAY: i64 = 86_400_000_000_000;

pub(crate) fn udfs() -> Vec<ScalarUDF> {
    vec![
        row_fn::udf("age", Volatility::Stable, age_args, |_| Ok(INTERVAL), age),
        row_fn::udf(
            "make_timestamp",
            Volatility::Immutable,
            make_timestamp_args,
            |_| Ok(LOCAL_US),
            make_timestamp,
        ),
        interval_fn("justify_hours", |a, _| justify(a, justify_hours)),
        interval_fn("justify_days", |a, _| justify(a, justify_days)),
        interval_fn("justify_interval", |a, _| justify(a, justify_interval)),
    ]
}

/// A function of one interval that returns an interval.
fn interval_fn(name: &'static str, eval: row_fn::Eval) -> ScalarUDF {
    row_fn::udf(
        name,
        Volatility::Immutable,
        one_interval,
        |_| Ok(INTERVAL),
        eval,
    )
}

/// `age(a, b)` or `age(b)`: timestamps in microseconds, zoned if any of them is.
fn age_args(types: &[DataType]) -> Result<Vec<DataType>> {
    if !(1..=2).contains(&types.len()) {
        return plan_err!(
            "age takes one or two timestamps, not {} arguments",
            types.len()
        );
    }
    let zoned = types
        .iter()
        .any(|t| matches!(t, DataType::Timestamp(_, Some(_))));
    for t in types {
        if !matches!(
            t,
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Null
        ) && !t.is_string()
        {
            return plan_err!("age needs timestamps, not {t}");
        }
    }
    let to = DataType::Timestamp(TimeUnit::Microsecond, zoned.then(|| Arc::from("UTC")));
    Ok(vec![to; types.len()])
}

/// The session's zone (`TimeZone`), for reading `timestamptz` as local times.
fn session_zone(config: &ConfigOptions) -> Tz {
    config
        .execution
        .time_zone
        .as_deref()
        .and_then(|z| Tz::from_str(z).ok())
        .unwrap_or_else(|| Tz::from_str("UTC").expect("UTC is a zone"))
}

/// Each value's local time: in the session's zone when the array is zoned.
fn local_times(a: &ArrayRef, zone: &Tz) -> Vec<Option<(i64, NaiveDateTime)>> {
    let zoned = matches!(a.data_type(), DataType::Timestamp(_, Some(_)));
    a.as_primitive::<TimestampMicrosecondType>()
        .iter()
        .map(|v| {
            let v = v?;
            let utc = DateTime::from_timestamp_micros(v)?;
            Some((
                v,
                if zoned {
                    utc.with_timezone(zone).naive_local()
                } else {
                    utc.naive_utc()
                },
            ))
        })
        .collect()
}

fn days_in_month(year: i32, month: u32) -> i64 {
    let first = NaiveDate::from_ymd_opt(year, month, 1);
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    match (first, next) {
        (Some(a), Some(b)) => (b - a).num_days(),
        _ => 30,
    }
}

/// PostgreSQL's `timestamp_age`: the field-by-field difference `t1 - t2`, borrowing
/// from the next larger field (a month is the earlier date's month).
fn symbolic_age(t1: &NaiveDateTime, t2: &NaiveDateTime, before: bool) -> IntervalMonthDayNano {
    let sign = if before { -1 } else { 1 };
    let field = |a: i64, b: i64| sign * (a - b);
    let mut us = field(
        i64::from(t1.nanosecond() / 1000),
        i64::from(t2.nanosecond() / 1000),
    );
    let mut sec = field(t1.second().into(), t2.second().into());
    let mut min = field(t1.minute().into(), t2.minute().into());
    let mut hour = field(t1.hour().into(), t2.hour().into());
    let mut day = field(t1.day().into(), t2.day().into());
    let mut mon = field(t1.month().into(), t2.month().into());
    let mut year = field(t1.year().into(), t2.year().into());
    let borrow = |low: &mut i64, high: &mut i64, unit: i64| {
        while *low < 0 {
            *low += unit;
            *high -= 1;
        }
    };
    borrow(&mut us, &mut sec, 1_000_000);
    borrow(&mut sec, &mut min, 60);
    borrow(&mut min, &mut hour, 60);
    borrow(&mut hour, &mut day, 24);
    // A negative day count borrows the length of the earlier date's month.
    let earlier = if before { t1 } else { t2 };
    while day < 0 {
        day += days_in_month(earlier.year(), earlier.month());
        mon -= 1;
    }
    borrow(&mut mon, &mut year, 12);
    let months = sign * (year * 12 + mon);
    let days = sign * day;
    let nanos = sign * ((((hour * 60 + min) * 60 + sec) * 1_000_000 + us) * 1000);
    IntervalMonthDayNano::new(months as i32, days as i32, nanos)
}

fn age(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let zone = session_zone(config);
    let pairs = match args {
        [_, b] => (local_times(&args[0], &zone), b),
        [b] => {
            // age(t) is age(current_date, t): midnight today, in the session's zone.
            let today = Utc::now().with_timezone(&zone).date_naive();
            let midnight = today.and_hms_opt(0, 0, 0).expect("midnight exists");
            let instant = if matches!(b.data_type(), DataType::Timestamp(_, Some(_))) {
                zone.from_local_datetime(&midnight)
                    .earliest()
                    .map_or(0, |t| t.timestamp_micros())
            } else {
                midnight.and_utc().timestamp_micros()
            };
            (vec![Some((instant, midnight)); b.len()], b)
        }
        _ => return data_error(ErrorCode::InvalidValue, "age takes one or two timestamps"),
    };
    let (first, second) = (pairs.0, local_times(pairs.1, &zone));
    let out: IntervalMonthDayNanoArray = first
        .into_iter()
        .zip(second)
        .map(|(a, b)| {
            let ((i1, t1), (i2, t2)) = (a?, b?);
            Some(symbolic_age(&t1, &t2, i1 < i2))
        })
        .collect();
    Ok(Arc::new(out))
}

fn make_timestamp_args(types: &[DataType]) -> Result<Vec<DataType>> {
    if types.len() != 6 {
        return plan_err!(
            "make_timestamp takes year, month, day, hour, minute and seconds, not {} arguments",
            types.len()
        );
    }
    let mut to = vec![DataType::Int64; 5];
    to.push(DataType::Float64);
    Ok(to)
}

fn make_timestamp(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let ints: Vec<_> = args[..5]
        .iter()
        .map(|a| a.as_primitive::<Int64Type>())
        .collect();
    let secs = args[5].as_primitive::<Float64Type>();
    let mut out = Vec::with_capacity(secs.len());
    for row in 0..secs.len() {
        if secs.is_null(row) || ints.iter().any(|a| a.is_null(row)) {
            out.push(None);
            continue;
        }
        let [y, m, d, h, mi] = [0, 1, 2, 3, 4].map(|i| ints[i].value(row));
        let s = secs.value(row);
        let date = i32::try_from(y)
            .ok()
            .zip(u32::try_from(m).ok().zip(u32::try_from(d).ok()))
            .and_then(|(y, (m, d))| NaiveDate::from_ymd_opt(y, m, d));
        let Some(date) = date else {
            return data_error(
                ErrorCode::DatetimeOverflow,
                format!("date field value out of range: {y}-{m:02}-{d:02}"),
            );
        };
        let us = (s * 1e6).round();
        if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0.0..60e6).contains(&us) {
            return data_error(
                ErrorCode::DatetimeOverflow,
                format!("time field value out of range: {h}:{mi:02}:{s:02}"),
            );
        }
        let t = date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_micros();
        out.push(Some(t + (h * 3600 + mi * 60) * 1_000_000 + us as i64));
    }
    Ok(Arc::new(TimestampMicrosecondArray::from(out)))
}

fn one_interval(types: &[DataType]) -> Result<Vec<DataType>> {
    match types {
        [DataType::Interval(_) | DataType::Duration(_) | DataType::Null] => Ok(vec![INTERVAL]),
        _ => plan_err!("this function takes one interval, not {types:?}"),
    }
}

fn justify(args: &[ArrayRef], f: fn(i64, i64, i64) -> (i64, i64, i64)) -> Result<ArrayRef> {
    let a = cast(&args[0], &INTERVAL)?;
    let out: IntervalMonthDayNanoArray = a
        .as_primitive::<IntervalMonthDayNanoType>()
        .iter()
        .map(|v| {
            let v = v?;
            let (m, d, ns) = f(v.months.into(), v.days.into(), v.nanoseconds);
            Some(IntervalMonthDayNano::new(m as i32, d as i32, ns))
        })
        .collect();
    Ok(Arc::new(out))
}

/// Whole days of the time part into days, the signs of days and time made to agree.
fn justify_hours(months: i64, days: i64, nanos: i64) -> (i64, i64, i64) {
    let (mut days, mut nanos) = (days + nanos / NANOS_PER_DAY, nanos % NANOS_PER_DAY);
    agree(&mut days, &mut nanos, NANOS_PER_DAY);
    (months, days, nanos)
}

/// Each 30 days into a month, the signs of months and days made to agree.
fn justify_days(months: i64, days: i64, nanos: i64) -> (i64, i64, i64) {
    let (mut months, mut days) = (months + days / 30, days % 30);
    agree(&mut months, &mut days, 30);
    (months, days, nanos)
}

/// Both, with the signs of all three parts made to agree (`interval_justify_interval`).
fn justify_interval(months: i64, days: i64, nanos: i64) -> (i64, i64, i64) {
    let (mut months, mut days, mut nanos) = (months, days, nanos);
    if (days > 0 && nanos > 0) || (days < 0 && nanos < 0) {
        months += days / 30;
        days %= 30;
    }
    days += nanos / NANOS_PER_DAY;
    nanos %= NANOS_PER_DAY;
    months += days / 30;
    days %= 30;
    if months > 0 && (days < 0 || (days == 0 && nanos < 0)) {
        days += 30;
        months -= 1;
    } else if months < 0 && (days > 0 || (days == 0 && nanos > 0)) {
        days -= 30;
        months += 1;
    }
    agree(&mut days, &mut nanos, NANOS_PER_DAY);
    (months, days, nanos)
}

/// Moves one `high` unit (worth `unit` of `low`) so that the two do not have opposite
/// signs, as PostgreSQL's justify functions leave them.
fn agree(high: &mut i64, low: &mut i64, unit: i64) {
    if *high > 0 && *low < 0 {
        *low += unit;
        *high -= 1;
    } else if *high < 0 && *low > 0 {
        *low -= unit;
        *high += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn age_of(a: &str, b: &str) -> (i32, i32, i64) {
        let (a, b) = (ts(a), ts(b));
        let v = symbolic_age(&a, &b, a < b);
        (v.months, v.days, v.nanoseconds / 1_000_000_000)
    }

    #[test]
    fn age_is_postgresql_s_symbolic_difference() {
        // Answers of PostgreSQL 15.
        assert_eq!(
            age_of("2026-01-02 00:00:00", "2026-01-01 00:00:00"),
            (0, 1, 0)
        );
        assert_eq!(
            age_of("2026-03-01 00:00:00", "2026-01-31 00:00:00"),
            (1, 1, 0)
        );
        assert_eq!(
            age_of("2026-01-31 00:00:00", "2026-03-01 00:00:00"),
            (-1, -1, 0)
        );
        assert_eq!(
            age_of("2026-11-24 10:00:00", "1957-06-13 12:30:00"),
            (69 * 12 + 5, 10, 21 * 3600 + 1800)
        );
        assert_eq!(
            age_of("2024-03-01 00:00:00", "2024-02-28 23:00:00"),
            (0, 1, 3600)
        );
    }

    #[test]
    fn justify_as_postgresql() {
        let h = 3_600_000_000_000;
        assert_eq!(justify_hours(0, 0, 36 * h), (0, 1, 12 * h));
        assert_eq!(justify_hours(0, 1, -h), (0, 0, 23 * h));
        assert_eq!(justify_days(0, 35, 0), (1, 5, 0));
        assert_eq!(justify_days(1, -5, 0), (0, 25, 0));
        assert_eq!(justify_interval(1, -1, -h), (0, 28, 23 * h));
        assert_eq!(justify_interval(0, 0, -25 * h), (0, -1, -h));
    }
}
