//! Decoders from client encodings (NDJSON, CSV) straight to Arrow in a table's schema.
//!
//! The fast path is arrow-json's / arrow-csv's vectorized decoder. When it fails, a second,
//! row-by-row pass finds the first offending row so the error can say exactly which row,
//! column and value were wrong; the whole request is rejected either way.

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use eddy_proto::{Error, ErrorCode, Result};

use crate::validate::{check_text_value, conform_batch, invalid_value, not_null};
use crate::{flat_json, timestamps};

/// Rows per decoded batch.
pub const DECODE_BATCH_ROWS: usize = 64 * 1024;

/// Bodies larger than this are decoded on several threads, split at line boundaries.
pub const PARALLEL_DECODE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes in a body received in pieces.
fn body_len(body: &[&[u8]]) -> usize {
    body.iter().map(|p| p.len()).sum()
}

/// Splits a body received in pieces (HTTP frames, COPY messages: records may span them)
/// into up to `parts` runs of about equal size, each ending at a newline. No byte is copied.
fn split_lines<'a>(body: &[&'a [u8]], parts: usize) -> Vec<Vec<&'a [u8]>> {
    let total = body_len(body);
    let mut out = Vec::with_capacity(parts);
    let mut cur: Vec<&[u8]> = Vec::new();
    // Bytes placed so far; the next cut goes at the first newline at or after `target`.
    let (mut placed, mut k) = (0, 1);
    let mut target = total / parts.max(1);
    for &piece in body {
        let mut p = piece;
        while !p.is_empty() {
            if k >= parts || placed + p.len() <= target {
                cur.push(p);
                placed += p.len();
                break;
            }
            let from = target - placed;
            match p[from..].iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let (head, tail) = p.split_at(from + i + 1);
                    cur.push(head);
                    placed += head.len();
                    out.push(std::mem::take(&mut cur));
                    p = tail;
                    k += 1;
                    target = (total * k / parts).max(placed);
                }
                None => {
                    // No newline left in this piece: cut at the first one of the next.
                    cur.push(p);
                    placed += p.len();
                    target = placed;
                    break;
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The pieces joined, for the rare paths that need one slice (locating an error).
fn joined(body: &[&[u8]]) -> Vec<u8> {
    body.concat()
}

/// Runs `decode` on pieces of a large body in parallel, keeping row order. Any failure is
/// reported as `None` so the caller can redo the whole body sequentially, which numbers
/// the rows of its error correctly.
fn decode_parallel(
    body: &[&[u8]],
    decode: impl Fn(&[&[u8]]) -> Result<Vec<RecordBatch>> + Sync,
) -> Option<Vec<RecordBatch>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if body_len(body) < PARALLEL_DECODE_BYTES || threads < 2 {
        return None;
    }
    let pieces = split_lines(body, threads);
    let results: Vec<Result<Vec<RecordBatch>>> = std::thread::scope(|s| {
        let handles: Vec<_> = pieces
            .iter()
            .map(|p| {
                std::thread::Builder::new()
                    .name("eddy-decode".into())
                    .spawn_scoped(s, || decode(p))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(Error::new(ErrorCode::Internal, "decoder panicked"))),
                Err(e) => Err(Error::new(
                    ErrorCode::Internal,
                    format!("start decoder: {e}"),
                )),
            })
            .collect()
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r.ok()?);
    }
    Some(out)
}

/// Decodes newline-delimited JSON objects keyed by column name, from a body in pieces as
/// received. Unknown keys are ignored.
pub fn decode_ndjson(schema: &SchemaRef, body: &[&[u8]]) -> Result<Vec<RecordBatch>> {
    if let Some(batches) = decode_parallel(body, |run| decode_ndjson_fast(schema, run)) {
        return Ok(batches);
    }
    match decode_ndjson_fast(schema, body) {
        Ok(batches) => Ok(batches),
        Err(fast_err) => Err(locate_ndjson_error(schema, &joined(body)).unwrap_or(fast_err)),
    }
}

/// The one-pass decoder for flat objects ([`crate::flat_json`]) first; else arrow-json
/// with timestamps read as text and parsed by [`crate::timestamps`], and if that fails,
/// with arrow's own timestamp reading (whose error is reported).
pub(crate) fn decode_ndjson_fast(schema: &SchemaRef, body: &[&[u8]]) -> Result<Vec<RecordBatch>> {
    if let Some(batches) = flat_json::decode(schema, body, DECODE_BATCH_ROWS) {
        let mut out = Batches::new(schema, false);
        for b in batches {
            out.push(Some(b))?;
        }
        return Ok(out.batches);
    }
    if let Some(read) = timestamps::read_schema(schema) {
        if let Ok(b) = decode_ndjson_as(schema, &read, true, body) {
            return Ok(b);
        }
    }
    decode_ndjson_as(schema, schema, false, body)
}

fn decode_ndjson_as(
    schema: &SchemaRef,
    read: &SchemaRef,
    text_timestamps: bool,
    body: &[&[u8]],
) -> Result<Vec<RecordBatch>> {
    let mut decoder = arrow_json::ReaderBuilder::new(std::sync::Arc::clone(read))
        .with_batch_size(DECODE_BATCH_ROWS)
        .build_decoder()
        .map_err(decode_err)?;
    let mut out = Batches::new(schema, text_timestamps);
    // The decoder carries a record cut by a piece boundary over to the next piece.
    for piece in body {
        let mut rest = *piece;
        while !rest.is_empty() {
            let read = decoder.decode(rest).map_err(decode_err)?;
            rest = &rest[read..];
            if read == 0 || decoder.len() >= DECODE_BATCH_ROWS {
                let flushed = decoder.flush().map_err(decode_err)?;
                if !out.push(flushed)? && read == 0 {
                    return Err(Error::new(ErrorCode::Internal, "JSON decoder stalled"));
                }
            }
        }
    }
    out.push(decoder.flush().map_err(decode_err)?)?;
    Ok(out.batches)
}

/// Decoded batches conformed to the table schema, numbering rows across batches.
struct Batches<'a> {
    schema: &'a SchemaRef,
    /// Whether timestamps were read as text (see [`crate::timestamps`]).
    text_timestamps: bool,
    rows: usize,
    batches: Vec<RecordBatch>,
}

impl<'a> Batches<'a> {
    fn new(schema: &'a SchemaRef, text_timestamps: bool) -> Self {
        Self {
            schema,
            text_timestamps,
            rows: 0,
            batches: Vec::new(),
        }
    }

    /// Adds a flushed batch, if any; returns whether there was one.
    fn push(&mut self, b: Option<RecordBatch>) -> Result<bool> {
        let Some(mut b) = b else { return Ok(false) };
        if self.text_timestamps {
            b = timestamps::parse_columns(&b, self.schema)
                .ok_or_else(|| Error::new(ErrorCode::DecodeInput, "a timestamp did not parse"))?;
        }
        let b = conform_batch(self.schema, &b, self.rows)?;
        self.rows += b.num_rows();
        self.batches.push(b);
        Ok(true)
    }
}

fn decode_err(e: arrow::error::ArrowError) -> Error {
    Error::new(ErrorCode::DecodeInput, format!("cannot decode rows: {e}"))
}

/// Walks the body row by row to find the first row that does not fit the schema.
fn locate_ndjson_error(schema: &SchemaRef, body: &[u8]) -> Option<Error> {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            return Some(Error::new(
                ErrorCode::DecodeInput,
                format!("body is not UTF-8: {e}"),
            ))
        }
    };
    let rows = text.lines().filter(|l| !l.trim().is_empty());
    for (i, line) in rows.enumerate() {
        let row = i + 1;
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                return Some(Error::new(
                    ErrorCode::DecodeInput,
                    format!("row {row}: invalid JSON: {e}"),
                ))
            }
        };
        let Some(obj) = value.as_object() else {
            return Some(Error::new(
                ErrorCode::DecodeInput,
                format!("row {row}: expected a JSON object, got {line:?}"),
            ));
        };
        for field in schema.fields() {
            match obj.get(field.name()) {
                None | Some(serde_json::Value::Null) => {
                    if !field.is_nullable() {
                        return Some(not_null(row, field.name()));
                    }
                }
                Some(v) => {
                    let ok = match (v, field.data_type()) {
                        (serde_json::Value::String(s), ty) => check_text_value(s, ty),
                        (serde_json::Value::Bool(_), DataType::Boolean) => true,
                        (serde_json::Value::Number(_), DataType::Boolean | DataType::Utf8) => {
                            matches!(field.data_type(), DataType::Utf8)
                        }
                        (serde_json::Value::Number(n), ty) => check_text_value(&n.to_string(), ty),
                        (serde_json::Value::Bool(_), _) => false,
                        (_, DataType::Utf8) => true,
                        _ => false,
                    };
                    if !ok {
                        return Some(invalid_value(
                            row,
                            field.name(),
                            &v.to_string(),
                            field.data_type(),
                        ));
                    }
                }
            }
        }
    }
    None
}

/// Decodes CSV from a body in pieces as received. Without a header, fields are in table
/// column order; with one, the header names the columns (and must name only table
/// columns). Empty fields are NULL.
pub fn decode_csv(
    schema: &SchemaRef,
    body: &[&[u8]],
    header: bool,
    delimiter: u8,
) -> Result<Vec<RecordBatch>> {
    let (file_schema, body) = if header {
        csv_header_schema(schema, body, delimiter)?
    } else {
        (std::sync::Arc::clone(schema), body.to_vec())
    };
    // Quoted fields may hold newlines, so only quote-free bodies are split by line.
    if !body.iter().any(|p| p.contains(&b'"')) {
        if let Some(batches) = decode_parallel(&body, |run| {
            decode_csv_fast(schema, &file_schema, run, delimiter)
        }) {
            return Ok(batches);
        }
    }
    match decode_csv_fast(schema, &file_schema, &body, delimiter) {
        Ok(b) => Ok(b),
        Err(fast_err) => {
            Err(locate_csv_error(&file_schema, &joined(&body), delimiter).unwrap_or(fast_err))
        }
    }
}

/// Reads the header line and returns the schema of the file's columns plus the rest.
pub(crate) fn csv_header_schema<'a>(
    schema: &SchemaRef,
    body: &[&'a [u8]],
    delimiter: u8,
) -> Result<(SchemaRef, Vec<&'a [u8]>)> {
    // The header line, and the pieces after it (the line may span pieces).
    let mut line = Vec::new();
    let mut rest: Vec<&[u8]> = Vec::new();
    for (i, piece) in body.iter().enumerate() {
        match piece.iter().position(|b| *b == b'\n') {
            Some(p) => {
                line.extend_from_slice(&piece[..p + 1]);
                rest.push(&piece[p + 1..]);
                rest.extend_from_slice(&body[i + 1..]);
                break;
            }
            None => line.extend_from_slice(piece),
        }
    }
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(line.as_slice());
    let mut fields = Vec::new();
    if let Some(rec) = rdr.records().next() {
        let rec =
            rec.map_err(|e| Error::new(ErrorCode::DecodeInput, format!("bad CSV header: {e}")))?;
        for name in rec.iter() {
            let name = name.trim();
            let f = schema.field_with_name(name).map_err(|_| {
                Error::new(
                    ErrorCode::ColumnNotFound,
                    format!("column \"{name}\" does not exist"),
                )
            })?;
            fields.push(f.clone());
        }
    }
    Ok((
        std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
        rest,
    ))
}

/// Vectorized decoding, timestamps as text first (see [`decode_ndjson_fast`]).
pub(crate) fn decode_csv_fast(
    schema: &SchemaRef,
    file_schema: &SchemaRef,
    body: &[&[u8]],
    delimiter: u8,
) -> Result<Vec<RecordBatch>> {
    if let Some(read) = timestamps::read_schema(file_schema) {
        if let Ok(b) = decode_csv_as(schema, &read, true, body, delimiter) {
            return Ok(b);
        }
    }
    decode_csv_as(schema, file_schema, false, body, delimiter)
}

fn decode_csv_as(
    schema: &SchemaRef,
    file_schema: &SchemaRef,
    text_timestamps: bool,
    body: &[&[u8]],
    delimiter: u8,
) -> Result<Vec<RecordBatch>> {
    let mut decoder = arrow_csv::ReaderBuilder::new(std::sync::Arc::clone(file_schema))
        .with_header(false)
        .with_delimiter(delimiter)
        .with_batch_size(DECODE_BATCH_ROWS)
        .build_decoder();
    let mut out = Batches::new(schema, text_timestamps);
    // Records may span pieces; an empty slice at the end tells the decoder the input
    // ended (completing a last record without a newline), so empty pieces before it are
    // skipped.
    let pieces = body.iter().copied().filter(|p| !p.is_empty());
    for piece in pieces.chain(std::iter::once(&[][..])) {
        let mut rest = piece;
        loop {
            let read = decoder.decode(rest).map_err(decode_err)?;
            rest = &rest[read..];
            if decoder.capacity() == 0 {
                out.push(decoder.flush().map_err(decode_err)?)?;
            } else if read == 0 && !rest.is_empty() {
                return Err(Error::new(ErrorCode::Internal, "CSV decoder stalled"));
            }
            if rest.is_empty() {
                break;
            }
        }
    }
    out.push(decoder.flush().map_err(decode_err)?)?;
    Ok(out.batches)
}

fn locate_csv_error(file_schema: &SchemaRef, body: &[u8], delimiter: u8) -> Option<Error> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(body);
    for (i, rec) in rdr.records().enumerate() {
        let row = i + 1;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                return Some(Error::new(
                    ErrorCode::DecodeInput,
                    format!("row {row}: {e}"),
                ))
            }
        };
        if rec.len() != file_schema.fields().len() {
            return Some(Error::new(
                ErrorCode::DecodeInput,
                format!(
                    "row {row}: expected {} fields, found {}",
                    file_schema.fields().len(),
                    rec.len()
                ),
            ));
        }
        for (field, value) in file_schema.fields().iter().zip(rec.iter()) {
            if value.is_empty() {
                if !field.is_nullable() {
                    return Some(not_null(row, field.name()));
                }
            } else if !check_text_value(value, field.data_type()) {
                return Some(invalid_value(row, field.name(), value, field.data_type()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    /// The `id` column of decoded batches.
    fn ids(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn ndjson_roundtrip_and_errors() {
        let ok = b"{\"id\":1,\"ts\":\"2024-01-01 00:00:00.5\",\"name\":\"a\"}\n{\"id\":2}\n";
        let b = decode_ndjson(&schema(), &[&ok[..]]).unwrap();
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 2);

        let bad = b"{\"id\":1}\n{\"id\":2,\"ts\":\"yesterday\"}\n";
        let e = decode_ndjson(&schema(), &[&bad[..]]).unwrap_err();
        assert!(
            e.message.contains("row 2") && e.message.contains("\"ts\""),
            "{}",
            e.message
        );

        let missing = b"{\"id\":1}\n{\"name\":\"x\"}\n";
        let e = decode_ndjson(&schema(), &[&missing[..]]).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotNullViolation, "{}", e.message);
        assert!(
            e.message.contains("row 2") && e.message.contains("\"id\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn large_bodies_decode_in_parallel_in_order() {
        let mut body = String::new();
        for i in 0..200_000 {
            body.push_str(&format!("{i},2024-01-01 00:00:00,name{i}\n"));
        }
        assert!(body.len() > PARALLEL_DECODE_BYTES);
        let batches = decode_csv(&schema(), &[body.as_bytes()], false, b',').unwrap();
        assert_eq!(ids(&batches), (0..200_000).collect::<Vec<i64>>());
        body.push_str("oops,,\n");
        let e = decode_csv(&schema(), &[body.as_bytes()], false, b',').unwrap_err();
        assert!(e.message.contains("row 200001"), "{}", e.message);
    }

    #[test]
    fn csv_with_and_without_header() {
        let b = decode_csv(
            &schema(),
            &[&b"1,2024-01-01T00:00:00,a\n2,,\n"[..]],
            false,
            b',',
        )
        .unwrap();
        assert_eq!(b[0].num_rows(), 2);
        let b = decode_csv(&schema(), &[&b"name,id\nx,5\n"[..]], true, b',').unwrap();
        assert_eq!(b[0].num_rows(), 1);
        let e = decode_csv(&schema(), &[&b"1,,a\nzz,,b\n"[..]], false, b',').unwrap_err();
        assert!(
            e.message.contains("row 2") && e.message.contains("\"id\""),
            "{}",
            e.message
        );
    }

    /// Pieces cut anywhere (mid-record, mid-header, empty ones) decode exactly as the
    /// whole body does, sequentially and in parallel.
    #[test]
    fn bodies_in_pieces_decode_as_the_whole() {
        let cut = |body: &[u8], step: usize| -> Vec<Vec<u8>> {
            let mut out = vec![Vec::new()];
            let (mut i, mut k) = (0, 1);
            while i < body.len() {
                let n = (k * step) % 977 + 1;
                out.push(body[i..(i + n).min(body.len())].to_vec());
                i += n;
                k += 1;
            }
            out.push(Vec::new());
            out
        };
        for rows in [10, 200_000] {
            let want: Vec<i64> = (0..rows).collect();
            let mut csv = String::from("id,name,ts\n");
            let mut json = String::new();
            for i in 0..rows {
                csv.push_str(&format!("{i},n{i},2024-01-01 00:00:0{}\n", i % 10));
                json.push_str(&format!("{{\"id\":{i},\"name\":\"n{i}\"}}\n"));
            }
            for step in [1, 7, 331] {
                let pieces = cut(csv.as_bytes(), step);
                let refs: Vec<&[u8]> = pieces.iter().map(|p| p.as_slice()).collect();
                assert_eq!(
                    ids(&decode_csv(&schema(), &refs, true, b',').unwrap()),
                    want
                );
                let pieces = cut(json.as_bytes(), step);
                let refs: Vec<&[u8]> = pieces.iter().map(|p| p.as_slice()).collect();
                assert_eq!(ids(&decode_ndjson(&schema(), &refs).unwrap()), want);
            }
        }
        // The last record needs no newline, even when it ends a piece list.
        let b = decode_csv(&schema(), &[b"1,,a\n2", b",,b"], false, b',').unwrap();
        assert_eq!(ids(&b), vec![1, 2]);
    }

    #[test]
    fn split_lines_cuts_only_after_newlines() {
        let body: Vec<&[u8]> = vec![b"aaaa\nbb", b"", b"bbbbbbbb", b"b\ncc\nd", b"d\n"];
        for parts in 1..6 {
            let runs = split_lines(&body, parts);
            assert!(runs.len() <= parts);
            let all: Vec<u8> = runs.iter().flat_map(|r| r.concat()).collect();
            assert_eq!(all, body.concat());
            for r in &runs[..runs.len() - 1] {
                assert!(r.concat().ends_with(b"\n"), "{runs:?}");
            }
        }
    }
}
