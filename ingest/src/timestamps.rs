//! Timestamp text as micros, fast on the form nearly every client sends.
//!
//! arrow-json and arrow-csv parse each timestamp with arrow's general parser (time zones,
//! offsets, many layouts), a tenth of a load's CPU. The decoders therefore read UTC
//! timestamp columns as text, and [`texts_to_micros`] parses `YYYY-MM-DD[T ]HH:MM:SS[.f]`
//! directly, handing anything else to arrow's parser: the accepted inputs and their values
//! are exactly arrow's.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, TimestampMicrosecondArray};
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::Utc;

/// Whether arrow reads text of this type as a UTC instant (the types read as text here).
fn is_utc_micros(ty: &DataType) -> bool {
    match ty {
        DataType::Timestamp(TimeUnit::Microsecond, None) => true,
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => {
            matches!(tz.as_ref(), "UTC" | "+00:00")
        }
        _ => false,
    }
}

/// `schema` with its UTC timestamp columns as text, or `None` when it has none.
pub(crate) fn read_schema(schema: &SchemaRef) -> Option<SchemaRef> {
    if !schema.fields().iter().any(|f| is_utc_micros(f.data_type())) {
        return None;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if is_utc_micros(f.data_type()) {
                f.as_ref().clone().with_data_type(DataType::Utf8)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Some(Arc::new(Schema::new(fields)))
}

/// `batch` (read with [`read_schema`] of `schema`) with its text timestamp columns parsed;
/// `None` when some value does not parse (the caller then decodes with arrow's own
/// timestamp reading, which reports the error).
pub(crate) fn parse_columns(batch: &RecordBatch, schema: &SchemaRef) -> Option<RecordBatch> {
    let file = batch.schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    let mut fields: Vec<Field> = Vec::with_capacity(batch.num_columns());
    for (f, col) in file.fields().iter().zip(batch.columns()) {
        let target = schema.field_with_name(f.name()).ok();
        match target {
            Some(t) if is_utc_micros(t.data_type()) && f.data_type() == &DataType::Utf8 => {
                let tz = match t.data_type() {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                let parsed = texts_to_micros(col)?.with_timezone_opt(tz);
                fields.push(f.as_ref().clone().with_data_type(t.data_type().clone()));
                columns.push(Arc::new(parsed));
            }
            _ => {
                fields.push(f.as_ref().clone());
                columns.push(Arc::clone(col));
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).ok()
}

/// Parses a text column; `None` if a value is not a timestamp arrow would accept.
fn texts_to_micros(col: &ArrayRef) -> Option<TimestampMicrosecondArray> {
    let texts = col.as_string_opt::<i32>()?;
    let mut out = Vec::with_capacity(texts.len());
    let mut dates = DateCache::default();
    for i in 0..texts.len() {
        if texts.is_null(i) {
            out.push(0);
            continue;
        }
        let s = texts.value(i);
        let v = match parse_micros_with(s.as_bytes(), &mut dates) {
            Some(v) => v,
            None => string_to_datetime(&Utc, s).ok()?.timestamp_micros(),
        };
        out.push(v);
    }
    Some(TimestampMicrosecondArray::new(
        out.into(),
        texts.nulls().cloned(),
    ))
}

/// The last date [`parse_micros_with`] saw, as text and as days since the epoch.
#[derive(Debug, Default)]
pub struct DateCache {
    text: Option<[u8; 10]>,
    days: i64,
}

/// [`parse_micros`], reusing the date of the previous value when it is the same.
pub fn parse_micros_with(s: &[u8], cache: &mut DateCache) -> Option<i64> {
    if s.len() >= 19 && cache.text.is_some_and(|t| s[..10] == t) && matches!(s[10], b' ' | b'T') {
        let time = parse_time(s)?;
        return Some(cache.days * 86_400_000_000 + time);
    }
    let v = parse_micros(s)?;
    cache.text = s[..10].try_into().ok();
    cache.days = v.div_euclid(86_400_000_000);
    Some(v)
}

/// `HH:MM:SS[.f{1,9}]` at offset 11 of a [`parse_micros`] string, as micros of the day.
fn parse_time(s: &[u8]) -> Option<i64> {
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let digit = |i: usize| -> Option<i64> {
        let d = s[i].wrapping_sub(b'0');
        (d < 10).then_some(d as i64)
    };
    let two = |i: usize| -> Option<i64> { Some(digit(i)? * 10 + digit(i + 1)?) };
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut micros = 0;
    if s.len() > 19 {
        let frac = &s[20..];
        if s[19] != b'.' || frac.is_empty() || frac.len() > 9 {
            return None;
        }
        for i in 0..frac.len() {
            let d = digit(20 + i)?;
            if i < 6 {
                micros = micros * 10 + d;
            }
        }
        for _ in frac.len()..6 {
            micros *= 10;
        }
    }
    Some((hour * 3600 + minute * 60 + second) * 1_000_000 + micros)
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}]` (no zone: UTC) as micros since the epoch, fractions
/// beyond micros cut off as arrow does; `None` for anything else, valid or not.
pub fn parse_micros(s: &[u8]) -> Option<i64> {
    if s.len() < 19
        || s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b' ' | b'T')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let digit = |i: usize| -> Option<i64> {
        let d = s[i].wrapping_sub(b'0');
        (d < 10).then_some(d as i64)
    };
    let two = |i: usize| -> Option<i64> { Some(digit(i)? * 10 + digit(i + 1)?) };
    let year = two(0)? * 100 + two(2)?;
    let (month, day) = (two(5)?, two(8)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let time = parse_time(s)?;
    Some(days_from_civil(year, month, day) * 86_400_000_000 + time)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrow(s: &str) -> Option<i64> {
        string_to_datetime(&Utc, s)
            .ok()
            .map(|d| d.timestamp_micros())
    }

    /// Wherever the fast path answers, arrow's parser gives the same value.
    #[test]
    fn fast_path_agrees_with_arrow() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut answered = 0;
        for i in 0..200_000 {
            let year =
                [0, 1, 99, 1600, 1900, 1969, 1970, 2000, 2024, 2100, 9999][next(11) as usize];
            let mut s = format!(
                "{year:04}-{:02}-{:02}{}{:02}:{:02}:{:02}",
                next(14),
                next(33),
                if next(2) == 0 { ' ' } else { 'T' },
                next(26),
                next(62),
                next(62),
            );
            let frac_digits = next(12) as usize;
            if frac_digits > 0 {
                s.push('.');
                for _ in 0..frac_digits {
                    s.push((b'0' + next(10) as u8) as char);
                }
            }
            match i % 50 {
                0 => s.push('Z'),
                1 => s.push_str("+02:00"),
                2 => s = s.replacen('-', "/", 1),
                3 => s.truncate(17),
                _ => {}
            }
            if let Some(v) = parse_micros(s.as_bytes()) {
                answered += 1;
                assert_eq!(Some(v), arrow(&s), "{s}");
            }
            // Through the cache, after a value of the same date or of another.
            let mut cache = DateCache::default();
            let _ = parse_micros_with(b"2024-01-01 00:00:00", &mut cache);
            assert_eq!(
                parse_micros_with(s.as_bytes(), &mut cache),
                parse_micros(s.as_bytes()),
                "{s}"
            );
            assert_eq!(
                parse_micros_with(s.as_bytes(), &mut cache),
                parse_micros(s.as_bytes()),
                "{s}"
            );
        }
        assert!(answered > 50_000, "the fast path answered only {answered}");
        assert_eq!(
            parse_micros(b"2024-02-29 23:59:59.9999999"),
            arrow("2024-02-29 23:59:59.9999999")
        );
        assert_eq!(parse_micros(b"2023-02-29 00:00:00"), None);
        assert_eq!(parse_micros(b"1969-12-31T23:59:59.5"), Some(-500_000));
    }
}
