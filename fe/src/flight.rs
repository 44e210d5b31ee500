//! The Arrow Flight SQL front end (arrow-flight's `FlightSqlService` on tonic).
//!
//! Data flow: `GetFlightInfo` parses and starts a statement on the same [`QueryEngine`]
//! pgwire uses and parks its DataFusion stream in [`results::Results`] under a random
//! handle; `DoGet` with that ticket encodes the stream's record batches to Arrow IPC as
//! they come, never converting through rows. Statements without rows (DDL, INSERT, ...)
//! run in `GetFlightInfo` and give an empty result. `DoPut` carries updates, prepared
//! statement parameters and bulk ingest; ingest hands Arrow batches to
//! [`eddy_proto::BeService::write`], the path every other write takes, so it is validated
//! and durable the same way. Every call is authenticated first by [`serve`]'s interceptor
//! ([`crate::auth`]); errors become gRPC statuses by [`crate::error::to_status`].

mod ingest;
mod metadata;
mod params;
mod results;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{make_array, Array, ArrayRef, MutableArrayData};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::SqlInfoData;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use bytes::Bytes;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use eddy_proto::{Error, ErrorCode, Result};
use futures::{stream, Stream, StreamExt, TryStreamExt};
use parking_lot::Mutex;
use prost::Message;
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authenticator, Credentials};
use crate::error::{classify, to_status};
use crate::metrics;
use crate::query::{Outcome, Parsed, QueryEngine};
use results::{CancelOutcome, Results};

/// The user a request was authenticated as, put in its extensions by the interceptor.
#[derive(Debug, Clone)]
struct User(String);

/// How long a prepared statement lives without being used.
const PREPARED_TTL: Duration = Duration::from_secs(60 * 60);
/// Bound on open prepared statements.
const PREPARED_MAX: usize = 4096;

#[derive(Debug)]
struct Prepared {
    sql: String,
    params: Option<RecordBatch>,
    used: Instant,
}

/// The Flight SQL service over one [`QueryEngine`].
pub struct EddyFlightSql {
    engine: Arc<QueryEngine>,
    auth: Arc<Authenticator>,
    results: Arc<Results>,
    prepared: Mutex<HashMap<Bytes, Prepared>>,
    sql_info: SqlInfoData,
    ingest_bytes_max: usize,
}

impl std::fmt::Debug for EddyFlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EddyFlightSql").finish_non_exhaustive()
    }
}

type FlightDataStream =
    Pin<Box<dyn Stream<Item = std::result::Result<arrow_flight::FlightData, Status>> + Send>>;

fn status(e: Error) -> Status {
    metrics::QUERY_ERRORS.inc();
    to_status(&e)
}

fn arrow_status(e: arrow::error::ArrowError) -> Status {
    status(Error::new(ErrorCode::Internal, e.to_string()))
}

/// A result stream without rows, for statements that only have an effect.
fn no_rows() -> datafusion::execution::SendableRecordBatchStream {
    Box::pin(RecordBatchStreamAdapter::new(
        Arc::new(Schema::empty()),
        stream::empty(),
    ))
}

/// Encodes record batches as Flight data, straight from the Arrow arrays.
fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch>> + Send + 'static,
) -> FlightDataStream {
    let batches = batches
        .map_ok(compact)
        .map_err(|e| FlightError::Tonic(Box::new(status(e))));
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from),
    )
}

/// `batch` with each column that is a small slice of a much larger array (an aggregate
/// emits its whole result as slices of one set of arrays) copied to an array of its own.
/// The Flight encoder sizes messages by the arrays' whole buffers: 8192 rows of a
/// 1.4M-group result would count as 60 MB and be cut into thirty messages of 270 rows.
fn compact(batch: RecordBatch) -> RecordBatch {
    let oversized = |c: &ArrayRef| {
        let data = c.to_data();
        let slice = data.get_slice_memory_size().unwrap_or(usize::MAX);
        c.get_buffer_memory_size() > 2 * slice + 4096
    };
    if !batch.columns().iter().any(oversized) {
        return batch;
    }
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            if !oversized(c) {
                return Arc::clone(c);
            }
            let data = c.to_data();
            let mut copy = MutableArrayData::new(vec![&data], false, data.len());
            match copy.try_extend(0, 0, data.len()) {
                Ok(()) => make_array(copy.freeze()),
                Err(_) => Arc::clone(c),
            }
        })
        .collect();
    RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .unwrap_or(batch)
}

fn one_batch(
    batch: Result<RecordBatch>,
) -> std::result::Result<Response<FlightDataStream>, Status> {
    let batch = batch.map_err(status)?;
    Ok(Response::new(encode(
        batch.schema(),
        stream::iter([Ok(batch)]),
    )))
}

fn ticket_info(
    schema: &Schema,
    ticket: impl ProstMessageExt,
    descriptor: FlightDescriptor,
) -> std::result::Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(arrow_status)?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// Reads the Arrow batches of a `DoPut` (skipping the command-only first message that some
/// clients send without a schema).
async fn put_batches(
    request: Request<PeekableFlightDataStream>,
    bytes_max: usize,
) -> Result<Vec<RecordBatch>> {
    let data = request
        .into_inner()
        .try_filter(|d| futures::future::ready(!d.data_header.is_empty()))
        .map_err(|s| FlightError::Tonic(Box::new(s)));
    let mut decoded = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(data);
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(b) = decoded.next().await {
        let b = b.map_err(|e| match e {
            FlightError::Tonic(s) if s.code() == tonic::Code::Cancelled => results::cancelled(),
            e => Error::new(ErrorCode::DecodeInput, format!("bad Arrow data: {e}")),
        })?;
        bytes += b.get_array_memory_size();
        if bytes > bytes_max {
            return Err(Error::new(
                ErrorCode::ResourceExhausted,
                format!("Flight SQL upload exceeds fe.copy_bytes_max ({bytes_max} bytes)"),
            ));
        }
        out.push(b);
    }
    Ok(out)
}

impl EddyFlightSql {
    pub fn new(
        engine: Arc<QueryEngine>,
        auth: Arc<Authenticator>,
        ingest_bytes_max: usize,
    ) -> Result<Self> {
        Ok(Self {
            engine,
            auth,
            results: Arc::new(Results::default()),
            prepared: Mutex::new(HashMap::new()),
            sql_info: metadata::sql_info()?,
            ingest_bytes_max,
        })
    }

    /// Runs every statement of `sql`; returns the last one's outcome.
    async fn run(&self, sql: &str) -> Result<Outcome> {
        metrics::QUERIES.inc();
        let mut last = Outcome::Empty;
        for stmt in self.engine.parse(sql)? {
            if let Parsed::Sql(s) = &stmt {
                if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Copy { .. }) {
                    return Err(Error::new(
                        ErrorCode::Unsupported,
                        "COPY is not available over Flight SQL; use bulk ingest \
                         (CommandStatementIngest, ADBC's adbc_ingest)",
                    ));
                }
            }
            last = self.engine.execute(stmt).await?;
        }
        Ok(last)
    }

    /// Runs `sql` and parks its result for a `DoGet`; returns the result's schema and handle.
    async fn start(&self, sql: &str) -> Result<(SchemaRef, String)> {
        let stream = match self.run(sql).await? {
            Outcome::Rows(s) => s,
            Outcome::Command { .. } | Outcome::Empty => no_rows(),
            Outcome::CopyIn { .. } => {
                return Err(Error::new(ErrorCode::Internal, "unexpected COPY"));
            }
        };
        let schema = stream.schema();
        Ok((schema, self.results.insert(stream)?))
    }

    /// Runs a statement for its effect; returns the rows it affected (-1 when unknown).
    async fn update(&self, sql: &str) -> Result<i64> {
        Ok(match self.run(sql).await? {
            Outcome::Command { rows: Some(n), .. } => n as i64,
            Outcome::Rows(mut s) => {
                // A query sent as an update: run it to the end, count its rows.
                let mut n = 0i64;
                while let Some(b) = s.next().await {
                    n += b.map_err(classify)?.num_rows() as i64;
                }
                n
            }
            _ => -1,
        })
    }

    fn prepared_sql(&self, handle: &[u8]) -> Result<(String, Option<RecordBatch>)> {
        let mut p = self.prepared.lock();
        let st = p.get_mut(handle).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidStatement,
                "prepared statement does not exist (closed or expired)",
            )
        })?;
        st.used = Instant::now();
        Ok((st.sql.clone(), st.params.clone()))
    }

    /// The bound SQL of each parameter row (one statement when there are no parameters).
    fn bound(sql: &str, params: Option<&RecordBatch>) -> Result<Vec<String>> {
        match params {
            Some(b) if b.num_rows() > 0 => (0..b.num_rows())
                .map(|r| params::bind(sql, Some(b), r))
                .collect(),
            _ if params::count(sql)? > 0 => Err(Error::new(
                ErrorCode::InvalidValue,
                "there is no parameter $1: bind parameters before executing",
            )),
            _ => Ok(vec![sql.to_string()]),
        }
    }
}

#[tonic::async_trait]
impl FlightSqlService for EddyFlightSql {
    type FlightService = EddyFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<
        Response<
            Pin<Box<dyn Stream<Item = std::result::Result<HandshakeResponse, Status>> + Send>>,
        >,
        Status,
    > {
        let user = request
            .extensions()
            .get::<User>()
            .map(|u| u.0.clone())
            .ok_or_else(|| Status::unauthenticated("no credentials"))?;
        let token = self.auth.issue_token(&user);
        let out = stream::iter([Ok(HandshakeResponse {
            protocol_version: 0,
            payload: Bytes::from(token.clone()),
        })]);
        let mut resp: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(out));
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::internal("token is not a valid header"))?;
        resp.metadata_mut().insert("authorization", value);
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let (schema, handle) = self.start(&query.query).await.map_err(status)?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        ticket_info(&schema, ticket, request.into_inner())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let (sql, params) = self
            .prepared_sql(&cmd.prepared_statement_handle)
            .map_err(status)?;
        let mut bound = Self::bound(&sql, params.as_ref()).map_err(status)?;
        if bound.len() > 1 {
            return Err(status(Error::new(
                ErrorCode::Unsupported,
                "a prepared query takes one row of parameters",
            )));
        }
        let sql = bound.pop().unwrap_or_default();
        let (schema, handle) = self.start(&sql).await.map_err(status)?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        ticket_info(&schema, ticket, request.into_inner())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        ticket_info(&metadata::catalogs_schema(), query, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        ticket_info(&metadata::schemas_schema(), query, request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let schema = metadata::tables_schema(&query);
        ticket_info(&schema, query, request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        ticket_info(&metadata::table_types_schema(), query, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        ticket_info(&self.sql_info.schema(), query, request.into_inner())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        ticket_info(
            &metadata::primary_keys_schema(),
            query,
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<FlightDataStream>, Status> {
        let handle = String::from_utf8_lossy(&ticket.statement_handle).to_string();
        let (rows, guard) = self.results.start(&handle).map_err(status)?;
        let schema = rows.schema();
        let started = Instant::now();
        // Each step races the next batch against cancellation; dropping the DataFusion
        // stream stops the query's tasks.
        let batches = stream::unfold(Some((rows, guard)), move |state| async move {
            let (mut rows, guard) = state?;
            let token = guard.token.clone();
            let next = tokio::select! {
                biased;
                _ = token.cancelled() => None,
                next = rows.next() => Some(next),
            };
            match next {
                None => Some((Err(results::cancelled()), None)),
                Some(Some(Ok(b))) => Some((Ok(b), Some((rows, guard)))),
                Some(Some(Err(e))) => Some((Err(classify(e)), None)),
                Some(None) => {
                    metrics::QUERY_SECONDS.observe(started.elapsed().as_secs_f64());
                    None
                }
            }
        });
        Ok(Response::new(encode(schema, batches)))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<FlightDataStream>, Status> {
        one_batch(metadata::catalogs(query))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<FlightDataStream>, Status> {
        one_batch(metadata::schemas(&self.engine, query).await)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<FlightDataStream>, Status> {
        one_batch(metadata::tables(&self.engine, query).await)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<FlightDataStream>, Status> {
        one_batch(metadata::table_types(query))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<FlightDataStream>, Status> {
        one_batch(
            query
                .into_builder(&self.sql_info)
                .build()
                .map_err(|e| Error::new(ErrorCode::Internal, e.to_string())),
        )
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<FlightDataStream>, Status> {
        one_batch(metadata::primary_keys(&self.engine, &query))
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        self.update(&cmd.query).await.map_err(status)
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let batches = put_batches(request, self.ingest_bytes_max)
            .await
            .map_err(status)?;
        ingest::ingest(self.engine.be().as_ref(), &cmd, batches)
            .await
            .map_err(status)
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<DoPutPreparedStatementResult, Status> {
        let batches = put_batches(request, self.ingest_bytes_max)
            .await
            .map_err(status)?;
        let params = match batches.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(
                arrow::compute::concat_batches(&many[0].schema(), many).map_err(arrow_status)?,
            ),
        };
        let mut p = self.prepared.lock();
        let st = p.get_mut(&cmd.prepared_statement_handle).ok_or_else(|| {
            status(Error::new(
                ErrorCode::InvalidStatement,
                "prepared statement does not exist (closed or expired)",
            ))
        })?;
        st.params = params;
        st.used = Instant::now();
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(cmd.prepared_statement_handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let (sql, stored) = self
            .prepared_sql(&cmd.prepared_statement_handle)
            .map_err(status)?;
        // Parameters may come with the update itself (ADBC) or from an earlier bind.
        let sent = put_batches(request, self.ingest_bytes_max)
            .await
            .map_err(status)?;
        let mut total = 0i64;
        let mut any = false;
        let batches: Vec<Option<RecordBatch>> = if sent.is_empty() {
            vec![stored]
        } else {
            sent.into_iter().map(Some).collect()
        };
        for b in &batches {
            for one in Self::bound(&sql, b.as_ref()).map_err(status)? {
                let n = self.update(&one).await.map_err(status)?;
                if n >= 0 {
                    total += n;
                    any = true;
                }
            }
        }
        Ok(if any { total } else { -1 })
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> std::result::Result<ActionCreatePreparedStatementResult, Status> {
        // Parse now so a syntax error surfaces at prepare time, as in PostgreSQL.
        let stmts = self
            .engine
            .parse(&params::bind(&query.query, None, 0).map_err(status)?)
            .map_err(status)?;
        let n = params::count(&query.query).map_err(status)?;
        let is_query = stmts.len() == 1
            && matches!(&stmts[0], Parsed::Sql(s)
                if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Query(_)));
        // A query without parameters reports its result schema now, from its logical
        // plan (nothing runs: ADBC prepares every query it executes); with parameters it
        // is known once they are bound.
        let dataset = match stmts.into_iter().next() {
            Some(Parsed::Sql(s)) if is_query && n == 0 => {
                let state = self.engine.session_state("public");
                let plan = self.engine.plan(*s, &state).await.map_err(status)?;
                Arc::new(plan.schema().as_arrow().clone())
            }
            _ => Arc::new(Schema::empty()),
        };
        let mut raw = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut raw);
        let handle = Bytes::copy_from_slice(&raw);
        {
            let mut p = self.prepared.lock();
            if p.len() >= PREPARED_MAX {
                p.retain(|_, s| s.used.elapsed() < PREPARED_TTL);
            }
            if p.len() >= PREPARED_MAX {
                return Err(status(Error::new(
                    ErrorCode::ResourceExhausted,
                    format!("too many open prepared statements (at most {PREPARED_MAX})"),
                )));
            }
            p.insert(
                handle.clone(),
                Prepared {
                    sql: query.query,
                    params: None,
                    used: Instant::now(),
                },
            );
        }
        let ipc = |s: &Schema| -> std::result::Result<Bytes, Status> {
            let IpcMessage(b) = SchemaAsIpc::new(s, &Default::default())
                .try_into()
                .map_err(arrow_status)?;
            Ok(b)
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema: ipc(&dataset)?,
            parameter_schema: ipc(&Schema::empty())?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> std::result::Result<(), Status> {
        self.prepared
            .lock()
            .remove(&query.prepared_statement_handle);
        Ok(())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        _request: Request<Action>,
    ) -> std::result::Result<ActionCancelQueryResult, Status> {
        let info = FlightInfo::decode(query.info)
            .map_err(|e| Status::invalid_argument(format!("bad FlightInfo: {e}")))?;
        let result = self.cancel_info(&info);
        Ok(ActionCancelQueryResult {
            result: match result {
                CancelStatus::Cancelled => 1,
                CancelStatus::NotCancellable => 3,
                _ => 0,
            },
        })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> std::result::Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type == "CancelFlightInfo" {
            let req =
                CancelFlightInfoRequest::decode(request.get_ref().body.clone()).map_err(|e| {
                    Status::invalid_argument(format!("bad CancelFlightInfoRequest: {e}"))
                })?;
            let info = req
                .info
                .ok_or_else(|| Status::invalid_argument("CancelFlightInfo needs a FlightInfo"))?;
            let result = CancelFlightInfoResult::new(self.cancel_info(&info));
            let body = arrow_flight::Result {
                body: result.encode_to_vec().into(),
            };
            return Ok(Response::new(Box::pin(stream::iter([Ok(body)]))));
        }
        Err(Status::invalid_argument(format!(
            "unknown action {:?}",
            request.get_ref().r#type
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

impl EddyFlightSql {
    /// Cancels every statement result named by the tickets of `info`.
    fn cancel_info(&self, info: &FlightInfo) -> CancelStatus {
        let mut status = CancelStatus::NotCancellable;
        for ep in &info.endpoint {
            let Some(t) = &ep.ticket else { continue };
            let Ok(any) = Any::decode(t.ticket.clone()) else {
                continue;
            };
            let Ok(Some(ticket)) = any.unpack::<TicketStatementQuery>() else {
                continue;
            };
            let handle = String::from_utf8_lossy(&ticket.statement_handle).to_string();
            if self.results.cancel(&handle) == CancelOutcome::Cancelled {
                status = CancelStatus::Cancelled;
            }
        }
        status
    }
}

/// Loads the TLS identity when both files are configured.
pub fn tls_identity(cert: Option<&str>, key: Option<&str>) -> Result<Option<Identity>> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(c), Some(k)) => {
            let read = |p: &str| {
                std::fs::read(p)
                    .map_err(|e| Error::new(ErrorCode::StorageIo, format!("cannot read {p}: {e}")))
            };
            Ok(Some(Identity::from_pem(read(c)?, read(k)?)))
        }
        _ => Err(Error::new(
            ErrorCode::InvalidStatement,
            "fe.tls_cert_path and fe.tls_key_path must be set together",
        )),
    }
}

/// Serves Flight SQL on `listener` until the process ends. Every call passes the
/// authentication interceptor first; the handshake only turns its verdict into a token.
pub async fn serve(
    listener: TcpListener,
    service: EddyFlightSql,
    tls: Option<Identity>,
) -> Result<()> {
    let auth = Arc::clone(&service.auth);
    let check = move |mut req: Request<()>| -> std::result::Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let creds = Credentials::parse(header).map_err(|e| Status::unauthenticated(e.0))?;
        let user = auth
            .authenticate(&creds, req.remote_addr())
            .map_err(|e| Status::unauthenticated(e.0))?;
        req.extensions_mut().insert(User(user));
        Ok(req)
    };
    // One uploaded record batch is one gRPC message, so the upload bound is also the
    // message bound.
    let max = service.ingest_bytes_max;
    let svc = tonic::service::interceptor::InterceptedService::new(
        FlightServiceServer::new(service)
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX),
        check,
    );
    let mut builder = tonic::transport::Server::builder();
    if let Some(identity) = tls {
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| Error::new(ErrorCode::InvalidStatement, format!("TLS: {e}")))?;
    }
    builder
        .add_service(svc)
        // Without TCP_NODELAY every small answer waits ~40 ms for the client's delayed ACK
        // (tonic leaves it unset on this path and ignores `Server::tcp_nodelay`).
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
        .map_err(|e| Error::new(ErrorCode::StorageIo, format!("Flight SQL server: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn slices_of_large_arrays_are_copied_small_and_equal() {
        let n = 200_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("f", DataType::Float64, true),
        ]));
        let s: StringArray = (0..n)
            .map(|i| (i % 7 != 0).then(|| format!("sym{i}")))
            .collect();
        let f: Float64Array = (0..n).map(|i| (i % 5 != 0).then_some(i as f64)).collect();
        let whole = RecordBatch::try_new(schema, vec![Arc::new(s), Arc::new(f)]).unwrap();
        let slice = whole.slice(123_457, 8192);
        let small = compact(slice.clone());
        assert_eq!(small, slice);
        let bytes: usize = small
            .columns()
            .iter()
            .map(|c| c.get_buffer_memory_size())
            .sum();
        assert!(bytes < 200_000, "{bytes}");
        // Batches that own their arrays are passed through as they are.
        let own = compact(whole.clone());
        assert!(Arc::ptr_eq(own.column(0), whole.column(0)));
    }
}
