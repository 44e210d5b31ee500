//! Statement execution shared by every front end: eddy's own statements (DDL, DELETE by
//! key, COPY FROM STDIN, CHECKPOINT) go to the BE directly; everything else is planned and
//! run by DataFusion over the BE's tables.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::compute::concat_batches;
use arrow::datatypes::UInt64Type;
use bytes::Bytes;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, WriteOp};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget,
    FromTable, ObjectName, ObjectType, Statement, TableFactor,
};
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use eddy_proto::{BeService, ByteStream, Error, ErrorCode, Result, WriteFormat};

use crate::catalog::{EddySchema, SystemSchema};
use crate::config::FeConfig;
use crate::ddl;
use crate::error::classify;
use crate::repeated_names;
use crate::source_ddl::{self, EddyStatement, Piece};

/// How `COPY ... FROM STDIN` data is encoded.
#[derive(Debug, Clone)]
pub struct CopyFormat {
    pub csv: bool,
    pub header: bool,
    pub delimiter: u8,
    pub columns: Vec<String>,
}

/// What one statement produced.
pub enum Outcome {
    Rows(SendableRecordBatchStream),
    Command {
        tag: String,
        rows: Option<usize>,
    },
    /// The client must now send the COPY data, then call [`QueryEngine::copy_in`].
    CopyIn {
        table: String,
        format: CopyFormat,
        columns: usize,
    },
    Empty,
}

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum Parsed {
    Sql(Box<Statement>),
    Eddy(EddyStatement),
}

/// What statements of one session are planned and run with: its `SessionState` and the
/// `TaskContext` made from it, built once and shared until a setting changes. Both copy
/// DataFusion's function registry, so building them per statement would cost more than
/// planning a small query.
pub struct Planning {
    pub state: SessionState,
    pub task: Arc<TaskContext>,
    /// Unique among the planning states of the process (plans optimized with one are
    /// reused only with it; see [`crate::prepared`]).
    pub id: u64,
}

impl Planning {
    pub fn new(state: SessionState) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let task = state.task_ctx();
        Self {
            state,
            task,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Planning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planning")
            .field("session_id", &self.state.session_id())
            .finish()
    }
}

pub struct QueryEngine {
    be: Arc<dyn BeService>,
    /// Bumped whenever a statement changes the shared context (a DataFusion `SET`, `CREATE
    /// SCHEMA`, `CREATE VIEW` ...): sessions rebuild their [`Planning`] then.
    generation: AtomicU64,
    ctx: SessionContext,
    /// sqlparser plus the rewrites that let DataFusion plan the catalog queries psql,
    /// SQLAlchemy and Grafana send (`pg_catalog.` qualifiers, `::regclass`, ...).
    compat: crate::compat_parse::CompatParser,
    /// Answers aggregates from materialized views (an analyzer rule of every session).
    rewrite: Arc<crate::rollup_rewrite::RollupRewrite>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish()
    }
}

fn object_name(n: &ObjectName) -> String {
    n.0.last()
        .map(|p| p.to_string().trim_matches('"').to_string())
        .unwrap_or_default()
}

fn cmd(tag: &str, rows: Option<usize>) -> Outcome {
    Outcome::Command {
        tag: tag.to_string(),
        rows,
    }
}

impl QueryEngine {
    pub fn new(be: Arc<dyn BeService>, config: &FeConfig) -> Result<Self> {
        let partitions = if config.target_partitions == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            config.target_partitions
        };
        let session = SessionConfig::new()
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema("eddy", "public")
            .with_target_partitions(partitions);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(
                config.memory_pool_bytes as usize,
            )))
            .build_arc()
            .map_err(classify)?;
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(session)
            .with_runtime_env(runtime)
            .with_default_features()
            // Window functions over sorted input computed a batch at a time.
            .with_physical_optimizer_rule(Arc::new(crate::sorted_window::SortedWindows))
            .build();
        let mut ctx = SessionContext::new_with_state(state);
        let catalog = MemoryCatalogProvider::new();
        catalog
            .register_schema(
                "public",
                Arc::new(EddySchema {
                    be: Arc::clone(&be),
                }),
            )
            .map_err(classify)?;
        catalog
            .register_schema(
                "system",
                Arc::new(SystemSchema {
                    be: Arc::clone(&be),
                }),
            )
            .map_err(classify)?;
        ctx.register_catalog("eddy", Arc::new(catalog));
        // DataFusion looks table functions up by the name as written, without case folding.
        let session = Arc::new(crate::session_window::SessionFunction {
            be: Arc::clone(&be),
        });
        for name in [
            crate::session_window::SESSION_FUNCTION,
            "SESSION",
            "Session",
        ] {
            ctx.register_udtf(name, Arc::clone(&session) as _);
        }
        let rewrite = Arc::new(crate::rollup_rewrite::RollupRewrite::new());
        rewrite.set_be(Arc::clone(&be));
        ctx.add_analyzer_rule(Arc::clone(&rewrite) as _);
        // Date and timestamp text in PostgreSQL's spellings ('2026-01-01 10:00', 'today').
        ctx.add_analyzer_rule(Arc::new(crate::pg::TimestampText));
        // timestamptz text and date_trunc in the session's TimeZone (after type
        // coercion, whose casts it rewrites).
        ctx.add_analyzer_rule(Arc::new(crate::pg::SessionTimeZone));
        // timestamp/time::text printed as PostgreSQL prints them, in the session's zone.
        ctx.add_analyzer_rule(Arc::new(crate::pg::TemporalText));
        // Interval literals of a fixed length added to timestamps as durations.
        ctx.add_analyzer_rule(Arc::new(crate::fixed_intervals::FixedIntervals));
        // Scans of pg_catalog tables that never hold rows (pg_policy ...) become empty
        // relations, propagated before subqueries are decorrelated.
        ctx.add_analyzer_rule(Arc::new(crate::empty_relations::EmptyRelations));
        // Correlated scalar subqueries of a plain column, checked to one row per outer
        // row as PostgreSQL does, where DataFusion accepts only aggregated ones.
        ctx.add_analyzer_rule(Arc::new(crate::single_row::SingleRowSubqueries));
        // EXISTS as a value in a select list, which DataFusion plans only in WHERE.
        ctx.add_analyzer_rule(Arc::new(crate::exists_value::ExistsValues));
        ctx.register_udf(crate::single_row::udf());
        // pg_catalog (pg_class, pg_attribute, pg_namespace, pg_type ...) built live from
        // the catalogs above, and the functions clients call on it (format_type,
        // pg_table_is_visible, quote_ident ...).
        datafusion_pg_catalog::setup_pg_catalog(&ctx, "eddy", EmptyContextProvider)
            .map_err(|e| classify(*e))?;
        // After the crate's functions: some of these replace its own (quote_ident).
        for f in crate::pg::sql_udfs() {
            ctx.register_udf(f);
        }
        datafusion::execution::FunctionRegistry::register_expr_planner(
            &mut ctx,
            Arc::new(crate::pg_literals::PgLiterals),
        )
        .map_err(classify)?;
        ctx.register_udf(crate::pg::version_udf());
        for f in crate::first_last::udafs()
            .into_iter()
            .chain(crate::ordered_set::udafs())
        {
            ctx.register_udaf(f);
        }
        ctx.register_udf(crate::pg::temporal_text_udf());
        // PostgreSQL's names for functions DataFusion has under others.
        ctx.register_udf(
            (*datafusion::functions::string::uuid())
                .clone()
                .with_aliases(["gen_random_uuid"]),
        );
        ctx.register_udaf(
            (*datafusion::functions_aggregate::variance::var_samp_udaf())
                .clone()
                .with_aliases(["variance"]),
        );
        ctx.register_udaf(
            (*datafusion::functions_aggregate::bool_and_or::bool_and_udaf())
                .clone()
                .with_aliases(["every"]),
        );
        ctx.register_udf(
            (*datafusion::functions::math::signum())
                .clone()
                .with_aliases(["sign"]),
        );
        for f in crate::pg::catalog_udfs() {
            ctx.register_udf(f);
        }
        crate::metrics::init(config.memory_pool_bytes);
        Ok(Self {
            be,
            generation: AtomicU64::new(0),
            ctx,
            compat: crate::compat_parse::CompatParser::new(),
            rewrite,
        })
    }

    pub fn be(&self) -> &Arc<dyn BeService> {
        &self.be
    }

    /// Splits a query string into statements. An empty string (or only `;` and comments)
    /// gives none.
    pub fn parse(&self, sql: &str) -> Result<Vec<Parsed>> {
        // Nested calls the parser would take exponential time over refused (see
        // `parse_cost`); long AND/OR chains balanced, too deep nesting refused (see
        // `deep_sql`).
        crate::parse_cost::check(sql)?;
        let balanced = crate::deep_sql::prepare(sql)?;
        let sql = balanced.as_deref().unwrap_or(sql);
        let parse_sql = |sql: &str| {
            self.compat
                .parse(sql)
                .map(|v| {
                    v.into_iter()
                        .map(|s| Parsed::Sql(Box::new(s)))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| Error::new(ErrorCode::SyntaxError, format!("syntax error: {e}")))
        };
        let Some(pieces) = source_ddl::split(sql)? else {
            return parse_sql(sql);
        };
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Sql(text) => out.extend(parse_sql(&text)?),
                Piece::Eddy(e) => out.push(Parsed::Eddy(e)),
            }
        }
        Ok(out)
    }

    /// The planning state of one session: the shared catalogs and runtime, with the
    /// session's own default schema (its `search_path`).
    pub fn session_state(&self, default_schema: &str) -> SessionState {
        let mut state = self.ctx.state();
        state.config_mut().options_mut().catalog.default_schema = default_schema.to_string();
        state
    }

    /// The generation of the shared context (see [`Planning`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a schema of that name exists (for `search_path`).
    pub fn has_schema(&self, name: &str) -> bool {
        self.ctx
            .catalog("eddy")
            .is_some_and(|c| c.schema_names().iter().any(|s| s == name))
    }

    /// Whether DataFusion plans this statement (as opposed to eddy's own DDL, DELETE,
    /// COPY and transaction statements, which [`Self::execute`] sends to the BE).
    pub fn is_planned(stmt: &Parsed) -> bool {
        match stmt {
            Parsed::Sql(s) => {
                !matches!(
                    **s,
                    Statement::CreateTable(_)
                        | Statement::Drop {
                            object_type: ObjectType::Table | ObjectType::MaterializedView,
                            ..
                        }
                        | Statement::AlterTable(_)
                        | Statement::Delete(_)
                        | Statement::Copy { .. }
                        | Statement::StartTransaction { .. }
                        | Statement::Commit { .. }
                        | Statement::Rollback { .. }
                ) && !matches!(&**s, Statement::CreateView(v) if v.materialized)
            }
            _ => false,
        }
    }

    /// Plans a statement DataFusion runs; placeholders (`$1`) stay in the plan, typed
    /// where DataFusion can infer them.
    pub async fn plan(&self, stmt: Statement, state: &SessionState) -> Result<LogicalPlan> {
        if !crate::compat_parse::has_catalog_subqueries(&stmt) {
            return self.plan_statement(stmt, state).await;
        }
        // Catalog subqueries DataFusion cannot decorrelate answer NULL (see
        // `crate::compat_parse`).
        let fallback = stmt.clone();
        if let Ok(plan) = self.plan_statement(stmt, state).await {
            if state.optimize(&plan).is_ok_and(|p| decorrelated(&p)) {
                return Ok(plan);
            }
        }
        tracing::debug!("catalog subqueries do not decorrelate; planned as NULL");
        let stmt = crate::compat_parse::null_catalog_subqueries(fallback);
        self.plan_statement(stmt, state).await
    }

    async fn plan_statement(&self, stmt: Statement, state: &SessionState) -> Result<LogicalPlan> {
        self.rewrite.refresh(state).await;
        // Kept for a second attempt only where result columns may share a name.
        let retry = repeated_names::may_repeat(&stmt).then(|| stmt.clone());
        let planned = state
            .statement_to_plan(DFStatement::Statement(Box::new(stmt)))
            .await;
        let plan = match (planned, retry) {
            (Err(e), Some(mut stmt)) if repeated_names::is_repeated_name_error(&e) => {
                repeated_names::alias_repeats(&mut stmt);
                state
                    .statement_to_plan(DFStatement::Statement(Box::new(stmt)))
                    .await
            }
            (planned, _) => planned,
        }
        .map_err(classify)?;
        crate::pg_literals::narrow(plan).map_err(classify)
    }

    pub async fn execute(&self, stmt: Parsed) -> Result<Outcome> {
        let planning = Planning::new(self.ctx.state());
        self.execute_in(stmt, &planning).await
    }

    async fn execute_eddy(&self, stmt: EddyStatement) -> Result<Outcome> {
        Ok(match stmt {
            EddyStatement::Checkpoint => {
                self.be.checkpoint().await?;
                cmd("CHECKPOINT", None)
            }
            EddyStatement::CreateSource { def, if_not_exists } => {
                self.be.create_source(def, if_not_exists).await?;
                cmd("CREATE SOURCE", None)
            }
            EddyStatement::DropSource { name, if_exists } => {
                self.be.drop_source(&name, if_exists).await?;
                cmd("DROP SOURCE", None)
            }
            EddyStatement::AlterSource { name, pause } => {
                self.be.set_source_paused(&name, pause).await?;
                cmd("ALTER SOURCE", None)
            }
            EddyStatement::CreateAlert { def, if_not_exists } => {
                self.be.create_alert(def, if_not_exists).await?;
                cmd("CREATE ALERT", None)
            }
            EddyStatement::DropAlert { name, if_exists } => {
                self.be.drop_alert(&name, if_exists).await?;
                cmd("DROP ALERT", None)
            }
        })
    }

    /// Runs one statement with a session's planning state.
    pub async fn execute_in(&self, stmt: Parsed, planning: &Planning) -> Result<Outcome> {
        let stmt = match stmt {
            Parsed::Eddy(e) => return self.execute_eddy(e).await,
            Parsed::Sql(s) => *s,
        };
        match stmt {
            Statement::CreateTable(ct) => {
                let def = ddl::table_def(&ct)?;
                self.be.create_table(def, ct.if_not_exists).await?;
                Ok(cmd("CREATE TABLE", None))
            }
            Statement::CreateView(cv) if cv.materialized => {
                let def = ddl::rollup_def(&cv)?;
                self.be.create_rollup(def, cv.if_not_exists).await?;
                Ok(cmd("CREATE MATERIALIZED VIEW", None))
            }
            Statement::Drop {
                object_type: ObjectType::MaterializedView,
                if_exists,
                names,
                ..
            } => {
                for n in &names {
                    self.be.drop_rollup(&object_name(n), if_exists).await?;
                }
                Ok(cmd("DROP MATERIALIZED VIEW", None))
            }
            Statement::Drop {
                object_type: ObjectType::Table,
                if_exists,
                names,
                ..
            } => {
                for n in &names {
                    self.be.drop_table(&object_name(n), if_exists).await?;
                }
                Ok(cmd("DROP TABLE", None))
            }
            Statement::AlterTable(at) => {
                let table = object_name(&at.name);
                if at.if_exists && self.be.table(&table).is_none() {
                    return Ok(cmd("ALTER TABLE", None));
                }
                for op in &at.operations {
                    match op {
                        AlterTableOperation::AddColumn {
                            if_not_exists,
                            column_def,
                            ..
                        } => {
                            let c = ddl::added_column(column_def)?;
                            self.be.add_column(&table, c, *if_not_exists).await?;
                        }
                        other => {
                            return Err(Error::new(
                                ErrorCode::Unsupported,
                                format!("ALTER TABLE {other} is not supported (only ADD COLUMN)"),
                            ))
                        }
                    }
                }
                Ok(cmd("ALTER TABLE", None))
            }
            Statement::Delete(d) => self.delete(&d).await,
            Statement::Copy {
                source,
                to: false,
                target: CopyTarget::Stdin,
                options,
                legacy_options,
                ..
            } => self.copy_from_stdin(source, &options, &legacy_options),
            Statement::StartTransaction { .. } => Ok(cmd("BEGIN", None)),
            Statement::Commit { .. } => Ok(cmd("COMMIT", None)),
            Statement::Rollback { .. } => Ok(cmd("ROLLBACK", None)),
            other => {
                let plan = self.plan(other, &planning.state).await?;
                self.execute_plan(plan, planning).await
            }
        }
    }

    /// Runs a plan from [`Self::plan`] (with its placeholders already replaced).
    pub async fn execute_plan(&self, plan: LogicalPlan, planning: &Planning) -> Result<Outcome> {
        self.execute_bound(
            crate::prepared::Bound {
                plan,
                optimized: false,
            },
            planning,
        )
        .await
    }

    /// Runs a prepared statement with `params` bound into it (see [`crate::prepared`]).
    pub async fn execute_prepared(
        &self,
        prepared: &crate::prepared::Prepared,
        params: Option<datafusion::common::ParamValues>,
        planning: &Planning,
    ) -> Result<Outcome> {
        let task = || Arc::clone(&planning.task);
        if params.is_none() {
            if let Some(p) = prepared.physical(planning) {
                let stream =
                    datafusion::physical_plan::execute_stream(p, task()).map_err(classify)?;
                return Ok(Outcome::Rows(stream));
            }
        }
        if let Some(point) = prepared.point(planning) {
            if let Some(stream) = point.run(params.as_ref()).await? {
                return Ok(Outcome::Rows(stream));
            }
        }
        let bound = prepared.bind(planning, params)?;
        if bound.optimized && crate::fast_plan::is_constant(&bound.plan) {
            // Boxed, as is `execute_bound`: planning's futures are large, and inline they
            // would size (and be copied with) every run's future, point queries included.
            let physical = Box::pin(self.physical_plan(bound.plan.clone(), true, &planning.state))
                .await
                .map_err(classify)?;
            prepared.keep_physical(&bound, planning, &physical);
            let stream =
                datafusion::physical_plan::execute_stream(physical, task()).map_err(classify)?;
            return Ok(Outcome::Rows(stream));
        }
        Box::pin(self.execute_bound(bound, planning)).await
    }

    /// Runs a prepared statement's plan with its parameters bound (see
    /// [`crate::prepared::Prepared::bind`]).
    pub async fn execute_bound(
        &self,
        bound: crate::prepared::Bound,
        planning: &Planning,
    ) -> Result<Outcome> {
        let plan = bound.plan;
        // DDL and SET statements DataFusion knows change the shared context; queries run
        // on the session's own state.
        if matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Statement(_)) {
            let df = self
                .ctx
                .execute_logical_plan(plan)
                .await
                .map_err(classify)?;
            self.generation.fetch_add(1, Ordering::AcqRel);
            let stream = df.execute_stream().await.map_err(classify)?;
            return Ok(Outcome::Rows(stream));
        }
        let insert = matches!(&plan, LogicalPlan::Dml(d) if matches!(d.op, WriteOp::Insert(_)));
        let notes = match &plan {
            LogicalPlan::Explain(e) => self
                .rewrite
                .explain(&e.plan, planning.state.config_options()),
            LogicalPlan::Analyze(a) => self
                .rewrite
                .explain(&a.input, planning.state.config_options()),
            _ => Vec::new(),
        };
        let physical = self
            .physical_plan(plan, bound.optimized, &planning.state)
            .await
            .map_err(classify)?;
        let task = Arc::clone(&planning.task);
        if insert {
            let batches = datafusion::physical_plan::collect(physical, task)
                .await
                .map_err(classify)?;
            let n: u64 = batches
                .iter()
                .filter(|b| b.num_columns() > 0)
                .map(|b| {
                    b.column(0)
                        .as_primitive::<UInt64Type>()
                        .iter()
                        .flatten()
                        .sum::<u64>()
                })
                .sum();
            return Ok(Outcome::Command {
                tag: "INSERT 0".into(),
                rows: Some(n as usize),
            });
        }
        let stream = datafusion::physical_plan::execute_stream(physical, task).map_err(classify)?;
        if notes.is_empty() {
            return Ok(Outcome::Rows(stream));
        }
        Ok(Outcome::Rows(crate::rollup_rewrite::with_notes(
            stream, notes,
        )))
    }

    /// What `SessionState::create_physical_plan` does (optimize unless `optimized`, then
    /// plan), with the smallest plans planned by [`crate::fast_plan`].
    async fn physical_plan(
        &self,
        plan: LogicalPlan,
        optimized: bool,
        state: &SessionState,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let plan = if optimized {
            plan
        } else {
            state.optimize(&plan)?
        };
        let plan = self.fold_subqueries(plan, state).await?;
        if let Some(p) = crate::fast_plan::plan(&plan, state).await? {
            return Ok(p);
        }
        state
            .query_planner()
            .create_physical_plan(&plan, state)
            .await
    }

    /// Runs the plan's uncorrelated scalar subqueries and plans their values in (see
    /// [`crate::scalar_subquery`]); a plain `EXPLAIN` keeps them, so that it runs nothing.
    async fn fold_subqueries(
        &self,
        plan: LogicalPlan,
        state: &SessionState,
    ) -> datafusion::error::Result<LogicalPlan> {
        if matches!(plan, LogicalPlan::Explain(_)) {
            return Ok(plan);
        }
        let subqueries = crate::scalar_subquery::collect(&plan);
        if subqueries.is_empty() {
            return Ok(plan);
        }
        let mut values = Vec::with_capacity(subqueries.len());
        for sq in subqueries {
            let physical =
                Box::pin(self.physical_plan(sq.subquery.as_ref().clone(), false, state)).await?;
            let v = crate::scalar_subquery::value(physical, state.task_ctx()).await?;
            values.push((sq, v));
        }
        state.optimize(&crate::scalar_subquery::replace(plan, &values)?)
    }

    /// Plans a query and collects its result (used by DELETE and tests).
    pub async fn query(&self, sql: &str) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        let df = self.ctx.sql(sql).await.map_err(classify)?;
        df.collect().await.map_err(classify)
    }

    async fn delete(&self, d: &datafusion::sql::sqlparser::ast::Delete) -> Result<Outcome> {
        let tables = match &d.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        let Some(TableFactor::Table { name, .. }) = tables.first().map(|t| &t.relation) else {
            return Err(Error::new(
                ErrorCode::Unsupported,
                "DELETE needs exactly one table",
            ));
        };
        let table = object_name(name);
        let def = self.be.table(&table).ok_or_else(|| {
            Error::new(
                ErrorCode::TableNotFound,
                format!("relation \"{table}\" does not exist"),
            )
        })?;
        if !def.has_primary_key() {
            return Err(Error::new(
                ErrorCode::InvalidStatement,
                format!(
                    "DELETE is supported on tables with a primary key, and \"{table}\" has none"
                ),
            ));
        }
        let keys = def
            .primary_key
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let filter = d
            .selection
            .as_ref()
            .map(|s| format!(" WHERE {s}"))
            .unwrap_or_default();
        let batches = self
            .query(&format!("SELECT {keys} FROM \"{table}\"{filter}"))
            .await?;
        let n = if batches.is_empty() {
            0
        } else {
            let all = concat_batches(&batches[0].schema(), &batches)
                .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
            self.be.delete_keys(&table, all).await?
        };
        Ok(cmd("DELETE", Some(n as usize)))
    }

    fn copy_from_stdin(
        &self,
        source: CopySource,
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) -> Result<Outcome> {
        let CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            return Err(Error::new(
                ErrorCode::Unsupported,
                "COPY (query) FROM STDIN is not valid",
            ));
        };
        let table = object_name(&table_name);
        let def = self.be.table(&table).ok_or_else(|| {
            Error::new(
                ErrorCode::TableNotFound,
                format!("relation \"{table}\" does not exist"),
            )
        })?;
        let mut f = CopyFormat {
            csv: false,
            header: false,
            delimiter: b'\t',
            columns: columns.iter().map(|c| c.value.clone()).collect(),
        };
        for o in options {
            match o {
                CopyOption::Format(i) => match i.value.to_ascii_lowercase().as_str() {
                    "csv" => {
                        f.csv = true;
                        if f.delimiter == b'\t' {
                            f.delimiter = b',';
                        }
                    }
                    "text" => f.csv = false,
                    other => {
                        return Err(Error::new(
                            ErrorCode::Unsupported,
                            format!("COPY format {other} is not supported"),
                        ))
                    }
                },
                CopyOption::Header(h) => f.header = *h,
                CopyOption::Delimiter(c) => f.delimiter = *c as u8,
                other => {
                    return Err(Error::new(
                        ErrorCode::Unsupported,
                        format!("COPY option {other} is not supported"),
                    ))
                }
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Csv(csv_opts) => {
                    f.csv = true;
                    if f.delimiter == b'\t' {
                        f.delimiter = b',';
                    }
                    if csv_opts
                        .iter()
                        .any(|o| matches!(o, CopyLegacyCsvOption::Header))
                    {
                        f.header = true;
                    }
                }
                CopyLegacyOption::Delimiter(c) => f.delimiter = *c as u8,
                CopyLegacyOption::Header => f.header = true,
                other => {
                    return Err(Error::new(
                        ErrorCode::Unsupported,
                        format!("COPY option {other} is not supported"),
                    ))
                }
            }
        }
        let columns = if f.columns.is_empty() {
            def.columns.len()
        } else {
            f.columns.len()
        };
        Ok(Outcome::CopyIn {
            table,
            format: f,
            columns,
        })
    }

    /// Writes the data of a `COPY ... FROM STDIN`, all or nothing. `data` yields the
    /// CopyData messages as they arrive; CSV is decoded while it arrives.
    pub async fn copy_in(&self, table: &str, f: &CopyFormat, data: ByteStream) -> Result<u64> {
        use futures::TryStreamExt;
        let delimiter = if f.csv { f.delimiter } else { b',' };
        let data: ByteStream = if f.csv {
            data
        } else {
            // The text format's escapes are converted over the whole data.
            let whole: Vec<Bytes> = data.try_collect().await?;
            let csv = Bytes::from(text_to_csv(&whole.concat(), f.delimiter));
            Box::pin(futures::stream::iter([Ok(csv)]))
        };
        let column_header = (!f.columns.is_empty()).then(|| {
            let mut h = f
                .columns
                .join(&(delimiter as char).to_string())
                .into_bytes();
            h.push(b'\n');
            Bytes::from(h)
        });
        let header = f.header || column_header.is_some();
        let drop_own_header = f.header && column_header.is_some();
        let body = crate::copy_body::edited(data, column_header, drop_own_header);
        self.be
            .write_encoded(table, WriteFormat::Csv { header, delimiter }, body)
            .await
    }
}

/// PostgreSQL's text COPY format (tab-separated, `\N` for NULL, backslash escapes) as CSV.
fn text_to_csv(data: &[u8], delimiter: u8) -> Vec<u8> {
    let text = String::from_utf8_lossy(data);
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.lines() {
        if line == "\\." {
            break;
        }
        for (i, field) in line.split(delimiter as char).enumerate() {
            if i > 0 {
                out.push(',');
            }
            if field == "\\N" {
                continue;
            }
            let mut v = String::with_capacity(field.len());
            let mut chars = field.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('t') => v.push('\t'),
                        Some('n') => v.push('\n'),
                        Some('r') => v.push('\r'),
                        Some(o) => v.push(o),
                        None => {}
                    }
                } else {
                    v.push(c);
                }
            }
            out.push('"');
            out.push_str(&v.replace('"', "\"\""));
            out.push('"');
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// Whether an optimized plan has no correlated subquery left (one DataFusion could not
/// decorrelate fails when it is physically planned).
fn decorrelated(plan: &LogicalPlan) -> bool {
    let mut outer = false;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            outer |= e.exists(|e| Ok(matches!(e, Expr::OuterReferenceColumn(..))))?;
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(if outer {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    !outer
}
