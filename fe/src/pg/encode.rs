//! Arrow results as PostgreSQL rows: field descriptions and text/binary encoding through
//! arrow-pg, floats printed as PostgreSQL prints them, and the guard that stops a result
//! stream when its statement is cancelled or times out.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray, StringArray};
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::TableReference;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{Expr, LogicalPlan};
use eddy_proto::{BeService, ColumnType};
use futures::{stream, Stream, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse};
use pgwire::api::Type;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use tokio_util::sync::CancellationToken;

use super::datetime::{self, SessionTz};
use super::session::pg_error;
use super::text_rows::{Spell, TextRows};
use crate::error::{classify, error_info};
use crate::metrics;

/// How a session wants its results printed.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub(crate) extra_float_digits: i8,
    /// The session's TimeZone, in which `timestamptz` text is printed.
    pub(crate) time_zone: SessionTz,
    /// The result columns' declared types and PostgreSQL names (none known when empty).
    pub(crate) columns: Arc<Columns>,
}

impl Output {
    /// What Describe reports before a session's settings matter (types only).
    pub(crate) fn describe() -> Self {
        Self {
            extra_float_digits: 1,
            time_zone: SessionTz::utc(),
            columns: Columns::none(),
        }
    }

    pub(crate) fn with_columns(mut self, c: &Arc<Columns>) -> Self {
        self.columns = Arc::clone(c);
        self
    }
}

/// What RowDescription says of a statement's result columns beyond their Arrow fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct Columns {
    /// The declared type of each result column that is a table column, by position
    /// (empty when none is known): what RowDescription reports for it.
    pub(crate) declared: Vec<Option<Declared>>,
    /// PostgreSQL's name for each result column DataFusion names otherwise, by position
    /// (see [`super::column_names`]).
    pub(crate) names: Vec<Option<String>>,
}

impl Columns {
    pub(crate) fn of(plan: &LogicalPlan, be: &dyn BeService) -> Arc<Self> {
        Arc::new(Self {
            declared: declared_types(plan, be),
            names: super::column_names::pg_names(plan),
        })
    }

    /// Nothing known beyond the Arrow fields.
    pub(crate) fn none() -> Arc<Self> {
        static NONE: std::sync::OnceLock<Arc<Columns>> = std::sync::OnceLock::new();
        Arc::clone(NONE.get_or_init(|| Arc::new(Columns::default())))
    }
}

/// The field metadata key naming the PostgreSQL type of a computed text column whose
/// Arrow type says less (`json`, `jsonb`), set by the functions that produce one (see
/// [`super::row_fn::typed_udf`]).
pub(crate) const PG_TYPE: &str = "eddy.pg_type";

/// A result column's type as its table declares it, where Arrow's type says less:
/// `varchar(20)` is Utf8 to Arrow but type 1043 with typmod 24 to PostgreSQL clients.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Declared {
    pub(crate) ty: Type,
    pub(crate) typmod: i32,
}

impl Declared {
    /// What PostgreSQL reports for a column of this type, when Arrow's type alone would
    /// report it differently.
    pub(crate) fn of(t: ColumnType) -> Option<Declared> {
        let ty = match t {
            ColumnType::Varchar { .. } => Type::VARCHAR,
            ColumnType::Char { .. } => Type::BPCHAR,
            ColumnType::Numeric { .. } => Type::NUMERIC,
            ColumnType::Jsonb => Type::JSONB,
            _ => return None,
        };
        Some(Declared {
            ty,
            typmod: crate::catalog::pg::typmod(t),
        })
    }

    /// The type a computed column's field names in its [`PG_TYPE`] metadata.
    fn of_field(f: &Field) -> Option<Declared> {
        let ty = match f.metadata().get(PG_TYPE)?.as_str() {
            "json" => Type::JSON,
            "jsonb" => Type::JSONB,
            _ => return None,
        };
        Some(Declared { ty, typmod: -1 })
    }
}

/// The declared types of a plan's output columns: those that are columns of an eddy
/// table (the output field is still qualified by the table, as for `SELECT name FROM t`
/// or `SELECT t.name AS n ...` before the alias), and computed columns whose field names
/// a PostgreSQL type ([`PG_TYPE`]).
pub(crate) fn declared_types(plan: &LogicalPlan, be: &dyn BeService) -> Vec<Option<Declared>> {
    let table_column = |i: usize| {
        let (table, column) = source_column(plan, i)?;
        if !matches!(table.schema(), None | Some("public"))
            || !matches!(table.catalog(), None | Some("eddy"))
        {
            return None;
        }
        let def = be.table(table.table())?;
        Declared::of(def.column(&column)?.ty)
    };
    let declared: Vec<Option<Declared>> = (0..plan.schema().fields().len())
        .map(|i| table_column(i).or_else(|| Declared::of_field(plan.schema().field(i))))
        .collect();
    if declared.iter().all(Option::is_none) {
        vec![]
    } else {
        declared
    }
}

/// The table column output column `i` of `plan` is, if it is one: through aliases
/// (`SELECT name AS n`), sorts, limits and filters.
fn source_column(plan: &LogicalPlan, i: usize) -> Option<(TableReference, String)> {
    match plan {
        LogicalPlan::Projection(p) => {
            let mut e = p.expr.get(i)?;
            while let Expr::Alias(a) = e {
                e = &a.expr;
            }
            let Expr::Column(c) = e else {
                return None;
            };
            match &c.relation {
                Some(r) => Some((r.clone(), c.name.clone())),
                None => {
                    let j = p.input.schema().index_of_column(c).ok()?;
                    source_column(&p.input, j)
                }
            }
        }
        LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(_)) => {
            source_column(plan.inputs().first()?, i)
        }
        _ => {
            let (qualifier, field) = plan.schema().qualified_field(i);
            Some((qualifier?.clone(), field.name().clone()))
        }
    }
}

/// Field descriptions for a schema, each column in the format the client asked for.
pub(crate) fn fields(
    schema: &Schema,
    format: &Format,
    out: &Output,
) -> PgWireResult<Vec<FieldInfo>> {
    let mut options = FormatOptions::default();
    options.extra_float_digits = out.extra_float_digits;
    options.date_style = "ISO, MDY".into();
    let options = Arc::new(options);
    let mut fields =
        arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format, Some(Arc::clone(&options)))?;
    for (i, d) in out.columns.declared.iter().enumerate() {
        let (Some(d), Some(f)) = (d, fields.get_mut(i)) else {
            continue;
        };
        // Only where the Arrow type is the declared type's representation, so a
        // projection that changed the type is described by what it sends.
        let same_repr = match (&d.ty, schema.field(i).data_type()) {
            (t, DataType::Utf8) => {
                [Type::VARCHAR, Type::BPCHAR, Type::JSONB, Type::JSON].contains(t)
            }
            (t, DataType::Decimal128(..)) => *t == Type::NUMERIC,
            _ => false,
        };
        if !same_repr {
            continue;
        }
        *f = FieldInfo::new(
            f.name().to_string(),
            f.table_id(),
            f.column_id(),
            d.ty.clone(),
            f.format(),
        )
        .with_format_options(Arc::clone(&options))
        .with_type_modifier(d.typmod);
    }
    for (i, name) in out.columns.names.iter().enumerate() {
        let (Some(name), Some(f)) = (name, fields.get_mut(i)) else {
            continue;
        };
        *f = FieldInfo::new(
            name.clone(),
            f.table_id(),
            f.column_id(),
            f.datatype().clone(),
            f.format(),
        )
        .with_format_options(Arc::clone(&options))
        .with_type_modifier(f.type_modifier());
    }
    Ok(fields
        .into_iter()
        .map(|f| {
            // PostgreSQL resolves an output column of unknown type (`SELECT NULL`) as text.
            let f = match *f.datatype() == Type::UNKNOWN {
                true => FieldInfo::new(
                    f.name().to_string(),
                    f.table_id(),
                    f.column_id(),
                    Type::TEXT,
                    f.format(),
                )
                .with_format_options(Arc::clone(&options)),
                false => f,
            };
            let len = typlen(f.datatype());
            f.with_type_size(len)
        })
        .collect())
}

/// `pg_type.typlen` of a type eddy returns, as RowDescription carries it: the fixed width
/// in bytes, or -1 for variable-width types (text, numeric, jsonb, arrays, ...).
fn typlen(ty: &Type) -> i16 {
    match *ty {
        Type::BOOL | Type::CHAR => 1,
        Type::INT2 => 2,
        Type::INT4
        | Type::FLOAT4
        | Type::DATE
        | Type::OID
        | Type::REGCLASS
        | Type::REGPROC
        | Type::REGTYPE
        | Type::XID
        | Type::CID => 4,
        Type::INT8
        | Type::FLOAT8
        | Type::TIME
        | Type::TIMESTAMP
        | Type::TIMESTAMPTZ
        | Type::MONEY => 8,
        Type::TIMETZ => 12,
        Type::INTERVAL | Type::UUID => 16,
        Type::NAME => 64,
        _ => -1,
    }
}

/// Why a running statement was stopped.
pub(crate) fn cancelled() -> PgWireError {
    PgWireError::UserError(Box::new(pg_error(
        "57014",
        "canceling statement due to user request",
    )))
}

pub(crate) fn timed_out() -> PgWireError {
    PgWireError::UserError(Box::new(pg_error(
        "57014",
        "canceling statement due to statement timeout",
    )))
}

/// The limits a statement runs under: the session's cancel token and its
/// `statement_timeout` deadline.
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) token: CancellationToken,
    pub(crate) deadline: Option<tokio::time::Instant>,
}

impl Guard {
    pub(crate) fn new(token: CancellationToken, timeout: Option<Duration>) -> Self {
        Self {
            token,
            deadline: timeout.map(|t| tokio::time::Instant::now() + t),
        }
    }

    /// Runs `work` unless the statement is cancelled or times out first.
    pub(crate) async fn run<T>(
        &self,
        work: impl std::future::Future<Output = PgWireResult<T>>,
    ) -> PgWireResult<T> {
        let deadline = self.deadline;
        tokio::select! {
            biased;
            _ = self.token.cancelled() => Err(cancelled()),
            _ = sleep_until(deadline) => Err(timed_out()),
            r = work => r,
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

type BatchStream = Pin<Box<dyn Stream<Item = PgWireResult<RecordBatch>> + Send>>;

/// A record batch stream that ends with 57014 when its statement is cancelled or times
/// out, so a CancelRequest stops a query even while its rows are being sent.
fn guarded(stream: SendableRecordBatchStream, guard: Guard) -> BatchStream {
    stream::unfold(Some((stream, guard)), |state| async move {
        let (mut s, g) = state?;
        let next = {
            let s = &mut s;
            g.run(async move {
                match s.next().await {
                    None => Ok(None),
                    Some(Ok(b)) => Ok(Some(b)),
                    Some(Err(e)) => {
                        metrics::QUERY_ERRORS.inc();
                        Err(PgWireError::UserError(Box::new(error_info(&classify(e)))))
                    }
                }
            })
            .await
        };
        match next {
            Ok(None) => None,
            Ok(Some(b)) => Some((Ok(b), Some((s, g)))),
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

/// How a result is sent: its field descriptions and the columns re-spelled first.
#[derive(Debug)]
pub(crate) struct Encoding {
    pub(crate) fields: Arc<Vec<FieldInfo>>,
    /// Float and date/time columns sent as text, in PostgreSQL's spelling.
    text_cols: Vec<usize>,
    /// The schema of a batch whose `text_cols` are re-spelled.
    text_schema: SchemaRef,
    /// jsonb columns sent in binary.
    binary_jsonb: Vec<usize>,
    /// Interval columns and whether each is sent as text (see [`super::intervals`]).
    intervals: Vec<(usize, bool)>,
    /// How each column is written when every re-spelled column is of a kind
    /// [`super::text_rows`] spells value by value; `None`: through `text_schema`.
    spells: Option<Arc<[Spell]>>,
}

impl Encoding {
    pub(crate) fn new(schema: &Schema, format: &Format, out: &Output) -> PgWireResult<Self> {
        let fields = Arc::new(fields(schema, format, out)?);
        let text_cols: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                format.is_text(*i)
                    && ((matches!(f.data_type(), DataType::Float32 | DataType::Float64)
                        && out.extra_float_digits >= 1)
                        || datetime::is_temporal_text(f.data_type()))
            })
            .map(|(i, _)| i)
            .collect();
        let binary_jsonb: Vec<usize> = fields
            .iter()
            .enumerate()
            .filter(|(i, f)| *f.datatype() == Type::JSONB && !format.is_text(*i))
            .map(|(i, _)| i)
            .collect();
        let intervals: Vec<(usize, bool)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| super::intervals::is_interval(f.data_type()))
            .map(|(i, _)| (i, format.is_text(i)))
            .collect();
        let spells = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match text_cols.contains(&i) {
                true => Spell::of(f.data_type()),
                false => Some(Spell::Arrow),
            })
            .collect::<Option<Arc<[Spell]>>>();
        let mut text_fields: Vec<Field> =
            schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for &i in &text_cols {
            let f = &text_fields[i];
            text_fields[i] = Field::new(f.name(), DataType::Utf8, f.is_nullable());
        }
        Ok(Self {
            fields,
            text_cols,
            text_schema: Arc::new(Schema::new(text_fields)),
            binary_jsonb,
            intervals,
            spells,
        })
    }
}

/// A prepared statement's [`Encoding`]s, kept between its executions: what they depend on
/// (the result schema, the formats asked for, `extra_float_digits` and the statement's
/// columns) rarely changes from one run to the next.
#[derive(Debug, Default)]
pub(crate) struct EncodingCache(parking_lot::Mutex<Vec<Kept>>);

#[derive(Debug)]
struct Kept {
    schema: SchemaRef,
    format: Format,
    extra_float_digits: i8,
    encoding: Arc<Encoding>,
}

/// How many encodings a statement keeps (a few formats or settings at once at most).
const KEPT_MAX: usize = 4;

fn same_format(a: &Format, b: &Format) -> bool {
    match (a, b) {
        (Format::UnifiedText, Format::UnifiedText) => true,
        (Format::UnifiedBinary, Format::UnifiedBinary) => true,
        (Format::Individual(a), Format::Individual(b)) => a == b,
        _ => false,
    }
}

impl EncodingCache {
    /// The encoding of `schema` for `format` and `out`, whose columns must be the
    /// statement's own.
    pub(crate) fn get(
        &self,
        schema: &SchemaRef,
        format: &Format,
        out: &Output,
    ) -> PgWireResult<Arc<Encoding>> {
        {
            let kept = self.0.lock();
            if let Some(k) = kept.iter().find(|k| {
                k.extra_float_digits == out.extra_float_digits
                    && same_format(&k.format, format)
                    && (Arc::ptr_eq(&k.schema, schema) || *k.schema == **schema)
            }) {
                return Ok(Arc::clone(&k.encoding));
            }
        }
        let encoding = Arc::new(Encoding::new(schema, format, out)?);
        let mut kept = self.0.lock();
        if kept.len() >= KEPT_MAX {
            kept.remove(0);
        }
        kept.push(Kept {
            schema: Arc::clone(schema),
            format: format.clone(),
            extra_float_digits: out.extra_float_digits,
            encoding: Arc::clone(&encoding),
        });
        Ok(encoding)
    }
}

/// A query response streaming `stream`'s rows in the given formats; `cache` keeps the
/// encoding for the statement's next runs.
pub(crate) fn rows_response<T: Send + Sync + 'static>(
    stream: SendableRecordBatchStream,
    format: &Format,
    out: &Output,
    guard: Guard,
    keep: T,
    cache: Option<&EncodingCache>,
) -> PgWireResult<QueryResponse> {
    let schema = stream.schema();
    let encoding = match cache {
        Some(c) => c.get(&schema, format, out)?,
        None => Arc::new(Encoding::new(&schema, format, out)?),
    };
    let fields = Arc::clone(&encoding.fields);
    let tz = out.time_zone;
    let rows = guarded(stream, guard)
        .map(move |batch| {
            let _keep = &keep;
            let rows = batch.and_then(|b| data_rows(b, &encoding, tz));
            match rows {
                Ok(rows) => stream::iter(rows).boxed(),
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}

/// The DataRows of one batch of a result.
fn data_rows(
    b: RecordBatch,
    encoding: &Encoding,
    tz: SessionTz,
) -> PgWireResult<Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send>> {
    // Without spells, floats and date/times are re-spelled as text columns first.
    let b = match &encoding.spells {
        Some(_) => b,
        None => as_pg_text(b, &encoding.text_cols, &encoding.text_schema, tz)?,
    };
    let b = as_binary_jsonb(b, &encoding.binary_jsonb)?;
    let b = super::intervals::encode(b, &encoding.intervals)?;
    let fields = Arc::clone(&encoding.fields);
    Ok(match &encoding.spells {
        Some(spells) => Box::new(TextRows::new(b, fields, Arc::clone(spells), tz)),
        None => arrow_pg::datatypes::encode_recordbatch(fields, b),
    })
}

/// Binary jsonb is a version byte (1) and the JSON text; arrow-pg writes a string column's
/// bytes as they are, so the byte goes in front of each value here.
fn as_binary_jsonb(batch: RecordBatch, cols: &[usize]) -> PgWireResult<RecordBatch> {
    if cols.is_empty() {
        return Ok(batch);
    }
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for &i in cols {
        let Some(a) = columns[i].as_string_opt::<i32>() else {
            continue;
        };
        let versioned: StringArray = a.iter().map(|v| v.map(|s| format!("\u{1}{s}"))).collect();
        columns[i] = Arc::new(versioned);
    }
    RecordBatch::try_new(batch.schema(), columns).map_err(|e| PgWireError::ApiError(Box::new(e)))
}

/// Replaces text-format float and date/time columns with their PostgreSQL spelling
/// (`71`, not `71.0`; `1e+20`; `Infinity`; `2024-01-01 00:00:00-05`). The field
/// description still says float8, timestamptz ...
fn as_pg_text(
    batch: RecordBatch,
    cols: &[usize],
    schema: &SchemaRef,
    tz: SessionTz,
) -> PgWireResult<RecordBatch> {
    if cols.is_empty() {
        return Ok(batch);
    }
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for &i in cols {
        let a = &columns[i];
        let text: StringArray = match a.data_type() {
            DataType::Float64 => {
                floats_as_text(a.as_primitive::<Float64Type>().iter(), a.len(), push_f64)
            }
            DataType::Float32 => {
                floats_as_text(a.as_primitive::<Float32Type>().iter(), a.len(), push_f32)
            }
            _ => match datetime::temporal_as_text(a, tz) {
                Some(t) => t,
                // Cannot happen: the columns are floats and date/times.
                None => arrow::compute::cast(a, &DataType::Utf8)
                    .map_err(|e| PgWireError::ApiError(Box::new(e)))?
                    .as_string::<i32>()
                    .clone(),
            },
        };
        columns[i] = Arc::new(text);
    }
    RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| PgWireError::ApiError(Box::new(e)))
}

/// PostgreSQL's float output (extra_float_digits >= 1): the shortest digits that read
/// back exactly, in positional notation for decimal exponents from -4 to below `max_exp`,
/// otherwise `d.ddde+XX`; appended to `out`. `shortest` is ryu's spelling of a finite value
/// (`71.0`, `1e20`, `1.5e-7`, `0.30000000000000004`), taken apart into digits and exponent
/// rather than formatted twice.
fn push_pg_float(out: &mut String, shortest: &str, max_exp: i32) {
    let (negative, r) = match shortest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, shortest),
    };
    let (mantissa, e) = match r.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (r, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // The value is 0.DIGITS x 10^point.
    let mut digits = [0u8; 40];
    let n = int.len() + frac.len();
    if n > digits.len() {
        out.push_str(shortest); // cannot happen for ryu's output
        return;
    }
    digits[..int.len()].copy_from_slice(int.as_bytes());
    digits[int.len()..n].copy_from_slice(frac.as_bytes());
    let lead = digits[..n].iter().take_while(|b| **b == b'0').count();
    if negative {
        out.push('-');
    }
    if lead == n {
        out.push('0');
        return;
    }
    let mut end = n;
    while digits[end - 1] == b'0' {
        end -= 1;
    }
    let d = &digits[lead..end];
    let d = std::str::from_utf8(d).unwrap_or("0");
    let point = int.len() as i32 + e - lead as i32;
    let exp = point - 1;
    if (-4..max_exp).contains(&exp) {
        if point <= 0 {
            out.push_str("0.");
            (0..-point).for_each(|_| out.push('0'));
            out.push_str(d);
        } else if point as usize >= d.len() {
            out.push_str(d);
            (0..point as usize - d.len()).for_each(|_| out.push('0'));
        } else {
            out.push_str(&d[..point as usize]);
            out.push('.');
            out.push_str(&d[point as usize..]);
        }
    } else {
        out.push_str(&d[..1]);
        if d.len() > 1 {
            out.push('.');
            out.push_str(&d[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.abs());
    }
}

/// Appends `v` as PostgreSQL prints a float8.
pub(super) fn push_f64(out: &mut String, v: f64, buf: &mut ryu::Buffer) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        push_pg_float(out, buf.format_finite(v), 15);
    }
}

/// Appends `v` as PostgreSQL prints a float4.
pub(super) fn push_f32(out: &mut String, v: f32, buf: &mut ryu::Buffer) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        push_pg_float(out, buf.format_finite(v), 6);
    }
}

#[cfg(test)]
fn format_f64(v: f64) -> String {
    let mut s = String::new();
    push_f64(&mut s, v, &mut ryu::Buffer::new());
    s
}

#[cfg(test)]
fn format_f32(v: f32) -> String {
    let mut s = String::new();
    push_f32(&mut s, v, &mut ryu::Buffer::new());
    s
}

/// A float column as PostgreSQL's text, built in one buffer.
fn floats_as_text<T: Copy>(
    values: impl Iterator<Item = Option<T>>,
    len: usize,
    push: fn(&mut String, T, &mut ryu::Buffer),
) -> StringArray {
    let mut b = arrow::array::StringBuilder::with_capacity(len, len * 12);
    let (mut s, mut buf) = (String::with_capacity(32), ryu::Buffer::new());
    for v in values {
        match v {
            Some(v) => {
                s.clear();
                push(&mut s, v, &mut buf);
                b.append_value(&s);
            }
            None => b.append_null(),
        }
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value-by-value spelling writes the very bytes the general path (text arrays,
    /// then arrow-pg) writes, for every kind it spells, NULLs and edge values included,
    /// next to columns arrow-pg writes; binary columns are untouched by either.
    #[test]
    fn spelled_rows_equal_the_general_path() {
        use arrow::array::{Float32Array, Float64Array, Int64Array, TimestampMicrosecondArray};
        use arrow::datatypes::TimeUnit;
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
            Field::new("g", DataType::Float32, true),
            Field::new(
                "tz",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(-7), Some(0)])),
                Arc::new(Float64Array::from(vec![
                    Some(71.0),
                    None,
                    Some(f64::NAN),
                    Some(1e20),
                ])),
                Arc::new(Float32Array::from(vec![
                    Some(1.5f32),
                    Some(f32::NEG_INFINITY),
                    None,
                    Some(0.1),
                ])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(0),
                        None,
                        Some(1_700_000_000_123_456),
                        Some(-1),
                    ])
                    .with_timezone("UTC"),
                ),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    None,
                    Some(86_400_000_001),
                    Some(i64::MAX),
                    Some(5),
                ])),
                Arc::new(arrow::array::StringArray::from(vec![
                    Some("a"),
                    None,
                    Some(""),
                    Some("x y"),
                ])),
            ],
        )
        .unwrap();
        let zones = ["UTC", "America/New_York", "+05:30"];
        for (zone, format) in zones.iter().zip([
            Format::UnifiedText,
            Format::UnifiedText,
            Format::Individual(vec![0, 1, 0, 1, 0, 0]),
        ]) {
            let out = Output {
                extra_float_digits: 1,
                time_zone: SessionTz::parse(zone).unwrap(),
                columns: Columns::none(),
            };
            let encoding = Encoding::new(&schema, &format, &out).unwrap();
            assert!(encoding.spells.is_some(), "{zone}");
            let spelled: Vec<DataRow> = data_rows(batch.clone(), &encoding, out.time_zone)
                .unwrap()
                .collect::<PgWireResult<_>>()
                .unwrap();
            let general = Encoding {
                spells: None,
                ..Encoding::new(&schema, &format, &out).unwrap()
            };
            let want: Vec<DataRow> = data_rows(batch.clone(), &general, out.time_zone)
                .unwrap()
                .collect::<PgWireResult<_>>()
                .unwrap();
            assert_eq!(spelled.len(), 4);
            assert_eq!(spelled, want, "{zone}");
        }
    }

    /// The two-pass spelling this module used before ryu: `{:e}` for the digits and
    /// exponent, `{}` for the positional form.
    fn reference(shortest_exp: String, positional: String, max_exp: i32) -> String {
        let (mantissa, exp) = shortest_exp.split_once('e').unwrap();
        let exp: i32 = exp.parse().unwrap();
        if (-4..max_exp).contains(&exp) {
            positional
        } else {
            let sign = if exp < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{:02}", exp.abs())
        }
    }

    /// Equal, or (where two shortest spellings read back as the same value and Rust and
    /// ryu break the tie differently: `312985.12` / `312985.13` in float4) as long and
    /// exact.
    fn same_or_tie(ours: &str, theirs: &str, reads_back: bool) {
        if ours != theirs {
            assert!(
                reads_back && ours.len() == theirs.len(),
                "{ours} vs {theirs}"
            );
        }
    }

    #[test]
    fn floats_agree_with_the_two_pass_spelling() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Random bit patterns, and round-ish decimals.
            let v = if i % 2 == 0 {
                f64::from_bits(x)
            } else {
                (x % 10_000_000) as f64 / 10f64.powi((x % 23) as i32 - 8)
            };
            if v.is_finite() {
                let (ours, theirs) = (
                    format_f64(v),
                    reference(format!("{v:e}"), format!("{v}"), 15),
                );
                same_or_tie(&ours, &theirs, ours.parse::<f64>().ok() == Some(v));
            }
            let f = f32::from_bits(x as u32);
            if f.is_finite() {
                let (ours, theirs) = (
                    format_f32(f),
                    reference(format!("{f:e}"), format!("{f}"), 6),
                );
                same_or_tie(&ours, &theirs, ours.parse::<f32>().ok() == Some(f));
            }
        }
    }

    #[test]
    fn floats_print_like_postgres() {
        assert_eq!(format_f64(71.0), "71");
        assert_eq!(format_f64(71.5), "71.5");
        assert_eq!(format_f64(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_f64(1e20), "1e+20");
        assert_eq!(format_f64(1.5e-7), "1.5e-07");
        assert_eq!(format_f64(0.0001), "0.0001");
        assert_eq!(format_f64(123456789012345.0), "123456789012345");
        assert_eq!(format_f64(1e15), "1e+15");
        assert_eq!(format_f64(-0.0), "-0");
        assert_eq!(format_f64(f64::INFINITY), "Infinity");
        assert_eq!(format_f64(f64::NAN), "NaN");
        assert_eq!(format_f32(1.5), "1.5");
        assert_eq!(format_f32(1e6), "1e+06");
        assert_eq!(format_f32(123456.0), "123456");
        assert_eq!(format_f64(0.0), "0");
        assert_eq!(format_f64(-1.5e-300), "-1.5e-300");
        assert_eq!(
            format_f64(1.7976931348623157e308),
            "1.7976931348623157e+308"
        );
        assert_eq!(format_f64(5e-324), "5e-324");
        assert_eq!(format_f64(100.0), "100");
        assert_eq!(format_f64(0.000123), "0.000123");
        assert_eq!(format_f64(0.0000123), "1.23e-05");
        assert_eq!(format_f64(123456.789), "123456.789");
        assert_eq!(format_f64(-2.5), "-2.5");
        assert_eq!(format_f32(0.1), "0.1");
        assert_eq!(format_f32(-3.25e-9), "-3.25e-09");
        assert_eq!(format_f32(f32::NEG_INFINITY), "-Infinity");
    }
}
