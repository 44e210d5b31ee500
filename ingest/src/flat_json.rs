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
            (Column::F64(b), false) => b.append_value(number(token)?.parse().ok()?),
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

/// A JSON integer literal (`-?(0|[1-9][0-9]*)`) that fits i64.
fn int(t: &[u8]) -> Option<i64> {
    let digits = t.strip_prefix(b"-").unwrap_or(t);
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// The token as text if it is a JSON number (`-?int(.digits)?([eE][+-]?digits)?`).
fn number(t: &[u8]) -> Option<&str> {
    let mut i = usize::from(t.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < t.len() && t[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let first = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && t[first] == b'0') {
        return None;
    }
    if t.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    (i == t.len()).then(|| std::str::from_utf8(t).ok())?
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
    let end = i + memchr::memchr2(b'"', b'\\', &line[i..])?;
    (line[end] == b'"').then_some(end)
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
                if line.get(i) != Some(&b'"') {
                    return None;
                }
                let key_end = string_end(line, i + 1)?;
                let key = &line[i + 1..key_end];
                i = skip_ws(line, key_end + 1);
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
                        let end = i + memchr::memchr2(b',', b'}', &line[i..])?;
                        let end = i + line[i..end]
                            .iter()
                            .position(|b| matches!(b, b' ' | b'\t' | b'\r'))
                            .unwrap_or(end - i);
                        (&line[i..end], false, end)
                    }
                };
                let hint = self.next_column;
                let column = if self.names.get(hint) == Some(&key) {
                    Some(hint)
                } else {
                    self.names.iter().position(|n| *n == key)
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
