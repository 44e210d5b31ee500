//! `to_char` as PostgreSQL's: of a date, time or timestamp with a PostgreSQL template
//! (`'YYYY-MM-DD HH24:MI'`), and of a number with a number template (`'FM999,990.00'`).
//!
//! DataFusion's `to_char` takes chrono formats and no numbers. This one replaces it:
//! temporal values have their template translated ([`super::rewrite::chrono_format`])
//! and go on to DataFusion's; numbers are formatted here. A template must be known when
//! the statement runs, row by row or constant; the translation is made at run time
//! because only then is it known whether `MI` means minutes or a minus sign.
//!
//! Number templates: `9` (a digit, blank when a leading zero), `0` (a digit, zero
//! kept), `.` or `D` (the decimal point), `,` or `G` (a group separator), `FM` (no
//! padding, no trailing zeros at `9`s), `S` (the sign, anchored to the number), `MI`,
//! `PL`, `SG`, and literal text. Without a sign pattern a minus goes before the first
//! digit and a positive number is padded by a blank, as PostgreSQL does. A number with
//! more integer digits than the template holds prints as `#`s. Numbers round half away
//! from zero; floats are printed first as C's printf prints them (binary rounding, 15
//! digits at most), as PostgreSQL's `float8_to_char` does.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::rewrite::chrono_format;

pub(crate) fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(ToChar {
        signature: Signature::user_defined(Volatility::Stable),
        temporal: datafusion::functions::datetime::to_char(),
    })
}

#[derive(Debug)]
struct ToChar {
    signature: Signature,
    /// DataFusion's `to_char`, for dates, times and timestamps (chrono formats).
    temporal: Arc<ScalarUDF>,
}

impl PartialEq for ToChar {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ToChar {}

impl std::hash::Hash for ToChar {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "to_char".hash(state);
    }
}

fn is_number(t: &DataType) -> bool {
    t.is_numeric()
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let [value, template] = types else {
            return plan_err!("to_char takes a value and a template");
        };
        if !(template.is_string() || template.is_null()) {
            return plan_err!("to_char's template must be text, not {template}");
        }
        let value = match value {
            t if t.is_integer() => DataType::Int64,
            DataType::Decimal128(..) | DataType::Decimal256(..) => value.clone(),
            t if is_number(t) || t.is_null() => DataType::Float64,
            DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Duration(_) => value.clone(),
            other => return plan_err!("to_char cannot format a value of type {other}"),
        };
        Ok(vec![value, DataType::Utf8])
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !is_number(&args.args[0].data_type()) {
            args.args[1] = chrono_templates(&args.args[1])?;
            return self.temporal.invoke_with_args(args);
        }
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let values = numbers(&arrays[0])?;
        let templates = arrays[1].as_string::<i32>();
        let mut cache: Option<(String, Template)> = None;
        let mut out = Vec::with_capacity(values.len());
        for (row, value) in values.into_iter().enumerate() {
            let (Some(v), false) = (value, templates.is_null(row)) else {
                out.push(None);
                continue;
            };
            let t = templates.value(row);
            if cache.as_ref().is_none_or(|(s, _)| s != t) {
                cache = Some((t.to_string(), Template::parse(t)?));
            }
            let (_, template) = cache.as_ref().expect("set just above");
            let text = match v {
                Number::Text(t) => t,
                Number::Float(f) => float_text(f, template.frac_places),
            };
            out.push(Some(template.format(&text)));
        }
        let out: ArrayRef = Arc::new(StringArray::from(out));
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// Templates as chrono formats, for DataFusion's `to_char`.
fn chrono_templates(t: &ColumnarValue) -> Result<ColumnarValue> {
    let translate = |s: &str| match chrono_format(s) {
        Some(f) => Ok(f),
        None => exec_err!("to_char template \"{s}\" uses a pattern eddy does not support"),
    };
    Ok(match t {
        ColumnarValue::Scalar(s) => match s.try_as_str() {
            Some(Some(s)) => ColumnarValue::Scalar(ScalarValue::Utf8(Some(translate(s)?))),
            _ => ColumnarValue::Scalar(ScalarValue::Utf8(None)),
        },
        ColumnarValue::Array(a) => {
            let a = cast(a, &DataType::Utf8)?;
            let out = a
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(translate).transpose())
                .collect::<Result<StringArray>>()?;
            ColumnarValue::Array(Arc::new(out))
        }
    })
}

/// A number to format: exact decimal text (integers, decimals) or a float.
enum Number {
    Text(String),
    Float(f64),
}

fn numbers(a: &ArrayRef) -> Result<Vec<Option<Number>>> {
    if let DataType::Float64 = a.data_type() {
        return Ok(a
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map(Number::Float))
            .collect());
    }
    let text = cast(a, &DataType::Utf8)?;
    Ok(text
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(|s| Number::Text(s.to_string())))
        .collect())
}

/// `v` with `places` fraction digits as C's printf rounds it, at most 15 digits in all
/// (PostgreSQL's `float8_to_char`).
fn float_text(v: f64, places: usize) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let int_digits = format!("{:.0}", v.abs()).len();
    let places = if int_digits >= 15 {
        0
    } else {
        places.min(15 - int_digits)
    };
    format!("{v:.places$}")
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `9` (false) or `0` (true).
    Digit(bool),
    Point,
    Group,
    /// `S`: the sign, anchored to the number.
    Sign,
    Minus,
    Plus,
    PlusMinus,
    Text(String),
}

#[derive(Debug)]
struct Template {
    toks: Vec<Tok>,
    fill: bool,
    /// Digit positions before and after the point.
    int_places: usize,
    frac_places: usize,
}

impl Template {
    fn parse(t: &str) -> Result<Self> {
        let mut toks = Vec::new();
        let mut fill = false;
        let mut rest = t;
        while let Some(c) = rest.chars().next() {
            let upper = rest.to_ascii_uppercase();
            let (tok, len) = match c {
                '9' => (Some(Tok::Digit(false)), 1),
                '0' => (Some(Tok::Digit(true)), 1),
                '.' => (Some(Tok::Point), 1),
                ',' => (Some(Tok::Group), 1),
                '"' => {
                    let Some(end) = rest[1..].find('"') else {
                        return exec_err!("to_char template \"{t}\" has an unterminated quote");
                    };
                    (Some(Tok::Text(rest[1..1 + end].to_string())), end + 2)
                }
                _ if upper.starts_with("FM") => {
                    fill = true;
                    (None, 2)
                }
                _ if upper.starts_with("MI") => (Some(Tok::Minus), 2),
                _ if upper.starts_with("PL") => (Some(Tok::Plus), 2),
                _ if upper.starts_with("SG") => (Some(Tok::PlusMinus), 2),
                'D' | 'd' => (Some(Tok::Point), 1),
                'G' | 'g' => (Some(Tok::Group), 1),
                'S' | 's' => (Some(Tok::Sign), 1),
                c if c.is_ascii_alphabetic() => {
                    return exec_err!(
                        "to_char number template pattern \"{}\" is not supported (in \"{t}\")",
                        &rest[..rest.len().min(4)]
                    )
                }
                c => (Some(Tok::Text(c.to_string())), c.len_utf8()),
            };
            toks.extend(tok);
            rest = &rest[len..];
        }
        if toks.iter().filter(|t| **t == Tok::Point).count() > 1 {
            return exec_err!("to_char template \"{t}\" has more than one decimal point");
        }
        let point = toks
            .iter()
            .position(|t| *t == Tok::Point)
            .unwrap_or(toks.len());
        let digits = |ts: &[Tok]| ts.iter().filter(|t| matches!(t, Tok::Digit(_))).count();
        Ok(Self {
            int_places: digits(&toks[..point]),
            frac_places: digits(&toks[point..]),
            toks,
            fill,
        })
    }

    /// `value` (decimal text) formatted by this template.
    fn format(&self, value: &str) -> String {
        let (neg, int, frac) = round(value, self.frac_places);
        let overflow = int.len() > self.int_places;
        // Integer digits: a zero alone prints only where no fraction follows.
        let int = if int.is_empty() && self.frac_places == 0 {
            "0".to_string()
        } else {
            int
        };
        let lead = self.int_places.saturating_sub(int.len());
        let zero_from = self
            .toks
            .iter()
            .filter(|t| matches!(t, Tok::Digit(_)))
            .take(self.int_places)
            .position(|t| *t == Tok::Digit(true))
            .unwrap_or(self.int_places);
        // `S` before the digits: written with the first of them.
        let first_digit = self.toks.iter().position(|t| matches!(t, Tok::Digit(_)));
        let anchored = self
            .toks
            .iter()
            .position(|t| *t == Tok::Sign)
            .is_some_and(|s| first_digit.is_none_or(|d| s < d));
        let explicit = self
            .toks
            .iter()
            .any(|t| matches!(t, Tok::Sign | Tok::Minus | Tok::Plus | Tok::PlusMinus));
        let sign_char = |out: &mut String| {
            if anchored {
                out.push(if neg { '-' } else { '+' });
            } else if neg {
                out.push('-');
            } else if !self.fill {
                out.push(' ');
            }
        };
        let mut out = String::with_capacity(self.toks.len() + 4);
        let (mut int_pos, mut frac_pos, mut started, mut signed) = (0, 0, false, false);
        let mut in_frac = false;
        // Where the fraction's removable trailing zeros (at `9`s, in FM) may start.
        let mut trim_from: Option<usize> = None;
        let start = |out: &mut String, started: &mut bool, signed: &mut bool| {
            if !*started && !*signed && (anchored || !explicit) {
                sign_char(out);
                *signed = true;
            }
            *started = true;
        };
        for tok in &self.toks {
            match tok {
                Tok::Digit(zero) if !in_frac => {
                    let k = int_pos;
                    int_pos += 1;
                    if overflow {
                        if !started && !self.fill && !explicit {
                            out.push(' ');
                        }
                        started = true;
                        out.push('#');
                    } else if k < lead {
                        if k >= zero_from || *zero {
                            start(&mut out, &mut started, &mut signed);
                            out.push('0');
                        } else if !self.fill {
                            out.push(' ');
                        }
                    } else {
                        start(&mut out, &mut started, &mut signed);
                        out.push(char::from(int.as_bytes()[k - lead]));
                    }
                }
                Tok::Digit(zero) => {
                    let d = if overflow {
                        '#'
                    } else {
                        char::from(frac.as_bytes()[frac_pos])
                    };
                    frac_pos += 1;
                    if *zero {
                        trim_from = None;
                    } else if d != '0' {
                        trim_from = None;
                    } else if trim_from.is_none() {
                        trim_from = Some(out.len());
                    }
                    out.push(d);
                }
                Tok::Point => {
                    if !started && !overflow {
                        start(&mut out, &mut started, &mut signed);
                    }
                    in_frac = true;
                    out.push('.');
                }
                Tok::Group if started => out.push(','),
                Tok::Group if !self.fill => out.push(' '),
                Tok::Group => {}
                Tok::Sign if anchored => {}
                Tok::Sign => out.push(if neg { '-' } else { '+' }),
                Tok::Minus if neg => out.push('-'),
                Tok::Plus if !neg => out.push('+'),
                Tok::Minus | Tok::Plus if !self.fill => out.push(' '),
                Tok::Minus | Tok::Plus => {}
                Tok::PlusMinus => out.push(if neg { '-' } else { '+' }),
                Tok::Text(s) => out.push_str(s),
            }
        }
        if self.fill {
            if let Some(at) = trim_from {
                // Only zeros (at `9`s) from there, up to the next non-digit.
                let tail_end = out[at..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(out.len(), |e| at + e);
                if out[at..tail_end].bytes().all(|b| b == b'0') {
                    out.replace_range(at..tail_end, "");
                }
            }
        }
        out
    }
}

/// Decimal text rounded half away from zero to `places` fraction digits: (negative,
/// integer digits without leading zeros, exactly `places` fraction digits).
fn round(value: &str, places: usize) -> (bool, String, String) {
    let (neg, v) = match value.strip_prefix('-') {
        Some(v) => (true, v),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let mut digits: Vec<u8> = int
        .bytes()
        .chain(frac.bytes().chain(std::iter::repeat(b'0')).take(places))
        .collect();
    if frac.as_bytes().get(places).is_some_and(|d| *d >= b'5') {
        // Carry one into the last kept digit.
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let split = digits.len() - places;
    let int = String::from_utf8_lossy(&digits[..split])
        .trim_start_matches('0')
        .to_string();
    let frac = String::from_utf8_lossy(&digits[split..]).to_string();
    let zero = int.is_empty() && frac.bytes().all(|b| b == b'0');
    (neg && !zero, int, frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &str, t: &str) -> String {
        Template::parse(t).unwrap().format(v)
    }

    #[test]
    fn numbers_as_postgresql_formats_them() {
        // PostgreSQL 15's answers.
        for (v, t, want) in [
            ("10", "999", "  10"),
            ("-5", "999", "  -5"),
            ("10", "FM999", "10"),
            ("0", "999", "   0"),
            ("0.5", "9.99", "  .50"),
            ("-0.5", "9.99", " -.50"),
            ("0.5", "0.99", " 0.50"),
            ("1234.5", "9,999.99", " 1,234.50"),
            ("1234.5", "FM9,999.99", "1,234.5"),
            ("5", "FM999.99", "5."),
            ("5", "FM990.00", "5.00"),
            ("1000", "999", " ###"),
            ("2.675", "9.99", " 2.68"),
            ("-2.5", "S9.9", "-2.5"),
            ("2.5", "S9.9", "+2.5"),
            ("2.5", "9.9S", "2.5+"),
            ("-12", "99MI", "12-"),
            ("12", "99MI", "12 "),
            ("12", "\"n=\"99", "n= 12"),
            ("7", "000", " 007"),
            ("999.96", "999.9", " ###.#"),
            ("-1234.5", "FM9,999.99", "-1,234.5"),
            ("0", "FM999", "0"),
            ("0", "9.99", "  .00"),
            ("12", "FM99MI", "12"),
            ("-7", "FMS999", "-7"),
            ("12", "9G999D9", "    12.0"),
        ] {
            assert_eq!(f(v, t), want, "to_char({v}, '{t}')");
        }
    }

    #[test]
    fn floats_round_as_printf() {
        assert_eq!(float_text(2.675, 2), "2.67");
        assert_eq!(float_text(-0.001, 3), "-0.001");
        assert_eq!(float_text(123456789012.5, 6), "123456789012.500");
    }

    #[test]
    fn unsupported_patterns_are_named() {
        let e = Template::parse("9.99EEEE").unwrap_err().to_string();
        assert!(e.contains("EEEE"), "{e}");
    }
}
