//! The PostgreSQL wire protocol front end (simple query protocol and COPY FROM STDIN),
//! on pgwire, with Arrow results encoded by arrow-pg.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{stream, Sink, SinkExt, StreamExt};
use parking_lot::Mutex;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::StartupHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::Format;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{CopyResponse, QueryResponse, Response, Tag};
use pgwire::api::{ClientInfo, PgWireServerHandlers};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;
use tokio::net::TcpListener;

use crate::error::{classify, error_info, to_pgwire};
use crate::metrics;
use crate::query::{CopyFormat, Outcome, QueryEngine};

/// Per-connection state of a COPY in progress.
#[derive(Debug)]
struct CopyState {
    table: String,
    format: CopyFormat,
    data: Mutex<Vec<u8>>,
    limit: usize,
    overflow: Mutex<bool>,
}

#[derive(Debug)]
pub struct PgHandler {
    engine: Arc<QueryEngine>,
    copy_bytes_max: usize,
}

impl NoopStartupHandler for PgHandler {}

/// Observes the query latency histogram when dropped (after the last row is sent).
struct Timer(Instant);

impl Drop for Timer {
    fn drop(&mut self) {
        metrics::QUERY_SECONDS.observe(self.0.elapsed().as_secs_f64());
    }
}

fn rows_response(
    stream: datafusion::execution::SendableRecordBatchStream,
    timer: Timer,
) -> PgWireResult<Response> {
    let schema = stream.schema();
    let fields = Arc::new(arrow_pg::datatypes::arrow_schema_to_pg_fields(
        &schema,
        &Format::UnifiedText,
        None,
    )?);
    let f2 = Arc::clone(&fields);
    let rows = stream
        .map(move |batch| {
            let _keep = &timer;
            match batch {
                Ok(b) => stream::iter(arrow_pg::datatypes::encode_recordbatch(Arc::clone(&f2), b))
                    .boxed(),
                Err(e) => {
                    metrics::QUERY_ERRORS.inc();
                    stream::once(async move { Err(to_pgwire(&classify(e))) }).boxed()
                }
            }
        })
        .flatten();
    Ok(Response::Query(QueryResponse::new(fields, rows)))
}

#[async_trait]
impl SimpleQueryHandler for PgHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
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
        for stmt in statements {
            metrics::QUERIES.inc();
            let timer = Timer(Instant::now());
            match self.engine.execute(stmt).await {
                Ok(Outcome::Rows(s)) => out.push(rows_response(s, timer)?),
                Ok(Outcome::Command { tag, rows }) => {
                    let t = Tag::new(&tag);
                    out.push(Response::Execution(match rows {
                        Some(n) => t.with_rows(n),
                        None => t,
                    }));
                }
                Ok(Outcome::CopyIn {
                    table,
                    format,
                    columns,
                }) => {
                    client.session_extensions().insert(CopyState {
                        table,
                        format,
                        data: Mutex::new(Vec::new()),
                        limit: self.copy_bytes_max,
                        overflow: Mutex::new(false),
                    });
                    out.push(Response::CopyIn(CopyResponse::new(
                        0,
                        columns,
                        stream::empty(),
                    )));
                    // COPY must be the last statement we answer in this round trip.
                    break;
                }
                Ok(Outcome::Empty) => out.push(Response::EmptyQuery),
                Err(e) => {
                    metrics::QUERY_ERRORS.inc();
                    // PostgreSQL stops a multi-statement string at the first error.
                    out.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl CopyHandler for PgHandler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(st) = client.session_extensions().get::<CopyState>() {
            let mut data = st.data.lock();
            if data.len() + copy_data.data.len() > st.limit {
                *st.overflow.lock() = true;
            } else {
                data.extend_from_slice(&copy_data.data);
            }
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(st) = client.session_extensions().get::<CopyState>() else {
            return Err(to_pgwire(&eddy_proto::Error::new(
                eddy_proto::ErrorCode::Internal,
                "no COPY in progress",
            )));
        };
        let data = std::mem::take(&mut *st.data.lock());
        if *st.overflow.lock() {
            return Err(to_pgwire(&eddy_proto::Error::new(
                eddy_proto::ErrorCode::ResourceExhausted,
                format!("COPY data exceeds fe.copy_bytes_max ({} bytes)", st.limit),
            )));
        }
        match self
            .engine
            .copy_in(&st.table, &st.format, Bytes::from(data))
            .await
        {
            Ok(n) => {
                client
                    .send(PgWireBackendMessage::CommandComplete(
                        Tag::new("COPY").with_rows(n as usize).into(),
                    ))
                    .await?;
                Ok(())
            }
            Err(e) => {
                metrics::QUERY_ERRORS.inc();
                Err(to_pgwire(&e))
            }
        }
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(st) = client.session_extensions().get::<CopyState>() {
            st.data.lock().clear();
        }
        to_pgwire(&eddy_proto::Error::new(
            eddy_proto::ErrorCode::Cancelled,
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}

#[derive(Debug)]
struct Factory {
    handler: Arc<PgHandler>,
}

impl PgWireServerHandlers for Factory {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.handler)
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::clone(&self.handler)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.handler)
    }
}

/// Accepts PostgreSQL connections until the process ends. Each connection runs in its own
/// task, so a panic in one ends only that connection.
pub async fn serve(listener: TcpListener, engine: Arc<QueryEngine>, copy_bytes_max: usize) {
    let factory = Arc::new(Factory {
        handler: Arc::new(PgHandler {
            engine,
            copy_bytes_max,
        }),
    });
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let f = Arc::clone(&factory);
        tokio::spawn(async move {
            metrics::CONNECTIONS.inc();
            if let Err(e) = pgwire::tokio::process_socket(socket, None, f).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            metrics::CONNECTIONS.dec();
        });
    }
}
