//! Functions drivers call right after connecting whose answer depends on the session
//! (`pg_backend_pid()`, `current_schema()`, `current_user`), registered on each
//! statement's planning state as constants.

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
) -> Result<()> {
    for signal in [Signal::Cancel, Signal::Terminate] {
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(SignalBackend {
            signal,
            registry: Arc::clone(registry),
            // Volatile: a call must run when the statement runs, never be folded into
            // a constant while planning.
            signature: Signature::variadic_any(Volatility::Volatile),
        })))?;
    }
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

/// `pg_type_is_visible(oid)` and `pg_function_is_visible(oid)`.
pub(crate) fn visibility_udfs() -> Vec<ScalarUDF> {
    ["pg_type_is_visible", "pg_function_is_visible"]
        .into_iter()
        .map(|n| {
            ScalarUDF::new_from_impl(AlwaysVisible {
                name: n.into(),
                signature: Signature::any(1, Volatility::Stable),
            })
        })
        .collect()
}
