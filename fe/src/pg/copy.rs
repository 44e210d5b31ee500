//! `COPY ... FROM STDIN`: the data is buffered (bounded by `fe.copy_bytes_max`) as the
//! CopyData messages it arrived in, and written whole when the client sends CopyDone.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use parking_lot::Mutex;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::Tag;
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;

use super::PgHandler;
use crate::error::to_pgwire;
use crate::metrics;
use crate::query::CopyFormat;

/// Per-connection state of a COPY in progress.
#[derive(Debug)]
pub(crate) struct CopyState {
    table: String,
    format: CopyFormat,
    /// The CopyData messages as received; the decoders read across them, so they are
    /// never joined.
    data: Mutex<Vec<Bytes>>,
    bytes: Mutex<usize>,
    limit: usize,
    overflow: Mutex<bool>,
    /// When the first CopyData arrived (for the debug log of how long receiving took).
    started: Mutex<Option<std::time::Instant>>,
}

impl CopyState {
    pub(crate) fn new(table: String, format: CopyFormat, limit: usize) -> Self {
        Self {
            table,
            format,
            data: Mutex::new(Vec::new()),
            bytes: Mutex::new(0),
            limit,
            overflow: Mutex::new(false),
            started: Mutex::new(None),
        }
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
            let mut bytes = st.bytes.lock();
            if *bytes == 0 {
                *st.started.lock() = Some(std::time::Instant::now());
            }
            if *bytes + copy_data.data.len() > st.limit {
                *st.overflow.lock() = true;
            } else {
                *bytes += copy_data.data.len();
                st.data.lock().push(copy_data.data);
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
        let parts = std::mem::take(&mut *st.data.lock());
        *st.bytes.lock() = 0;
        if *st.overflow.lock() {
            return Err(to_pgwire(&eddy_proto::Error::new(
                eddy_proto::ErrorCode::ResourceExhausted,
                format!("COPY data exceeds fe.copy_bytes_max ({} bytes)", st.limit),
            )));
        }
        match self.engine.copy_in(&st.table, &st.format, parts).await {
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
            *st.bytes.lock() = 0;
        }
        to_pgwire(&eddy_proto::Error::new(
            eddy_proto::ErrorCode::Cancelled,
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}
