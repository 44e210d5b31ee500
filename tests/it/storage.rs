//! Storage semantics through the real server: upserts and deletes across seal, compaction
//! and kill -9; pruning; retention; WAL replay.

use crate::harness::{eventually, rows, scalar, tempdir, Server};

const FAST_COMPACTION: &[(&str, &str)] = &[
    ("EDDY__BE__COMPACTION_INTERVAL_MS", "200"),
    ("EDDY__BE__COMPACTION_MIN_SEGMENTS", "2"),
];

async fn state(c: &tokio_postgres::Client) -> Vec<Vec<Option<String>>> {
    rows(c, "SELECT id, v FROM kv ORDER BY id").await
}

fn expect(pairs: &[(i64, &str)]) -> Vec<Vec<Option<String>>> {
    pairs
        .iter()
        .map(|(k, v)| vec![Some(k.to_string()), Some(v.to_string())])
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn upserts_and_deletes_survive_seal_compaction_and_kill9() {
    let dir = tempdir();
    let s = Server::start(dir.path(), FAST_COMPACTION);
    let c = s.client().await;
    rows(&c, "CREATE TABLE kv (id bigint PRIMARY KEY, v text)").await;
    rows(
        &c,
        "INSERT INTO kv VALUES (1, 'a'), (2, 'b'), (3, 'c'), (1, 'a2')",
    )
    .await;
    assert_eq!(
        state(&c).await,
        expect(&[(1, "a2"), (2, "b"), (3, "c")]),
        "later row in one statement wins"
    );
    rows(&c, "CHECKPOINT").await;
    rows(&c, "INSERT INTO kv VALUES (2, 'b2'), (4, 'd')").await;
    rows(&c, "DELETE FROM kv WHERE id = 3").await;
    let want = expect(&[(1, "a2"), (2, "b2"), (4, "d")]);
    assert_eq!(state(&c).await, want);
    // kill -9 before any seal: the WAL replays the upsert and the delete.
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    assert_eq!(
        state(&c).await,
        want,
        "after kill -9 with unsealed upserts and deletes"
    );
    rows(&c, "CHECKPOINT").await;
    rows(&c, "INSERT INTO kv VALUES (4, 'd2')").await;
    rows(&c, "CHECKPOINT").await;
    // Compaction merges the segments and drops deleted rows.
    let merged = eventually(20, || async {
        scalar(
            &c,
            "SELECT count(*) FROM system.segments WHERE table_name = 'kv'",
        )
        .await
            == "1"
    })
    .await;
    assert!(
        merged,
        "segments were not compacted: {:?}",
        rows(&c, "SELECT * FROM system.segments").await
    );
    assert_eq!(
        scalar(
            &c,
            "SELECT max(level) FROM system.segments WHERE table_name = 'kv'"
        )
        .await,
        "1"
    );
    assert_eq!(
        scalar(
            &c,
            "SELECT sum(deleted_rows) FROM system.segments WHERE table_name = 'kv'"
        )
        .await,
        "0"
    );
    let want = expect(&[(1, "a2"), (2, "b2"), (4, "d2")]);
    assert_eq!(state(&c).await, want);
    rows(&c, "INSERT INTO kv VALUES (1, 'a3')").await;
    rows(&c, "DELETE FROM kv WHERE id IN (2, 99)").await;
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    assert_eq!(
        state(&c).await,
        expect(&[(1, "a3"), (4, "d2")]),
        "after compaction and kill -9"
    );
    assert_eq!(scalar(&c, "SELECT count(*) FROM kv").await, "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn pruning_skips_segments_by_partition_zone_map_and_bitmap() {
    let dir = tempdir();
    let s = Server::start(
        dir.path(),
        &[("EDDY__BE__COMPACTION_INTERVAL_MS", "3600000")],
    );
    let c = s.client().await;
    rows(&c, "CREATE TABLE ev (ts timestamp NOT NULL, kind text NOT NULL, n bigint) WITH (time_column = 'ts', partition_by = 'day')").await;
    for day in 1..=3 {
        rows(&c, &format!(
            "INSERT INTO ev VALUES ('2024-01-0{day} 01:00:00', 'view', {day}), ('2024-01-0{day} 02:00:00', 'buy{day}', {day})"
        )).await;
    }
    rows(&c, "CHECKPOINT").await;
    assert_eq!(
        scalar(
            &c,
            "SELECT count(DISTINCT partition) FROM system.segments WHERE table_name = 'ev'"
        )
        .await,
        "3"
    );
    let plan = format!(
        "{:?}",
        rows(
            &c,
            "EXPLAIN ANALYZE SELECT count(*) FROM ev WHERE ts >= '2024-01-03 00:00:00'"
        )
        .await
    );
    assert!(plan.contains("segments_pruned=2/3"), "{plan}");
    assert!(plan.contains("partitions_pruned=2/3"), "{plan}");
    assert_eq!(
        scalar(
            &c,
            "SELECT count(*) FROM ev WHERE ts >= '2024-01-03 00:00:00'"
        )
        .await,
        "2"
    );
    // 'buy2' exists only in the second day's segment: the bitmap index skips the others.
    let plan = format!(
        "{:?}",
        rows(&c, "EXPLAIN ANALYZE SELECT n FROM ev WHERE kind = 'buy2'").await
    );
    assert!(plan.contains("segments_pruned=2/3"), "{plan}");
    // Within the segment it reads, the scan returns only the row the bitmap allows.
    let scan_rows = plan
        .split("EddyScanExec")
        .nth(1)
        .and_then(|scan| scan.split("output_rows=").nth(1));
    assert!(scan_rows.is_some_and(|r| r.starts_with("1,")), "{plan}");
    assert_eq!(
        scalar(&c, "SELECT n FROM ev WHERE kind = 'buy2'").await,
        "2"
    );
    let plan = format!(
        "{:?}",
        rows(&c, "EXPLAIN ANALYZE SELECT n FROM ev WHERE n > 100").await
    );
    assert!(plan.contains("segments_pruned=3/3"), "{plan}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_drops_expired_partitions() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[("EDDY__BE__RETENTION_INTERVAL_MS", "200")]);
    let c = s.client().await;
    rows(&c, "CREATE TABLE logs (ts timestamp NOT NULL, msg text) WITH (time_column = 'ts', partition_by = 'day', retention = '7 days')").await;
    rows(&c, "INSERT INTO logs VALUES ('2020-01-01 00:00:00', 'old'), ('2020-01-02 00:00:00', 'old'), (now(), 'new')").await;
    rows(&c, "CHECKPOINT").await;
    let dropped = eventually(20, || async {
        scalar(&c, "SELECT count(*) FROM logs").await == "1"
    })
    .await;
    assert!(dropped, "expired partitions were not dropped");
    assert_eq!(scalar(&c, "SELECT msg FROM logs").await, "new");
    assert_eq!(
        scalar(
            &c,
            "SELECT count(*) FROM system.segments WHERE table_name = 'logs'"
        )
        .await,
        "1"
    );
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("eddy_be_retention_dropped_segments_total 2"),
        "{metrics}"
    );
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    assert_eq!(
        scalar(&c, "SELECT count(*) FROM logs").await,
        "1",
        "retention is durable"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn memtable_seals_by_size_and_queries_see_both() {
    let dir = tempdir();
    let s = Server::start(
        dir.path(),
        &[
            ("EDDY__BE__MEMTABLE_BYTES_MAX", "4096"),
            ("EDDY__BE__COMPACTION_INTERVAL_MS", "3600000"),
        ],
    );
    let c = s.client().await;
    rows(&c, "CREATE TABLE n (i bigint)").await;
    for k in 0..20 {
        rows(
            &c,
            &format!(
                "INSERT INTO n SELECT value + {} FROM generate_series(1, 100)",
                k * 100
            ),
        )
        .await;
    }
    let sealed = eventually(20, || async {
        scalar(
            &c,
            "SELECT count(*) FROM system.segments WHERE table_name = 'n'",
        )
        .await
            != "0"
    })
    .await;
    assert!(sealed, "the memtable did not seal at its size bound");
    assert_eq!(
        scalar(
            &c,
            "SELECT count(*) || ',' || count(DISTINCT i) || ',' || sum(i) FROM n"
        )
        .await,
        "2000,2000,2001000"
    );
}
