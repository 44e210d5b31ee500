//! The PostgreSQL wire protocol front end, on pgwire: the simple and extended query
//! protocols, COPY FROM STDIN, session statements (SET/SHOW/BEGIN ...), cancel and
//! password authentication. Arrow results are encoded by arrow-pg.
//!
//! A statement arrives as text, is parsed once ([`PgStatement::classify`]) into a session
//! statement the connection answers itself, a DataFusion plan (placeholders typed by
//! DataFusion), or one of eddy's own statements; then it runs under the session's cancel
//! token and `statement_timeout`.

mod activity;
mod at_time_zone;
mod column_names;
mod conn;
mod conn_thread;
mod copy;
mod cursor;
mod date_functions;
mod datetime;
mod encode;
mod extended;
mod functions;
mod ident;
mod intervals;
mod json;
mod local_time;
mod pg_typeof;
mod rewrite;
mod row_fn;
mod session;
mod sql_functions;
mod startup;
mod temporal_text;
mod text_rows;
mod timestamp_text;
mod tls;
mod to_char;
mod value_limits;

use std::fmt::Debug;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use futures::{stream, Sink};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::Format;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireServerHandlers, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::PgWireBackendMessage;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::copy::CopyState;
use self::cursor::CursorStmt;
use self::encode::{Guard, Output};
use self::session::{pg_error, PlanningLease, Session, SessionStmt};
use self::startup::{Registry, Startup, StartupConfig};
use crate::auth::Authenticator;
use crate::catalog::pg::PgCatalogState;
use crate::error::error_info;
use crate::metrics;
use crate::prepared::Prepared;
use crate::query::{Outcome, Parsed, Planning, QueryEngine};

pub(crate) use self::ident::quote_ident;
pub(crate) use self::json::plan_operator as plan_json_operator;
pub use self::local_time::SessionTimeZone;
pub(crate) use self::rewrite::regproc_casts;
pub use self::startup::PasswordMethod;
pub use self::temporal_text::TemporalText;
pub use self::timestamp_text::TimestampText;
pub use self::tls::acceptor as tls_acceptor;

/// `version()` as PostgreSQL answers it, so that clients parsing it (SQLAlchemy) work.
pub fn version_udf() -> datafusion::logical_expr::ScalarUDF {
    functions::version_udf()
}

/// The function [`TemporalText`] plans casts of timestamps to text into.
pub fn temporal_text_udf() -> datafusion::logical_expr::ScalarUDF {
    temporal_text::udf()
}

/// Catalog functions datafusion-pg-catalog does not provide (and `AT TIME ZONE`'s).
pub fn catalog_udfs() -> Vec<datafusion::logical_expr::ScalarUDF> {
    let mut udfs = functions::visibility_udfs();
    udfs.push(pg_typeof::udf());
    udfs.push(at_time_zone::udf());
    udfs
}

/// PostgreSQL's functions DataFusion lacks: `age`, `make_timestamp`, `justify_*`,
/// `format`, `json_build_object`, `width_bucket`, JSON casts, operators and paths;
/// `quote_ident` and `to_char` as PostgreSQL's.
pub fn sql_udfs() -> Vec<datafusion::logical_expr::ScalarUDF> {
    let mut udfs = date_functions::udfs();
    udfs.extend(sql_functions::udfs());
    udfs.push(ident::udf());
    udfs.push(to_char::udf());
    udfs.extend(json::udfs());
    udfs.extend(value_limits::udfs());
    udfs
}

/// A statement as the pgwire front end keeps it between Parse and Execute.
#[derive(Debug, Clone)]
pub(crate) enum PgStatement {
    /// Reads or changes only the session.
    Session(SessionStmt),
    /// Planned by DataFusion; may hold placeholders.
    Planned(Arc<Planned>),
    /// eddy's own statements (DDL, DELETE, COPY, CHECKPOINT, sources).
    Eddy(Parsed),
    /// DECLARE / FETCH / CLOSE.
    Cursor(CursorStmt),
}

/// Decodes a portal's parameters given the statement's placeholder types.
type BindParams<'a> = dyn Fn(&[Option<DataType>]) -> PgWireResult<ParamValues> + Send + Sync + 'a;

/// A statement DataFusion plans, with what the front end derives from it once.
#[derive(Debug)]
pub(crate) struct Planned {
    pub(crate) prepared: Prepared,
    /// The result columns' declared types and PostgreSQL names.
    columns: OnceLock<Arc<encode::Columns>>,
    /// How its results were sent (and described), for its next runs.
    encodings: encode::EncodingCache,
}

impl Planned {
    fn new(plan: LogicalPlan) -> PgWireResult<Self> {
        Ok(Self {
            prepared: Prepared::new(plan).map_err(|e| eddy_error(&e))?,
            columns: OnceLock::new(),
            encodings: encode::EncodingCache::default(),
        })
    }

    pub(crate) fn plan(&self) -> &LogicalPlan {
        self.prepared.plan()
    }

    fn columns(&self, be: &dyn eddy_proto::BeService) -> &Arc<encode::Columns> {
        self.columns
            .get_or_init(|| encode::Columns::of(self.plan(), be))
    }
}

impl PgStatement {
    /// Whether a plan returns rows (INSERT returns a count in its command tag instead,
    /// and DDL nothing).
    pub(crate) fn returns_rows(plan: &LogicalPlan) -> bool {
        !matches!(
            plan,
            LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Statement(_)
        )
    }
}

/// The handler every connection shares.
#[derive(Debug)]
pub struct PgHandler {
    engine: Arc<QueryEngine>,
    copy_bytes_max: usize,
    /// pg_catalog's state, for the definition functions (`pg_get_indexdef` ...).
    pg_catalog: Option<Arc<PgCatalogState>>,
    /// Live sessions by backend pid (CancelRequest, `pg_terminate_backend`).
    registry: Arc<Registry>,
}

/// Observes the query latency histogram when dropped (after the last row is sent).
struct Timer(Instant);

impl Drop for Timer {
    fn drop(&mut self) {
        metrics::QUERY_SECONDS.observe(self.0.elapsed().as_secs_f64());
    }
}

pub(crate) fn user_error(e: ErrorInfo) -> PgWireError {
    PgWireError::UserError(Box::new(e))
}

fn eddy_error(e: &eddy_proto::Error) -> PgWireError {
    metrics::QUERY_ERRORS.inc();
    user_error(error_info(e))
}

/// The session of a connection (created at startup).
pub(crate) fn session_of<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Session>> {
    client
        .session_extensions()
        .get::<Arc<Session>>()
        .map(|s| Arc::clone(&*s))
        .ok_or_else(|| user_error(pg_error("08P01", "no session for this connection")))
}

fn aborted() -> ErrorInfo {
    pg_error(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

impl PgHandler {
    /// The planning state of a statement in `session`: the one built for the session's
    /// current settings, or a new one.
    fn planning_for<'s, C: ClientInfo>(
        &self,
        client: &C,
        session: &'s Session,
    ) -> PgWireResult<PlanningLease<'s>> {
        session.lease_planning(self.engine.generation(), || {
            Ok(Planning::new(self.state_for(client, session)?))
        })
    }

    fn state_for<C: ClientInfo>(
        &self,
        client: &C,
        session: &Session,
    ) -> PgWireResult<SessionState> {
        let schema = session.default_schema(|s| self.engine.has_schema(s));
        let mut state = self.engine.session_state(&schema);
        state.config_mut().options_mut().execution.time_zone = Some(session.time_zone_name());
        let (pid, _) = client.pid_and_secret_key();
        let settings = session
            .show("all")
            .map(|rows| {
                rows.into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect()
            })
            .unwrap_or_default();
        functions::register(
            &mut state,
            pid,
            &schema,
            &session.user,
            &self.registry,
            settings,
        )
        .map_err(|e| eddy_error(&crate::error::classify(e)))?;
        if let Some(c) = &self.pg_catalog {
            for f in crate::catalog::pg::session_udfs(c, &session.search_path()) {
                datafusion::execution::registry::FunctionRegistry::register_udf(&mut state, f)
                    .map_err(|e| eddy_error(&crate::error::classify(e)))?;
            }
        }
        Ok(state)
    }

    /// Parses one statement's worth of SQL into what the front end keeps.
    async fn classify<C: ClientInfo>(
        &self,
        client: &C,
        session: &Session,
        parsed: Parsed,
    ) -> PgWireResult<PgStatement> {
        if let Parsed::Sql(s) = &parsed {
            if let Some(st) = SessionStmt::from_statement(s) {
                return Ok(PgStatement::Session(st));
            }
            match CursorStmt::parse(s).map_err(user_error)? {
                Some(cursor::Recognised::Ready(c)) => return Ok(PgStatement::Cursor(c)),
                Some(cursor::Recognised::Declare {
                    name,
                    hold,
                    mut query,
                }) => {
                    rewrite::postgres_functions(&mut query);
                    let planning = self.planning_for(client, session)?;
                    let plan = self
                        .engine
                        .plan(*query, &planning.state)
                        .await
                        .map_err(|e| eddy_error(&e))?;
                    return Ok(PgStatement::Cursor(CursorStmt::Declare {
                        name,
                        hold,
                        plan,
                    }));
                }
                None => {}
            }
        }
        if !QueryEngine::is_planned(&parsed) {
            return Ok(PgStatement::Eddy(parsed));
        }
        let Parsed::Sql(mut s) = parsed else {
            return Ok(PgStatement::Eddy(parsed));
        };
        rewrite::postgres_functions(&mut s);
        let planning = self.planning_for(client, session)?;
        let plan = self
            .engine
            .plan(*s, &planning.state)
            .await
            .map_err(|e| eddy_error(&e))?;
        Ok(PgStatement::Planned(Arc::new(Planned::new(plan)?)))
    }

    /// Runs a statement; `plan_params` replaces a plan's placeholders first.
    async fn run<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        stmt: PgStatement,
        bind: Option<&BindParams<'_>>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        metrics::QUERIES.inc();
        let timer = Timer(Instant::now());
        let settings = session.derived();
        let guard = Guard::new(session.begin_statement(), settings.statement_timeout);
        let mut out = Output {
            extra_float_digits: settings.extra_float_digits,
            time_zone: settings.time_zone,
            columns: encode::Columns::none(),
        };
        // A planned statement keeps how its results are encoded.
        let mut encodings: Option<Arc<Planned>> = None;
        let failed = client.transaction_status() == TransactionStatus::Error;
        if failed && !matches!(&stmt, PgStatement::Session(s) if s.ends_transaction()) {
            return Err(user_error(aborted()));
        }
        let outcome = match stmt {
            // The rarer paths' futures are boxed: inline, the largest of them would size
            // (and be copied with) every statement's future, prepared point queries
            // included (that memcpy was 4.7% of their server CPU at 16 clients, 2.5% boxed).
            PgStatement::Session(s) => {
                return Box::pin(
                    self.session_statement(client, session, s, failed, format, &out, guard),
                )
                .await
            }
            PgStatement::Planned(planned) => {
                let params = bind
                    .map(|f| f(planned.prepared.param_types()))
                    .transpose()?;
                out = out.with_columns(planned.columns(self.engine.be().as_ref()));
                let planning = self.planning_for(client, session)?;
                let outcome = guard
                    .run(async {
                        self.engine
                            .execute_prepared(&planned.prepared, params, &planning)
                            .await
                            .map_err(|e| eddy_error(&e))
                    })
                    .await?;
                encodings = Some(planned);
                outcome
            }
            PgStatement::Cursor(c) => {
                return Box::pin(self.cursor_statement(client, session, c, format, &out, guard))
                    .await
            }
            PgStatement::Eddy(p) => {
                let planning = self.planning_for(client, session)?;
                guard
                    .run(async {
                        Box::pin(self.engine.execute_in(p, &planning))
                            .await
                            .map_err(|e| eddy_error(&e))
                    })
                    .await?
            }
        };
        Ok(match outcome {
            Outcome::Rows(s) => Response::Query(encode::rows_response(
                s,
                format,
                &out,
                guard,
                timer,
                encodings.as_deref().map(|p| &p.encodings),
            )?),
            Outcome::Command { tag, rows } => {
                let t = Tag::new(&tag);
                Response::Execution(match rows {
                    Some(n) => t.with_rows(n),
                    None => t,
                })
            }
            Outcome::CopyIn {
                table,
                format: f,
                columns,
            } => {
                client.session_extensions().insert(CopyState::start(
                    Arc::clone(&self.engine),
                    table,
                    f,
                    self.copy_bytes_max,
                ));
                Response::CopyIn(CopyResponse::new(0, columns, stream::empty()))
            }
            Outcome::Empty => Response::EmptyQuery,
        })
    }

    async fn cursor_statement<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        c: CursorStmt,
        format: &Format,
        out: &Output,
        guard: Guard,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Ok(match c {
            CursorStmt::Declare { name, hold, plan } => {
                if !hold && client.transaction_status() == TransactionStatus::Idle {
                    return Err(user_error(pg_error(
                        "25P01",
                        "DECLARE CURSOR can only be used in transaction blocks",
                    )));
                }
                let columns = encode::Columns::of(&plan, self.engine.be().as_ref());
                let planning = self.planning_for(client, session)?;
                let outcome = guard
                    .run(async {
                        self.engine
                            .execute_plan(plan, &planning)
                            .await
                            .map_err(|e| eddy_error(&e))
                    })
                    .await?;
                let Outcome::Rows(stream) = outcome else {
                    return Err(user_error(pg_error(
                        "42P11",
                        "DECLARE CURSOR needs a query that returns rows",
                    )));
                };
                session
                    .cursors
                    .declare(name, hold, stream, columns)
                    .map_err(user_error)?;
                Response::Execution(Tag::new("DECLARE CURSOR"))
            }
            CursorStmt::Fetch { name, count } => {
                let (_, columns) = session.cursors.schema(&name).map_err(user_error)?;
                let out = &out.clone().with_columns(&columns);
                let (schema, batches) = guard
                    .run(async {
                        session
                            .cursors
                            .fetch(&name, count)
                            .await
                            .map_err(user_error)
                    })
                    .await?;
                let stream = MemoryStream::try_new(batches, schema, None)
                    .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
                let mut r = encode::rows_response(Box::pin(stream), format, out, guard, (), None)?;
                r.set_command_tag("FETCH");
                Response::Query(r)
            }
            CursorStmt::Close(name) => {
                session.cursors.close(name.as_deref()).map_err(user_error)?;
                Response::Execution(Tag::new("CLOSE CURSOR"))
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn session_statement<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        s: SessionStmt,
        failed: bool,
        format: &Format,
        out: &Output,
        guard: Guard,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if s.ends_transaction() {
            session.cursors.end_transaction();
        }
        Ok(match s {
            SessionStmt::Set { name, value } => {
                let changed = session.set(&name, value).map_err(user_error)?;
                for (k, v) in changed.reported {
                    startup::report(client, k, v).await?;
                }
                Response::Execution(Tag::new("SET"))
            }
            SessionStmt::Reset(name) => {
                let changed = session.reset(name.as_deref());
                for (k, v) in changed.reported {
                    startup::report(client, k, v).await?;
                }
                Response::Execution(Tag::new("RESET"))
            }
            SessionStmt::Show(name) => {
                let rows = session.show(&name).map_err(user_error)?;
                let (schema, columns): (Schema, Vec<ArrayRef>) = if name.eq_ignore_ascii_case("all")
                {
                    (
                        Schema::new(vec![
                            Field::new("name", DataType::Utf8, false),
                            Field::new("setting", DataType::Utf8, false),
                        ]),
                        vec![
                            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
                            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.1))),
                        ],
                    )
                } else {
                    (
                        Schema::new(vec![Field::new(
                            rows[0].0.to_ascii_lowercase(),
                            DataType::Utf8,
                            false,
                        )]),
                        vec![Arc::new(StringArray::from_iter_values(
                            rows.iter().map(|r| &r.1),
                        ))],
                    )
                };
                let schema = Arc::new(schema);
                let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
                    .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
                let stream = MemoryStream::try_new(vec![batch], schema, None)
                    .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
                Response::Query(encode::rows_response(
                    Box::pin(stream),
                    format,
                    out,
                    guard,
                    (),
                    None,
                )?)
            }
            SessionStmt::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            // COMMIT of a failed transaction rolls it back, and says so.
            SessionStmt::Commit if failed => Response::TransactionEnd(Tag::new("ROLLBACK")),
            SessionStmt::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
            SessionStmt::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
            SessionStmt::DiscardAll => {
                session.reset(None);
                let names: Vec<String> = std::mem::take(&mut *session.prepared.lock())
                    .into_iter()
                    .collect();
                for n in names {
                    session.statement_sql.lock().remove(&n);
                    client.portal_store().rm_statement(&n);
                }
                client.portal_store().clear_portals();
                Response::Execution(Tag::new("DISCARD ALL"))
            }
            SessionStmt::Deallocate(name) => {
                let names: Vec<String> = match name {
                    Some(n) => {
                        session.prepared.lock().remove(&n);
                        vec![n]
                    }
                    None => std::mem::take(&mut *session.prepared.lock())
                        .into_iter()
                        .collect(),
                };
                for n in names {
                    session.statement_sql.lock().remove(&n);
                    client.portal_store().rm_statement(&n);
                }
                Response::Execution(Tag::new("DEALLOCATE"))
            }
            SessionStmt::Accept(tag) => Response::Execution(Tag::new(tag)),
        })
    }
}

#[async_trait]
impl SimpleQueryHandler for PgHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        let statements = match self.engine.parse(query) {
            Ok(s) => s,
            Err(e) => {
                metrics::QUERY_ERRORS.inc();
                return Ok(vec![Response::Error(Box::new(error_info(&e)))]);
            }
        };
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut out = Vec::with_capacity(statements.len());
        // The transaction status as the statements of this string move it, so that the
        // second statement of `BEGIN; SELECT ...` sees the transaction the first opened.
        let start = client.transaction_status();
        let mut status = start;
        for parsed in statements {
            client.set_transaction_status(status);
            session.statement_started(query);
            let result = match self.classify(client, &session, parsed).await {
                Ok(stmt) => {
                    self.run(client, &session, stmt, None, &Format::UnifiedText)
                        .await
                }
                Err(e) => Err(e),
            };
            let result = activity::finish_with(&session, status, result);
            let r = match result {
                Ok(r) => r,
                Err(PgWireError::UserError(e)) => Response::Error(e),
                Err(e) => {
                    client.set_transaction_status(start);
                    return Err(e);
                }
            };
            let stop = matches!(r, Response::Error(_) | Response::CopyIn(_));
            status = match &r {
                Response::TransactionStart(_) => status.to_in_transaction_state(),
                Response::TransactionEnd(_) => status.to_idle_state(),
                Response::Error(_) => status.to_error_state(),
                _ => status,
            };
            out.push(r);
            // PostgreSQL stops a multi-statement string at the first error, and COPY
            // must be the last statement answered in this round trip.
            if stop {
                break;
            }
        }
        // pgwire applies the responses' transitions to the status it holds itself.
        client.set_transaction_status(start);
        Ok(out)
    }
}

#[derive(Debug)]
struct Factory {
    handler: Arc<PgHandler>,
    extended: Arc<extended::Extended>,
    startup: Arc<StartupConfig>,
    /// This connection's: cancelled by `pg_terminate_backend`.
    terminated: CancellationToken,
    /// Opened while `fe.pg_max_connections` others were: its startup is refused.
    refused: bool,
}

impl PgWireServerHandlers for Factory {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.handler)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.extended)
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::clone(&self.handler)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Startup::new(
            Arc::clone(&self.startup),
            self.terminated.clone(),
            self.refused,
        ))
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::clone(&self.startup.registry)
    }
}

/// Accepts PostgreSQL connections until the process ends. Each connection runs on its own
/// thread (see [`conn_thread`]), so a panic in one ends only that connection.
pub(crate) async fn serve(
    listener: TcpListener,
    engine: Arc<QueryEngine>,
    auth: Arc<Authenticator>,
    method: PasswordMethod,
    copy_bytes_max: usize,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    max_connections: usize,
) {
    // pg_catalog completed from the BE's table definitions (primary keys, NOT NULL,
    // typmods); the crate's alone still answers if that cannot be set up.
    let pg_catalog = match crate::catalog::pg::install(
        &engine.session_state("public"),
        Arc::clone(engine.be()),
    ) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %snafu::Report::from_error(e), "pg_catalog: keeping the plain catalog");
            None
        }
    };
    let registry = Arc::new(Registry::default());
    if let Some(c) = &pg_catalog {
        c.set_backends(
            Arc::clone(&registry) as crate::catalog::pg::BackendLister,
            auth.user_names(),
        );
    }
    let handler = Arc::new(PgHandler {
        engine,
        copy_bytes_max,
        pg_catalog,
        registry,
    });
    let extended = Arc::new(extended::Extended::new(Arc::clone(&handler)));
    let startup = Arc::new(StartupConfig {
        auth,
        method,
        registry: Arc::clone(&handler.registry),
        pids: Arc::new(RandomPidSecretKeyGenerator::default()),
        max_connections,
    });
    metrics::MAX_CONNECTIONS.set(max_connections as i64);
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let terminated = CancellationToken::new();
        let tls = tls.clone();
        let slot = conn_thread::Slot::take(&open, max_connections);
        let refused = slot.is_none();
        let f = Arc::new(Factory {
            handler: Arc::clone(&handler),
            extended: Arc::clone(&extended),
            startup: Arc::clone(&startup),
            terminated: terminated.clone(),
            refused,
        });
        let serve = move |socket| async move {
            // Held until the connection's future ends or unwinds.
            let _slot = slot;
            tokio::select! {
                r = conn::process_socket(socket, tls, f) => {
                    if let Err(e) = r {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                }
                // Dropping the connection's future closes its socket.
                _ = terminated.cancelled() => {
                    tracing::info!(peer = %peer, "connection terminated by pg_terminate_backend");
                }
            }
        };
        if refused {
            // Only to tell the client why (after its startup message, as PostgreSQL does).
            metrics::REFUSED_CONNECTIONS.inc();
            tokio::spawn(serve(socket));
        } else {
            conn_thread::spawn(socket, tokio::runtime::Handle::current(), serve);
        }
    }
}
