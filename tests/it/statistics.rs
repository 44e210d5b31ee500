//! Answers from metadata: `count(*)`, `min` and `max` planned from exact snapshot
//! statistics (no scan), and scalar subqueries in filters folded into pruning bounds. Every
//! answer is checked against the same query forced through a full scan.

use crate::harness::{rows, scalar, sqlstate, tempdir, Server};

const AGGS: &str = "count(*), min(ts), max(ts), min(id), max(id), min(s), max(s), count(s)";

/// The aggregates from metadata when exact, and over a scan the planner cannot answer
/// from statistics (a filter that keeps every row sits between scan and aggregate).
async fn both(c: &tokio_postgres::Client) -> (Vec<Vec<Option<String>>>, Vec<Vec<Option<String>>>) {
    let fast = rows(c, &format!("SELECT {AGGS} FROM t")).await;
    let slow = rows(
        c,
        &format!("SELECT {AGGS} FROM t WHERE v > -1e9 OR v IS NULL"),
    )
    .await;
    (fast, slow)
}

async fn plan(c: &tokio_postgres::Client, sql: &str) -> String {
    rows(c, &format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .filter_map(|r| r.get(1).cloned().flatten())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn count_min_max_from_metadata_match_a_scan() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(
        &c,
        "CREATE TABLE t (id bigint PRIMARY KEY, ts timestamptz, v double precision, s text) \
         WITH (time_column = 'ts', partition_by = 'day')",
    )
    .await;
    rows(
        &c,
        "INSERT INTO t VALUES (1, '2026-01-01 00:00:00+00', 1.5, 'a'), \
         (2, '2026-01-02 00:00:00+00', 2.5, 'b'), (3, '2026-01-03 00:00:00+00', 3.5, NULL)",
    )
    .await;
    let (fast, slow) = both(&c).await;
    assert_eq!(fast, slow, "memtable only");
    assert_eq!(fast[0][0].as_deref(), Some("3"));
    let p = plan(&c, "SELECT count(*), min(ts), max(id) FROM t").await;
    assert!(
        !p.contains("EddyScanExec"),
        "answered from statistics:\n{p}"
    );

    rows(&c, "CHECKPOINT").await;
    rows(
        &c,
        "INSERT INTO t VALUES (4, '2025-12-31 00:00:00+00', 0.5, 'z')",
    )
    .await;
    let (fast, slow) = both(&c).await;
    assert_eq!(fast, slow, "segments and memtable");
    assert_eq!(
        fast[0],
        [
            "4",
            "2025-12-31 00:00:00+00",
            "2026-01-03 00:00:00+00",
            "1",
            "4",
            "a",
            "z",
            "3"
        ]
        .map(|v| Some(v.to_string()))
        .to_vec()
    );
    let p = plan(&c, "SELECT count(*), min(ts), max(id) FROM t").await;
    assert!(
        !p.contains("EddyScanExec"),
        "answered from statistics:\n{p}"
    );

    // A delete and an upsert leave deleted rows in a segment: the minimum or maximum may
    // have been one of them, so those segments' columns are read.
    rows(&c, "DELETE FROM t WHERE id = 3").await;
    rows(
        &c,
        "INSERT INTO t VALUES (1, '2027-01-01 00:00:00+00', 9.5, 'zz')",
    )
    .await;
    let (fast, slow) = both(&c).await;
    assert_eq!(fast, slow, "after delete and upsert");
    assert_eq!(fast[0][2].as_deref(), Some("2027-01-01 00:00:00+00"));
    assert_eq!(fast[0][0].as_deref(), Some("3"));
    rows(&c, "CHECKPOINT").await;
    let (fast, slow) = both(&c).await;
    assert_eq!(fast, slow, "after delete, upsert and seal");

    // A column added later is NULL in older segments.
    rows(&c, "ALTER TABLE t ADD COLUMN n integer").await;
    rows(
        &c,
        "INSERT INTO t VALUES (5, '2026-06-01 00:00:00+00', 5.5, 'm', 7)",
    )
    .await;
    let fast = rows(&c, "SELECT min(n), max(n), count(n), count(*) FROM t").await;
    let slow = rows(
        &c,
        "SELECT min(n), max(n), count(n), count(*) FROM t WHERE v > -1e9 OR v IS NULL",
    )
    .await;
    assert_eq!(fast, slow);
    assert_eq!(fast[0][0].as_deref(), Some("7"));

    // After kill -9 the WAL replays into the memtable: the same answers.
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    let (fast, slow) = both(&c).await;
    assert_eq!(fast, slow, "after kill -9");
    assert_eq!(fast[0][0].as_deref(), Some("4"));
}

#[tokio::test(flavor = "multi_thread")]
async fn scalar_subqueries_in_filters_prune_like_constants() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(
        &c,
        "CREATE TABLE ticks (symbol text, ts timestamptz, price double precision) \
         WITH (time_column = 'ts', partition_by = 'day')",
    )
    .await;
    for day in 1..=4 {
        rows(
            &c,
            &format!(
                "INSERT INTO ticks VALUES ('A', '2026-01-0{day} 10:00:00+00', {day}.0), \
                 ('B', '2026-01-0{day} 11:00:00+00', {day}.5)"
            ),
        )
        .await;
        rows(&c, "CHECKPOINT").await;
    }
    let q = "SELECT symbol, sum(price) FROM ticks \
             WHERE ts > (SELECT max(ts) FROM ticks) - INTERVAL '1 day' GROUP BY symbol ORDER BY symbol";
    assert_eq!(
        rows(&c, q).await,
        vec![
            vec![Some("A".into()), Some("4".into())],
            vec![Some("B".into()), Some("4.5".into())]
        ]
    );
    let analyzed = rows(&c, &format!("EXPLAIN ANALYZE {q}")).await;
    let text = format!("{analyzed:?}");
    assert!(
        text.contains("segments_pruned=3/4"),
        "the folded bound prunes the three older days' segments: {text}"
    );
    // No row: NULL, which keeps no row.
    assert_eq!(
        scalar(
            &c,
            "SELECT count(*) FROM ticks WHERE ts > (SELECT max(ts) FROM ticks WHERE symbol = 'C')"
        )
        .await,
        "0"
    );
    // More than one row: PostgreSQL's error.
    let (code, msg) = sqlstate(&c, "SELECT * FROM ticks WHERE ts = (SELECT ts FROM ticks)").await;
    assert_eq!(code, "21000", "{msg}");
    assert!(msg.contains("more than one row"), "{msg}");
    // A prepared statement folds again on every execution: it sees new rows.
    let stmt = c
        .prepare("SELECT count(*) FROM ticks WHERE ts >= (SELECT max(ts) FROM ticks)")
        .await
        .unwrap();
    let n: i64 = c.query_one(&stmt, &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    rows(
        &c,
        "INSERT INTO ticks VALUES ('A', '2026-01-05 10:00:00+00', 5.0), ('B', '2026-01-05 10:00:00+00', 5.5)",
    )
    .await;
    let n: i64 = c.query_one(&stmt, &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_memtable_keeps_exact_counts_without_a_min_max_pass_per_query() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, "CREATE TABLE big (id bigint, v double precision)").await;
    rows(
        &c,
        "INSERT INTO big SELECT value, value * 0.5 FROM generate_series(1, 70000)",
    )
    .await;
    let p = plan(&c, "SELECT count(*) FROM big").await;
    assert!(
        !p.contains("EddyScanExec"),
        "count from the row count:\n{p}"
    );
    // 70 000 memtable rows are past the bound: min/max are computed by the query.
    let p = plan(&c, "SELECT max(id) FROM big").await;
    assert!(p.contains("EddyScanExec"), "max over a scan:\n{p}");
    assert_eq!(
        rows(&c, "SELECT count(*), min(id), max(id) FROM big").await,
        vec![vec![
            Some("70000".to_string()),
            Some("1".to_string()),
            Some("70000".to_string())
        ]]
    );
}
