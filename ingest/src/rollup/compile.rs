//! From `CREATE MATERIALIZED VIEW ... AS SELECT` to an incremental aggregator plan.
//!
//! The defining query is planned by DataFusion, exactly as a query would be, and the plan
//! must be `Projection(Aggregate([Filter](scan)))`. The grouping keys, the `WHERE`
//! predicate and each aggregate's arguments become physical expressions evaluated on every
//! ingested batch, and each aggregate becomes DataFusion's own `GroupsAccumulator`, whose
//! partial state is what the view keeps. So a view computes what DataFusion would compute
//! over the same rows; that is the invariant the differential tests check.
//!
//! A view over another view (a cascade, `bars_1m → bars_1h`) is composed into a view over
//! the root table: `max(high)` over `high = max(price)` is `max(price)` grouped by the
//! coarser keys, `sum` of `sum`s and of `count`s is a `sum` or `count`, `first_value(open
//! ORDER BY bucket)` over `open = first_value(price ORDER BY ts)` is `first_value(price ORDER
//! BY ts)`. The child is fed only the rows its parent accepted, so it equals its defining
//! query over the parent whatever the parent dropped as too late.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, SchemaProvider, Session, TableFunctionImpl,
};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DFSchemaRef, ScalarValue};
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::{source_as_provider, TableProvider, TableType};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, SortExpr};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
#[allow(deprecated)]
use datafusion::physical_planner::create_aggregate_expr_and_maybe_filter;
use datafusion::prelude::{SessionConfig, SessionContext};
use eddy_proto::{Error, ErrorCode, Result, RollupDef, TableDef, INTERNAL_COLUMN_PREFIX};

mod cascade;
mod session;

use cascade::build_cascade;
pub use session::SESSION_FUNCTION;
use session::{session_source, SessionFunction};

/// What a name in a view's `FROM` resolves to.
#[derive(Clone)]
pub enum Relation {
    Table(TableDef),
    View(Arc<RollupPlan>),
}

/// How rows are grouped.
#[derive(Debug, Clone)]
pub enum Grouping {
    /// Plain `GROUP BY` expressions; `bucket` is set when one of them is a fixed-width time
    /// bucket (`date_bin` / `date_trunc`), which lateness and query rewrite use.
    Keys { bucket: Option<Bucket> },
    /// `FROM SESSION(t, key, ts, gap)`: one group per key and session.
    Session(SessionSpec),
}

#[derive(Debug, Clone)]
pub struct Bucket {
    /// Position of the bucket among the grouping keys.
    pub key: usize,
    pub width_micros: i64,
    /// The event time the bucket is computed from.
    pub time: Arc<dyn PhysicalExpr>,
}

#[derive(Debug, Clone)]
pub struct SessionSpec {
    pub key: Arc<dyn PhysicalExpr>,
    pub key_type: DataType,
    pub time: Arc<dyn PhysicalExpr>,
    pub time_type: DataType,
    pub gap_micros: i64,
    /// Where the key, session_start and session_end sit among the `GROUP BY` keys.
    pub key_pos: Option<usize>,
    pub start_pos: Option<usize>,
    pub end_pos: Option<usize>,
}

pub struct AggPlan {
    pub expr: Arc<AggregateFunctionExpr>,
    /// Arguments followed by `ORDER BY` expressions, as DataFusion feeds accumulators.
    pub inputs: Vec<Arc<dyn PhysicalExpr>>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// The logical form over the root table's rows (cascades compose from it).
    pub logical: Expr,
    /// `count(DISTINCT integer)`, kept as roaring bitmaps (see `distinct.rs`).
    pub roaring: bool,
}

impl AggPlan {
    /// Types of the partial state columns, as `GroupsAccumulator::state` returns them.
    pub fn state_types(&self) -> Result<Vec<DataType>> {
        if self.roaring {
            return Ok(vec![DataType::Binary]);
        }
        Ok(self
            .expr
            .state_fields()
            .map_err(df_err)?
            .iter()
            .map(|f| f.data_type().clone())
            .collect())
    }
}

/// A compiled view: immutable, shared by its runtime state and by cascades from it.
pub struct RollupPlan {
    pub def: RollupDef,
    /// The relation named in `FROM` (a table, or the view this one cascades from).
    pub source: String,
    /// The table whose writes feed this view.
    pub root_table: String,
    pub parent: Option<String>,
    /// The rows the view reads: the root table's columns (plus `session_start` and
    /// `session_end`, always NULL at input, for session views).
    pub input_schema: DFSchemaRef,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Logical `GROUP BY` expressions over the root rows.
    pub group_logical: Vec<Expr>,
    pub grouping: Grouping,
    pub aggs: Vec<AggPlan>,
    /// Output of the `Aggregate`: keys then aggregates, as DataFusion names them.
    pub agg_schema: DFSchemaRef,
    /// The `SELECT` list over `agg_schema`.
    pub outputs: Vec<Arc<dyn PhysicalExpr>>,
    /// For each output column, the `agg_schema` column it is a plain copy of, if any.
    pub output_columns: Vec<Option<usize>>,
    pub schema: SchemaRef,
    pub internal_schema: SchemaRef,
    pub lateness_micros: Option<i64>,
    /// For a view cascading from another: how to build its state from the parent's.
    pub cascade: Cascade,
}

/// A cascading view's own `GROUP BY` and `WHERE` over its parent's output columns, and
/// for each of its aggregates the parent aggregate whose partial state it merges.
#[derive(Default)]
pub struct Cascade {
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub aggs: Vec<usize>,
}

impl fmt::Debug for RollupPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RollupPlan")
            .field("name", &self.def.name)
            .field("source", &self.source)
            .field("root_table", &self.root_table)
            .finish()
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidStatement, msg)
}

fn df_err(e: DataFusionError) -> Error {
    let msg = e.to_string();
    let code = if msg.contains("not found") && msg.contains("table") {
        ErrorCode::TableNotFound
    } else if msg.contains("No field named") || msg.contains("Schema error") {
        ErrorCode::ColumnNotFound
    } else if msg.contains("SQL error") || msg.contains("ParserError") {
        ErrorCode::SyntaxError
    } else {
        ErrorCode::InvalidStatement
    };
    Error::new(code, msg)
}

/// Microseconds of a fixed interval literal (`INTERVAL '30 minutes'`).
pub fn interval_micros(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => {
            Some(i.days as i64 * 86_400_000_000 + i.nanoseconds / 1000)
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            Some(i.days as i64 * 86_400_000_000 + i.milliseconds as i64 * 1000)
        }
        ScalarValue::DurationMicrosecond(Some(v)) => Some(*v),
        ScalarValue::DurationMillisecond(Some(v)) => Some(v * 1000),
        ScalarValue::DurationSecond(Some(v)) => Some(v * 1_000_000),
        ScalarValue::DurationNanosecond(Some(v)) => Some(v / 1000),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        Expr::Cast(c) => literal(&c.expr),
        Expr::TryCast(c) => literal(&c.expr),
        _ => None,
    }
}

/// Resolves `FROM` names to empty tables of the right schema, for planning only.
struct PlanningSchema {
    lookup: Arc<dyn Fn(&str) -> Option<Relation> + Send + Sync>,
}

impl fmt::Debug for PlanningSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlanningSchema")
    }
}

#[async_trait]
impl SchemaProvider for PlanningSchema {
    fn table_names(&self) -> Vec<String> {
        Vec::new()
    }
    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        Ok(match (self.lookup)(name) {
            Some(Relation::Table(def)) => Some(Arc::new(EmptyTable::new(def.arrow_schema()))),
            Some(Relation::View(plan)) => Some(Arc::new(EmptyTable::new(Arc::clone(&plan.schema)))),
            None => None,
        })
    }
    fn table_exist(&self, name: &str) -> bool {
        (self.lookup)(name).is_some()
    }
}

fn planning_context(
    lookup: Arc<dyn Fn(&str) -> Option<Relation> + Send + Sync>,
) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema("eddy", "public");
    let ctx = SessionContext::new_with_config(config);
    let catalog = MemoryCatalogProvider::new();
    catalog
        .register_schema(
            "public",
            Arc::new(PlanningSchema {
                lookup: Arc::clone(&lookup),
            }),
        )
        .map_err(df_err)?;
    ctx.register_catalog("eddy", Arc::new(catalog));
    // DataFusion looks table functions up by the name as written, without case folding.
    let f = Arc::new(SessionFunction { lookup });
    for name in [SESSION_FUNCTION, "SESSION", "Session"] {
        ctx.register_udtf(name, Arc::clone(&f) as _);
    }
    Ok(ctx)
}

/// The pieces of `Projection(Aggregate([Filter](scan)))`.
struct Shape {
    outputs: Vec<Expr>,
    output_schema: DFSchemaRef,
    group_exprs: Vec<Expr>,
    aggr_exprs: Vec<Expr>,
    agg_schema: DFSchemaRef,
    predicates: Vec<Expr>,
    input_schema: DFSchemaRef,
    scan_name: String,
    scan_source: Arc<dyn TableProvider>,
}

fn describe(plan: &LogicalPlan) -> String {
    plan.display().to_string()
}

fn shape(plan: &LogicalPlan) -> Result<Shape> {
    let not_group = || {
        invalid(
            "a materialized view must be one GROUP BY query over one table: \
             SELECT keys, aggregates FROM t [WHERE ...] GROUP BY keys",
        )
    };
    let (outputs, output_schema, mut node) = match plan {
        LogicalPlan::Projection(p) => (p.expr.clone(), Arc::clone(&p.schema), p.input.as_ref()),
        LogicalPlan::Sort(_) => {
            return Err(invalid(
                "ORDER BY has no meaning in a materialized view; order when you query it",
            ))
        }
        LogicalPlan::Limit(_) => {
            return Err(invalid("LIMIT is not allowed in a materialized view"))
        }
        _ => return Err(not_group()),
    };
    if let LogicalPlan::Filter(_) = node {
        return Err(invalid(
            "HAVING is not supported in a materialized view; filter when you query it",
        ));
    }
    let LogicalPlan::Aggregate(agg) = node else {
        return Err(not_group());
    };
    if agg
        .group_expr
        .iter()
        .any(|g| matches!(g, Expr::GroupingSet(_)))
    {
        return Err(invalid(
            "GROUPING SETS, CUBE and ROLLUP are not supported in a materialized view",
        ));
    }
    node = agg.input.as_ref();
    let mut predicates = Vec::new();
    loop {
        match node {
            LogicalPlan::Filter(f) => {
                predicates.push(f.predicate.clone());
                node = f.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            LogicalPlan::TableScan(scan) => {
                let source = source_as_provider(&scan.source).map_err(df_err)?;
                return Ok(Shape {
                    outputs,
                    output_schema,
                    group_exprs: agg.group_expr.clone(),
                    aggr_exprs: agg.aggr_expr.clone(),
                    agg_schema: Arc::clone(&agg.schema),
                    predicates,
                    input_schema: Arc::clone(agg.input.schema()),
                    scan_name: scan.table_name.table().to_string(),
                    scan_source: source,
                });
            }
            other => {
                return Err(invalid(format!(
                    "a materialized view reads one table directly; this one needs {}",
                    describe(other).lines().next().unwrap_or("another operator")
                )))
            }
        }
    }
}

/// Strips the qualifier of every column, so expressions planned against `FROM t` (or
/// `FROM bars_1m`) bind by name to the root table's rows.
fn unqualify(e: Expr) -> Result<Expr> {
    e.transform(|e| {
        Ok(match e {
            Expr::Column(c) if c.relation.is_some() => Transformed::yes(Expr::Column(
                datafusion::common::Column::new_unqualified(c.name),
            )),
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
    .map_err(df_err)
}

fn unqualified_schema(schema: &Schema) -> Result<DFSchemaRef> {
    DFSchema::try_from(schema.clone())
        .map(Arc::new)
        .map_err(df_err)
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        other => other,
    }
}

/// A `date_bin(interval, t)` or `date_trunc('unit', t)` key: (width, time expression).
fn bucket_of(e: &Expr) -> Option<(i64, Expr)> {
    let Expr::ScalarFunction(f) = strip_alias(e) else {
        return None;
    };
    match (f.name(), f.args.as_slice()) {
        ("date_bin", [width, time, ..]) => Some((interval_micros(literal(width)?)?, time.clone())),
        ("date_trunc", [unit, time]) => {
            let unit = match literal(unit)? {
                ScalarValue::Utf8(Some(u))
                | ScalarValue::LargeUtf8(Some(u))
                | ScalarValue::Utf8View(Some(u)) => u.to_ascii_lowercase(),
                _ => return None,
            };
            let w = match unit.as_str() {
                "second" => 1_000_000,
                "minute" => 60_000_000,
                "hour" => 3_600_000_000,
                "day" => 86_400_000_000,
                "week" => 7 * 86_400_000_000,
                _ => return None,
            };
            Some((w, time.clone()))
        }
        _ => None,
    }
}

fn parse_lateness(def: &RollupDef) -> Option<i64> {
    def.lateness_secs.map(|s| s as i64 * 1_000_000)
}

/// Compiles `def` against the relations `lookup` knows.
pub async fn compile(
    def: &RollupDef,
    lookup: Arc<dyn Fn(&str) -> Option<Relation> + Send + Sync>,
) -> Result<RollupPlan> {
    let ctx = planning_context(Arc::clone(&lookup))?;
    let state = ctx.state();
    let plan = state.create_logical_plan(&def.sql).await.map_err(df_err)?;
    // Type coercion and the other analyzer rules, as a query gets before it runs.
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})
        .map_err(df_err)?;
    let shape = shape(&plan)?;
    let session_source = session_source(&shape.scan_source)
        .map(|s| (s.table.clone(), s.key.clone(), s.time.clone(), s.gap_micros));
    let source_name = session_source
        .as_ref()
        .map(|s| s.0.clone())
        .unwrap_or_else(|| shape.scan_name.clone());
    match lookup(&source_name) {
        Some(Relation::Table(t)) if t.has_primary_key() => Err(Error::new(
            ErrorCode::Unsupported,
            format!(
                "materialized view \"{}\" cannot read primary-key table \"{}\": its upserts and \
                 deletes would have to retract rows the view already aggregated; aggregate an \
                 append-only table instead",
                def.name, source_name
            ),
        )),
        Some(Relation::Table(t)) => build_over_table(def, &state, shape, t, session_source),
        Some(Relation::View(parent)) => build_cascade(def, &state, shape, parent),
        None => Err(Error::new(
            ErrorCode::TableNotFound,
            format!("relation \"{source_name}\" does not exist"),
        )),
    }
}

fn physical(state: &SessionState, e: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    state
        .create_physical_expr(e.clone(), schema)
        .map_err(df_err)
}

fn agg_plan(state: &SessionState, e: &Expr, input: &DFSchema) -> Result<AggPlan> {
    if let Expr::AggregateFunction(AggregateFunction { params, .. }) = strip_alias(e) {
        if params.null_treatment.is_some() {
            return Err(invalid(
                "IGNORE/RESPECT NULLS is not supported in a materialized view",
            ));
        }
    }
    #[allow(deprecated)]
    let (expr, filter, _) =
        create_aggregate_expr_and_maybe_filter(e, input, input.as_arrow(), state.execution_props())
            .map_err(df_err)?;
    let mut inputs = expr.expressions();
    inputs.extend(expr.order_bys().iter().map(|s| Arc::clone(&s.expr)));
    let roaring = expr.fun().name() == "count"
        && expr.is_distinct()
        && inputs.len() == 1
        && inputs[0]
            .data_type(input.as_arrow())
            .is_ok_and(|t| super::distinct::supported(&t));
    Ok(AggPlan {
        expr,
        inputs,
        filter,
        logical: e.clone(),
        roaring,
    })
}

fn internal_schema(agg_schema: &DFSchema) -> SchemaRef {
    Arc::new(Schema::new(
        agg_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                Field::new(
                    format!("{INTERNAL_COLUMN_PREFIX}{i}"),
                    f.data_type().clone(),
                    true,
                )
            })
            .collect::<Vec<_>>(),
    ))
}

fn finish(
    def: &RollupDef,
    state: &SessionState,
    shape: &Shape,
    parts: Parts,
) -> Result<RollupPlan> {
    let mut outputs = Vec::new();
    let mut output_columns = Vec::new();
    for e in &shape.outputs {
        outputs.push(physical(state, e, &shape.agg_schema)?);
        output_columns.push(match strip_alias(e) {
            Expr::Column(c) => shape.agg_schema.index_of_column(c).ok(),
            _ => None,
        });
    }
    // Output names as the user sees them (no qualifiers); timestamps keep their units.
    let schema = Arc::new(Schema::new(
        shape
            .output_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    ));
    let mut seen = std::collections::HashSet::new();
    for f in schema.fields() {
        if !seen.insert(f.name().clone()) {
            return Err(invalid(format!(
                "column \"{}\" appears twice in the view; name each output with AS",
                f.name()
            )));
        }
        if f.name().starts_with(INTERNAL_COLUMN_PREFIX) {
            return Err(invalid(format!(
                "view column names cannot start with \"{INTERNAL_COLUMN_PREFIX}\": \"{}\"",
                f.name()
            )));
        }
    }
    Ok(RollupPlan {
        def: def.clone(),
        source: parts.source,
        root_table: parts.root_table,
        parent: parts.parent,
        input_schema: parts.input_schema,
        filter: parts.filter,
        group_exprs: parts.group_exprs,
        group_logical: parts.group_logical,
        grouping: parts.grouping,
        aggs: parts.aggs,
        internal_schema: internal_schema(&shape.agg_schema),
        agg_schema: Arc::clone(&shape.agg_schema),
        outputs,
        output_columns,
        schema,
        lateness_micros: parts.lateness_micros,
        cascade: parts.cascade,
    })
}

struct Parts {
    source: String,
    root_table: String,
    parent: Option<String>,
    input_schema: DFSchemaRef,
    filter: Option<Arc<dyn PhysicalExpr>>,
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    group_logical: Vec<Expr>,
    grouping: Grouping,
    aggs: Vec<AggPlan>,
    lateness_micros: Option<i64>,
    cascade: Cascade,
}

fn conjunction(preds: Vec<Expr>) -> Option<Expr> {
    preds.into_iter().reduce(|a, b| a.and(b))
}

fn time_micros_type(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(_, _))
}

type KeysAndFilter = (
    Vec<Expr>,
    Vec<Arc<dyn PhysicalExpr>>,
    Option<Expr>,
    Option<Arc<dyn PhysicalExpr>>,
);

/// The `GROUP BY` keys and the `WHERE` conjunction, rewritten by `map` to the root rows,
/// in logical and physical form.
fn keys_and_filter(
    state: &SessionState,
    shape: &Shape,
    input: &DFSchema,
    map: impl Fn(&Expr) -> Result<Expr>,
) -> Result<KeysAndFilter> {
    let group_logical = shape
        .group_exprs
        .iter()
        .map(&map)
        .collect::<Result<Vec<_>>>()?;
    let group_exprs = group_logical
        .iter()
        .map(|e| physical(state, e, input))
        .collect::<Result<Vec<_>>>()?;
    let predicate = conjunction(
        shape
            .predicates
            .iter()
            .map(&map)
            .collect::<Result<Vec<_>>>()?,
    );
    let filter = predicate
        .as_ref()
        .map(|p| physical(state, p, input))
        .transpose()?;
    Ok((group_logical, group_exprs, predicate, filter))
}

fn build_over_table(
    def: &RollupDef,
    state: &SessionState,
    shape: Shape,
    table: TableDef,
    session: Option<(String, String, String, i64)>,
) -> Result<RollupPlan> {
    let input_arrow = shape.input_schema.as_arrow().clone();
    let input = unqualified_schema(&input_arrow)?;
    let (group_logical, group_exprs, predicate, filter) =
        keys_and_filter(state, &shape, &input, |e| unqualify(e.clone()))?;
    let aggs = shape
        .aggr_exprs
        .iter()
        .map(|e| agg_plan(state, &unqualify(e.clone())?, &input))
        .collect::<Result<Vec<_>>>()?;
    let lateness_micros = parse_lateness(def);
    let grouping = match session {
        Some((_, key, time, gap_micros)) => {
            let uses_session_cols = |e: &Expr| {
                e.column_refs()
                    .iter()
                    .any(|c| c.name == "session_start" || c.name == "session_end")
            };
            if shape.aggr_exprs.iter().any(uses_session_cols)
                || predicate.as_ref().is_some_and(uses_session_cols)
            {
                return Err(invalid(
                    "session_start and session_end can only be grouped by, not aggregated or filtered on",
                ));
            }
            let (mut key_pos, mut start_pos, mut end_pos) = (None, None, None);
            for (i, g) in group_logical.iter().enumerate() {
                match strip_alias(g) {
                    Expr::Column(c) if c.name == key => key_pos = Some(i),
                    Expr::Column(c) if c.name == "session_start" => start_pos = Some(i),
                    Expr::Column(c) if c.name == "session_end" => end_pos = Some(i),
                    other => {
                        return Err(invalid(format!(
                            "a session view groups by {key}, session_start and session_end only, not {other}"
                        )))
                    }
                }
            }
            if key_pos.is_none() || (start_pos.is_none() && end_pos.is_none()) {
                return Err(invalid(format!(
                    "a session view must GROUP BY {key} and session_start (or session_end)"
                )));
            }
            let schema = table.arrow_schema();
            let key_type = schema
                .field_with_name(&key)
                .map_err(|e| invalid(e.to_string()))?
                .data_type()
                .clone();
            let time_type = schema
                .field_with_name(&time)
                .map_err(|e| invalid(e.to_string()))?
                .data_type()
                .clone();
            Grouping::Session(SessionSpec {
                key: physical(state, &Expr::Column(key.as_str().into()), &input)?,
                key_type,
                time: physical(state, &Expr::Column(time.as_str().into()), &input)?,
                time_type,
                gap_micros,
                key_pos,
                start_pos,
                end_pos,
            })
        }
        None => {
            let mut bucket = None;
            for (i, g) in group_logical.iter().enumerate() {
                if let Some((width_micros, time)) = bucket_of(g) {
                    let t = time.get_type(&input).map_err(df_err)?;
                    if time_micros_type(&t) && bucket.is_none() {
                        bucket = Some(Bucket {
                            key: i,
                            width_micros,
                            time: physical(state, &time, &input)?,
                        });
                    }
                }
            }
            if lateness_micros.is_some() && bucket.is_none() {
                return Err(invalid(
                    "lateness needs a time bucket among the GROUP BY keys, such as date_bin(INTERVAL '1 minute', ts)",
                ));
            }
            Grouping::Keys { bucket }
        }
    };
    let parts = Parts {
        source: shape.scan_name.clone(),
        root_table: table.name.clone(),
        parent: None,
        input_schema: input,
        filter,
        group_exprs,
        group_logical,
        grouping,
        aggs,
        lateness_micros,
        cascade: Cascade::default(),
    };
    let mut parts = parts;
    if session_source_name(&shape).is_some() {
        parts.source = table.name.clone();
    }
    finish(def, state, &shape, parts)
}

fn session_source_name(shape: &Shape) -> Option<String> {
    session_source(&shape.scan_source).map(|s| s.table.clone())
}
