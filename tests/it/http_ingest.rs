//! HTTP ingest, /health and /metrics.

use crate::harness::{rows, scalar, tempdir, Server};

/// POSTs `body` to `url` and returns the status and the JSON answer.
async fn post_rows(
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn ndjson_and_csv_rows_and_bad_rows() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, "CREATE TABLE ticks (symbol text NOT NULL, ts timestamp NOT NULL, price double precision NOT NULL, volume bigint)").await;
    let http = reqwest::Client::new();
    let url = s.http_url("/v1/tables/ticks/rows");
    let body =
        "{\"symbol\":\"CL\",\"ts\":\"2024-01-01 00:00:00.5\",\"price\":70.5,\"volume\":100}\n\
                {\"symbol\":\"GC\",\"ts\":\"2024-01-01T00:00:01Z\",\"price\":2000}\n";
    let (status, j) = post_rows(&url, "application/x-ndjson", body).await;
    assert_eq!(status, 200);
    assert_eq!(j["rows"], 2);
    let r = http
        .post(format!("{url}?header=true"))
        .header("content-type", "text/csv")
        .body("symbol,price,ts\nSI,23.5,2024-01-01 00:00:02\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(scalar(&c, "SELECT count(*) FROM ticks").await, "3");

    // A bad row rejects its request, naming row, column and value; nothing is applied.
    let bad = "{\"symbol\":\"CL\",\"ts\":\"2024-01-01 00:00:03\",\"price\":71}\n\
               {\"symbol\":\"CL\",\"ts\":\"not a time\",\"price\":72}\n";
    let (status, j) = post_rows(&url, "application/x-ndjson", bad).await;
    assert_eq!(status, 400);
    let msg = j["error"].as_str().unwrap();
    assert!(
        msg.contains("row 2") && msg.contains("\"ts\"") && msg.contains("not a time"),
        "{msg}"
    );
    let (status, j) = post_rows(
        &url,
        "text/csv",
        "CL,2024-01-01 00:00:04,70,1\n,2024-01-01 00:00:04,70,1\n",
    )
    .await;
    assert_eq!(status, 400);
    let msg = j["error"].as_str().unwrap();
    assert!(msg.contains("row 2") && msg.contains("\"symbol\""), "{msg}");
    assert_eq!(scalar(&c, "SELECT count(*) FROM ticks").await, "3");
    let r = http
        .post(s.http_url("/v1/tables/nope/rows"))
        .body("{}")
        .header("content-type", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    assert_eq!(
        reqwest::get(s.http_url("/health")).await.unwrap().status(),
        200
    );
    let m = s.metrics().await;
    for name in [
        "eddy_be_rows_ingested_total{table=\"ticks\"} 3",
        "eddy_be_ingested_bytes_total",
        "eddy_be_memtable_bytes{table=\"ticks\"}",
        "eddy_be_memtable_bytes_max",
        "eddy_be_wal_fsyncs_total",
        "eddy_fe_queries_total",
        "eddy_fe_query_duration_seconds_bucket",
        "eddy_fe_memory_pool_bytes",
    ] {
        assert!(m.contains(name), "/metrics lacks {name}:\n{m}");
    }
}

/// POSTs `chunks` with chunked transfer encoding, one write per chunk, and returns the
/// status line and body of the answer.
async fn post_chunked(addr: &str, path: &str, content_type: &str, chunks: &[&[u8]]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.set_nodelay(true).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    for c in chunks {
        let mut frame = format!("{:x}\r\n", c.len()).into_bytes();
        frame.extend_from_slice(c);
        frame.extend_from_slice(b"\r\n");
        if sock.write_all(&frame).await.is_err() {
            break; // the server may answer 413 and close before the end
        }
        sock.flush().await.unwrap();
    }
    let _ = sock.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = sock.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A body arriving in frames that cut records (and a CSV header) anywhere is decoded as
/// if whole; one past fe.http_body_bytes_max is refused with 413 and applies nothing.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_in_frames_and_the_body_limit() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[("EDDY__FE__HTTP_BODY_BYTES_MAX", "4096")]);
    let c = s.client().await;
    rows(&c, "CREATE TABLE f (id bigint NOT NULL, name text)").await;
    let json: String = (0..40)
        .map(|i| format!("{{\"id\":{i},\"name\":\"n{i}\"}}\n"))
        .collect();
    let frames: Vec<&[u8]> = json.as_bytes().chunks(7).collect();
    let path = "/v1/tables/f/rows";
    let r = post_chunked(&s.http, path, "application/x-ndjson", &frames).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let csv: String = std::iter::once("name,id\n".to_string())
        .chain((40..60).map(|i| format!("m{i},{i}\n")))
        .collect();
    let frames: Vec<&[u8]> = csv.as_bytes().chunks(3).collect();
    let r = post_chunked(&s.http, &format!("{path}?header=true"), "text/csv", &frames).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(
        scalar(
            &c,
            "SELECT count(*) || ',' || sum(id) || ',' || max(name) FROM f"
        )
        .await,
        format!("60,{},n9", (0..60).sum::<i64>())
    );
    let big: String = (0..400)
        .map(|i| format!("{{\"id\":{i},\"name\":\"n{i}\"}}\n"))
        .collect();
    let frames: Vec<&[u8]> = big.as_bytes().chunks(512).collect();
    let r = post_chunked(&s.http, path, "application/x-ndjson", &frames).await;
    assert!(
        r.starts_with("HTTP/1.1 413") && r.contains("fe.http_body_bytes_max (4096 bytes)"),
        "{r}"
    );
    assert_eq!(scalar(&c, "SELECT count(*) FROM f").await, "60");
}

/// A body of many decoding chunks (decoded while it arrives) is written whole, and a bad
/// row near its end rejects all of it, numbered across the whole body.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_body_is_decoded_while_it_arrives_and_rejected_whole() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(
        &c,
        "CREATE TABLE l (id bigint NOT NULL, ts timestamp NOT NULL, name text)",
    )
    .await;
    let n = 700_000;
    let line = |i: usize| {
        format!("{{\"id\":{i},\"ts\":\"2024-01-01 00:00:00\",\"name\":\"row number {i}\"}}\n")
    };
    let good: String = (0..n).map(line).collect();
    assert!(good.len() > 40 << 20, "three or more chunks");
    let url = s.http_url("/v1/tables/l/rows");
    let bad_row = n - 10;
    let bad: String = (0..n)
        .map(|i| {
            if i == bad_row {
                "{\"id\":\"oops\",\"ts\":\"2024-01-01 00:00:00\"}\n".to_string()
            } else {
                line(i)
            }
        })
        .collect();
    let (status, j) = post_rows(&url, "application/x-ndjson", bad).await;
    assert_eq!(status, 400);
    let msg = j["error"].as_str().unwrap();
    assert!(
        msg.contains(&format!("row {}", bad_row + 1)) && msg.contains("oops"),
        "{msg}"
    );
    assert_eq!(scalar(&c, "SELECT count(*) FROM l").await, "0");

    let (status, j) = post_rows(&url, "application/x-ndjson", good).await;
    assert_eq!(status, 200, "{j}");
    assert_eq!(
        scalar(
            &c,
            "SELECT count(*) || ',' || sum(id) || ',' || min(id) || ',' || max(name) FROM l"
        )
        .await,
        format!("{n},{},0,row number 99999", (0..n as i64).sum::<i64>())
    );
}
