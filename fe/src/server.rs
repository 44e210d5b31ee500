//! Binds the FE's listeners and runs them.

use std::net::SocketAddr;
use std::sync::Arc;

use eddy_proto::{BeService, Error, ErrorCode, Result};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::config::FeConfig;
use crate::query::QueryEngine;

/// The addresses the FE actually listens on (ports resolved when 0 was asked for).
#[derive(Debug, Clone, Serialize)]
pub struct Endpoints {
    pub pg: SocketAddr,
    pub http: SocketAddr,
}

async fn bind(what: &str, addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::new(
            ErrorCode::StorageIo,
            format!("cannot listen for {what} on {addr}: {e}"),
        )
    })
}

/// Starts the PostgreSQL and HTTP servers on the runtime and returns their addresses.
pub async fn start(config: &FeConfig, be: Arc<dyn BeService>) -> Result<Endpoints> {
    let engine = Arc::new(QueryEngine::new(Arc::clone(&be), config)?);
    let pg = bind("PostgreSQL", &config.pg_listen).await?;
    let http = bind("HTTP", &config.http_listen).await?;
    let endpoints = Endpoints {
        pg: pg
            .local_addr()
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?,
        http: http
            .local_addr()
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?,
    };
    tokio::spawn(crate::pg::serve(pg, engine, config.copy_bytes_max));
    let router = crate::http::router(be, config.http_body_bytes_max);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(http, router).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok(endpoints)
}
