//! TLS for pgwire: with `fe.tls_cert_path` and `fe.tls_key_path` set (the PEM files
//! Flight SQL uses), eddy answers a client's SSLRequest with `S` and serves the connection
//! over rustls; without them it answers `N` and clients with `sslmode=prefer` carry on in
//! plain text.

use std::sync::Arc;

use eddy_proto::{Error, ErrorCode, Result};
use pgwire::tokio::tokio_rustls::rustls;
use pgwire::tokio::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn bad(what: &str, path: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::InvalidValue,
        format!("{what} {path} cannot be used for PostgreSQL TLS: {e}"),
    )
}

/// The acceptor for `cert` and `key` (PEM), or `None` when neither is configured.
/// Configuration errors surface at start, not on the first connection.
pub fn acceptor(cert: Option<&str>, key: Option<&str>) -> Result<Option<TlsAcceptor>> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => {
            return Err(Error::new(
                ErrorCode::InvalidValue,
                "fe.tls_cert_path and fe.tls_key_path must be set together",
            ))
        }
    };
    let read = |p: &str| {
        std::fs::read(p)
            .map_err(|e| Error::new(ErrorCode::StorageIo, format!("cannot read {p}: {e}")))
    };
    let cert_pem = read(cert)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", cert, e))?;
    if certs.is_empty() {
        return Err(bad("certificate", cert, "no certificate in the file"));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| bad("private key", key, e))?;
    // An explicit provider: other crates enable rustls features too, so the process-wide
    // default may be ambiguous.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("certificate", cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad("certificate", cert, e))?;
    // PostgreSQL 17 clients negotiate TLS directly (sslnegotiation=direct) with this ALPN.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}
