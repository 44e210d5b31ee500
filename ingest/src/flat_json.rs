//! A one-pass decoder for the NDJSON nearly every producer sends: one flat object per line
//! of strings without escapes, numbers, booleans and nulls.
//!
//! arrow-json first builds a tape of every token and then decodes it column by column,
//! which made JSON decoding half of an HTTP load's CPU. Here each line is scanned once and
//! each value appended to its column's builder. Anything else — nested values, escapes, a
//! value whose JSON type its column does not take as is, a key given twice, invalid UTF-8,
//! malformed JSON — makes [`decode`] answer `None`, and the caller decodes the body with
//! arrow-json, which accepts or rejects it (and names the row). So this path never accepts
//! what arrow-json would not, and gives the same values where both accept.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::timestamps::{parse_micros_with, DateCache};

/// A column being built, by the types this decoder takes.
enum Column {
    Text(StringBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    /// Microseconds, in UTC (`timestamp` and `timestamptz` columns) from text, with the
    /// last date parsed (most values of a body share a few dates).
    Micros(TimestampMicrosecondBuilder, Option<Arc<str>>, DateCache),
}

impl Column {
    fn new(ty: &DataType, rows: usize) -> Option<Column> {
        Some(match ty {
            DataType::Utf8 => Column::Text(StringBuilder::with_capacity(rows, rows * 16)),
            DataType::Int16 => Column::I16(Int16Builder::with_capacity(rows)),
            DataType::Int32 => Column::I32(Int32Builder::with_capacity(rows)),
            DataType::Int64 => Column::I64(Int64Builder::with_capacity(rows)),
            DataType::Float32 => Column::F32(Float32Builder::with_capacity(rows)),
            DataType::Float64 => Column::F64(Float64Builder::with_capacity(rows)),
            DataType::Boolean => Column::Bool(BooleanBuilder::with_capacity(rows)),
            DataType::Timestamp(TimeUnit::Microsecond, tz)
                if tz.as_deref().is_none_or(|z| matches!(z, "UTC" | "+00:00")) =>
            {
                Column::Micros(
                    TimestampMicrosecondBuilder::with_capacity(rows),
                    tz.clone(),
                    DateCache::default(),
                )
            }
            _ => return None,
        })
    }

    fn append_null(&mut self) {
        match self {
            Column::Text(b) => b.append_null(),
            Column::I16(b) => b.append_null(),
            Column::I32(b) => b.append_null(),
            Column::I64(b) => b.append_null(),
            Column::F32(b) => b.append_null(),
            Column::F64(b) => b.append_null(),
            Column::Bool(b) => b.append_null(),
            Column::Micros(b, _, _) => b.append_null(),
        }
    }

    /// Appends a JSON value token (`null`, `true`, a number, or a string's contents when
    /// `string`); `None` when this column does not take it as is.
    fn append(&mut self, token: &[u8], string: bool) -> Option<()> {
        if !string && token == b"null" {
            self.append_null();
            return Some(());
        }
        match (self, string) {
            (Column::Text(b), true) => b.append_value(text(token)?),
            (Column::Micros(b, _, dates), true) => b.append_value(parse_micros_with(token, dates)?),
            (Column::I16(b), false) => b.append_value(int(token)?.try_into().ok()?),
            (Column::I32(b), false) => b.append_value(int(token)?.try_into().ok()?),
            (Column::I64(b), false) => b.append_value(int(token)?),
            (Column::F32(b), false) => b.append_value(number(token)?.parse().ok()?),
            (Column::F64(b), false) => b.append_value(float(token)?),
            (Column::Bool(b), false) => b.append_value(match token {
                b"true" => true,
                b"false" => false,
                _ => return None,
            }),
            _ => return None,
        }
        Some(())
    }

    fn len(&self) -> usize {
        match self {
            Column::Text(b) => b.len(),
            Column::I16(b) => b.len(),
            Column::I32(b) => b.len(),
            Column::I64(b) => b.len(),
            Column::F32(b) => b.len(),
            Column::F64(b) => b.len(),
            Column::Bool(b) => b.len(),
            Column::Micros(b, _, _) => b.len(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Text(b) => Arc::new(b.finish()),
            Column::I16(b) => Arc::new(b.finish()),
            Column::I32(b) => Arc::new(b.finish()),
            Column::I64(b) => Arc::new(b.finish()),
            Column::F32(b) => Arc::new(b.finish()),
            Column::F64(b) => Arc::new(b.finish()),
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Micros(b, tz, _) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
        }
    }
}

/// A JSON integer literal (`-?(0|[1-9][0-9]*)`) that fits i64, checked and read in one
/// pass.
fn int(t: &[u8]) -> Option<i64> {
    let (negative, digits) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, t),
    };
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    // Accumulated negated, so that i64::MIN fits.
    let mut v: i64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d))?;
    }
    if negative {
        Some(v)
    } else {
        v.checked_neg()
    }
}

/// The powers of ten an f64 holds exactly.
const EXACT_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A JSON number (`-?int(.digits)?([eE][+-]?digits)?`), checked and its digits read in
/// one pass.
struct Number {
    negative: bool,
    /// The digits as an integer; meaningful only when `digits` <= 19.
    mantissa: u64,
    digits: usize,
    /// The power of ten the mantissa is scaled by.
    scale: i64,
}

fn scan_number(t: &[u8]) -> Option<Number> {
    let negative = t.first() == Some(&b'-');
    let mut i = usize::from(negative);
    let mut mantissa: u64 = 0;
    let mut digits = |i: &mut usize| {
        let start = *i;
        while let Some(d) = t.get(*i).map(|b| b.wrapping_sub(b'0')).filter(|d| *d <= 9) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
            *i += 1;
        }
        *i - start
    };
    let first = i;
    let int_digits = digits(&mut i);
    if int_digits == 0 || (int_digits > 1 && t[first] == b'0') {
        return None;
    }
    let mut frac_digits = 0;
    if t.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = digits(&mut i);
        if frac_digits == 0 {
            return None;
        }
    }
    let mut exponent: i64 = 0;
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        let negative_exp = t.get(i) == Some(&b'-');
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        while let Some(d) = t.get(i).map(|b| b.wrapping_sub(b'0')).filter(|d| *d <= 9) {
            exponent = (exponent * 10 + i64::from(d)).min(1 << 20);
            i += 1;
        }
        if i == start {
            return None;
        }
        if negative_exp {
            exponent = -exponent;
        }
    }
    (i == t.len()).then_some(Number {
        negative,
        mantissa,
        digits: int_digits + frac_digits,
        scale: exponent - frac_digits as i64,
    })
}

/// A JSON number as f64. Prices and measures have few digits: when the digits fit 2^53 and
/// the decimal exponent is within 22, both are exact f64s and one correctly rounded
/// multiplication or division gives the correctly rounded value (Clinger's fast path, as
/// `str::parse` takes too, after a slower scan); other numbers go to `str::parse`.
fn float(t: &[u8]) -> Option<f64> {
    let n = scan_number(t)?;
    if n.digits <= 19 && n.mantissa <= 1 << 53 && n.scale.abs() <= 22 {
        let m = n.mantissa as f64;
        let p = EXACT_POW10[n.scale.unsigned_abs() as usize];
        let v = if n.scale >= 0 { m * p } else { m / p };
        return Some(if n.negative { -v } else { v });
    }
    // SAFETY: `scan_number` accepted it, so it is ASCII.
    unsafe { std::str::from_utf8_unchecked(t) }.parse().ok()
}

/// The token as text if it is a JSON number.
fn number(t: &[u8]) -> Option<&str> {
    scan_number(t)?;
    // SAFETY: `scan_number` accepted it, so it is ASCII.
    Some(unsafe { std::str::from_utf8_unchecked(t) })
}

fn skip_ws(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && matches!(line[i], b' ' | b'\t' | b'\r') {
        i += 1;
    }
    i
}

/// Where the string starting after the quote at `i - 1` ends (its closing quote), if it
/// has no escapes.
fn string_end(line: &[u8], i: usize) -> Option<usize> {
    let end = i + quote_or_backslash(&line[i..])?;
    (line[end] == b'"').then_some(end)
}

/// The first `"` or `\` in `s`, eight bytes at a time: values are mostly short (symbols,
/// ids, timestamps), too short for a vector search to pay for its setup.
#[inline]
fn quote_or_backslash(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // High bit set in each byte of `x` that is zero; the lowest such bit is exact.
    let zeros = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut at = 0;
    while let Some(word) = s.get(at..at + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let hits = zeros(x ^ (ONES * u64::from(b'"'))) | zeros(x ^ (ONES * u64::from(b'\\')));
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    s[at..]
        .iter()
        .position(|b| matches!(b, b'"' | b'\\'))
        .map(|p| at + p)
}

/// Whether `s` starts with `prefix`, for short prefixes (quoted keys): compared inline
/// eight bytes at a time rather than by a call to `memcmp`.
#[inline]
fn starts_with_short(s: &[u8], prefix: &[u8]) -> bool {
    let n = prefix.len();
    if s.len() < n {
        return false;
    }
    let word =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"));
    if n < 8 {
        return s[..n].iter().zip(prefix).all(|(a, b)| a == b);
    }
    let mut at = 0;
    while at + 8 <= n {
        if word(s, at) != word(prefix, at) {
            return false;
        }
        at += 8;
    }
    // The last, partial word overlaps the one before.
    at == n || word(s, n - 8) == word(prefix, n - 8)
}

/// A string value as text: ASCII (the usual case) needs no further check.
fn text(token: &[u8]) -> Option<&str> {
    if token.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(token) })
    } else {
        std::str::from_utf8(token).ok()
    }
}

struct Decoder<'a> {
    /// Column name → index into `columns`; few columns, so a scan beats hashing.
    names: Vec<&'a [u8]>,
    /// Each name in quotes as it appears as a key, for names that need no escapes.
    quoted: Vec<Option<Vec<u8>>>,
    columns: Vec<Column>,
    seen: Vec<bool>,
    /// The column the next key most likely names: keys come in the same order line after
    /// line.
    next_column: usize,
    batch_rows: usize,
    fields: Vec<Field>,
    out: Vec<RecordBatch>,
}

impl<'a> Decoder<'a> {
    fn line(&mut self, line: &[u8]) -> Option<()> {
        let mut i = skip_ws(line, 0);
        if i == line.len() {
            return Some(()); // blank line
        }
        if line[i] != b'{' {
            return None;
        }
        self.seen.iter_mut().for_each(|s| *s = false);
        self.next_column = 0;
        i = skip_ws(line, i + 1);
        if line.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                // Keys come in the same order line after line: the expected one is
                // recognised by its quoted name, without searching for its end.
                let hint = self.next_column;
                let (column, after_key) = match self.quoted.get(hint).and_then(Option::as_ref) {
                    Some(q) if starts_with_short(&line[i..], q) => (Some(hint), i + q.len()),
                    _ => {
                        if line.get(i) != Some(&b'"') {
                            return None;
                        }
                        let key_end = string_end(line, i + 1)?;
                        let key = &line[i + 1..key_end];
                        (self.names.iter().position(|n| *n == key), key_end + 1)
                    }
                };
                i = skip_ws(line, after_key);
                if line.get(i) != Some(&b':') {
                    return None;
                }
                i = skip_ws(line, i + 1);
                let (token, string, next) = match line.get(i)? {
                    b'"' => {
                        let end = string_end(line, i + 1)?;
                        (&line[i + 1..end], true, end + 1)
                    }
                    b'{' | b'[' => return None,
                    _ => {
                        // A number, true, false or null: up to the next separator.
                        let len = line[i..]
                            .iter()
                            .position(|b| matches!(b, b',' | b'}' | b' ' | b'\t' | b'\r'))?;
                        (&line[i..i + len], false, i + len)
                    }
                };
                if let Some(c) = column {
                    self.next_column = c + 1;
                    if std::mem::replace(&mut self.seen[c], true) {
                        return None; // a key given twice
                    }
                    self.columns[c].append(token, string)?;
                } else if !string && token != b"null" && token != b"true" && token != b"false" {
                    number(token)?; // an ignored key still needs a valid value
                }
                i = skip_ws(line, next);
                match line.get(i)? {
                    b',' => i = skip_ws(line, i + 1),
                    b'}' => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        if skip_ws(line, i) != line.len() {
            return None;
        }
        for (c, seen) in self.columns.iter_mut().zip(&self.seen) {
            if !seen {
                c.append_null();
            }
        }
        if self.columns.first().map(|c| c.len()) >= Some(self.batch_rows) {
            self.flush()?;
        }
        Some(())
    }

    fn flush(&mut self) -> Option<()> {
        if self.columns.first().map(|c| c.len()).unwrap_or(0) == 0 {
            return Some(());
        }
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(|c| c.finish()).collect();
        let schema = Arc::new(Schema::new(self.fields.clone()));
        self.out.push(RecordBatch::try_new(schema, arrays).ok()?);
        Some(())
    }
}

/// Decodes `body` (pieces as received; lines may span them) into batches of about
/// `batch_rows` rows with `schema`'s columns, all nullable (the caller checks NOT NULL);
/// `None` when the body needs arrow-json (see the module docs).
pub(crate) fn decode(
    schema: &SchemaRef,
    body: &[&[u8]],
    batch_rows: usize,
) -> Option<Vec<RecordBatch>> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| Column::new(f.data_type(), batch_rows))
        .collect::<Option<Vec<_>>>()?;
    let mut d = Decoder {
        names: schema
            .fields()
            .iter()
            .map(|f| f.name().as_bytes())
            .collect(),
        quoted: schema
            .fields()
            .iter()
            .map(|f| {
                let n = f.name().as_bytes();
                (!n.iter()
                    .any(|b| matches!(b, b'"' | b'\\') || b.is_ascii_control()))
                .then(|| [&b"\""[..], n, b"\""].concat())
            })
            .collect(),
        seen: vec![false; columns.len()],
        next_column: 0,
        columns,
        batch_rows,
        fields: schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect(),
        out: Vec::new(),
    };
    // A line cut by a piece boundary is put together in `carry`.
    let mut carry: Vec<u8> = Vec::new();
    for piece in body {
        let mut rest: &[u8] = piece;
        if !carry.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(p) => {
                    carry.extend_from_slice(&rest[..p]);
                    d.line(&carry)?;
                    carry.clear();
                    rest = &rest[p + 1..];
                }
                None => {
                    carry.extend_from_slice(rest);
                    continue;
                }
            }
        }
        while let Some(p) = memchr::memchr(b'\n', rest) {
            d.line(&rest[..p])?;
            rest = &rest[p + 1..];
        }
        carry.extend_from_slice(rest);
    }
    if !carry.is_empty() {
        d.line(&carry)?;
    }
    d.flush()?;
    Some(d.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[test]
    fn word_at_a_time_scans_agree_with_plain_ones() {
        let text = "ab\"c\\d\u{e9}\u{a2}\"xyzzy0123456789\"\"";
        let bytes = text.as_bytes();
        for from in 0..bytes.len() {
            for to in from..=bytes.len() {
                let s = &bytes[from..to];
                let plain = s.iter().position(|b| matches!(b, b'"' | b'\\'));
                assert_eq!(quote_or_backslash(s), plain, "{s:?}");
                for n in 0..=s.len().min(20) {
                    for (k, p) in [&s[..n], &bytes[..n]].into_iter().enumerate() {
                        assert_eq!(starts_with_short(s, p), s.starts_with(p), "{s:?} {p:?} {k}");
                    }
                    let mut other = s[..n].to_vec();
                    if let Some(last) = other.last_mut() {
                        *last ^= 1;
                        assert!(!starts_with_short(s, &other));
                    }
                }
            }
        }
        assert!(!starts_with_short(b"abc", b"abcd"));
        assert_eq!(
            quote_or_backslash(&[0xa2, 0x80, 0xdc, b'x', 0, 1, 2, 3, 4, b'\\']),
            Some(9)
        );
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("f", DataType::Float64, true),
            Field::new("i", DataType::Int64, true),
            Field::new("b", DataType::Boolean, true),
        ]))
    }

    fn arrow_json(body: &[u8]) -> Option<RecordBatch> {
        let mut d = arrow_json::ReaderBuilder::new(schema())
            .build_decoder()
            .ok()?;
        d.decode(body).ok()?;
        d.flush().ok()?
    }

    /// Where this decoder answers, arrow-json gives the same batch; the cases it leaves
    /// to arrow-json are the ones it must not take.
    #[test]
    fn agrees_with_arrow_json_or_defers() {
        let take: &[&str] = &[
            r#"{"s":"SYM1","ts":"2024-01-01 00:00:00.5","f":65.007,"i":4100,"b":true}"#,
            r#"{ "i" : -7 , "f": 1e-3, "x": 5, "s": null }"#,
            r#"{"f":-0.0,"i":0,"b":false,"extra":"ignored","ts":"2024-02-29T23:59:59"}"#,
            r#"{}"#,
            r#"{"f":12345678901234567890,"s":"üñí"}"#,
        ];
        for line in take {
            let got =
                decode(&schema(), &[line.as_bytes()], 1024).unwrap_or_else(|| panic!("{line}"));
            let want = arrow_json(line.as_bytes()).unwrap();
            for c in 0..5 {
                assert_eq!(
                    got[0].column(c).to_data(),
                    want.column(c).to_data(),
                    "{line} column {c}"
                );
            }
        }
        let defer: &[&str] = &[
            r#"{"s":"a\"b"}"#,
            r#"{"s":5}"#,
            r#"{"i":1.5}"#,
            r#"{"i":01}"#,
            r#"{"f":.5}"#,
            r#"{"f":NaN}"#,
            r#"{"i":1,"i":2}"#,
            r#"{"s":{"a":1}}"#,
            r#"{"x":[1]}"#,
            r#"{"ts":"2024-01-01T00:00:00Z"}"#,
            r#"{"ts":1700000000}"#,
            r#"{"b":"true"}"#,
            r#"{"s":"a"} x"#,
            r#"{"s":"a""#,
            r#"[1]"#,
        ];
        for line in defer {
            assert!(
                decode(&schema(), &[line.as_bytes()], 1024).is_none(),
                "{line}"
            );
        }
    }

    #[test]
    fn numbers_read_as_str_parse_reads_them() {
        for t in [
            "0",
            "-0",
            "4100",
            "-9223372036854775808",
            "9223372036854775807",
        ] {
            assert_eq!(int(t.as_bytes()), t.parse().ok(), "{t}");
        }
        for t in [
            "9223372036854775808",
            "-9223372036854775809",
            "01",
            "-",
            "",
            "1.0",
            "1e3",
        ] {
            assert_eq!(int(t.as_bytes()), None, "{t}");
        }
        // Decimal renderings of many doubles, short and long, scaled far both ways: the
        // fast path must round exactly as the standard library does.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut texts: Vec<String> = [
            "0",
            "-0.0",
            "65.007",
            "425.9422",
            "1e22",
            "1e23",
            "9007199254740993",
            "0.1",
            "123456789012345678",
            "1234567890123456789",
            "12345678901234567890",
            "1E-5",
            "2.5e+3",
            "4.9406564584124654e-324",
            "1.7976931348623157e308",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x >> 2) * if x & 1 == 0 { 1.0 } else { -1.0 };
            let short = (x % 1_000_000_000) as f64 / [1.0, 10.0, 1e4, 1e9][(x % 4) as usize];
            texts.push(format!("{v:e}"));
            texts.push(format!("{short}"));
            texts.push(format!("{:.3}", short));
        }
        for t in &texts {
            let want: Option<f64> = if number_grammar(t) {
                t.parse().ok()
            } else {
                None
            };
            assert_eq!(
                float(t.as_bytes()).map(f64::to_bits),
                want.map(f64::to_bits),
                "{t}"
            );
        }
        for t in [".5", "1.", "1e", "01.5", "+1", "1x", "NaN", "inf", "--1"] {
            assert_eq!(float(t.as_bytes()), None, "{t}");
        }
    }

    /// JSON's number grammar, as a regular language, for the comparison above.
    fn number_grammar(t: &str) -> bool {
        let t = t.strip_prefix('-').unwrap_or(t);
        let (mantissa, exp) = match t.find(['e', 'E']) {
            Some(p) => (&t[..p], Some(&t[p + 1..])),
            None => (t, None),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (mantissa, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        digits(int)
            && (int == "0" || !int.starts_with('0'))
            && frac.is_none_or(digits)
            && exp.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
    }

    #[test]
    fn lines_across_pieces_and_batches() {
        let body: String = (0..10).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        let pieces: Vec<&[u8]> = body.as_bytes().chunks(3).collect();
        let got = decode(&schema(), &pieces, 4).unwrap();
        assert_eq!(
            got.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert_eq!(got[2].column(3).len(), 2);
        assert_eq!(got[0].column(0).null_count(), 4);
    }
}
