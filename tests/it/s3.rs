//! The S3 object-store path against moto's S3-compatible server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{rows, scalar, tempdir, Server};

/// moto's server binary: `EDDY_TEST_MOTO_SERVER`, else the repo's test venv.
fn moto_server() -> String {
    std::env::var("EDDY_TEST_MOTO_SERVER")
        .unwrap_or_else(|_| format!("{}/.venv/bin/moto_server", env!("CARGO_MANIFEST_DIR")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Moto(std::process::Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts moto on a free port and creates the test bucket. The port is free when picked
/// but another test's server may take it before moto binds it, and moto's imports can
/// take many seconds on 2 busy cores: a moto that exits is started again on another port.
async fn start_moto(bin: &str) -> (Moto, String) {
    let http = reqwest::Client::new();
    for _attempt in 0..3 {
        let port = free_port();
        let mut moto = Moto(
            Command::new(bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let endpoint = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(90) {
            if let Ok(r) = http.put(format!("{endpoint}/eddy-test")).send().await {
                if r.status().is_success() {
                    return (moto, endpoint);
                }
            }
            if moto.0.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("moto did not start in three attempts");
}

#[tokio::test(flavor = "multi_thread")]
async fn segments_and_manifests_live_in_s3() {
    let bin = moto_server();
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} not found: run scripts/test.sh (it installs moto) or set EDDY_TEST_MOTO_SERVER"
    );
    let (_moto, endpoint) = start_moto(&bin).await;
    let dir = tempdir();
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let args = [
        "--object-store-url",
        "s3://eddy-test/warehouse",
        "--s3-endpoint",
        endpoint.as_str(),
    ];
    let s = Server::start_with_args(dir.path(), &env, &args);
    let c = s.client().await;
    rows(&c, "CREATE TABLE t (id bigint PRIMARY KEY, v text)").await;
    rows(&c, "INSERT INTO t VALUES (1, 'one'), (2, 'two')").await;
    rows(&c, "CHECKPOINT").await;
    rows(&c, "INSERT INTO t VALUES (2, 'deux')").await;
    rows(&c, "CHECKPOINT").await;
    let listing = reqwest::Client::new()
        .get(format!(
            "{endpoint}/eddy-test?list-type=2&prefix=warehouse/"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listing.contains("warehouse/catalog.json"), "{listing}");
    assert!(
        listing.contains("/manifest.json") && listing.contains(".parquet"),
        "{listing}"
    );
    drop(c);
    // A new BE on an empty local disk recovers everything from the bucket.
    let dir2 = tempdir();
    drop(s);
    let s = Server::start_with_args(dir2.path(), &env, &args);
    let c = s.client().await;
    assert_eq!(
        scalar(&c, "SELECT string_agg(v, ',' ORDER BY id) FROM t").await,
        "one,deux"
    );
}
