//! Spawns `eddy standalone` on port 0 and finds its addresses in `endpoints.json`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

pub struct Server {
    child: Child,
    pub dir: PathBuf,
    pub pg: String,
    pub http: String,
    pub flight: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Server {
    /// Starts eddy on `dir` with extra env vars (e.g. `EDDY__BE__SEAL_INTERVAL_MS`).
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::start_with_args(dir, env, &[])
    }

    pub fn start_with_args(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Server {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Self::spawn(dir.to_path_buf(), env, args)
    }

    fn spawn(dir: PathBuf, env: Vec<(String, String)>, args: Vec<String>) -> Server {
        let endpoints = dir.join("endpoints.json");
        let _ = std::fs::remove_file(&endpoints);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("eddy.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
        cmd.arg("standalone")
            .arg("--data-dir")
            .arg(&dir)
            .args(["--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--flight-listen", "127.0.0.1:0"])
            .args(&args)
            .env("EDDY_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn eddy");
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&endpoints) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                return Server {
                    child,
                    dir,
                    pg: v["pg"].as_str().unwrap().to_string(),
                    http: v["http"].as_str().unwrap().to_string(),
                    flight: v["flight"].as_str().unwrap().to_string(),
                    env,
                    args,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "eddy exited with {status}: {}",
                    std::fs::read_to_string(endpoints.with_file_name("eddy.log"))
                        .unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "eddy did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9: no shutdown code runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process and starts a new one on the same data directory.
    pub fn restart(mut self) -> Server {
        self.kill9();
        let (dir, env, args) = (
            self.dir.clone(),
            std::mem::take(&mut self.env),
            std::mem::take(&mut self.args),
        );
        Self::spawn(dir, env, args)
    }

    pub fn port(&self) -> u16 {
        self.pg.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub async fn client(&self) -> Client {
        let conn_str = format!("host=127.0.0.1 port={} user=eddy dbname=eddy", self.port());
        let (client, conn) = tokio_postgres::connect(&conn_str, NoTls)
            .await
            .expect("connect");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Runs psql with `-At -c SQL` (unaligned, tuples only) and returns stdout, or stderr on
    /// failure.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let out = self
            .psql_cmd()
            .args(["-At", "-c", sql])
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// Runs psql with `-c SQL`, feeding `input` on stdin (for `COPY ... FROM STDIN`).
    pub fn psql_stdin(&self, sql: &str, input: &[u8]) -> Result<String, String> {
        use std::io::Write;
        let mut child = self
            .psql_cmd()
            .args(["-c", sql])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input)
            .expect("write to psql");
        let out = child.wait_with_output().expect("psql output");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// psql connected to this server, stopping at the first error.
    pub fn psql_cmd(&self) -> Command {
        let mut cmd = Command::new("psql");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port().to_string(),
            "-U",
            "eddy",
            "-d",
            "eddy",
        ])
        .args(["-X", "-v", "ON_ERROR_STOP=1"]);
        cmd
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.http_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs a simple-protocol query and returns rows as optional strings.
pub async fn rows(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    try_rows(c, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
}

pub async fn try_rows(
    c: &Client,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, tokio_postgres::Error> {
    let msgs = c.simple_query(sql).await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).map(|s| s.to_string()))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// The single value of a one-row, one-column query.
pub async fn scalar(c: &Client, sql: &str) -> String {
    let r = rows(c, sql).await;
    assert_eq!(r.len(), 1, "{sql} returned {r:?}");
    r[0][0].clone().unwrap_or_default()
}

/// The SQLSTATE of a failing statement.
pub async fn sqlstate(c: &Client, sql: &str) -> (String, String) {
    let e = try_rows(c, sql).await.expect_err(sql);
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not a server error: {e:?}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// Waits until `f` returns true, checking every 100 ms, up to `secs`.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
