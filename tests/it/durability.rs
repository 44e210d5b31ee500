//! kill -9 during a stream of acknowledged HTTP writes loses nothing and doubles nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::harness::{rows, scalar, tempdir, Server};

#[tokio::test(flavor = "multi_thread")]
async fn kill9_during_http_inserts_keeps_every_acknowledged_row_once() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[("EDDY__BE__MEMTABLE_BYTES_MAX", "65536")]);
    let c = s.client().await;
    rows(
        &c,
        "CREATE TABLE acks (id bigint NOT NULL, writer bigint NOT NULL, payload text)",
    )
    .await;
    let acked: Arc<Mutex<Vec<i64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let (acked, stop, url) = (
            Arc::clone(&acked),
            Arc::clone(&stop),
            s.http_url("/v1/tables/acks/rows"),
        );
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut batch = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let ids: Vec<i64> = (0..50).map(|i| (w * 1_000_000) + batch * 50 + i).collect();
                let body: String = ids
                    .iter()
                    .map(|id| format!("{{\"id\":{id},\"writer\":{w},\"payload\":\"row {id}\"}}\n"))
                    .collect();
                let r = http
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => acked.lock().unwrap().extend(ids),
                    _ => break,
                }
                batch += 1;
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    drop(c);
    let s = s.restart();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 500,
        "the writers made progress before the kill ({})",
        acked.len()
    );
    let c = s.client().await;
    let total: usize = scalar(&c, "SELECT count(*) FROM acks")
        .await
        .parse()
        .unwrap();
    let distinct: usize = scalar(&c, "SELECT count(DISTINCT id) FROM acks")
        .await
        .parse()
        .unwrap();
    assert_eq!(total, distinct, "no row is stored twice");
    assert!(
        total >= acked.len(),
        "{} acknowledged, {} stored",
        acked.len(),
        total
    );
    let present: std::collections::HashSet<i64> = rows(&c, "SELECT id FROM acks")
        .await
        .into_iter()
        .map(|r| r[0].as_ref().unwrap().parse().unwrap())
        .collect();
    let missing: Vec<&i64> = acked
        .iter()
        .filter(|id| !present.contains(id))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "acknowledged rows lost: {missing:?}");
    // Writes still work after recovery, and a seal of the recovered memtable keeps them.
    rows(&c, "INSERT INTO acks VALUES (-1, -1, 'after')").await;
    rows(&c, "CHECKPOINT").await;
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    assert_eq!(
        scalar(&c, "SELECT count(*) FROM acks").await,
        (total + 1).to_string()
    );
}

/// kill -9 at arbitrary moments of a stream of upserts while memtables seal and segments
/// compact: every key stays unique, and no key loses an acknowledged value.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_during_upserts_seals_and_compaction_keeps_keys_unique_and_acked_values() {
    let dir = tempdir();
    let env = [
        ("EDDY__BE__MEMTABLE_BYTES_MAX", "8192"),
        ("EDDY__BE__COMPACTION_INTERVAL_MS", "100"),
        ("EDDY__BE__COMPACTION_MIN_SEGMENTS", "2"),
    ];
    let mut s = Server::start(dir.path(), &env);
    rows(
        &s.client().await,
        "CREATE TABLE kv (id bigint PRIMARY KEY, v bigint NOT NULL)",
    )
    .await;
    // Per key, the highest value acknowledged so far. Values only grow.
    let acked: Arc<Mutex<std::collections::HashMap<i64, i64>>> = Arc::default();
    let mut counter = 0i64;
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let (a2, stop2, url) = (
            Arc::clone(&acked),
            Arc::clone(&stop),
            s.http_url("/v1/tables/kv/rows"),
        );
        let start = counter;
        let writer = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut c = start;
            while !stop2.load(Ordering::SeqCst) {
                let batch: Vec<(i64, i64)> = (0..40).map(|i| ((c + i * 7) % 300, c + i)).collect();
                c += 40;
                let body: String = batch
                    .iter()
                    .map(|(k, v)| format!("{{\"id\":{k},\"v\":{v}}}\n"))
                    .collect();
                match http
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let mut m = a2.lock().unwrap();
                        for (k, v) in batch {
                            let e = m.entry(k).or_insert(v);
                            *e = (*e).max(v);
                        }
                    }
                    _ => break,
                }
            }
            c
        });
        tokio::time::sleep(std::time::Duration::from_millis(700 + round * 300)).await;
        s = s.restart();
        stop.store(true, Ordering::SeqCst);
        counter = writer.await.unwrap() + 1_000_000;
        let c = s.client().await;
        let total = scalar(&c, "SELECT count(*) FROM kv").await;
        let distinct = scalar(&c, "SELECT count(DISTINCT id) FROM kv").await;
        assert_eq!(total, distinct, "round {round}: a key is stored twice");
        let stored: std::collections::HashMap<i64, i64> = rows(&c, "SELECT id, v FROM kv")
            .await
            .into_iter()
            .map(|r| {
                (
                    r[0].as_ref().unwrap().parse().unwrap(),
                    r[1].as_ref().unwrap().parse().unwrap(),
                )
            })
            .collect();
        for (k, v) in acked.lock().unwrap().iter() {
            let got = stored.get(k).copied();
            assert!(
                got.is_some_and(|g| g >= *v),
                "round {round}: key {k} acked {v}, stored {got:?}"
            );
        }
    }
}
