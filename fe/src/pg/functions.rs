//! Functions drivers call right after connecting whose answer depends on the session
//! (`pg_backend_pid()`, `current_schema()`, `current_user`, `current_setting(name)`),
//! registered on each statement's planning state, the backend signalling functions,
//! `clock_timestamp()` and `pg_size_pretty`.

use std::sync::Arc;

use super::startup::Registry;
use arrow::array::AsArray;
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::registry::FunctionRegistry;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// A function of no arguments that returns one value for the whole statement.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConstFn {
    name: String,
    aliases: Vec<String>,
    value: ScalarValue,
    signature: Signature,
}

impl ConstFn {
    pub(crate) fn udf(name: &str, aliases: &[&str], value: ScalarValue) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(ConstFn {
            name: name.to_string(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            value,
            signature: Signature::exact(vec![], Volatility::Stable),
        }))
    }
}

impl ScalarUDFImpl for ConstFn {
    fn name(&self) -> &str {
        &self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

/// The version string SQLAlchemy's and others' regexes parse (`PostgreSQL 16.6 ...`).
pub(crate) fn version_string() -> String {
    format!(
        "PostgreSQL {} on x86_64-pc-linux-gnu, compiled by eddy {}, 64-bit",
        super::session::SERVER_VERSION,
        env!("CARGO_PKG_VERSION")
    )
}

/// `version()` for every front end (DataFusion's own names DataFusion).
pub(crate) fn version_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(ConstFn {
        name: "version".into(),
        aliases: vec![],
        value: ScalarValue::Utf8(Some(version_string())),
        signature: Signature::exact(vec![], Volatility::Stable),
    })
}

/// Registers the session's constant functions, and the backend signalling functions,
/// on a statement's planning state.
pub(crate) fn register(
    state: &mut SessionState,
    pid: i32,
    schema: &str,
    user: &str,
    registry: &Arc<Registry>,
    settings: Vec<(String, String)>,
) -> Result<()> {
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(CurrentSetting {
        settings,
        signature: Signature::variadic_any(Volatility::Stable),
    })))?;
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(SizePretty {
        signature: Signature::any(1, Volatility::Immutable),
    })))?;
    for signal in [Signal::Cancel, Signal::Terminate] {
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(SignalBackend {
            signal,
            registry: Arc::clone(registry),
            // Volatile: a call must run when the statement runs, never be folded into
            // a constant while planning.
            signature: Signature::variadic_any(Volatility::Volatile),
        })))?;
    }
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(ClockTimestamp {
        signature: Signature::exact(vec![], Volatility::Volatile),
    })))?;
    // PostgreSQL's names for the statement's start time, which is what `now()` gives.
    let now = datafusion::functions::datetime::now(state.config_options());
    state.register_udf(Arc::new(
        now.as_ref()
            .clone()
            .with_aliases(["statement_timestamp", "transaction_timestamp"]),
    ))?;
    let text = |s: &str| ScalarValue::Utf8(Some(s.to_string()));
    for f in [
        ConstFn::udf("pg_backend_pid", &[], ScalarValue::Int32(Some(pid))),
        ConstFn::udf("current_schema", &[], text(schema)),
        ConstFn::udf("current_user", &["session_user", "user"], text(user)),
        ConstFn::udf("current_database", &["current_catalog"], text("eddy")),
        ConstFn::udf("version", &[], text(&version_string())),
    ] {
        state.register_udf(f)?;
    }
    Ok(())
}

/// `clock_timestamp()`: the time when it is called, unlike `now()` (the statement's start).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ClockTimestamp {
    signature: Signature,
}

impl ScalarUDFImpl for ClockTimestamp {
    fn name(&self) -> &str {
        "clock_timestamp"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(
            arrow::datatypes::TimeUnit::Nanosecond,
            Some("+00:00".into()),
        ))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let now = chrono::Utc::now().timestamp_nanos_opt();
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(
            now,
            Some("+00:00".into()),
        )))
    }
}

/// `current_setting(name [, missing_ok])`: a session setting as `SHOW` gives it (Grafana
/// reads `server_version_num` this way). An unknown name is an error (42704) unless
/// `missing_ok` is true, when the answer is NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    /// The session's settings when the statement was planned, by lower-case name.
    settings: Vec<(String, String)>,
    signature: Signature,
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(names) = arrays.first() else {
            return datafusion::common::plan_err!("current_setting(name) needs a name");
        };
        let names = arrow::compute::cast(names, &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let missing_ok = match arrays.get(1) {
            Some(m) => {
                let m = arrow::compute::cast(m, &DataType::Boolean)?;
                let m = m.as_boolean();
                m.iter().next().flatten().unwrap_or(false)
            }
            None => false,
        };
        let mut out = arrow::array::StringBuilder::new();
        for name in names.iter() {
            let Some(name) = name else {
                out.append_null();
                continue;
            };
            let wanted = name.to_ascii_lowercase();
            match self.settings.iter().find(|(k, _)| *k == wanted) {
                Some((_, v)) => out.append_value(v),
                None if missing_ok => out.append_null(),
                None => {
                    return Err(datafusion::error::DataFusionError::External(Box::new(
                        eddy_proto::Error::new(
                            eddy_proto::ErrorCode::InvalidValue,
                            format!("unrecognized configuration parameter \"{name}\""),
                        ),
                    )))
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `pg_size_pretty(bytes)` with PostgreSQL's units and rounding: bytes below 10 kB,
/// then kB, MB, GB, TB and PB, each used below 20480 of itself and rounded half up.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SizePretty {
    signature: Signature,
}

pub(crate) fn size_pretty(mut size: i64) -> String {
    // (name, limit, rounded, bits)
    const UNITS: [(&str, i64, bool, u32); 6] = [
        ("bytes", 10 * 1024, false, 0),
        ("kB", 20 * 1024 - 1, true, 10),
        ("MB", 20 * 1024 - 1, true, 20),
        ("GB", 20 * 1024 - 1, true, 30),
        ("TB", 20 * 1024 - 1, true, 40),
        ("PB", 20 * 1024 - 1, true, 50),
    ];
    for (i, (name, limit, round, bits)) in UNITS.iter().enumerate() {
        let last = i + 1 == UNITS.len();
        if last || size.abs() < *limit {
            if *round {
                size = (size + if size < 0 { -1 } else { 1 }) / 2;
            }
            return format!("{size} {name}");
        }
        let next = UNITS[i + 1];
        // One bit less when the next unit rounds by halves, one more when this did.
        size /= 1i64 << (next.3 - bits - u32::from(next.2) + u32::from(*round));
    }
    unreachable!("the last unit always answers")
}

impl ScalarUDFImpl for SizePretty {
    fn name(&self) -> &str {
        "pg_size_pretty"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        int_to_text(args, size_pretty)
    }
}

/// Text of `f` over the first argument read as int64, NULL for NULL: the shape of
/// `pg_size_pretty` and `pg_encoding_to_char`.
fn int_to_text<S: AsRef<str>>(
    args: ScalarFunctionArgs,
    f: impl Fn(i64) -> S,
) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let n = arrow::compute::cast(&arrays[0], &DataType::Int64)?;
    let out: arrow::array::StringArray = n
        .as_primitive::<arrow::datatypes::Int64Type>()
        .iter()
        .map(|v| v.map(&f))
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Signal {
    Cancel,
    Terminate,
}

/// `pg_cancel_backend(pid)` stops the statement a session is running;
/// `pg_terminate_backend(pid [, timeout])` also closes its connection. Both answer
/// whether `pid` named a live session.
#[derive(Debug)]
struct SignalBackend {
    signal: Signal,
    registry: Arc<Registry>,
    signature: Signature,
}

impl PartialEq for SignalBackend {
    fn eq(&self, other: &Self) -> bool {
        self.signal == other.signal && Arc::ptr_eq(&self.registry, &other.registry)
    }
}

impl Eq for SignalBackend {}

impl std::hash::Hash for SignalBackend {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.signal.hash(state);
    }
}

impl ScalarUDFImpl for SignalBackend {
    fn name(&self) -> &str {
        match self.signal {
            Signal::Cancel => "pg_cancel_backend",
            Signal::Terminate => "pg_terminate_backend",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(first) = args.args.first() else {
            return datafusion::common::plan_err!("{}(pid) needs a pid", self.name());
        };
        let pids = first.to_array(args.number_rows)?;
        let pids = arrow::compute::cast(&pids, &DataType::Int32)?;
        let pids = pids.as_primitive::<arrow::datatypes::Int32Type>();
        let out: arrow::array::BooleanArray = pids
            .iter()
            .map(|pid| {
                let session = self.registry.session(pid?);
                Some(match session {
                    Some(s) => {
                        match self.signal {
                            Signal::Cancel => s.cancel(),
                            Signal::Terminate => s.terminate(),
                        }
                        true
                    }
                    None => false,
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// A visibility predicate that is true for everything: eddy has no private schemas, and
/// psql and SQLAlchemy filter their catalog queries with these.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct AlwaysVisible {
    name: String,
    signature: Signature,
}

impl ScalarUDFImpl for AlwaysVisible {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(match args.args.first() {
            Some(ColumnarValue::Array(a)) => ColumnarValue::Array(std::sync::Arc::new(
                arrow::array::BooleanArray::from(vec![true; a.len()]),
            )),
            _ => ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))),
        })
    }
}

/// The `pg_*_is_visible(oid)` functions psql filters its listings with. Every object
/// but a table lives in pg_catalog, which is on every search_path.
pub(crate) fn visibility_udfs() -> Vec<ScalarUDF> {
    [
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_operator_is_visible",
        "pg_opclass_is_visible",
        "pg_opfamily_is_visible",
        "pg_conversion_is_visible",
        "pg_collation_is_visible",
        "pg_ts_config_is_visible",
        "pg_ts_dict_is_visible",
        "pg_ts_parser_is_visible",
        "pg_ts_template_is_visible",
    ]
    .into_iter()
    .map(|n| {
        ScalarUDF::new_from_impl(AlwaysVisible {
            name: n.into(),
            signature: Signature::any(1, Volatility::Stable),
        })
    })
    .chain([
        ScalarUDF::new_from_impl(ArrayOrEmpty {
            signature: Signature::any(1, Volatility::Immutable),
        }),
        ScalarUDF::new_from_impl(EncodingName {
            signature: Signature::any(1, Volatility::Immutable),
        }),
    ])
    .collect()
}

/// PostgreSQL's encodings by number (`pg_enc`), as `pg_conversion` and `pg_database`
/// store them.
const ENCODINGS: [&str; 42] = [
    "SQL_ASCII",
    "EUC_JP",
    "EUC_CN",
    "EUC_KR",
    "EUC_TW",
    "EUC_JIS_2004",
    "UTF8",
    "MULE_INTERNAL",
    "LATIN1",
    "LATIN2",
    "LATIN3",
    "LATIN4",
    "LATIN5",
    "LATIN6",
    "LATIN7",
    "LATIN8",
    "LATIN9",
    "LATIN10",
    "WIN1256",
    "WIN1258",
    "WIN866",
    "WIN874",
    "KOI8R",
    "WIN1251",
    "WIN1252",
    "ISO_8859_5",
    "ISO_8859_6",
    "ISO_8859_7",
    "ISO_8859_8",
    "WIN1250",
    "WIN1253",
    "WIN1254",
    "WIN1255",
    "WIN1257",
    "KOI8U",
    "SJIS",
    "BIG5",
    "GBK",
    "UHC",
    "GB18030",
    "JOHAB",
    "SHIFT_JIS_2004",
];

/// `pg_encoding_to_char(n)`: an encoding's name, empty for an unknown number (psql's
/// `\dc` and `\l` print it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct EncodingName {
    signature: Signature,
}

impl ScalarUDFImpl for EncodingName {
    fn name(&self) -> &str {
        "pg_encoding_to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        int_to_text(args, |v| {
            usize::try_from(v)
                .ok()
                .and_then(|i| ENCODINGS.get(i))
                .copied()
                .unwrap_or("")
        })
    }
}

/// The name of [`ArrayOrEmpty`], which the `ARRAY(subquery)` rewrite calls.
pub(crate) const ARRAY_OR_EMPTY: &str = "eddy_array_or_empty";

/// An array, or the empty array for NULL: `ARRAY(subquery)` over no rows is `{}` in
/// PostgreSQL, where the `array_agg` it is rewritten to gives NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayOrEmpty {
    signature: Signature,
}

/// `list` with each NULL entry replaced by an empty list.
fn nulls_as_empty(list: &arrow::array::ListArray) -> arrow::array::ListArray {
    use arrow::array::Array;
    use arrow::buffer::OffsetBuffer;
    if list.null_count() == 0 {
        return list.clone();
    }
    let (field, offsets, values, nulls) = list.clone().into_parts();
    let nulls = nulls.expect("null_count > 0 means a null buffer");
    // A NULL entry may still span values; keep only the valid entries' spans.
    let mut lengths = Vec::with_capacity(list.len());
    let mut keep = Vec::new();
    for i in 0..list.len() {
        let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
        if nulls.is_valid(i) {
            lengths.push(end - start);
            keep.push(values.slice(start, end - start));
        } else {
            lengths.push(0);
        }
    }
    let refs: Vec<&dyn Array> = keep.iter().map(|a| a.as_ref()).collect();
    let values = if refs.is_empty() {
        values.slice(0, 0)
    } else {
        arrow::compute::concat(&refs).unwrap_or_else(|_| values.slice(0, 0))
    };
    arrow::array::ListArray::new(field, OffsetBuffer::from_lengths(lengths), values, None)
}

impl ScalarUDFImpl for ArrayOrEmpty {
    fn name(&self) -> &str {
        ARRAY_OR_EMPTY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(arg) = args.args.first() else {
            return datafusion::common::plan_err!("{ARRAY_OR_EMPTY} needs an argument");
        };
        let is_scalar = matches!(arg, ColumnarValue::Scalar(_));
        let a = arg.to_array(args.number_rows)?;
        let Some(list) = a.as_list_opt::<i32>() else {
            return Ok(arg.clone());
        };
        let out: arrow::array::ArrayRef = Arc::new(nulls_as_empty(list));
        Ok(if is_scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_arrays_become_empty() {
        use arrow::array::{Array, ListArray};
        use arrow::datatypes::Int32Type;
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![Some(3)]),
        ]);
        let out = nulls_as_empty(&list);
        assert_eq!(out.null_count(), 0);
        assert_eq!(out.value_length(1), 0);
        assert_eq!(
            out.value(2).as_primitive::<Int32Type>().values().to_vec(),
            vec![3]
        );
    }

    #[test]
    fn sizes_print_like_postgres() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(8192), "8192 bytes");
        assert_eq!(size_pretty(10240), "10 kB");
        assert_eq!(size_pretty(1_000_000), "977 kB");
        assert_eq!(size_pretty(123_456_789), "118 MB");
        assert_eq!(size_pretty(-20_000_000), "-19 MB");
    }
}
