//! PostgreSQL's `format`, `json_build_object` and `width_bucket`, which DataFusion lacks
//! and report queries use: labels built with `format('%s (%s)', name, n)`, a JSON
//! column for a dashboard's table, histogram bins with `width_bucket`.
//!
//! Values print as PostgreSQL prints them (`t`/`f` for booleans, timestamps in the
//! session's zone); `json_build_object` writes PostgreSQL's spacing (`{"a" : 1}`) and
//! returns the JSON as text.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::{ScalarUDF, Volatility};

use super::datetime::{temporal_as_text, SessionTz};
use super::ident::quote_ident;
use super::row_fn;
use crate::error::data_error;
use eddy_proto::ErrorCode;

pub(crate) fn udfs() -> Vec<ScalarUDF> {
    vec![
        row_fn::udf(
            "format",
            Volatility::Stable,
            format_args,
            |_| Ok(DataType::Utf8),
            format,
        ),
        row_fn::typed_udf(
            "json_build_object",
            Volatility::Stable,
            json_args,
            |_| Ok(DataType::Utf8),
            |_| Some("json"),
            json_build_object,
        ),
        row_fn::udf(
            "width_bucket",
            Volatility::Immutable,
            width_bucket_args,
            |_| Ok(DataType::Int32),
            width_bucket,
        ),
    ]
}

/// Whether a value of this type becomes text here (lists and structs do not).
fn printable(t: &DataType) -> bool {
    !t.is_nested()
}

fn format_args(types: &[DataType]) -> Result<Vec<DataType>> {
    let Some((_, rest)) = types.split_first() else {
        return plan_err!("format needs a format string");
    };
    if let Some(t) = rest.iter().find(|t| !printable(t)) {
        return plan_err!("format cannot print a value of type {t}");
    }
    Ok(std::iter::once(DataType::Utf8)
        .chain(rest.iter().cloned())
        .collect())
}

fn pg_text(push: impl FnOnce(&mut String)) -> String {
    let mut s = String::new();
    push(&mut s);
    s
}

/// Each value of `a` as PostgreSQL's text output prints it.
fn texts(a: &ArrayRef, config: &ConfigOptions) -> Result<Vec<Option<String>>> {
    let zone = config
        .execution
        .time_zone
        .as_deref()
        .and_then(SessionTz::parse)
        .unwrap_or_else(SessionTz::utc);
    let text = match a.data_type() {
        t if super::intervals::is_interval(t) => return Ok(super::intervals::texts(a)?),
        DataType::Float64 => {
            let mut buf = ryu::Buffer::new();
            return Ok(a
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.map(|v| pg_text(|s| super::encode::push_f64(s, v, &mut buf))))
                .collect());
        }
        DataType::Float32 => {
            let mut buf = ryu::Buffer::new();
            return Ok(a
                .as_primitive::<Float32Type>()
                .iter()
                .map(|v| v.map(|v| pg_text(|s| super::encode::push_f32(s, v, &mut buf))))
                .collect());
        }
        DataType::Boolean => {
            return Ok(a
                .as_boolean()
                .iter()
                .map(|b| b.map(|b| if b { "t" } else { "f" }.to_string()))
                .collect())
        }
        _ => match temporal_as_text(a, zone) {
            Some(t) => Arc::new(t) as ArrayRef,
            None => cast(a, &DataType::Utf8)?,
        },
    };
    Ok(text
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}

fn quote_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// One row of `format`: `%s`, `%I`, `%L`, `%%`, with `n$` positions, `-` and widths.
fn format_row(fmt: &str, args: &[Option<&str>]) -> Result<String> {
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        let mut spec = String::new();
        let kind = loop {
            match chars.next() {
                Some(k @ ('s' | 'I' | 'L')) => break k,
                Some(d @ ('0'..='9' | '$' | '-')) => spec.push(d),
                Some(other) => {
                    return data_error(
                        ErrorCode::InvalidValue,
                        format!("unrecognized format() type specifier \"{other}\""),
                    )
                }
                None => {
                    return data_error(
                        ErrorCode::InvalidValue,
                        "unterminated format() type specifier",
                    )
                }
            }
        };
        let (position, flags) = match spec.split_once('$') {
            Some((n, rest)) => match n.parse::<usize>() {
                Ok(n) if n > 0 => (n - 1, rest.to_string()),
                _ => {
                    return data_error(
                        ErrorCode::InvalidValue,
                        format!("format specifies argument 0, but arguments are numbered from 1"),
                    )
                }
            },
            None => (next, spec),
        };
        next = position + 1;
        let Some(value) = args.get(position) else {
            return data_error(ErrorCode::InvalidValue, "too few arguments for format()");
        };
        let text = match (kind, value) {
            ('s', v) => v.unwrap_or("").to_string(),
            ('I', Some(v)) => quote_ident(v),
            ('I', None) => {
                return data_error(
                    ErrorCode::InvalidValue,
                    "null values cannot be formatted as an SQL identifier",
                )
            }
            (_, Some(v)) => quote_literal(v),
            (_, None) => "NULL".to_string(),
        };
        let left = flags.starts_with('-');
        let width: usize = flags.trim_start_matches('-').parse().unwrap_or(0);
        let pad = width.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&text);
        }
    }
    Ok(out)
}

fn format(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let fmt = args[0].as_string::<i32>();
    let values = args[1..]
        .iter()
        .map(|a| texts(a, config))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(fmt.len());
    for row in 0..fmt.len() {
        if fmt.is_null(row) {
            out.push(None);
            continue;
        }
        let row_args: Vec<Option<&str>> = values.iter().map(|v| v[row].as_deref()).collect();
        out.push(Some(format_row(fmt.value(row), &row_args)?));
    }
    Ok(Arc::new(StringArray::from(out)))
}

fn json_args(types: &[DataType]) -> Result<Vec<DataType>> {
    if types.len() % 2 != 0 {
        return plan_err!("json_build_object takes an even number of arguments: keys and values");
    }
    if let Some(t) = types.iter().find(|t| !printable(t)) {
        return plan_err!("json_build_object cannot print a value of type {t}");
    }
    Ok(types.to_vec())
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// How a JSON value of this type is written from its text.
#[derive(Clone, Copy)]
enum JsonKind {
    Number,
    Bool,
    /// A timestamp: ISO 8601 with `T` and a full offset.
    Timestamp,
    String,
}

fn json_kind(t: &DataType) -> JsonKind {
    match t {
        t if t.is_integer() => JsonKind::Number,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => JsonKind::Number,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => JsonKind::Number,
        DataType::Boolean => JsonKind::Bool,
        DataType::Timestamp(..) => JsonKind::Timestamp,
        _ => JsonKind::String,
    }
}

fn push_json_value(out: &mut String, kind: JsonKind, text: Option<&str>) {
    let Some(text) = text else {
        out.push_str("null");
        return;
    };
    match kind {
        // NaN and the infinities are not JSON numbers; PostgreSQL quotes them.
        JsonKind::Number if text.parse::<f64>().is_ok_and(f64::is_finite) => out.push_str(text),
        JsonKind::Bool => out.push_str(if text == "t" { "true" } else { "false" }),
        JsonKind::Timestamp => {
            let mut iso = text.replacen(' ', "T", 1);
            // `+05` becomes `+05:00`.
            let offset_at = iso.rfind(['+', '-']).filter(|i| *i > 10);
            if offset_at.is_some_and(|i| iso.len() - i == 3) {
                iso.push_str(":00");
            }
            push_json_string(out, &iso);
        }
        _ => push_json_string(out, text),
    }
}

fn json_build_object(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let rows = args.first().map_or(1, |a| a.len());
    let values = args
        .iter()
        .map(|a| texts(a, config))
        .collect::<Result<Vec<_>>>()?;
    let kinds: Vec<JsonKind> = args.iter().map(|a| json_kind(a.data_type())).collect();
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut s = String::from("{");
        for (pair, chunk) in values.chunks(2).enumerate() {
            let Some(key) = chunk[0][row].as_deref() else {
                return data_error(
                    ErrorCode::InvalidValue,
                    format!("argument {}: key must not be null", pair * 2 + 1),
                );
            };
            if pair > 0 {
                s.push_str(", ");
            }
            push_json_string(&mut s, key);
            s.push_str(" : ");
            push_json_value(&mut s, kinds[pair * 2 + 1], chunk[1][row].as_deref());
        }
        s.push('}');
        out.push(Some(s));
    }
    Ok(Arc::new(StringArray::from(out)))
}

fn width_bucket_args(types: &[DataType]) -> Result<Vec<DataType>> {
    if types.len() != 4 {
        return plan_err!("width_bucket takes an operand, a low bound, a high bound and a count");
    }
    Ok(vec![
        DataType::Float64,
        DataType::Float64,
        DataType::Float64,
        DataType::Int64,
    ])
}

/// PostgreSQL's `width_bucket_float8`: bucket 1..=count of equal widths between the
/// bounds, 0 below and count + 1 above (bounds may be given high to low).
fn bucket(op: f64, low: f64, high: f64, count: i64) -> Result<i32> {
    if count <= 0 {
        return data_error(ErrorCode::InvalidValue, "count must be greater than zero");
    }
    if low == high {
        return data_error(
            ErrorCode::InvalidValue,
            "lower bound cannot equal upper bound",
        );
    }
    if op.is_nan() || low.is_nan() || high.is_nan() {
        return data_error(
            ErrorCode::InvalidValue,
            "operand, lower bound, and upper bound cannot be NaN",
        );
    }
    let b = if low < high {
        if op < low {
            0
        } else if op >= high {
            count + 1
        } else {
            // Rounding may put the top of the last bucket past it; PostgreSQL clamps.
            (((op - low) / (high - low) * count as f64).floor() as i64 + 1).min(count)
        }
    } else if op > low {
        0
    } else if op <= high {
        count + 1
    } else {
        (((low - op) / (low - high) * count as f64).floor() as i64 + 1).min(count)
    };
    i32::try_from(b).or_else(|_| data_error(ErrorCode::OutOfRange, "integer out of range"))
}

fn width_bucket(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let [op, low, high] = [0, 1, 2].map(|i| args[i].as_primitive::<Float64Type>());
    let count = args[3].as_primitive::<Int64Type>();
    let mut out = Vec::with_capacity(op.len());
    for row in 0..op.len() {
        if op.is_null(row) || low.is_null(row) || high.is_null(row) || count.is_null(row) {
            out.push(None);
            continue;
        }
        out.push(Some(bucket(
            op.value(row),
            low.value(row),
            high.value(row),
            count.value(row),
        )?));
    }
    Ok(Arc::new(Int32Array::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_as_postgresql() {
        let f = |fmt: &str, args: &[Option<&str>]| format_row(fmt, args).unwrap();
        assert_eq!(f("%s-%s", &[Some("a"), Some("1")]), "a-1");
        assert_eq!(
            f("%I.%I", &[Some("public"), Some("My Table")]),
            "public.\"My Table\""
        );
        assert_eq!(
            f("x = %L, y = %L", &[Some("it's"), None]),
            "x = 'it''s', y = NULL"
        );
        assert_eq!(f("%2$s %1$s %s", &[Some("a"), Some("b")]), "b a b");
        assert_eq!(
            f("[%5s|%-3s] 100%%", &[Some("ab"), Some("c")]),
            "[   ab|c  ] 100%"
        );
        assert_eq!(f("%s", &[None]), "");
        assert!(format_row("%s %s", &[Some("a")]).is_err());
        assert!(format_row("%d", &[Some("1")]).is_err());
    }

    #[test]
    fn width_bucket_as_postgresql() {
        assert_eq!(bucket(5.0, 0.0, 10.0, 5).unwrap(), 3);
        assert_eq!(bucket(-1.0, 0.0, 10.0, 5).unwrap(), 0);
        assert_eq!(bucket(10.0, 0.0, 10.0, 5).unwrap(), 6);
        assert_eq!(bucket(5.0, 10.0, 0.0, 5).unwrap(), 3);
        assert_eq!(bucket(0.0, 10.0, 0.0, 5).unwrap(), 6);
        assert!(bucket(1.0, 0.0, 0.0, 5).is_err());
        assert!(bucket(1.0, 0.0, 1.0, 0).is_err());
    }

    #[test]
    fn json_values_are_typed() {
        let mut s = String::new();
        push_json_value(&mut s, JsonKind::Timestamp, Some("2026-01-01 10:00:00+00"));
        push_json_value(&mut s, JsonKind::Number, Some("NaN"));
        push_json_value(&mut s, JsonKind::Bool, Some("t"));
        push_json_value(&mut s, JsonKind::String, Some("a\"b\n"));
        assert_eq!(s, r#""2026-01-01T10:00:00+00:00""NaN"true"a\"b\n""#);
    }
}
