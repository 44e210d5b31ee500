//! Large writes go straight to segments (no WAL, no memtable) when the table is a plain
//! append table: visible at once and whole, durable across kill -9, and tables whose state
//! depends on write order (primary keys, views) keep the logged path.

use crate::harness::{rows, scalar, tempdir, Server};

/// Bulk writes from 1,000 rows; nothing seals or compacts on its own during the test.
const SMALL_BULK: &[(&str, &str)] = &[
    ("EDDY__BE__BULK_WRITE_ROWS_MIN", "1000"),
    ("EDDY__BE__SEAL_INTERVAL_MS", "3600000"),
    ("EDDY__BE__COMPACTION_INTERVAL_MS", "3600000"),
];

/// `n` CSV rows `ts,k,v` from `first`, spread over two days and out of time order.
fn csv_rows(first: i64, n: i64) -> String {
    (first..first + n)
        .map(|i| {
            let day = 1 + i % 2;
            let sec = (i * 7919) % 86_400;
            format!(
                "2024-01-0{day} {:02}:{:02}:{:02},k{},{i}\n",
                sec / 3600,
                sec / 60 % 60,
                sec % 60,
                i % 5
            )
        })
        .collect()
}

/// Table `t` for [`csv_rows`], by day.
async fn create_t(c: &tokio_postgres::Client) {
    rows(
        c,
        "CREATE TABLE t (ts timestamp NOT NULL, k text, v bigint NOT NULL) \
         WITH (time_column = 'ts', partition_by = 'day')",
    )
    .await;
}

async fn segments(c: &tokio_postgres::Client, table: &str) -> String {
    scalar(
        c,
        &format!(
            "SELECT count(*) || ',' || coalesce(sum(rows), 0) FROM system.segments \
             WHERE table_name = '{table}'"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_copy_and_http_are_segments_at_once_and_survive_kill9() {
    let dir = tempdir();
    let s = Server::start(dir.path(), SMALL_BULK);
    let c = s.client().await;
    create_t(&c).await;
    // A small write takes the logged path into the memtable.
    rows(
        &c,
        "INSERT INTO t VALUES ('2024-01-01 00:00:00', 'a', -1), ('2024-01-03 00:00:00', 'b', -2)",
    )
    .await;
    assert_eq!(segments(&c, "t").await, "0,0");
    let out = s
        .psql_stdin(
            "COPY t FROM STDIN (FORMAT csv)",
            csv_rows(0, 5000).as_bytes(),
        )
        .unwrap();
    assert_eq!(out.trim(), "COPY 5000");
    // Committed as segments by the time COPY answered: one per day touched, no CHECKPOINT.
    assert_eq!(segments(&c, "t").await, "2,5000");
    let want = |n: i64| format!("{},{}", n + 2, n * (n - 1) / 2 - 3);
    assert_eq!(
        scalar(&c, "SELECT count(*) || ',' || sum(v) FROM t").await,
        want(5000)
    );
    let body: String = (5000..7000)
        .map(|i| format!("{{\"ts\":\"2024-01-02 12:00:00\",\"k\":\"h\",\"v\":{i}}}\n"))
        .collect();
    let r = reqwest::Client::new()
        .post(s.http_url("/v1/tables/t/rows"))
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(segments(&c, "t").await, "3,7000");
    let metrics = s.metrics().await;
    assert!(metrics.contains("eddy_be_bulk_writes_total 2"), "{metrics}");
    assert!(metrics.contains("eddy_be_bulk_write_rows_min 1000"));

    // A bad row deep in a large COPY rejects all of it.
    let mut bad = csv_rows(7000, 3000);
    bad.push_str("2024-01-01 00:00:00,x,notanumber\n");
    let err = s
        .psql_stdin("COPY t FROM STDIN (FORMAT csv)", bad.as_bytes())
        .unwrap_err();
    assert!(err.contains("row 3001") && err.contains("\"v\""), "{err}");
    assert_eq!(segments(&c, "t").await, "3,7000");

    drop(c);
    let s = s.restart();
    let c = s.client().await;
    assert_eq!(
        scalar(&c, "SELECT count(*) || ',' || sum(v) FROM t").await,
        want(7000),
        "every acknowledged row, once, after kill -9 (bulk rows from the manifest, the \
         others from the WAL)"
    );
    assert_eq!(segments(&c, "t").await, "3,7000");
    let per_day = rows(
        &c,
        "SELECT partition, sum(rows) FROM system.segments WHERE table_name = 't' \
         GROUP BY partition ORDER BY partition",
    )
    .await;
    assert_eq!(
        per_day,
        vec![
            vec![Some("2024-01-01".into()), Some("2500".into())],
            vec![Some("2024-01-02".into()), Some("4500".into())],
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_writes_into_keyed_or_viewed_tables_keep_their_semantics() {
    let dir = tempdir();
    let s = Server::start(dir.path(), SMALL_BULK);
    let c = s.client().await;
    rows(&c, "CREATE TABLE kv (id bigint PRIMARY KEY, v bigint)").await;
    rows(&c, "CREATE TABLE src (k text, v bigint)").await;
    rows(
        &c,
        "CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n, sum(v) AS s FROM src GROUP BY k",
    )
    .await;
    // 3,000 rows over 1,000 keys: later rows replace earlier ones.
    let kv: String = (0..3000).map(|i| format!("{},{i}\n", i % 1000)).collect();
    s.psql_stdin("COPY kv FROM STDIN (FORMAT csv)", kv.as_bytes())
        .unwrap();
    let src: String = (0..3000).map(|i| format!("k{},{i}\n", i % 3)).collect();
    s.psql_stdin("COPY src FROM STDIN (FORMAT csv)", src.as_bytes())
        .unwrap();
    check_keyed_and_viewed(&c).await;
    assert_eq!(segments(&c, "kv").await, "0,0", "keyed writes are logged");
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    check_keyed_and_viewed(&c).await;
}

async fn check_keyed_and_viewed(c: &tokio_postgres::Client) {
    assert_eq!(
        scalar(
            c,
            "SELECT count(*) || ',' || min(v) || ',' || sum(v) FROM kv"
        )
        .await,
        format!("1000,2000,{}", (2000..3000).sum::<i64>()),
        "the last row of each key wins"
    );
    let want: Vec<Vec<Option<String>>> = (0..3)
        .map(|k| {
            vec![
                Some(format!("k{k}")),
                Some("1000".into()),
                Some((0..3000).filter(|i| i % 3 == k).sum::<i64>().to_string()),
            ]
        })
        .collect();
    assert_eq!(
        rows(c, "SELECT k, n, s FROM per_k ORDER BY k").await,
        want,
        "the view saw every row"
    );
}

/// A COPY that ends without CopyDone writes nothing, though its data was being decoded
/// while it arrived: not when the client sends CopyFail, nor when it goes away mid-COPY.
/// The server takes the next COPY as usual.
#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_copy_writes_nothing() {
    use futures::SinkExt;
    let dir = tempdir();
    let s = Server::start(dir.path(), SMALL_BULK);
    let c = s.client().await;
    create_t(&c).await;
    // Well over one decoding chunk (16 MiB), so decoding starts before the data ends.
    let data = csv_rows(0, 800_000);
    assert!(data.len() > 20 << 20);
    {
        let sink = c.copy_in("COPY t FROM STDIN (FORMAT csv)").await.unwrap();
        futures::pin_mut!(sink);
        sink.send(std::io::Cursor::new(data.clone().into_bytes()))
            .await
            .unwrap();
        // Dropped unfinished: tokio-postgres sends CopyFail.
    }
    assert_eq!(scalar(&c, "SELECT count(*) FROM t").await, "0");

    let mut psql = s
        .psql_cmd()
        .args(["-c", "COPY t FROM STDIN (FORMAT csv)"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = psql.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, data.as_bytes()).unwrap();
    // All of it is with psql or on its way; it never sends CopyDone.
    psql.kill().unwrap();
    psql.wait().unwrap();
    drop(stdin);
    // Long enough for the server to notice and, were it to treat the end of the
    // connection as the end of the data, to decode and write it.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(scalar(&c, "SELECT count(*) FROM t").await, "0");
    assert_eq!(segments(&c, "t").await, "0,0");

    let out = s
        .psql_stdin("COPY t FROM STDIN (FORMAT csv)", data.as_bytes())
        .unwrap();
    assert_eq!(out.trim(), "COPY 800000");
    assert_eq!(scalar(&c, "SELECT count(*) FROM t").await, "800000");
}

/// kill -9 at several moments of a large COPY: after the restart the table holds all of its
/// rows or none, and no segment file is left that the manifest does not name.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_during_a_bulk_copy_leaves_all_or_nothing_and_no_orphans() {
    let dir = tempdir();
    let mut s = Server::start(dir.path(), SMALL_BULK);
    let data = csv_rows(0, 300_000);
    for (round, delay_ms) in [5u64, 60, 200, 600].into_iter().enumerate() {
        let c = s.client().await;
        let table = format!("t{round}");
        rows(
            &c,
            &format!(
                "CREATE TABLE {table} (ts timestamp NOT NULL, k text, v bigint NOT NULL) \
                 WITH (time_column = 'ts', partition_by = 'day')"
            ),
        )
        .await;
        let (pg, body) = (s.pg.clone(), data.clone());
        let sql = format!("COPY {table} FROM STDIN (FORMAT csv)");
        let copy = std::thread::spawn(move || {
            let port = pg.rsplit(':').next().unwrap().to_string();
            let mut child = std::process::Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "eddy",
                    "-d",
                    "eddy",
                    "-X",
                    "-c",
                    &sql,
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(body.as_bytes());
            let _ = child.wait();
        });
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        drop(c);
        s = s.restart();
        copy.join().unwrap();
        let c = s.client().await;
        let n = scalar(&c, &format!("SELECT count(*) FROM {table}")).await;
        assert!(
            n == "0" || n == "300000",
            "round {round}: {n} rows survived"
        );
        // Every segment file on disk is one the manifest names.
        let named: std::collections::BTreeSet<String> =
            rows(&c, "SELECT segment_id FROM system.segments")
                .await
                .into_iter()
                .map(|r| format!("seg-{:012}-", r[0].clone().unwrap().parse::<u64>().unwrap()))
                .collect();
        for f in walk(&dir.path().join("store")) {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".parquet") {
                assert!(
                    named.iter().any(|p| name.starts_with(p)),
                    "round {round}: orphan segment file {name} after restart"
                );
            }
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
