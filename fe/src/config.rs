//! FE configuration: the `[fe]` section of the TOML config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeConfig {
    /// PostgreSQL wire protocol address; port 0 picks a free port.
    pub pg_listen: String,
    /// HTTP address (ingest, /health, /metrics).
    pub http_listen: String,
    /// Arrow Flight SQL address (gRPC); port 0 picks a free port.
    pub flight_listen: String,
    /// Users and their passwords (`[fe.users] name = "password"`). With none, clients on
    /// loopback are trusted under any user name and remote clients are refused.
    pub users: BTreeMap<String, String>,
    /// How PostgreSQL clients prove a password when `users` is set: `scram-sha-256`
    /// (default) or `md5` (for old clients).
    pub pg_auth_method: String,
    /// PEM certificate chain; with `tls_key_path`, Flight SQL is served over TLS only.
    pub tls_cert_path: Option<String>,
    /// PEM private key of `tls_cert_path`.
    pub tls_key_path: Option<String>,
    /// Bound of DataFusion's memory pool; queries needing more spill to disk or fail.
    pub memory_pool_bytes: u64,
    /// Parallelism of one query; 0 means the number of cores.
    pub target_partitions: usize,
    /// Largest HTTP ingest body accepted.
    pub http_body_bytes_max: usize,
    /// Largest `COPY ... FROM STDIN` accepted (it is buffered so that it applies whole).
    pub copy_bytes_max: usize,
    /// Most PostgreSQL connections served at once (PostgreSQL's `max_connections`). Each
    /// has a thread of its own; one more is refused with SQLSTATE 53300.
    pub pg_max_connections: usize,
}

impl Default for FeConfig {
    fn default() -> Self {
        Self {
            pg_listen: "127.0.0.1:5433".into(),
            http_listen: "127.0.0.1:8030".into(),
            flight_listen: "127.0.0.1:8070".into(),
            users: BTreeMap::new(),
            pg_auth_method: "scram-sha-256".into(),
            tls_cert_path: None,
            tls_key_path: None,
            memory_pool_bytes: 4 * 1024 * 1024 * 1024,
            target_partitions: 0,
            http_body_bytes_max: 512 * 1024 * 1024,
            copy_bytes_max: 4 * 1024 * 1024 * 1024,
            pg_max_connections: 100,
        }
    }
}
