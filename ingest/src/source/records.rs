//! Kafka records → table changes, straight to Arrow.
//!
//! A poll's records arrive as one [`RawBatch`]: every decodable value is laid end to end in
//! one buffer, newline-separated, so the fast path is a single arrow-json (or arrow-csv)
//! decode of the whole batch. When that fails, chunks are retried, then single records, so
//! a bad record is rejected with its own reason while every good record around it lands.
//! Timestamp columns are decoded as text first, which accepts RFC 3339 strings and epoch
//! numbers (in `epoch_unit`) alike.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StructArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use eddy_proto::{Error, ErrorCode, Result};

use super::options::{DecodeOptions, EpochUnit, RecordFormat};
use crate::validate::conform_batch;

/// Where one record came from and where its bytes are in its [`RawBatch`].
#[derive(Debug, Clone)]
pub struct RecordMeta {
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp (producer create time), in milliseconds.
    pub timestamp_ms: Option<i64>,
    /// Range in [`RawBatch::keys`].
    pub key: Option<Range<usize>>,
    /// Range in [`RawBatch::values`]; `None` for tombstones and records rejected unread.
    pub value: Option<Range<usize>>,
    /// Set when the record is rejected before decoding (too large, no value).
    pub early_error: Option<String>,
    /// The undecoded payload of an early-rejected record (truncated), for `system.rejected`.
    pub raw: Option<Vec<u8>>,
}

/// The records of one poll.
#[derive(Debug, Default)]
pub struct RawBatch {
    pub values: Vec<u8>,
    pub keys: Vec<u8>,
    pub records: Vec<RecordMeta>,
}

/// The most bytes of a rejected payload kept in `system.rejected`.
pub const REJECTED_PAYLOAD_BYTES: usize = 64 * 1024;

impl RawBatch {
    /// Adds a record, rejecting it early when it is too large or (outside CDC) empty.
    pub fn push(
        &mut self,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        opts: &DecodeOptions,
    ) {
        let key = key.map(|k| {
            let start = self.keys.len();
            self.keys.extend_from_slice(k);
            start..self.keys.len()
        });
        let mut meta = RecordMeta {
            partition,
            offset,
            timestamp_ms,
            key,
            value: None,
            early_error: None,
            raw: None,
        };
        match value {
            Some(v) if v.len() > opts.max_record_bytes => {
                meta.early_error = Some(format!(
                    "record of {} bytes exceeds max_record_bytes ({})",
                    v.len(),
                    opts.max_record_bytes
                ));
                meta.raw = Some(v[..v.len().min(REJECTED_PAYLOAD_BYTES)].to_vec());
            }
            Some(v) if !v.iter().all(|b| b.is_ascii_whitespace()) => {
                let start = self.values.len();
                self.values.extend_from_slice(v);
                meta.value = Some(start..self.values.len());
                self.values.push(b'\n');
            }
            _ if opts.format == RecordFormat::DebeziumJson => {} // tombstone: nothing to do
            _ => meta.early_error = Some("record has no value".into()),
        }
        self.records.push(meta);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn clear(&mut self) {
        self.values.clear();
        self.keys.clear();
        self.records.clear();
    }

    pub fn key_text(&self, i: usize) -> Option<String> {
        let r = self.records[i].key.clone()?;
        Some(String::from_utf8_lossy(&self.keys[r]).into_owned())
    }

    pub fn payload_text(&self, i: usize) -> Option<String> {
        let m = &self.records[i];
        let bytes = match (&m.value, &m.raw) {
            (Some(r), _) => &self.values[r.clone()],
            (None, Some(raw)) => raw.as_slice(),
            (None, None) => return None,
        };
        let bytes = &bytes[..bytes.len().min(REJECTED_PAYLOAD_BYTES)];
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// One step of applying a batch to a table, in record order.
#[derive(Debug, Clone)]
pub enum Change {
    /// Rows to append (or upsert, on primary-key tables), in the table's schema.
    Upsert(RecordBatch),
    /// Primary-key columns of rows to delete.
    Delete(RecordBatch),
}

/// What a [`RawBatch`] decoded to.
#[derive(Debug, Default)]
pub struct Decoded {
    pub changes: Vec<Change>,
    /// Record index in the raw batch → reason.
    pub rejected: Vec<(usize, String)>,
    pub rows: u64,
}

enum Op {
    Upsert,
    Delete,
    Skip,
    Invalid(String),
}

/// Rows decoded from a byte range, one per record.
enum Rows {
    Append(RecordBatch),
    Cdc {
        after: RecordBatch,
        before: RecordBatch,
        ops: Vec<Op>,
    },
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Append(b) => b.num_rows(),
            Rows::Cdc { ops, .. } => ops.len(),
        }
    }
}

/// A node of the nested schema that arrow-json decodes into.
#[derive(Default)]
struct PathTree {
    children: Vec<(String, PathNode)>,
}

enum PathNode {
    Leaf(DataType),
    Inner(PathTree),
}

impl PathTree {
    fn insert(&mut self, path: &[String], ty: DataType) -> Result<()> {
        let (head, rest) = path.split_first().expect("paths are non-empty");
        let pos = self.children.iter().position(|(n, _)| n == head);
        match (pos, rest.is_empty()) {
            (None, true) => self.children.push((head.clone(), PathNode::Leaf(ty))),
            (None, false) => {
                let mut t = PathTree::default();
                t.insert(rest, ty)?;
                self.children.push((head.clone(), PathNode::Inner(t)));
            }
            (Some(i), false) => match &mut self.children[i].1 {
                PathNode::Inner(t) => t.insert(rest, ty)?,
                PathNode::Leaf(_) => return Err(path_conflict(path)),
            },
            (Some(_), true) => return Err(path_conflict(path)),
        }
        Ok(())
    }

    fn fields(&self) -> Fields {
        self.children
            .iter()
            .map(|(name, node)| match node {
                PathNode::Leaf(ty) => Field::new(name, ty.clone(), true),
                PathNode::Inner(t) => Field::new(name, DataType::Struct(t.fields()), true),
            })
            .collect()
    }
}

fn path_conflict(path: &[String]) -> Error {
    Error::new(
        ErrorCode::InvalidSourceOption,
        format!(
            "JSON path {} is used twice or inside another column's value",
            path.join(".")
        ),
    )
}

fn decode_type(ty: &DataType) -> DataType {
    match ty {
        DataType::Timestamp(..) => DataType::Utf8,
        other => other.clone(),
    }
}

/// Decodes records of one format into changes for one table.
#[derive(Debug)]
pub struct RecordDecoder {
    table: SchemaRef,
    /// The table's schema with every column nullable: decoded rows before NOT NULL checks.
    nullable: SchemaRef,
    key_columns: Vec<String>,
    opts: DecodeOptions,
    /// What arrow-json / arrow-csv decode into.
    decode_schema: SchemaRef,
    /// Column → path inside a decoded row (JSON); empty for CSV.
    paths: Vec<(String, Vec<String>)>,
}

/// Records per retry chunk when a whole batch fails to decode.
const CHUNK: usize = 256;

fn err(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::DecodeInput, msg)
}

impl RecordDecoder {
    pub fn new(table: SchemaRef, key_columns: Vec<String>, opts: DecodeOptions) -> Result<Self> {
        for c in opts.paths.keys().chain(opts.csv_columns.iter()) {
            if table.field_with_name(c).is_err() {
                return Err(Error::new(
                    ErrorCode::ColumnNotFound,
                    format!("source option names column \"{c}\", which the table does not have"),
                ));
            }
        }
        if opts.format == RecordFormat::DebeziumJson && key_columns.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidSourceOption,
                "format debezium-json needs a table with a PRIMARY KEY (updates and deletes are by key)",
            ));
        }
        let paths: Vec<(String, Vec<String>)> = table
            .fields()
            .iter()
            .map(|f| {
                let p = opts
                    .paths
                    .get(f.name())
                    .cloned()
                    .unwrap_or_else(|| vec![f.name().clone()]);
                (f.name().clone(), p)
            })
            .collect();
        let decode_schema = match opts.format {
            RecordFormat::Json | RecordFormat::DebeziumJson => {
                let mut row = PathTree::default();
                for (name, p) in &paths {
                    let f = table.field_with_name(name).expect("table column");
                    row.insert(p, decode_type(f.data_type()))?;
                }
                let row_fields = row.fields();
                if opts.format == RecordFormat::Json {
                    Schema::new(row_fields)
                } else {
                    let envelope = Fields::from(vec![
                        Field::new("before", DataType::Struct(row_fields.clone()), true),
                        Field::new("after", DataType::Struct(row_fields), true),
                        Field::new("op", DataType::Utf8, true),
                    ]);
                    let mut fields: Vec<Field> =
                        envelope.iter().map(|f| f.as_ref().clone()).collect();
                    fields.push(Field::new("payload", DataType::Struct(envelope), true));
                    Schema::new(fields)
                }
            }
            RecordFormat::Csv { .. } => {
                let cols: Vec<String> = if opts.csv_columns.is_empty() {
                    table.fields().iter().map(|f| f.name().clone()).collect()
                } else {
                    opts.csv_columns.clone()
                };
                Schema::new(
                    cols.iter()
                        .map(|c| {
                            let f = table.field_with_name(c).expect("checked above");
                            Field::new(c, decode_type(f.data_type()), true)
                        })
                        .collect::<Vec<_>>(),
                )
            }
        };
        let nullable = Arc::new(Schema::new(
            table
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            table,
            nullable,
            key_columns,
            opts,
            decode_schema: Arc::new(decode_schema),
            paths,
        })
    }

    /// Decodes every record of `raw`; never fails as a whole: bad records are rejected.
    pub fn decode(&self, raw: &RawBatch) -> Decoded {
        let mut out = Decoded::default();
        let mut live = Vec::with_capacity(raw.records.len());
        for (i, m) in raw.records.iter().enumerate() {
            if let Some(e) = &m.early_error {
                out.rejected.push((i, e.clone()));
            } else if m.value.is_some() {
                live.push(i);
            }
        }
        if live.is_empty() {
            return out;
        }
        match self.decode_records(raw, &live) {
            Ok(rows) => self.emit(rows, &live, &mut out),
            Err(_) => {
                for chunk in live.chunks(CHUNK) {
                    match self.decode_records(raw, chunk) {
                        Ok(rows) => self.emit(rows, chunk, &mut out),
                        Err(_) => {
                            for &i in chunk {
                                match self.decode_records(raw, &[i]) {
                                    Ok(rows) => self.emit(rows, &[i], &mut out),
                                    Err(e) => out.rejected.push((i, e.message)),
                                }
                            }
                        }
                    }
                }
            }
        }
        out.rejected.sort_by_key(|(i, _)| *i);
        out
    }

    /// Decodes records `idx` (contiguous in `raw.values`), one row each.
    fn decode_records(&self, raw: &RawBatch, idx: &[usize]) -> Result<Rows> {
        let first = raw.records[idx[0]].value.clone().expect("live record");
        let last = raw.records[idx[idx.len() - 1]]
            .value
            .clone()
            .expect("live record");
        let bytes = &raw.values[first.start..last.end + 1];
        let rows = self.decode_bytes(bytes, idx.len())?;
        if rows.len() != idx.len() {
            return Err(err(format!(
                "expected one row per record, got {} rows from {} records",
                rows.len(),
                idx.len()
            )));
        }
        Ok(rows)
    }

    fn decode_bytes(&self, bytes: &[u8], records: usize) -> Result<Rows> {
        let batch = match self.opts.format {
            RecordFormat::Csv { delimiter } => {
                let reader = arrow_csv::ReaderBuilder::new(Arc::clone(&self.decode_schema))
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .with_batch_size(records + 1)
                    .build_buffered(Cursor::new(bytes))
                    .map_err(|e| err(format!("cannot decode CSV record: {e}")))?;
                let batches = reader
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| err(format!("cannot decode CSV record: {e}")))?;
                arrow::compute::concat_batches(&self.decode_schema, &batches)
                    .map_err(|e| err(format!("cannot decode CSV record: {e}")))?
            }
            _ => {
                let mut d = arrow_json::ReaderBuilder::new(Arc::clone(&self.decode_schema))
                    .with_coerce_primitive(true)
                    .with_batch_size(records + 1)
                    .build_decoder()
                    .map_err(|e| err(e.to_string()))?;
                let mut rest = bytes;
                while !rest.is_empty() {
                    let n = d
                        .decode(rest)
                        .map_err(|e| err(format!("cannot decode JSON record: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    rest = &rest[n..];
                }
                match d
                    .flush()
                    .map_err(|e| err(format!("cannot decode JSON record: {e}")))?
                {
                    Some(b) => b,
                    None => RecordBatch::new_empty(Arc::clone(&self.decode_schema)),
                }
            }
        };
        match self.opts.format {
            RecordFormat::Json => Ok(Rows::Append(
                self.table_rows(batch.columns(), batch.schema().fields())?,
            )),
            RecordFormat::Csv { .. } => {
                let cols = self
                    .table
                    .fields()
                    .iter()
                    .map(|f| match batch.column_by_name(f.name()) {
                        Some(c) => self.finish_column(f, c),
                        None => Ok(arrow::array::new_null_array(
                            f.data_type(),
                            batch.num_rows(),
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let b = RecordBatch::try_new(Arc::clone(&self.nullable), cols)
                    .map_err(|e| err(e.to_string()))?;
                Ok(Rows::Append(b))
            }
            RecordFormat::DebeziumJson => self.cdc_rows(&batch),
        }
    }

    /// The table columns of decoded rows whose top-level fields are `fields`.
    fn table_rows(&self, columns: &[ArrayRef], fields: &Fields) -> Result<RecordBatch> {
        let root = StructArray::new(fields.clone(), columns.to_vec(), None);
        let cols = self
            .paths
            .iter()
            .map(|(name, path)| {
                let f = self.table.field_with_name(name).expect("table column");
                let mut arr: ArrayRef = Arc::new(root.clone());
                for key in path {
                    arr = Arc::clone(
                        arr.as_struct()
                            .column_by_name(key)
                            .expect("decode schema has every path"),
                    );
                }
                self.finish_column(f, &arr)
            })
            .collect::<Result<Vec<_>>>()?;
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(root.len()));
        RecordBatch::try_new_with_options(Arc::clone(&self.nullable), cols, &options)
            .map_err(|e| err(e.to_string()))
    }

    /// Converts a decoded column to the table type (text timestamps to timestamps).
    fn finish_column(&self, f: &Field, arr: &ArrayRef) -> Result<ArrayRef> {
        match f.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                let text = arr.as_string::<i32>();
                let mut out = Vec::with_capacity(text.len());
                for v in text.iter() {
                    out.push(match v {
                        None => None,
                        Some(s) => Some(parse_time(s, self.opts.epoch_unit).ok_or_else(|| {
                            Error::new(
                                ErrorCode::InvalidValue,
                                format!(
                                    "column \"{}\": \"{s}\" is not a timestamp (RFC 3339, or epoch {})",
                                    f.name(),
                                    unit_name(self.opts.epoch_unit)
                                ),
                            )
                        })?),
                    });
                }
                let a = TimestampMicrosecondArray::from(out).with_timezone_opt(tz.clone());
                Ok(Arc::new(a))
            }
            _ => Ok(Arc::clone(arr)),
        }
    }

    fn cdc_rows(&self, batch: &RecordBatch) -> Result<Rows> {
        let payload = batch
            .column_by_name("payload")
            .expect("envelope has payload")
            .as_struct();
        // With the schema wrapper the event is under `payload`; without, at the top level.
        let pick = |name: &str| -> Result<ArrayRef> {
            let top = batch.column_by_name(name).expect("envelope field");
            let inner = payload.column_by_name(name).expect("envelope field");
            let mask = arrow::array::BooleanArray::from(
                (0..batch.num_rows())
                    .map(|i| Some(payload.is_valid(i)))
                    .collect::<Vec<_>>(),
            );
            arrow::compute::kernels::zip::zip(&mask, inner, top).map_err(|e| err(e.to_string()))
        };
        let op = pick("op")?;
        let op = op.as_string::<i32>();
        let before_arr = pick("before")?;
        let after_arr = pick("after")?;
        let before_s = before_arr.as_struct();
        let after_s = after_arr.as_struct();
        let ops: Vec<Op> = (0..batch.num_rows())
            .map(|i| {
                if op.is_null(i) && after_s.is_null(i) && before_s.is_null(i) {
                    return Op::Skip; // e.g. a schema-change or heartbeat event
                }
                match op.is_valid(i).then(|| op.value(i)) {
                    Some("c") | Some("r") | Some("u") if after_s.is_valid(i) => Op::Upsert,
                    Some("c") | Some("r") | Some("u") => {
                        Op::Invalid("Debezium event has no after-image".into())
                    }
                    Some("d") if before_s.is_valid(i) => Op::Delete,
                    Some("d") => Op::Invalid(
                        "Debezium delete has no before-image (key); check the table's REPLICA IDENTITY".into(),
                    ),
                    Some("t") => Op::Skip,
                    Some(other) => Op::Invalid(format!("unknown Debezium op \"{other}\"")),
                    None => Op::Invalid("not a Debezium event (no \"op\")".into()),
                }
            })
            .collect();
        let after = self.table_rows(after_s.columns(), after_s.fields())?;
        let before = self.table_rows(before_s.columns(), before_s.fields())?;
        Ok(Rows::Cdc { after, before, ops })
    }

    fn key_batch(&self, rows: &RecordBatch) -> Result<RecordBatch> {
        let idx: Vec<usize> = self
            .key_columns
            .iter()
            .map(|k| rows.schema().index_of(k).map_err(|e| err(e.to_string())))
            .collect::<Result<_>>()?;
        let keys = rows.project(&idx).map_err(|e| err(e.to_string()))?;
        for (c, name) in keys.columns().iter().zip(&self.key_columns) {
            if c.null_count() > 0 {
                return Err(Error::new(
                    ErrorCode::NotNullViolation,
                    format!("key column \"{name}\" is null in the before-image"),
                ));
            }
        }
        Ok(keys)
    }

    /// Appends decoded rows (record `idx[i]` is row `i`) to `out` as changes.
    fn emit(&self, rows: Rows, idx: &[usize], out: &mut Decoded) {
        match rows {
            Rows::Append(b) => {
                out.rows += b.num_rows() as u64;
                match conform_batch(&self.table, &b, 0) {
                    Ok(b) => push_upsert(&mut out.changes, b),
                    // Only reachable for NOT NULL violations; retry row by row to name them.
                    Err(_) if idx.len() > 1 => {
                        out.rows -= b.num_rows() as u64;
                        for (row, &i) in idx.iter().enumerate() {
                            match conform_batch(&self.table, &b.slice(row, 1), 0) {
                                Ok(one) => {
                                    out.rows += 1;
                                    push_upsert(&mut out.changes, one)
                                }
                                Err(e) => out.rejected.push((i, strip_row(&e.message))),
                            }
                        }
                    }
                    Err(e) => {
                        out.rows -= b.num_rows() as u64;
                        out.rejected.push((idx[0], strip_row(&e.message)))
                    }
                }
            }
            Rows::Cdc { after, before, ops } => {
                let mut run: Vec<u32> = Vec::new();
                let mut run_is_delete = false;
                let flush = |run: &mut Vec<u32>, delete: bool, out: &mut Decoded| {
                    if run.is_empty() {
                        return;
                    }
                    let take = UInt32Array::from(std::mem::take(run));
                    let src = if delete { &before } else { &after };
                    let rows = match take_record_batch(src, &take) {
                        Ok(r) => r,
                        Err(e) => {
                            for &r in take.values() {
                                out.rejected.push((idx[r as usize], e.to_string()));
                            }
                            return;
                        }
                    };
                    let change = if delete {
                        self.key_batch(&rows).map(Change::Delete)
                    } else {
                        conform_batch(&self.table, &rows, 0).map(Change::Upsert)
                    };
                    match change {
                        Ok(c) => {
                            out.rows += take.len() as u64;
                            out.changes.push(c)
                        }
                        Err(_) => {
                            // Name the bad rows one at a time.
                            for &r in take.values() {
                                let one = rows_slice(src, r as usize);
                                let c = if delete {
                                    self.key_batch(&one).map(Change::Delete)
                                } else {
                                    conform_batch(&self.table, &one, 0).map(Change::Upsert)
                                };
                                match c {
                                    Ok(c) => {
                                        out.rows += 1;
                                        out.changes.push(c)
                                    }
                                    Err(e) => {
                                        out.rejected.push((idx[r as usize], strip_row(&e.message)))
                                    }
                                }
                            }
                        }
                    }
                };
                for (row, op) in ops.into_iter().enumerate() {
                    match op {
                        Op::Skip => {}
                        Op::Invalid(reason) => out.rejected.push((idx[row], reason)),
                        Op::Upsert | Op::Delete => {
                            let delete = matches!(op, Op::Delete);
                            if delete != run_is_delete {
                                flush(&mut run, run_is_delete, out);
                                run_is_delete = delete;
                            }
                            run.push(row as u32);
                        }
                    }
                }
                flush(&mut run, run_is_delete, out);
            }
        }
    }
}

fn rows_slice(b: &RecordBatch, row: usize) -> RecordBatch {
    b.slice(row, 1)
}

fn push_upsert(changes: &mut Vec<Change>, b: RecordBatch) {
    if b.num_rows() > 0 {
        changes.push(Change::Upsert(b));
    }
}

/// Errors from [`conform_batch`] start with `row N:`; a record is its own row.
fn strip_row(msg: &str) -> String {
    match msg.strip_prefix("row ") {
        Some(rest) => rest
            .split_once(": ")
            .map(|(_, m)| m.to_string())
            .unwrap_or_else(|| msg.to_string()),
        None => msg.to_string(),
    }
}

fn unit_name(u: EpochUnit) -> &'static str {
    match u {
        EpochUnit::Seconds => "seconds",
        EpochUnit::Millis => "milliseconds",
        EpochUnit::Micros => "microseconds",
        EpochUnit::Nanos => "nanoseconds",
    }
}

/// Parses an event time: an epoch number in `unit`, or an RFC 3339 / ISO 8601 string.
pub fn parse_time(s: &str, unit: EpochUnit) -> Option<i64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<i64>() {
        return unit.to_micros(v);
    }
    if s.starts_with(|c: char| c.is_ascii_digit() || c == '-') && !s.contains([':', 'T', ' ']) {
        if let Ok(f) = s.parse::<f64>() {
            let scale = match unit {
                EpochUnit::Seconds => 1e6,
                EpochUnit::Millis => 1e3,
                EpochUnit::Micros => 1.0,
                EpochUnit::Nanos => 1e-3,
            };
            return f.is_finite().then(|| (f * scale) as i64);
        }
    }
    string_to_timestamp_nanos(s)
        .ok()
        .map(|n| n.div_euclid(1000))
}

/// Per-partition next offsets after `raw` is applied.
pub fn next_offsets(raw: &RawBatch) -> BTreeMap<i32, i64> {
    let mut m = BTreeMap::new();
    for r in &raw.records {
        let e = m.entry(r.partition).or_insert(r.offset + 1);
        *e = (*e).max(r.offset + 1);
    }
    m
}

#[cfg(test)]
mod tests {
    use arrow::array::StringArray;
    use arrow::datatypes::TimeUnit;

    use super::*;

    /// A column's values as text.
    fn column_texts(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
        let Some(c) = batch.column_by_name(column) else {
            return Vec::new();
        };
        let c = arrow::compute::cast(c, &DataType::Utf8).expect("any type casts to text");
        let s: &StringArray = c.as_string::<i32>();
        s.iter().map(|v| v.map(|v| v.to_string())).collect()
    }

    fn opts(format: RecordFormat) -> DecodeOptions {
        DecodeOptions {
            format,
            paths: BTreeMap::new(),
            csv_columns: Vec::new(),
            epoch_unit: EpochUnit::Millis,
            max_record_bytes: 200,
        }
    }

    fn table() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                true,
            ),
        ]))
    }

    fn raw(values: &[Option<&str>], o: &DecodeOptions) -> RawBatch {
        let mut r = RawBatch::default();
        for (i, v) in values.iter().enumerate() {
            r.push(
                0,
                100 + i as i64,
                Some(1),
                Some(b"k"),
                v.map(|v| v.as_bytes()),
                o,
            );
        }
        r
    }

    fn upserts(d: &Decoded) -> RecordBatch {
        let bs: Vec<RecordBatch> = d
            .changes
            .iter()
            .map(|c| match c {
                Change::Upsert(b) => b.clone(),
                Change::Delete(_) => panic!("no deletes expected"),
            })
            .collect();
        arrow::compute::concat_batches(&table(), &bs).unwrap()
    }

    #[test]
    fn json_rejects_bad_records_and_keeps_the_rest() {
        let o = opts(RecordFormat::Json);
        let big = format!("{{\"id\": 9, \"name\": \"{}\"}}", "x".repeat(300));
        let r = raw(
            &[
                Some(r#"{"id": 1, "name": "a", "amount": 1.5, "ts": "2026-01-01T00:00:00Z"}"#),
                Some(r#"{"id": 2, "amount": "abc"}"#),
                Some(r#"{"id": 3, "ts": 1767225600000}"#),
                Some("{not json"),
                Some(r#"{"name": "no id"}"#),
                None,
                Some(&big),
                Some(r#"{"id": 4, "amount": 7, "extra": true}"#),
            ],
            &o,
        );
        let d = RecordDecoder::new(table(), vec![], o).unwrap().decode(&r);
        let rejected: Vec<usize> = d.rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(rejected, vec![1, 3, 4, 5, 6], "{:?}", d.rejected);
        assert!(d.rejected[2].1.contains("\"id\""), "{:?}", d.rejected[2]);
        assert!(d.rejected[4].1.contains("max_record_bytes"));
        let b = upserts(&d);
        assert_eq!(
            column_texts(&b, "id"),
            vec![Some("1".into()), Some("3".into()), Some("4".into())]
        );
        let ts = column_texts(&b, "ts");
        assert_eq!(ts[0], ts[1], "RFC 3339 and epoch ms give the same instant");
        assert_eq!(d.rows, 3);
    }

    #[test]
    fn json_paths_map_nested_values() {
        let mut o = opts(RecordFormat::Json);
        o.paths
            .insert("amount".into(), vec!["data".into(), "amount".into()]);
        o.paths
            .insert("ts".into(), vec!["meta".into(), "time".into()]);
        let r = raw(
            &[Some(
                r#"{"id": 1, "data": {"amount": 2.5}, "meta": {"time": "2026-01-01 00:00:01"}}"#,
            )],
            &o,
        );
        let d = RecordDecoder::new(table(), vec![], o).unwrap().decode(&r);
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let b = upserts(&d);
        assert_eq!(column_texts(&b, "amount"), vec![Some("2.5".into())]);
        assert!(column_texts(&b, "ts")[0]
            .as_deref()
            .unwrap()
            .starts_with("2026-01-01T00:00:01"));
    }

    #[test]
    fn csv_records_decode_with_delimiter() {
        let o = opts(RecordFormat::Csv { delimiter: b'|' });
        let r = raw(
            &[Some("1|a|2.5|1767225600000"), Some("x|b||"), Some("2|||")],
            &o,
        );
        let d = RecordDecoder::new(table(), vec![], o).unwrap().decode(&r);
        assert_eq!(d.rejected.len(), 1, "{:?}", d.rejected);
        assert_eq!(d.rejected[0].0, 1);
        assert_eq!(
            column_texts(&upserts(&d), "id"),
            vec![Some("1".into()), Some("2".into())]
        );
    }

    #[test]
    fn debezium_envelopes_become_ordered_upserts_and_deletes() {
        let o = opts(RecordFormat::DebeziumJson);
        let r = raw(
            &[
                Some(r#"{"before": null, "after": {"id": 1, "name": "a"}, "op": "c"}"#),
                Some(
                    r#"{"schema": {}, "payload": {"before": null, "after": {"id": 2, "name": "b"}, "op": "r"}}"#,
                ),
                Some(r#"{"before": {"id": 1}, "after": null, "op": "d"}"#),
                None, // tombstone
                Some(r#"{"before": {"id": 2}, "after": {"id": 2, "name": "b2"}, "op": "u"}"#),
                Some(r#"{"before": null, "after": {"id": 3}, "op": "x"}"#),
            ],
            &o,
        );
        let d = RecordDecoder::new(table(), vec!["id".into()], o)
            .unwrap()
            .decode(&r);
        assert_eq!(d.rejected.len(), 1, "{:?}", d.rejected);
        assert_eq!(d.rejected[0].0, 5);
        let kinds: Vec<(&str, usize)> = d
            .changes
            .iter()
            .map(|c| match c {
                Change::Upsert(b) => ("upsert", b.num_rows()),
                Change::Delete(b) => ("delete", b.num_rows()),
            })
            .collect();
        assert_eq!(kinds, vec![("upsert", 2), ("delete", 1), ("upsert", 1)]);
        let Change::Delete(k) = &d.changes[1] else {
            unreachable!()
        };
        assert_eq!(k.num_columns(), 1);
        assert_eq!(column_texts(k, "id"), vec![Some("1".into())]);
        assert!(RecordDecoder::new(table(), vec![], opts(RecordFormat::DebeziumJson)).is_err());
    }

    #[test]
    fn event_times_parse_from_epochs_and_text() {
        assert_eq!(parse_time("1000", EpochUnit::Millis), Some(1_000_000));
        assert_eq!(parse_time("1.5", EpochUnit::Seconds), Some(1_500_000));
        assert_eq!(
            parse_time("1970-01-01T00:00:01Z", EpochUnit::Millis),
            Some(1_000_000)
        );
        assert_eq!(parse_time("yesterday", EpochUnit::Millis), None);
    }
}
