//! From a rule's `WHEN` and `SEVERITY` SQL to physical expressions.
//!
//! Both are parsed and typed by DataFusion against the rule's source (a table's columns, or
//! a view's output columns), so they accept any scalar SQL a query would. Two functions only
//! make sense for rules on a view, where rows are buckets of a key: `prev(col)` is `col` in
//! the same key's previous bucket, and `zscore(col, n)` is how many standard deviations
//! `col` is from its mean over the same key's previous `n` buckets. The parser knows them as
//! placeholders; compilation replaces each call with an input column that the view runtime
//! fills from the bucket history before evaluating (see `view.rs`).

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow::compute::{cast, prep_null_mask_filter};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use eddy_proto::{AlertDef, Error, ErrorCode, Result};

/// What a history function reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookbackKind {
    /// `prev(col)`: the previous bucket's value.
    Prev,
    /// `zscore(col, n)`: against the previous `n` buckets.
    ZScore(usize),
}

/// One history function call, replaced by the input column `column_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookback {
    pub kind: LookbackKind,
    /// The view column it reads.
    pub column: String,
    /// How the call reads in the rule (`prev(close)`), the name in an alert's `values`.
    pub label: String,
    /// The input column standing for it.
    pub column_name: String,
}

impl Lookback {
    /// Buckets of history it needs.
    pub fn depth(&self) -> usize {
        match self.kind {
            LookbackKind::Prev => 1,
            LookbackKind::ZScore(n) => n,
        }
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct CompiledRule {
    pub def: AlertDef,
    pub condition: Arc<dyn PhysicalExpr>,
    pub severity: Arc<dyn PhysicalExpr>,
    pub lookbacks: Vec<Lookback>,
    /// Source columns the rule reads, in source order: with the lookbacks, an alert's
    /// `values`.
    pub reads: Vec<String>,
    /// The source's columns followed by one Float64 column per lookback.
    pub input_schema: SchemaRef,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Placeholder {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for Placeholder {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        datafusion::common::exec_err!(
            "{}() is only available in CREATE ALERT rules on a materialized view",
            self.name
        )
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidStatement, msg)
}

fn df_err(what: &str, e: datafusion::error::DataFusionError) -> Error {
    let msg = e.strip_backtrace();
    let code = if msg.contains("No field named") || msg.contains("not found") {
        ErrorCode::ColumnNotFound
    } else if msg.contains("ParserError") || msg.contains("SQL error") {
        ErrorCode::SyntaxError
    } else {
        ErrorCode::InvalidStatement
    };
    Error::new(code, format!("{what}: {msg}"))
}

fn context() -> SessionContext {
    let ctx = SessionContext::new();
    for (name, n) in [("prev", 1), ("zscore", 2)] {
        ctx.register_udf(ScalarUDF::new_from_impl(Placeholder {
            name,
            signature: Signature::any(n, Volatility::Immutable),
        }));
    }
    ctx
}

/// The plain column a history function reads (through any cast the parser added).
fn column_arg(e: &Expr, call: &str) -> Result<String> {
    match e {
        Expr::Column(c) => Ok(c.name.clone()),
        Expr::Cast(c) => column_arg(&c.expr, call),
        Expr::TryCast(c) => column_arg(&c.expr, call),
        _ => Err(invalid(format!(
            "{call}(): the first argument must be a column of the view, not {e}"
        ))),
    }
}

fn window_arg(e: &Expr) -> Result<usize> {
    let n = match e {
        Expr::Literal(ScalarValue::Int64(Some(n)), _) => *n,
        Expr::Literal(ScalarValue::Int32(Some(n)), _) => *n as i64,
        _ => -1,
    };
    if !(2..=10_000).contains(&n) {
        return Err(invalid(format!(
            "zscore(): the window must be an integer number of buckets from 2 to 10000, not {e}"
        )));
    }
    Ok(n as usize)
}

/// Replaces `prev()` and `zscore()` calls with input columns, collecting them.
fn replace_lookbacks(e: Expr, found: &mut Vec<Lookback>) -> Result<Expr> {
    let mut failure = None;
    let out = e
        .transform_up(|e| {
            let Expr::ScalarFunction(f) = &e else {
                return Ok(Transformed::no(e));
            };
            let name = f.func.name();
            if name != "prev" && name != "zscore" {
                return Ok(Transformed::no(e));
            }
            let parsed = (|| {
                let column = column_arg(&f.args[0], name)?;
                let kind = if name == "prev" {
                    LookbackKind::Prev
                } else {
                    LookbackKind::ZScore(window_arg(&f.args[1])?)
                };
                let label = match kind {
                    LookbackKind::Prev => format!("prev({column})"),
                    LookbackKind::ZScore(n) => format!("zscore({column}, {n})"),
                };
                Ok::<_, Error>(Lookback {
                    kind,
                    column_name: format!("${label}"),
                    column,
                    label,
                })
            })();
            match parsed {
                Ok(l) => {
                    let col = Expr::Column(datafusion::common::Column::from_name(&l.column_name));
                    if !found.contains(&l) {
                        found.push(l);
                    }
                    Ok(Transformed::yes(col))
                }
                Err(err) => {
                    failure.get_or_insert(err);
                    Ok(Transformed::no(e))
                }
            }
        })
        .map_err(|e| df_err("alert rule", e))?
        .data;
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Compiles `def` against `source` (a table's or a view's columns). `lookbacks` says whether
/// `prev()` and `zscore()` are allowed (rules on a view).
pub fn compile_rule(def: &AlertDef, source: &SchemaRef, lookbacks: bool) -> Result<CompiledRule> {
    let ctx = context();
    let base = DFSchema::try_from(source.as_ref().clone()).map_err(|e| df_err("schema", e))?;
    let cond = ctx
        .parse_sql_expr(&def.condition, &base)
        .map_err(|e| df_err("WHEN", e))?;
    let sev = ctx
        .parse_sql_expr(&def.severity, &base)
        .map_err(|e| df_err("SEVERITY", e))?;
    let mut found = Vec::new();
    let cond = replace_lookbacks(cond, &mut found)?;
    let sev = replace_lookbacks(sev, &mut found)?;
    if !lookbacks && !found.is_empty() {
        return Err(invalid(format!(
            "{} reads earlier buckets of the same key, so the rule must be ON a materialized view with a time bucket, not on table \"{}\"",
            found[0].label, def.source
        )));
    }
    for l in &found {
        let f = source.field_with_name(&l.column).map_err(|_| {
            Error::new(
                ErrorCode::ColumnNotFound,
                format!(
                    "{}: \"{}\" has no column \"{}\"",
                    l.label, def.source, l.column
                ),
            )
        })?;
        if !f.data_type().is_numeric() {
            return Err(invalid(format!(
                "{}: column \"{}\" is {}, not a number",
                l.label,
                l.column,
                f.data_type()
            )));
        }
    }
    let mut fields: Vec<Field> = source.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(
        found
            .iter()
            .map(|l| Field::new(&l.column_name, DataType::Float64, true)),
    );
    let input_schema = Arc::new(Schema::new(fields));
    let dfx = DFSchema::try_from(input_schema.as_ref().clone()).map_err(|e| df_err("schema", e))?;
    let ty = cond.get_type(&dfx).map_err(|e| df_err("WHEN", e))?;
    if !matches!(ty, DataType::Boolean | DataType::Null) {
        return Err(invalid(format!(
            "WHEN must be a condition (boolean), not {ty}: {}",
            def.condition
        )));
    }
    let mut reads: Vec<String> = Vec::new();
    for e in [&cond, &sev] {
        for c in e.column_refs() {
            if !c.name.starts_with('$') && !reads.contains(&c.name) {
                reads.push(c.name.clone());
            }
        }
    }
    reads.sort_by_key(|n| source.index_of(n).unwrap_or(usize::MAX));
    let sev = Expr::Cast(datafusion::logical_expr::Cast::new(
        Box::new(sev),
        DataType::Utf8,
    ));
    Ok(CompiledRule {
        def: def.clone(),
        condition: ctx
            .create_physical_expr(cond, &dfx)
            .map_err(|e| df_err("WHEN", e))?,
        severity: ctx
            .create_physical_expr(sev, &dfx)
            .map_err(|e| df_err("SEVERITY", e))?,
        lookbacks: found,
        reads,
        input_schema,
    })
}

impl CompiledRule {
    /// Which rows of `input` (in [`Self::input_schema`]) fire; NULL counts as false.
    pub fn matches(&self, input: &RecordBatch) -> Result<BooleanArray> {
        let v = self
            .condition
            .evaluate(input)
            .and_then(|v| v.into_array(input.num_rows()))
            .map_err(|e| Error::new(ErrorCode::QueryFailed, format!("WHEN: {e}")))?;
        let m = v
            .as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .unwrap_or_else(|| BooleanArray::from(vec![false; input.num_rows()]));
        Ok(if m.null_count() > 0 {
            prep_null_mask_filter(&m)
        } else {
            m
        })
    }

    /// The severity of each row of `input`.
    pub fn severities(&self, input: &RecordBatch) -> Result<StringArray> {
        let v = self
            .severity
            .evaluate(input)
            .and_then(|v| v.into_array(input.num_rows()))
            .map_err(|e| Error::new(ErrorCode::QueryFailed, format!("SEVERITY: {e}")))?;
        let v = cast(&v, &DataType::Utf8)
            .map_err(|e| Error::new(ErrorCode::QueryFailed, format!("SEVERITY: {e}")))?;
        Ok(v.as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .expect("cast to Utf8"))
    }
}
