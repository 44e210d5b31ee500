//! Decoders from client encodings (NDJSON, CSV) straight to Arrow in a table's schema.
//!
//! The fast path is arrow-json's / arrow-csv's vectorized decoder. When it fails, a second,
//! row-by-row pass finds the first offending row so the error can say exactly which row,
//! column and value were wrong; the whole request is rejected either way.

use std::io::Cursor;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use eddy_proto::{Error, ErrorCode, Result};

use crate::validate::{check_text_value, conform_batch, invalid_value, not_null};

/// Rows per decoded batch.
pub const DECODE_BATCH_ROWS: usize = 64 * 1024;

/// Bodies larger than this are decoded on several threads, split at line boundaries.
pub const PARALLEL_DECODE_BYTES: usize = 4 * 1024 * 1024;

/// Splits `body` into up to `parts` pieces that end at newlines.
fn split_lines(body: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(parts);
    let mut rest = body;
    for i in (1..parts).rev() {
        let target = rest.len() / (i + 1);
        match rest[target..].iter().position(|b| *b == b'\n') {
            Some(p) => {
                let (a, b) = rest.split_at(target + p + 1);
                out.push(a);
                rest = b;
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

/// Runs `decode` on pieces of a large body in parallel, keeping row order. Any failure is
/// reported as `None` so the caller can redo the whole body sequentially, which numbers
/// the rows of its error correctly.
fn decode_parallel(
    body: &[u8],
    decode: impl Fn(&[u8]) -> Result<Vec<RecordBatch>> + Sync,
) -> Option<Vec<RecordBatch>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if body.len() < PARALLEL_DECODE_BYTES || threads < 2 {
        return None;
    }
    let pieces = split_lines(body, threads);
    let results: Vec<Result<Vec<RecordBatch>>> = std::thread::scope(|s| {
        let handles: Vec<_> = pieces.iter().map(|p| s.spawn(|| decode(p))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::new(ErrorCode::Internal, "decoder panicked")))
            })
            .collect()
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r.ok()?);
    }
    Some(out)
}

/// Decodes newline-delimited JSON objects keyed by column name. Unknown keys are ignored.
pub fn decode_ndjson(schema: &SchemaRef, body: &[u8]) -> Result<Vec<RecordBatch>> {
    if let Some(batches) = decode_parallel(body, |piece| decode_ndjson_fast(schema, piece)) {
        return Ok(batches);
    }
    match decode_ndjson_fast(schema, body) {
        Ok(batches) => Ok(batches),
        Err(fast_err) => Err(locate_ndjson_error(schema, body).unwrap_or(fast_err)),
    }
}

fn decode_ndjson_fast(schema: &SchemaRef, body: &[u8]) -> Result<Vec<RecordBatch>> {
    let mut decoder = arrow_json::ReaderBuilder::new(std::sync::Arc::clone(schema))
        .with_batch_size(DECODE_BATCH_ROWS)
        .build_decoder()
        .map_err(decode_err)?;
    let mut batches = Vec::new();
    let mut rest = body;
    let mut rows = 0;
    while !rest.is_empty() {
        let read = decoder.decode(rest).map_err(decode_err)?;
        rest = &rest[read..];
        if read == 0 || decoder.len() >= DECODE_BATCH_ROWS {
            if let Some(b) = decoder.flush().map_err(decode_err)? {
                let b = conform_batch(schema, &b, rows)?;
                rows += b.num_rows();
                batches.push(b);
            }
            if read == 0 {
                break;
            }
        }
    }
    if let Some(b) = decoder.flush().map_err(decode_err)? {
        batches.push(conform_batch(schema, &b, rows)?);
    }
    Ok(batches)
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

/// Decodes CSV. Without a header, fields are in table column order; with one, the header
/// names the columns (and must name only table columns). Empty fields are NULL.
pub fn decode_csv(
    schema: &SchemaRef,
    body: &[u8],
    header: bool,
    delimiter: u8,
) -> Result<Vec<RecordBatch>> {
    let (file_schema, body) = if header {
        csv_header_schema(schema, body, delimiter)?
    } else {
        (std::sync::Arc::clone(schema), body)
    };
    // Quoted fields may hold newlines, so only quote-free bodies are split by line.
    if !body.contains(&b'"') {
        if let Some(batches) = decode_parallel(body, |piece| {
            decode_csv_fast(schema, &file_schema, piece, delimiter)
        }) {
            return Ok(batches);
        }
    }
    match decode_csv_fast(schema, &file_schema, body, delimiter) {
        Ok(b) => Ok(b),
        Err(fast_err) => Err(locate_csv_error(&file_schema, body, delimiter).unwrap_or(fast_err)),
    }
}

/// Reads the header line and returns the schema of the file's columns plus the rest.
fn csv_header_schema<'a>(
    schema: &SchemaRef,
    body: &'a [u8],
    delimiter: u8,
) -> Result<(SchemaRef, &'a [u8])> {
    let end = body
        .iter()
        .position(|b| *b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(body.len());
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(&body[..end]);
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
        &body[end..],
    ))
}

fn decode_csv_fast(
    schema: &SchemaRef,
    file_schema: &SchemaRef,
    body: &[u8],
    delimiter: u8,
) -> Result<Vec<RecordBatch>> {
    let reader = arrow_csv::ReaderBuilder::new(std::sync::Arc::clone(file_schema))
        .with_header(false)
        .with_delimiter(delimiter)
        .with_batch_size(DECODE_BATCH_ROWS)
        .build(Cursor::new(body))
        .map_err(decode_err)?;
    let mut rows = 0;
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(decode_err)?;
        let b = conform_batch(schema, &b, rows)?;
        rows += b.num_rows();
        out.push(b);
    }
    Ok(out)
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

    #[test]
    fn ndjson_roundtrip_and_errors() {
        let ok = b"{\"id\":1,\"ts\":\"2024-01-01 00:00:00.5\",\"name\":\"a\"}\n{\"id\":2}\n";
        let b = decode_ndjson(&schema(), ok).unwrap();
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 2);

        let bad = b"{\"id\":1}\n{\"id\":2,\"ts\":\"yesterday\"}\n";
        let e = decode_ndjson(&schema(), bad).unwrap_err();
        assert!(
            e.message.contains("row 2") && e.message.contains("\"ts\""),
            "{}",
            e.message
        );

        let missing = b"{\"id\":1}\n{\"name\":\"x\"}\n";
        let e = decode_ndjson(&schema(), missing).unwrap_err();
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
        let batches = decode_csv(&schema(), body.as_bytes(), false, b',').unwrap();
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, (0..200_000).collect::<Vec<i64>>());
        body.push_str("oops,,\n");
        let e = decode_csv(&schema(), body.as_bytes(), false, b',').unwrap_err();
        assert!(e.message.contains("row 200001"), "{}", e.message);
    }

    #[test]
    fn csv_with_and_without_header() {
        let b = decode_csv(&schema(), b"1,2024-01-01T00:00:00,a\n2,,\n", false, b',').unwrap();
        assert_eq!(b[0].num_rows(), 2);
        let b = decode_csv(&schema(), b"name,id\nx,5\n", true, b',').unwrap();
        assert_eq!(b[0].num_rows(), 1);
        let e = decode_csv(&schema(), b"1,,a\nzz,,b\n", false, b',').unwrap_err();
        assert!(
            e.message.contains("row 2") && e.message.contains("\"id\""),
            "{}",
            e.message
        );
    }
}
