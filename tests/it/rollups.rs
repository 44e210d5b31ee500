//! Materialized views: every view equals its defining query run by DataFusion over the
//! base table, whatever the arrival order, seals, restarts and kill -9; lateness drops are
//! counted; query rewrite answers from views and says why when it does not.
//!
//! The defining query is run with `FROM (SELECT * FROM t) t`, which the rewrite never
//! answers from a view (it only matches aggregates directly over a table), so the
//! comparison is against the raw rows. Set `EDDY_TEST_SEED` to replay a failing seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::{eventually, rows, scalar, sqlstate, tempdir, Server};

const TICKS: &str = "CREATE TABLE ticks (symbol text, ts timestamp, price double precision, \
    volume bigint) WITH (time_column = 'ts', partition_by = 'hour')";
const EVENTS: &str = "CREATE TABLE events (user_id bigint, ts timestamp, event_type text, \
    amount double precision, product_id bigint) WITH (time_column = 'ts', partition_by = 'hour')";

const BARS: &str = "SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS bucket, \
    first_value(price ORDER BY ts) AS open, max(price) AS high, min(price) AS low, \
    last_value(price ORDER BY ts) AS close, sum(volume) AS volume, \
    sum(price * volume) / sum(volume) AS vwap, count(*) AS trades, avg(price) AS avg_price, \
    count(DISTINCT volume) AS volumes, count(*) FILTER (WHERE volume > 500) AS big \
    FROM ticks WHERE symbol <> 'S4' GROUP BY symbol, date_bin(INTERVAL '1 minute', ts)";
const BARS_10M: &str = "SELECT symbol, date_bin(INTERVAL '10 minutes', bucket) AS bucket, \
    first_value(open ORDER BY bucket) AS open, max(high) AS high, min(low) AS low, \
    last_value(close ORDER BY bucket) AS close, sum(volume) AS volume, sum(trades) AS trades \
    FROM bars GROUP BY 1, 2";
const SESSIONS: &str = "SELECT user_id, session_start, session_end, count(*) AS events, \
    count(*) FILTER (WHERE event_type = 'page_view') AS page_views, \
    sum(amount) FILTER (WHERE event_type = 'purchase') AS revenue \
    FROM SESSION(events, user_id, ts, INTERVAL '30 minutes') GROUP BY 1, 2, 3";
const POPULAR: &str = "SELECT product_id, date_bin(INTERVAL '5 minutes', ts) AS bucket, \
    count(*) FILTER (WHERE event_type = 'page_view') AS views, \
    count(*) FILTER (WHERE event_type = 'purchase') AS purchases, \
    count(DISTINCT user_id) AS users FROM events GROUP BY 1, 2";

fn seed() -> u64 {
    std::env::var("EDDY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen_range(0..1_000_000))
}

fn ts(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// NDJSON lines of ticks and events over two hours, then shuffled (random arrival).
fn data(rng: &mut StdRng) -> (Vec<String>, Vec<String>) {
    let base = 1_700_000_000_000_000i64;
    let mut ticks: Vec<String> = (0..6000)
        .map(|_| {
            let price = if rng.gen_range(0..25) == 0 {
                "null".to_string()
            } else {
                format!("{}", rng.gen_range(1000..2000) as f64 / 10.0)
            };
            format!(
                "{{\"symbol\":\"S{}\",\"ts\":\"{}\",\"price\":{price},\"volume\":{}}}",
                rng.gen_range(0..5),
                ts(base + rng.gen_range(0..7_200_000_000i64)),
                rng.gen_range(1..10) * 100
            )
        })
        .collect();
    let kinds = [
        "page_view",
        "page_view",
        "page_view",
        "add_to_cart",
        "purchase",
    ];
    let mut events: Vec<String> = (0..4000)
        .map(|_| {
            format!(
                "{{\"user_id\":{},\"ts\":\"{}\",\"event_type\":\"{}\",\"amount\":{},\"product_id\":{}}}",
                rng.gen_range(0..40),
                ts(base + rng.gen_range(0..7_200_000_000i64)),
                kinds[rng.gen_range(0..kinds.len())],
                rng.gen_range(1..500),
                rng.gen_range(0..8)
            )
        })
        .collect();
    for v in [&mut ticks, &mut events] {
        for i in (1..v.len()).rev() {
            v.swap(i, rng.gen_range(0..=i));
        }
    }
    (ticks, events)
}

async fn post(s: &Server, table: &str, lines: &[String]) {
    let body = lines.join("\n");
    let r = reqwest::Client::new()
        .post(s.http_url(&format!("/v1/tables/{table}/rows")))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// Rows as sorted text with floats rounded (summation order differs).
async fn canonical(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let mut out: Vec<String> = rows(c, sql)
        .await
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| match v {
                    None => "NULL".to_string(),
                    Some(s) => match s.parse::<f64>() {
                        Ok(f) => format!("{:.6}", f),
                        _ => s,
                    },
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    out.sort();
    out
}

async fn assert_view_equals_query(c: &tokio_postgres::Client, view: &str, query: &str, seed: u64) {
    let got = canonical(c, &format!("SELECT * FROM {view}")).await;
    let want = canonical(c, query).await;
    if got != want {
        let only_view: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(3).collect();
        let only_query: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(3).collect();
        panic!(
            "seed {seed}: view {view} ({} rows) differs from its query ({} rows)\nonly in view: {only_view:#?}\nonly in query: {only_query:#?}",
            got.len(),
            want.len()
        );
    }
    assert!(!got.is_empty(), "view {view} is empty");
}

fn raw(sql: &str) -> String {
    sql.replace("FROM ticks ", "FROM (SELECT * FROM ticks) ticks ")
        .replace("FROM events ", "FROM (SELECT * FROM events) events ")
}

async fn check_all(c: &tokio_postgres::Client, seed: u64) {
    assert_view_equals_query(c, "bars", &raw(BARS), seed).await;
    assert_view_equals_query(
        c,
        "bars_10m",
        &BARS_10M.replace("FROM bars", "FROM (SELECT * FROM bars) bars"),
        seed,
    )
    .await;
    assert_view_equals_query(c, "user_sessions", SESSIONS, seed).await;
    assert_view_equals_query(c, "popular", &raw(POPULAR), seed).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn views_equal_their_query_through_random_arrival_seals_and_kill9() {
    let seed = seed();
    eprintln!("EDDY_TEST_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let (ticks, events) = data(&mut rng);
    let dir = tempdir();
    let mut s = Server::start(dir.path(), &[("EDDY__BE__MEMTABLE_BYTES_MAX", "262144")]);
    let c = s.client().await;
    rows(&c, TICKS).await;
    rows(&c, EVENTS).await;
    // Some rows exist before the views: they arrive by backfill.
    post(&s, "ticks", &ticks[..500]).await;
    post(&s, "events", &events[..300]).await;
    for (name, sql) in [
        ("bars", BARS),
        ("bars_10m", BARS_10M),
        ("user_sessions", SESSIONS),
        ("popular", POPULAR),
    ] {
        rows(&c, &format!("CREATE MATERIALIZED VIEW {name} AS {sql}")).await;
        assert!(
            eventually(30, || async {
                scalar(
                    &c,
                    &format!("SELECT lag_rows FROM system.rollups WHERE view_name = '{name}'"),
                )
                .await
                    == "0"
            })
            .await,
            "{name} backfilled"
        );
    }
    drop(c);
    let (mut ti, mut ei) = (500, 300);
    let mut step = 0;
    while ti < ticks.len() || ei < events.len() {
        let n = rng.gen_range(50..400);
        let tn = (ti + n).min(ticks.len());
        post(&s, "ticks", &ticks[ti..tn]).await;
        ti = tn;
        let en = (ei + n / 2).min(events.len());
        post(&s, "events", &events[ei..en]).await;
        ei = en;
        step += 1;
        match step {
            4 => {
                let c = s.client().await;
                rows(&c, "CHECKPOINT").await;
            }
            7 => s = s.restart(), // kill -9: the WAL replays into restored view states
            10 => {
                let c = s.client().await;
                check_all(&c, seed).await; // open buckets are visible at once
                rows(&c, "CHECKPOINT").await;
                drop(c);
                s = s.restart();
            }
            _ => {}
        }
    }
    let c = s.client().await;
    check_all(&c, seed).await;
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    check_all(&c, seed).await;
    // Restored from the snapshots of the last seal plus the WAL, not rebuilt by a backfill.
    let r = rows(
        &c,
        "SELECT view_name, backfill_rows_total FROM system.rollups",
    )
    .await;
    assert!(r.iter().all(|v| v[1].as_deref() == Some("0")), "{r:?}");
    let r = rows(
        &c,
        "SELECT view_name, rows, late_rows_dropped, lag_rows FROM system.rollups ORDER BY 1",
    )
    .await;
    assert_eq!(r.len(), 4, "{r:?}");
    for v in r {
        assert_eq!(v[2].as_deref(), Some("0"), "{v:?}");
        assert_eq!(v[3].as_deref(), Some("0"), "{v:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn late_rows_beyond_the_lateness_are_dropped_and_counted_across_restart() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, TICKS).await;
    rows(
        &c,
        "CREATE MATERIALIZED VIEW m WITH (lateness = '30 seconds') AS SELECT symbol, \
         date_bin(INTERVAL '1 minute', ts) AS bucket, count(*) AS n FROM ticks GROUP BY 1, 2",
    )
    .await;
    for t in ["00:10:00", "00:11:40", "00:11:10", "00:13:20", "00:10:50"] {
        rows(
            &c,
            &format!("INSERT INTO ticks VALUES ('A', '2024-01-01 {t}', 1, 1)"),
        )
        .await;
    }
    let stats = "SELECT late_rows_accepted, late_rows_dropped, rows FROM system.rollups WHERE view_name = 'm'";
    assert_eq!(
        rows(&c, stats).await,
        vec![vec![Some("1".into()), Some("1".into()), Some("3".into())]]
    );
    assert_eq!(scalar(&c, "SELECT sum(n) FROM m").await, "4");
    rows(&c, "CHECKPOINT").await;
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    assert_eq!(
        rows(&c, stats).await,
        vec![vec![Some("1".into()), Some("1".into()), Some("3".into())]]
    );
    // A view that dropped rows no longer equals its table: the rewrite says so.
    let plan = rows(&c, "EXPLAIN SELECT symbol, date_bin(INTERVAL '1 minute', ts), count(*) FROM ticks GROUP BY 1, 2").await;
    let text = format!("{plan:?}");
    assert!(text.contains("not used: it dropped 1 late rows"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_on_the_table_are_answered_from_views_and_explain_says_which() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, TICKS).await;
    let mut rng = StdRng::seed_from_u64(7);
    let (ticks, _) = data(&mut rng);
    post(&s, "ticks", &ticks).await;
    rows(&c, &format!("CREATE MATERIALIZED VIEW bars AS {BARS}")).await;
    assert!(
        eventually(30, || async {
            scalar(&c, "SELECT lag_rows FROM system.rollups").await == "0"
        })
        .await
    );
    let q1 = "SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS b, max(price) AS hi, count(*) AS n, \
              sum(price * volume) / sum(volume) AS vwap FROM ticks WHERE symbol <> 'S4' GROUP BY 1, 2";
    let hourly = "SELECT symbol, date_trunc('hour', ts) AS h, first_value(price ORDER BY ts) AS o, \
                  last_value(price ORDER BY ts) AS c, min(price) AS lo, sum(volume) AS v, count(*) AS n \
                  FROM ticks WHERE symbol <> 'S4' AND symbol <> 'S0' GROUP BY 1, 2";
    for (q, how) in [(q1, "its own grain"), (hourly, "re-aggregated")] {
        let plan = format!("{:?}", rows(&c, &format!("EXPLAIN {q}")).await);
        assert!(
            plan.contains("answered from materialized view bars"),
            "{plan}"
        );
        assert!(plan.contains(how), "{plan}");
        assert_eq!(
            canonical(&c, q).await,
            canonical(&c, &raw(&format!("{q} "))).await,
            "{q}"
        );
    }
    // Not answerable: a column the view does not keep, or no filter it keeps.
    let plan = format!(
        "{:?}",
        rows(
            &c,
            "EXPLAIN SELECT symbol, max(volume) FROM ticks GROUP BY 1"
        )
        .await
    );
    assert!(plan.contains("not used"), "{plan}");
    assert!(plan.contains("keeps only rows where"), "{plan}");
    let plan = format!(
        "{:?}",
        rows(&c, "EXPLAIN SELECT symbol, date_trunc('hour', ts), avg(price) FROM ticks WHERE symbol <> 'S4' GROUP BY 1, 2").await
    );
    assert!(
        plan.contains("needs the view to keep sum and count"),
        "{plan}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn view_definitions_and_drops_are_checked() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, TICKS).await;
    rows(
        &c,
        "CREATE TABLE orders (id bigint PRIMARY KEY, amount double precision)",
    )
    .await;
    rows(&c, &format!("CREATE MATERIALIZED VIEW bars AS {BARS}")).await;
    rows(
        &c,
        &format!("CREATE MATERIALIZED VIEW bars_10m AS {BARS_10M}"),
    )
    .await;
    let (code, msg) = sqlstate(
        &c,
        "CREATE MATERIALIZED VIEW o AS SELECT id, sum(amount) FROM orders GROUP BY id",
    )
    .await;
    assert_eq!(code, "0A000", "{msg}");
    assert!(msg.contains("primary-key"), "{msg}");
    assert_eq!(
        sqlstate(&c, &format!("CREATE MATERIALIZED VIEW bars AS {BARS}"))
            .await
            .0,
        "42P07"
    );
    assert_eq!(sqlstate(&c, "DROP TABLE ticks").await.0, "2BP01");
    assert_eq!(sqlstate(&c, "DROP MATERIALIZED VIEW bars").await.0, "2BP01");
    let (code, msg) = sqlstate(&c, "CREATE MATERIALIZED VIEW x AS SELECT symbol, count(*) FROM ticks GROUP BY symbol HAVING count(*) > 2").await;
    assert_eq!(code, "42P17", "{msg}");
    assert!(msg.contains("HAVING"), "{msg}");
    rows(&c, "DROP MATERIALIZED VIEW bars_10m").await;
    rows(&c, "DROP MATERIALIZED VIEW bars").await;
    rows(&c, "DROP MATERIALIZED VIEW IF EXISTS bars").await;
    assert_eq!(sqlstate(&c, "SELECT * FROM bars").await.0, "42P01");
    rows(&c, "DROP TABLE ticks").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_view_outgrowing_its_state_limit_stops_and_says_so() {
    let dir = tempdir();
    let s = Server::start(
        dir.path(),
        &[("EDDY__BE__ROLLUP_STATE_BYTES_MAX", "200000")],
    );
    let c = s.client().await;
    rows(&c, TICKS).await;
    rows(
        &c,
        "CREATE MATERIALIZED VIEW per_tick AS SELECT ts, count(*) AS n FROM ticks GROUP BY ts",
    )
    .await;
    let lines: Vec<String> = (0..20_000)
        .map(|i| {
            format!(
                "{{\"symbol\":\"A\",\"ts\":\"{}\",\"price\":1,\"volume\":1}}",
                ts(1_700_000_000_000_000 + i * 1_000_000)
            )
        })
        .collect();
    post(&s, "ticks", &lines).await;
    let err = scalar(
        &c,
        "SELECT last_error FROM system.rollups WHERE view_name = 'per_tick'",
    )
    .await;
    assert!(err.contains("rollup_state_bytes_max"), "{err}");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("eddy_rollup_state_bytes_max 200000"),
        "{metrics}"
    );
    assert!(
        metrics.contains("eddy_rollup_rows{view=\"per_tick\"}"),
        "{metrics}"
    );
    // The table took every row; the stopped view is never used to answer queries.
    assert_eq!(scalar(&c, "SELECT count(*) FROM ticks").await, "20000");
    let plan = format!(
        "{:?}",
        rows(&c, "EXPLAIN SELECT ts, count(*) FROM ticks GROUP BY ts").await
    );
    assert!(plan.contains("not used"), "{plan}");
}
