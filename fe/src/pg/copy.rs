//! `COPY ... FROM STDIN`: the data (bounded by `fe.copy_bytes_max`) is decoded while the
//! CopyData messages arrive, and written whole when the client sends CopyDone.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use eddy_proto::ByteStream;
use futures::{Sink, SinkExt};
use parking_lot::Mutex;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::Tag;
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::PgHandler;
use crate::error::to_pgwire;
use crate::metrics;
use crate::query::{CopyFormat, QueryEngine};

/// Per-connection state of a COPY in progress: the CopyData messages go through a bounded
/// channel to a task that decodes them as they arrive and writes them when the client
/// sends CopyDone. Data that ends any other way (CopyFail, over the limit, the client
/// gone) ends the task's stream with an error, and nothing is written.
#[derive(Debug)]
pub(crate) struct CopyState {
    table: String,
    tx: Mutex<Option<mpsc::Sender<CopyMsg>>>,
    task: Mutex<Option<JoinHandle<eddy_proto::Result<u64>>>>,
    bytes: Mutex<usize>,
    limit: usize,
    /// When the first CopyData arrived (for the debug log of how long receiving took).
    started: Mutex<Option<std::time::Instant>>,
}

/// CopyData messages in flight to the writing task.
const COPY_CHANNEL_MESSAGES: usize = 64;

#[derive(Debug)]
enum CopyMsg {
    Data(Bytes),
    Done,
    Fail(eddy_proto::Error),
}

impl CopyState {
    /// Starts the task that writes the data into `table`.
    pub(crate) fn start(
        engine: Arc<QueryEngine>,
        table: String,
        format: CopyFormat,
        limit: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(COPY_CHANNEL_MESSAGES);
        let t = table.clone();
        let task = tokio::spawn(async move { engine.copy_in(&t, &format, copy_data(rx)).await });
        Self {
            table,
            tx: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
            bytes: Mutex::new(0),
            limit,
            started: Mutex::new(None),
        }
    }

    /// Passes a message to the writing task. Once it has stopped (it failed early, say)
    /// the rest is dropped; CopyDone reports its error.
    async fn send(&self, msg: CopyMsg) {
        let tx = self.tx.lock().clone();
        if let Some(tx) = tx {
            let _ = tx.send(msg).await;
        }
    }
}

/// The data as the writing task sees it: it ends at CopyDone, and with an error at
/// CopyFail or when the channel closes without CopyDone (the connection went away).
fn copy_data(rx: mpsc::Receiver<CopyMsg>) -> ByteStream {
    Box::pin(futures::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(CopyMsg::Data(d)) => Some((Ok(d), Some(rx))),
            Some(CopyMsg::Done) => None,
            Some(CopyMsg::Fail(e)) => Some((Err(e), None)),
            None => Some((
                Err(eddy_proto::Error::new(
                    eddy_proto::ErrorCode::Cancelled,
                    "COPY ended without CopyDone",
                )),
                None,
            )),
        }
    }))
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
            let msg = {
                let mut bytes = st.bytes.lock();
                if *bytes == 0 {
                    *st.started.lock() = Some(std::time::Instant::now());
                }
                *bytes += copy_data.data.len();
                if *bytes <= st.limit {
                    Some(CopyMsg::Data(copy_data.data))
                } else if *bytes - copy_data.data.len() <= st.limit {
                    Some(CopyMsg::Fail(eddy_proto::Error::new(
                        eddy_proto::ErrorCode::ResourceExhausted,
                        format!("COPY data exceeds fe.copy_bytes_max ({} bytes)", st.limit),
                    )))
                } else {
                    None
                }
            };
            if let Some(msg) = msg {
                st.send(msg).await;
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
        if let Some(t) = *st.started.lock() {
            tracing::debug!(table = %st.table, ms = t.elapsed().as_millis() as u64, "COPY data received");
        }
        st.send(CopyMsg::Done).await;
        st.tx.lock().take();
        let task = st.task.lock().take();
        let result = match task {
            Some(t) => t.await.unwrap_or_else(|e| {
                Err(eddy_proto::Error::new(
                    eddy_proto::ErrorCode::Internal,
                    format!("COPY task: {e}"),
                ))
            }),
            None => Err(eddy_proto::Error::new(
                eddy_proto::ErrorCode::Internal,
                "COPY already finished",
            )),
        };
        match result {
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
        let message = format!("COPY from stdin failed: {}", fail.message);
        if let Some(st) = client.session_extensions().get::<CopyState>() {
            let e = eddy_proto::Error::new(eddy_proto::ErrorCode::Cancelled, message.clone());
            st.send(CopyMsg::Fail(e)).await;
            st.tx.lock().take();
            st.task.lock().take();
        }
        to_pgwire(&eddy_proto::Error::new(
            eddy_proto::ErrorCode::Cancelled,
            message,
        ))
    }
}
