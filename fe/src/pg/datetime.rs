//! Dates and times as PostgreSQL prints them in text results (DateStyle ISO): fractional
//! seconds only when non-zero and without trailing zeros, `timestamptz` in the session's
//! TimeZone with a `+HH[:MM[:SS]]` offset, and years before 1 AD as `BC`. Binary results
//! need none of this: they carry microseconds since 2000-01-01 UTC.

use std::str::FromStr;

use arrow::array::timezone::Tz;
use arrow::array::{ArrayRef, AsArray, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Datelike, NaiveDateTime, Offset, TimeZone, Timelike};

/// A session's TimeZone, resolved once per statement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionTz(Tz);

impl SessionTz {
    pub(crate) fn utc() -> Self {
        Self(Tz::from_str("UTC").expect("UTC is a valid time zone"))
    }

    /// Parses a TimeZone setting: an IANA name (`America/New_York`, `UTC`), an ISO offset
    /// (`+05:30`), or a bare number of hours east of UTC as `SET TIME ZONE -7` gives it.
    pub(crate) fn parse(setting: &str) -> Option<Self> {
        let name = Self::arrow_name(setting)?;
        Tz::from_str(&name).ok().map(Self)
    }

    /// The setting as Arrow (and DataFusion's `execution.time_zone`) spell zones.
    pub(crate) fn arrow_name(setting: &str) -> Option<String> {
        let s = setting.trim().trim_matches('\'');
        if s.eq_ignore_ascii_case("utc") || s.eq_ignore_ascii_case("gmt") || s == "Z" {
            return Some("UTC".to_string());
        }
        if let Ok(hours) = s.parse::<f64>() {
            if !(-15.0..=15.0).contains(&hours) {
                return None;
            }
            let secs = (hours * 3600.0).round() as i32;
            let sign = if secs < 0 { '-' } else { '+' };
            let a = secs.abs();
            return Some(format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60));
        }
        if Tz::from_str(s).is_ok() {
            return Some(s.to_string());
        }
        // chrono-tz names are case-sensitive; PostgreSQL's are not.
        let canonical = chrono_tz_name(s)?;
        Tz::from_str(&canonical).ok().map(|_| canonical)
    }
}

/// The canonical spelling of a case-insensitively given IANA name.
fn chrono_tz_name(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    // Names are `Area/Location_With_Words`; capitalising each word matches nearly all.
    let fixed: String = lower
        .split('/')
        .map(|part| {
            part.split('_')
                .map(|w| {
                    let mut c = w.chars();
                    match c.next() {
                        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                        None => String::new(),
                    }
                })
                .collect::<Vec<_>>()
                .join("_")
        })
        .collect::<Vec<_>>()
        .join("/");
    Some(fixed)
}

fn push_date(out: &mut String, d: &NaiveDateTime) {
    use std::fmt::Write;
    let y = d.year();
    // PostgreSQL has no year 0: 1 BC is year 0 in the proleptic calendar chrono uses.
    let shown = if y <= 0 { 1 - y } else { y };
    let _ = write!(out, "{shown:04}-{:02}-{:02}", d.month(), d.day());
}

fn push_time(out: &mut String, hour: u32, minute: u32, second: u32, micros: u32) {
    use std::fmt::Write;
    let _ = write!(out, "{hour:02}:{minute:02}:{second:02}");
    if micros > 0 {
        let mut digits = [b'0'; 6];
        let mut m = micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (m % 10) as u8;
            m /= 10;
        }
        let n = 6 - digits.iter().rev().take_while(|d| **d == b'0').count();
        out.push('.');
        out.extend(digits[..n].iter().map(|d| *d as char));
    }
}

fn push_offset(out: &mut String, offset_secs: i32) {
    use std::fmt::Write;
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let a = offset_secs.abs();
    let _ = write!(out, "{sign}{:02}", a / 3600);
    if a % 3600 != 0 {
        let _ = write!(out, ":{:02}", a % 3600 / 60);
        if a % 60 != 0 {
            let _ = write!(out, ":{:02}", a % 60);
        }
    }
}

fn bc(out: &mut String, d: &NaiveDateTime) {
    if d.year() <= 0 {
        out.push_str(" BC");
    }
}

/// `timestamp` text: `2024-01-01 10:00:00`, `2024-01-01 10:00:00.5`.
#[cfg(test)]
pub(crate) fn format_timestamp(d: &NaiveDateTime) -> String {
    let mut out = String::with_capacity(26);
    push_timestamp(&mut out, d);
    out
}

fn push_timestamp(out: &mut String, d: &NaiveDateTime) {
    push_date(out, d);
    out.push(' ');
    push_time(out, d.hour(), d.minute(), d.second(), d.nanosecond() / 1000);
    bc(out, d);
}

fn push_timestamptz<T: TimeZone>(out: &mut String, d: &DateTime<T>) {
    let local = d.naive_local();
    let offset = d.offset().fix().local_minus_utc();
    push_date(out, &local);
    out.push(' ');
    push_time(
        out,
        local.hour(),
        local.minute(),
        local.second(),
        local.nanosecond() / 1000,
    );
    push_offset(out, offset);
    bc(out, &local);
}

/// Appends the microsecond timestamp `v` as PostgreSQL prints it: a `timestamptz` in the
/// session's zone when `with_zone`, else a `timestamp`. `false` (nothing appended) when it
/// is outside chrono's range; such values are sent as NULL.
pub(crate) fn push_timestamp_micros(
    out: &mut String,
    v: i64,
    with_zone: bool,
    tz: SessionTz,
) -> bool {
    let Some(utc) = DateTime::from_timestamp_micros(v) else {
        return false;
    };
    if with_zone {
        push_timestamptz(out, &utc.with_timezone(&tz.0));
    } else {
        push_timestamp(out, &utc.naive_utc());
    }
    true
}

/// A text column of a temporal array as PostgreSQL prints it, or `None` when the type
/// needs no help (dates print right already).
pub(crate) fn temporal_as_text(a: &ArrayRef, tz: SessionTz) -> Option<StringArray> {
    match a.data_type() {
        DataType::Timestamp(unit, zone) => {
            let cast_us;
            let us = if *unit == TimeUnit::Microsecond {
                a.as_primitive::<TimestampMicrosecondType>()
            } else {
                cast_us = cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None)).ok()?;
                cast_us.as_primitive::<TimestampMicrosecondType>()
            };
            let with_zone = zone.is_some();
            let mut b = StringBuilder::with_capacity(us.len(), us.len() * 32);
            let mut s = String::with_capacity(40);
            for v in us.iter() {
                s.clear();
                match v.filter(|v| push_timestamp_micros(&mut s, *v, with_zone, tz)) {
                    Some(_) => b.append_value(&s),
                    None => b.append_null(),
                }
            }
            Some(b.finish())
        }
        DataType::Time32(_) | DataType::Time64(_) => {
            let us = cast(a, &DataType::Time64(TimeUnit::Microsecond)).ok()?;
            let us = us.as_primitive::<Time64MicrosecondType>();
            Some(
                us.iter()
                    .map(|v| {
                        let v = v?;
                        let secs = (v / 1_000_000) as u32;
                        let mut out = String::with_capacity(15);
                        push_time(
                            &mut out,
                            secs / 3600,
                            secs % 3600 / 60,
                            secs % 60,
                            (v % 1_000_000) as u32,
                        );
                        Some(out)
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}

/// Whether [`temporal_as_text`] rewrites columns of this type.
pub(crate) fn is_temporal_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _) | DataType::Time32(_) | DataType::Time64(_)
    )
}

#[cfg(test)]
fn text(a: ArrayRef, tz: SessionTz) -> Vec<Option<String>> {
    use arrow::array::Array;
    let s = temporal_as_text(&a, tz).expect("temporal");
    (0..s.len())
        .map(|i| (!s.is_null(i)).then(|| s.value(i).to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{Time64MicrosecondArray, TimestampMicrosecondArray};

    #[test]
    fn timestamps_print_like_postgres() {
        // 2024-01-01 00:00:00 UTC, then with .5 s, then with 123456 us.
        let base = 1_704_067_200_000_000i64;
        let a: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            Some(base),
            Some(base + 500_000),
            Some(base + 123_456),
            None,
        ]));
        assert_eq!(
            text(a, SessionTz::utc()),
            vec![
                Some("2024-01-01 00:00:00".to_string()),
                Some("2024-01-01 00:00:00.5".to_string()),
                Some("2024-01-01 00:00:00.123456".to_string()),
                None
            ]
        );
        let tz: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(vec![base]).with_timezone("UTC"));
        assert_eq!(
            text(Arc::clone(&tz), SessionTz::utc()),
            vec![Some("2024-01-01 00:00:00+00".to_string())]
        );
        assert_eq!(
            text(
                Arc::clone(&tz),
                SessionTz::parse("america/new_york").unwrap()
            ),
            vec![Some("2023-12-31 19:00:00-05".to_string())]
        );
        assert_eq!(
            text(Arc::clone(&tz), SessionTz::parse("Asia/Kolkata").unwrap()),
            vec![Some("2024-01-01 05:30:00+05:30".to_string())]
        );
        assert_eq!(
            text(tz, SessionTz::parse("-7").unwrap()),
            vec![Some("2023-12-31 17:00:00-07".to_string())]
        );
        assert!(SessionTz::parse("Mars/Olympus").is_none());
        let t: ArrayRef = Arc::new(Time64MicrosecondArray::from(vec![36_000_250_000]));
        assert_eq!(
            text(t, SessionTz::utc()),
            vec![Some("10:00:00.25".to_string())]
        );
    }

    #[test]
    fn years_before_christ() {
        let d = chrono::NaiveDate::from_ymd_opt(0, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        assert_eq!(format_timestamp(&d), "0001-01-01 00:00:00 BC");
    }
}
