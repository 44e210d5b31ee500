//! What the Rust benchmarks share: command-line numbers and child processes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The number after `name` on the command line (`--rows 3_000_000`), or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.replace('_', "").parse().expect("a number"))
        .unwrap_or(default)
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `eddy standalone` on `dir` with free loopback ports; returns the process, a
/// PostgreSQL client and the HTTP address.
pub async fn start_eddy(dir: &Path) -> (Proc, tokio_postgres::Client, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["standalone", "--data-dir"])
        .arg(dir)
        .args(["--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(["--flight-listen", "127.0.0.1:0"])
        .env("EDDY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let endpoints = dir.join("endpoints.json");
    let (pg, http) = loop {
        if let Ok(t) = std::fs::read_to_string(&endpoints) {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            break (
                v["pg"].as_str().unwrap().to_string(),
                v["http"].as_str().unwrap().to_string(),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (host, port) = pg.rsplit_once(':').unwrap();
    let (client, conn) = tokio_postgres::connect(
        &format!("host={host} port={port} user=eddy dbname=eddy"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    (Proc(child), client, http)
}

/// The `p` quantile of `sorted` values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
