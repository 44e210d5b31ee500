//! Binds the FE's listeners and runs them.

use std::net::SocketAddr;
use std::sync::Arc;

use eddy_proto::{BeService, Error, ErrorCode, Result};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::config::FeConfig;
use crate::flight::EddyFlightSql;
use crate::query::QueryEngine;

/// The addresses the FE actually listens on (ports resolved when 0 was asked for).
#[derive(Debug, Clone, Serialize)]
pub struct Endpoints {
    pub pg: SocketAddr,
    pub http: SocketAddr,
    pub flight: SocketAddr,
}

async fn bind(what: &str, addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::new(
            ErrorCode::StorageIo,
            format!("cannot listen for {what} on {addr}: {e}"),
        )
    })
}

/// Starts the PostgreSQL, HTTP and Flight SQL servers on the runtime and returns their
/// addresses.
pub async fn start(config: &FeConfig, be: Arc<dyn BeService>) -> Result<Endpoints> {
    let engine = Arc::new(QueryEngine::new(Arc::clone(&be), config)?);
    let pg_method = crate::pg::PasswordMethod::parse(&config.pg_auth_method).ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidValue,
            format!(
                "fe.pg_auth_method must be \"scram-sha-256\" or \"md5\", not \"{}\"",
                config.pg_auth_method
            ),
        )
    })?;
    let pg = bind("PostgreSQL", &config.pg_listen).await?;
    let http = bind("HTTP", &config.http_listen).await?;
    let flight = bind("Flight SQL", &config.flight_listen).await?;
    // Configuration errors (TLS files) surface at start, not on the first connection.
    let tls = crate::flight::tls_identity(
        config.tls_cert_path.as_deref(),
        config.tls_key_path.as_deref(),
    )?;
    let pg_tls = crate::pg::tls_acceptor(
        config.tls_cert_path.as_deref(),
        config.tls_key_path.as_deref(),
    )?;
    let auth = Arc::new(Authenticator::new(config.users.clone()));
    refuse_open_listener(&pg, "fe.pg_listen", &auth)?;
    let flight_sql = EddyFlightSql::new(
        Arc::clone(&engine),
        Arc::clone(&auth),
        config.copy_bytes_max,
    )?;
    let endpoints = Endpoints {
        pg: pg
            .local_addr()
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?,
        http: http
            .local_addr()
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?,
        flight: flight
            .local_addr()
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?,
    };
    tokio::spawn(async move {
        if let Err(e) = crate::flight::serve(flight, flight_sql, tls).await {
            tracing::error!(error = %snafu::Report::from_error(e), "Flight SQL server stopped");
        }
    });
    tokio::spawn(crate::pg::serve(
        pg,
        engine,
        auth,
        pg_method,
        config.copy_bytes_max,
        pg_tls,
        config.pg_max_connections,
    ));
    let router = crate::http::router(be, config.http_body_bytes_max);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(http, router).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok(endpoints)
}

/// Without users every loopback client is trusted; listening beyond loopback then would
/// let anyone who can reach the port in, so refuse to start and say what to do.
fn refuse_open_listener(l: &TcpListener, key: &str, auth: &Authenticator) -> Result<()> {
    let addr = l
        .local_addr()
        .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    if !addr.ip().is_loopback() && !auth.has_users() {
        return Err(Error::new(
            ErrorCode::InvalidValue,
            format!(
                "{key} = {addr} accepts connections from other hosts, but no users are \
                 configured: add passwords under [fe.users] (name = \"password\") or listen \
                 on a loopback address such as 127.0.0.1"
            ),
        ));
    }
    Ok(())
}
