//! Point queries on primary-key tables go through the key index: every answer equals the
//! same query answered by a full scan, wherever the rows live (segment, memtable, moved by
//! an upsert, deleted), before and after kill -9.

use crate::harness::{rows, tempdir, Server};

const NO_MAINTENANCE: &[(&str, &str)] = &[
    ("EDDY__BE__COMPACTION_INTERVAL_MS", "3600000"),
    ("EDDY__BE__SEAL_INTERVAL_MS", "3600000"),
];

/// `(filter using the key, the same filter the index cannot use)`: `+ 0` and `|| ''`
/// hide the key column from the scan's pushed predicates.
const CASES: &[(&str, &str)] = &[
    ("id = 5", "id + 0 = 5"),
    ("id = 1500", "id + 0 = 1500"),
    ("id = 7", "id + 0 = 7"),
    ("id = 9", "id + 0 = 9"),
    ("id = 123456", "id + 0 = 123456"),
    (
        "id IN (5, 1500, 5, 9, 7, 123456)",
        "id + 0 IN (5, 1500, 5, 9, 7, 123456)",
    ),
    ("id = 5 AND v = 'nope'", "id + 0 = 5 AND v = 'nope'"),
    ("id = 5 AND id = 7", "id + 0 = 5 AND id + 0 = 7"),
    ("5 = id", "id + 0 = 5"),
];

const CASES2: &[(&str, &str)] = &[
    ("sym = 'CL' AND n = 2", "sym || '' = 'CL' AND n = 2"),
    ("sym = 'GC' AND n = 1", "sym || '' = 'GC' AND n = 1"),
    (
        "sym IN ('CL', 'GC') AND n IN (1, 2, 3)",
        "sym || '' IN ('CL', 'GC') AND n IN (1, 2, 3)",
    ),
    (
        "sym = 'CL' AND n = 99999999999",
        "sym || '' = 'CL' AND n + 0 = 99999999999",
    ),
];

/// Queries whose key filters DataFusion leaves to the scan, against the same without the
/// key: other columns only, limits, and more keys than one lookup resolves (the scan then
/// filters the rows itself).
async fn same_as_scan(c: &tokio_postgres::Client) {
    let many: Vec<String> = (1..=1100).map(|i| i.to_string()).collect();
    let many = many.join(", ");
    let pairs = [
        (
            "SELECT v FROM kv WHERE id = 1500",
            "SELECT v FROM kv WHERE id + 0 = 1500",
        ),
        (
            "SELECT x, v FROM kv WHERE id IN (7, 8) ORDER BY x",
            "SELECT x, v FROM kv WHERE id + 0 IN (7, 8) ORDER BY x",
        ),
        (
            "SELECT v FROM kv WHERE id = 1500 LIMIT 1",
            "SELECT v FROM kv WHERE id + 0 = 1500 LIMIT 1",
        ),
        (
            "SELECT count(*) FROM kv WHERE id = 7",
            "SELECT count(*) FROM kv WHERE id + 0 = 7",
        ),
        (
            "SELECT price FROM k2 WHERE sym = 'CL' AND n = 2",
            "SELECT price FROM k2 WHERE sym || '' = 'CL' AND n = 2",
        ),
    ];
    for (lookup, scan) in pairs {
        assert_eq!(rows(c, lookup).await, rows(c, scan).await, "{lookup}");
    }
    let lookup = format!("SELECT v FROM kv WHERE id IN ({many}) ORDER BY v LIMIT 5");
    let scan = format!("SELECT v FROM kv WHERE id + 0 IN ({many}) ORDER BY v LIMIT 5");
    let got = rows(c, &lookup).await;
    assert_eq!(got, rows(c, &scan).await, "more keys than a lookup takes");
    assert_eq!(got.len(), 5);
}

async fn check(c: &tokio_postgres::Client, table: &str, cases: &[(&str, &str)], when: &str) {
    for (lookup, scan) in cases {
        let q = |w: &str| format!("SELECT * FROM {table} WHERE {w} ORDER BY 1, 2");
        let got = rows(c, &q(lookup)).await;
        let want = rows(c, &q(scan)).await;
        assert_eq!(got, want, "{when}: {lookup} vs {scan}");
        let plan = format!(
            "{:?}",
            rows(c, &format!("EXPLAIN SELECT * FROM {table} WHERE {lookup}")).await
        );
        // Out of the key column's range: nothing to look up. Contradictory keys: DataFusion
        // plans no scan at all.
        let expect = !lookup.contains("99999999999") && !lookup.contains("id = 5 AND id = 7");
        assert_eq!(
            plan.contains("key_lookup_rows="),
            expect,
            "{when}: {lookup}: {plan}"
        );
    }
}

/// The value of a counter in the Prometheus text of `GET /metrics`.
async fn counter(s: &Server, name: &str) -> u64 {
    let m = s.metrics().await;
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {m}"))
}

/// A prepared point query, run again and again as a pool runs it, answers as the same
/// query through a full scan: rows in the memtable, in a segment, moved, deleted, never
/// there, a NULL key, a composite key, columns picked and renamed, `LIMIT 0`, a row
/// upserted between runs. From its second run on it is answered from the key index
/// without DataFusion (counted in `eddy_fe_point_queries_total`).
async fn prepared_lookups(s: &Server, c: &tokio_postgres::Client, when: &str) {
    let before = counter(s, "eddy_fe_point_queries_total").await;
    let all = c.prepare("SELECT * FROM kv WHERE id = $1").await.unwrap();
    let picked = c
        .prepare("SELECT x, v AS value FROM kv WHERE id = $1")
        .await
        .unwrap();
    let none = c
        .prepare("SELECT v FROM kv WHERE id = $1 LIMIT 0")
        .await
        .unwrap();
    let pair = c
        .prepare("SELECT price, n FROM k2 WHERE n = $2 AND sym = $1")
        .await
        .unwrap();
    let mut answered = 0;
    for round in 0..3 {
        for id in [7i64, 1500, 9, 123456, 3000] {
            let got = c.query(&all, &[&id]).await.unwrap();
            let scan = c
                .query("SELECT x, v FROM kv WHERE id + 0 = $1", &[&id])
                .await
                .unwrap();
            assert_eq!(got.len(), scan.len(), "{when}: id = {id}");
            if let (Some(g), Some(w)) = (got.first(), scan.first()) {
                assert_eq!(g.get::<_, i64>(0), id, "{when}");
                assert_eq!(
                    g.get::<_, Option<String>>(1),
                    w.get::<_, Option<String>>(1),
                    "{when}: {id}"
                );
                assert_eq!(
                    g.get::<_, Option<f64>>(2),
                    w.get::<_, Option<f64>>(0),
                    "{when}: {id}"
                );
            }
            let p = c.query(&picked, &[&id]).await.unwrap();
            assert_eq!(p.len(), got.len(), "{when}: {id}");
            if let (Some(p), Some(g)) = (p.first(), got.first()) {
                assert_eq!(p.columns()[1].name(), "value");
                assert_eq!(p.get::<_, Option<f64>>(0), g.get::<_, Option<f64>>(2));
                assert_eq!(p.get::<_, Option<String>>(1), g.get::<_, Option<String>>(1));
            }
            // (`LIMIT 0` plans as no scan at all.)
            assert!(c.query(&none, &[&id]).await.unwrap().is_empty(), "{when}");
            answered += 2;
        }
        let null: Option<i64> = None;
        assert!(c.query(&all, &[&null]).await.unwrap().is_empty(), "{when}");
        let got = c.query(&pair, &[&"CL", &2i32]).await.unwrap();
        assert_eq!(got.len(), 1, "{when}");
        assert_eq!(got[0].get::<_, f64>(0), 72.0, "{when}");
        assert!(c.query(&pair, &[&"CL", &3i32]).await.unwrap().is_empty());
        answered += 3;
        // A write between runs is seen by the next run.
        let v = format!("r{round}");
        rows(c, &format!("INSERT INTO kv VALUES (3000, '{v}', {round})")).await;
        let got = c.query(&all, &[&3000i64]).await.unwrap();
        assert_eq!(got[0].get::<_, String>(1), v, "{when}");
        answered += 1;
        assert_eq!(c.query(&all, &[&3000i64]).await.unwrap().len(), 1);
        answered += 1;
    }
    // Each statement's first run plans it through DataFusion.
    let after = counter(s, "eddy_fe_point_queries_total").await;
    assert!(
        after - before >= answered - 3,
        "{when}: {} of {answered} runs answered from the index",
        after - before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_lookups_equal_full_scans_across_seal_upsert_delete_and_kill9() {
    let dir = tempdir();
    let s = Server::start(dir.path(), NO_MAINTENANCE);
    let c = s.client().await;
    rows(
        &c,
        "CREATE TABLE kv (id bigint PRIMARY KEY, v text, x double precision)",
    )
    .await;
    rows(
        &c,
        "CREATE TABLE k2 (sym text, n int, price double precision, PRIMARY KEY (sym, n))",
    )
    .await;
    rows(
        &c,
        "INSERT INTO kv SELECT value, 'v' || value, value * 0.5 FROM generate_series(1, 2000)",
    )
    .await;
    rows(
        &c,
        "INSERT INTO k2 VALUES ('CL', 1, 70.5), ('CL', 2, 71.0), ('GC', 1, 2000.0)",
    )
    .await;
    rows(&c, "CHECKPOINT").await;
    // 7 moves to the memtable, 9 is deleted, 1500 stays in the segment, 123456 never was.
    rows(
        &c,
        "INSERT INTO kv VALUES (7, 'seven', 7.7), (3000, 'new', 1.0)",
    )
    .await;
    rows(&c, "DELETE FROM kv WHERE id = 9").await;
    rows(&c, "INSERT INTO k2 VALUES ('CL', 2, 72.0), ('SI', 3, 24.0)").await;
    check(&c, "kv", CASES, "segment + memtable").await;
    check(&c, "k2", CASES2, "segment + memtable").await;
    // The partial key scans as usual.
    let plan = format!(
        "{:?}",
        rows(&c, "EXPLAIN SELECT * FROM k2 WHERE sym = 'CL'").await
    );
    assert!(!plan.contains("key_lookup_rows="), "{plan}");
    // Bound parameters reach the scan as literals.
    let r = c
        .query("SELECT v FROM kv WHERE id = $1", &[&7i64])
        .await
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get::<_, String>(0), "seven");
    let null: Option<i64> = None;
    let r = c
        .query("SELECT v FROM kv WHERE id = $1", &[&null])
        .await
        .unwrap();
    assert!(r.is_empty(), "id = NULL matches nothing");
    // A lookup answers its key equalities exactly: no filter is planned for them.
    let plan = format!(
        "{:?}",
        rows(&c, "EXPLAIN SELECT * FROM kv WHERE id = 1500").await
    );
    assert!(!plan.contains("FilterExec"), "{plan}");
    same_as_scan(&c).await;
    prepared_lookups(&s, &c, "segment + memtable").await;
    let plan = format!(
        "{:?}",
        rows(&c, "EXPLAIN ANALYZE SELECT * FROM kv WHERE id = 1500").await
    );
    assert!(plan.contains("key_lookup_rows=1"), "{plan}");
    assert!(plan.contains("segments_pruned=0/1"), "{plan}");
    assert!(plan.contains("output_rows=1"), "{plan}");
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    check(&c, "kv", CASES, "after kill -9").await;
    same_as_scan(&c).await;
    prepared_lookups(&s, &c, "after kill -9").await;
    check(&c, "k2", CASES2, "after kill -9").await;
    rows(&c, "CHECKPOINT").await;
    check(&c, "kv", CASES, "after kill -9 and a seal").await;
    check(&c, "k2", CASES2, "after kill -9 and a seal").await;
    drop(c);
    drop(s);
}
