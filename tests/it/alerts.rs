//! Alert rules against a real broker (tansu): a tick stream with planted price jumps fires
//! exactly the expected alerts (computed here, independently) once each on the topic
//! across kill -9 cycles; a sink broker outage queues alerts and delivers them all once
//! when it returns, also across a kill -9; view rules closing buckets, zscore(), and the
//! DDL's errors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;

use crate::broker::{produce, Broker};
use crate::harness::{eventually, rows, scalar, sqlstate, tempdir, Server};

/// Every message on `topic` (all partitions, from the start, to the end), read
/// `read_committed`.
fn read_topic(b: &Broker, topic: &str) -> Vec<serde_json::Value> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b.addr)
        .set("group.id", "alerts-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut open = BTreeSet::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
            .unwrap();
        open.insert(p.id());
    }
    let mut out = Vec::new();
    c.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !open.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} back timed out"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(serde_json::from_slice(m.payload().unwrap()).unwrap()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            // A broker just back may refuse a fetch or two; the deadline bounds it.
            Some(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
            None => {}
        }
    }
    out
}

const SYMBOLS: i64 = 6;
const MINUTES: i64 = 40;
const TICKS_PER_MINUTE: i64 = 30;

/// The tick stream: every symbol ticks every 2 s with a tiny wobble; some minutes have a
/// planted jump (in percent) at their 10th tick, which then stays. Returns the ticks in
/// event-time order and the planted jumps by (symbol, minute).
fn tick_stream() -> (Vec<String>, BTreeMap<(i64, i64), f64>) {
    let mut jumps = BTreeMap::new();
    for (s, m, pct) in [
        (0, 3, 7.0),
        (0, 9, -12.0),
        (1, 5, 4.0), // below the threshold: no alert
        (1, 6, 11.0),
        (2, 2, -6.0),
        (3, 20, 15.0),
        (4, 30, 5.5),
        (5, 38, -8.0),
        (2, 25, 9.0),
        (3, 33, -4.5), // no alert
    ] {
        jumps.insert((s, m), pct);
    }
    let mut level: Vec<f64> = (0..SYMBOLS).map(|s| 50.0 + 10.0 * s as f64).collect();
    let mut out = Vec::new();
    let base = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    for m in 0..MINUTES {
        for i in 0..TICKS_PER_MINUTE {
            for s in 0..SYMBOLS {
                if i == 10 {
                    if let Some(pct) = jumps.get(&(s, m)) {
                        level[s as usize] *= 1.0 + pct / 100.0;
                    }
                }
                let wobble = 1.0 + 0.0002 * (((m * 31 + i * 7 + s * 3) % 5) as f64 - 2.0);
                let ts = base + m * 60 + i * 2;
                out.push(format!(
                    "{{\"symbol\":\"S{s}\",\"price\":{:.6},\"volume\":{},\"ts\":{}}}",
                    level[s as usize] * wobble,
                    1 + (i + s) % 9,
                    ts * 1000
                ));
            }
        }
    }
    (out, jumps)
}

/// (symbol, bucket, severity) the price rule must fire: a jump of more than 5% against the
/// previous minute's close, critical above 10%.
fn expected_alerts(jumps: &BTreeMap<(i64, i64), f64>) -> BTreeSet<(String, String, String)> {
    jumps
        .iter()
        .filter(|(_, pct)| pct.abs() > 5.0)
        .map(|((s, m), pct)| {
            (
                format!("S{s}"),
                format!("2026-01-01T00:{m:02}:00.000000Z"),
                if pct.abs() > 10.0 {
                    "critical"
                } else {
                    "warning"
                }
                .to_string(),
            )
        })
        .collect()
}

const PRICE_RULE: &str = "WHEN abs(close / prev(close) - 1) > 0.05 \
    SEVERITY CASE WHEN abs(close / prev(close) - 1) > 0.10 THEN 'critical' ELSE 'warning' END";

#[tokio::test(flavor = "multi_thread")]
async fn price_alerts_from_a_kafka_stream_are_exact_and_once_across_kill9() {
    let b = Broker::start().await;
    b.create_topic("ticks", 1).await;
    b.create_topic("price-alerts", 2).await;
    // One record per produce batch: tansu 0.6 answers a fetch that starts inside a batch
    // with only the batches after it, so a restart resuming mid-batch would lose ticks
    // (a broker defect, see the Kafka tests); this test is about the alerts.
    let p: Arc<rdkafka::producer::FutureProducer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &b.addr)
            .set("linger.ms", "0")
            .set("batch.num.messages", "1")
            .set("enable.idempotence", "true")
            .create()
            .unwrap(),
    );
    let dir = tempdir();
    let env = [
        ("EDDY__BE__SEAL_INTERVAL_MS", "500"),
        ("EDDY__BE__MEMTABLE_BYTES_MAX", "200000"),
    ];
    let mut s = Server::start(dir.path(), &env);
    {
        let c = s.client().await;
        for sql in [
            "CREATE TABLE ticks (symbol text NOT NULL, price double precision, volume bigint, \
             ts timestamp NOT NULL) WITH (time_column = 'ts')"
                .to_string(),
            "CREATE MATERIALIZED VIEW bars_1m WITH (lateness = '10 seconds') AS \
             SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS bucket, \
             last_value(price ORDER BY ts) AS close, sum(volume) AS volume \
             FROM ticks GROUP BY 1, 2"
                .to_string(),
            format!(
                "CREATE ALERT price_move ON bars_1m {PRICE_RULE} \
                 SINK KAFKA (brokers = '{}', topic = 'price-alerts')",
                b.addr
            ),
            format!(
                "CREATE SOURCE tk FROM KAFKA (brokers = '{}', topic = 'ticks', max_batch_rows = '300') INTO ticks",
                b.addr
            ),
        ] {
            rows(&c, &sql).await;
        }
    }
    let (ticks, jumps) = tick_stream();
    let total = ticks.len();
    let producer = {
        let p = Arc::clone(&p);
        tokio::spawn(async move {
            for (n, chunk) in ticks.chunks(400).enumerate() {
                let recs: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (0, format!("k{}", n * 400 + i), Some(t.clone())))
                    .collect();
                produce(&p, "ticks", &recs).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    for cycle in 0..3u64 {
        tokio::time::sleep(Duration::from_millis(1200 + cycle * 400)).await;
        s.kill9();
        s = s.restart();
    }
    producer.await.unwrap();
    let c = s.client().await;
    let caught_up = eventually(90, || async {
        scalar(&c, "SELECT count(*) FROM ticks").await == total.to_string()
    })
    .await;
    assert!(
        caught_up,
        "ticks: {}",
        scalar(&c, "SELECT count(*) FROM ticks").await
    );
    let want = expected_alerts(&jumps);
    let delivered = eventually(60, || async {
        scalar(
            &c,
            "SELECT queued FROM system.alert_rules WHERE rule = 'price_move'",
        )
        .await
            == "0"
            && read_topic(&b, "price-alerts").len() >= want.len()
    })
    .await;
    assert!(
        delivered,
        "{:?}",
        rows(
            &c,
            "SELECT fired, delivered, queued, last_error FROM system.alert_rules"
        )
        .await
    );
    // One more kill -9 once everything is delivered: the replay must not publish again.
    drop(c);
    s.kill9();
    let s = s.restart();
    let c = s.client().await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let msgs = read_topic(&b, "price-alerts");
    let ids: Vec<&str> = msgs
        .iter()
        .map(|m| m["alert_id"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(
        ids.len(),
        unique.len(),
        "an alert was published twice: {msgs:#?}"
    );
    let got: BTreeSet<(String, String, String)> = msgs
        .iter()
        .map(|m| {
            assert_eq!(m["rule"], "price_move");
            assert!(m["values"]["prev(close)"].is_number(), "{m}");
            assert!(m["detected_at"].is_string(), "{m}");
            (
                m["key"]["symbol"].as_str().unwrap().to_string(),
                m["bucket"].as_str().unwrap().to_string(),
                m["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "alerts on the topic differ from the planted jumps"
    );
    assert_eq!(
        scalar(
            &c,
            "SELECT count(*) || ',' || count(DISTINCT alert_id) FROM system.alerts"
        )
        .await,
        format!("{0},{0}", want.len())
    );
}

const ORDERS: &str = "CREATE TABLE orders (order_id bigint NOT NULL, user_id bigint, \
    total_amount numeric(12,2), ts timestamptz NOT NULL, PRIMARY KEY (order_id)) \
    WITH (time_column = 'ts')";

async fn fetch_metrics(s: &Server) -> String {
    s.metrics().await
}

fn order(id: i64, amount: &str) -> String {
    format!(
        "INSERT INTO orders VALUES ({id}, {}, {amount}, TIMESTAMPTZ '2026-01-01 00:00:00+00' + INTERVAL '{id} seconds')",
        id % 7
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_outage_queues_alerts_and_delivers_each_once_when_the_broker_returns() {
    let b = Broker::start().await;
    b.create_topic("order-alerts", 1).await;
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, ORDERS).await;
    rows(
        &c,
        &format!(
            "CREATE ALERT big_order ON orders WHEN total_amount > 10000 SEVERITY 'high' \
             SINK KAFKA (brokers = '{}', topic = 'order-alerts')",
            b.addr
        ),
    )
    .await;
    for (id, amount) in [(1, "50.00"), (2, "12000.50"), (3, "9999.99"), (4, "20000")] {
        rows(&c, &order(id, amount)).await;
    }
    let first = eventually(30, || async { read_topic(&b, "order-alerts").len() == 2 }).await;
    assert!(
        first,
        "{:?} {}",
        rows(
            &c,
            "SELECT fired, delivered, queued, last_error FROM system.alert_rules"
        )
        .await,
        std::fs::read_to_string(s.dir.join("eddy.log")).unwrap_or_default()
    );

    // The broker goes away: writes go on, alerts queue and /metrics counts them.
    b.stop();
    for (id, amount) in [(5, "15000"), (6, "10"), (7, "30000"), (8, "10000.01")] {
        rows(&c, &order(id, amount)).await;
    }
    let queued = eventually(20, || async {
        fetch_metrics(&s)
            .await
            .contains("eddy_alert_sink_queued{rule=\"big_order\"} 3")
    })
    .await;
    assert!(queued, "{}", fetch_metrics(&s).await);
    assert!(fetch_metrics(&s)
        .await
        .contains("eddy_alert_sink_queue_max 100000"));
    assert_eq!(scalar(&c, "SELECT count(*) FROM orders").await, "8");
    assert_eq!(
        scalar(&c, "SELECT fired FROM system.alert_rules").await,
        "5"
    );

    // kill -9 while they wait; the broker comes back after the restart.
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.resume();
    let all = eventually(60, || async { read_topic(&b, "order-alerts").len() >= 5 }).await;
    assert!(
        all,
        "{:?}",
        rows(
            &c,
            "SELECT fired, delivered, queued, last_error FROM system.alert_rules"
        )
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let msgs = read_topic(&b, "order-alerts");
    let mut orders: Vec<i64> = msgs
        .iter()
        .map(|m| m["key"]["order_id"].as_i64().unwrap())
        .collect();
    orders.sort_unstable();
    assert_eq!(orders, vec![2, 4, 5, 7, 8], "{msgs:#?}");
    let m = msgs.iter().find(|m| m["key"]["order_id"] == 7).unwrap();
    assert_eq!(m["rule"], "big_order");
    assert_eq!(m["severity"], "high");
    assert_eq!(m["source"], "orders");
    assert_eq!(m["event_time"], "2026-01-01T00:00:07.000000Z");
    assert!(
        m["values"]["total_amount"].as_str().is_some() || m["values"]["total_amount"].is_number()
    );
    assert_eq!(m["alert_id"].as_str().unwrap().len(), 32);
    assert!(m.get("bucket").is_none());
    assert_eq!(
        scalar(
            &c,
            "SELECT count(*) FROM system.alerts WHERE rule = 'big_order'"
        )
        .await,
        "5"
    );
    let latency = fetch_metrics(&s).await;
    assert!(
        latency.contains("eddy_alert_latency_seconds_count"),
        "{latency}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn view_rules_close_buckets_read_history_and_ddl_errors_name_the_problem() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(
        &c,
        "CREATE TABLE m (k text NOT NULL, v double precision, ts timestamp NOT NULL) \
         WITH (time_column = 'ts')",
    )
    .await;
    rows(
        &c,
        "CREATE MATERIALIZED VIEW per_min AS SELECT k, date_bin(INTERVAL '1 minute', ts) AS bucket, \
         sum(v) AS total, count(*) AS n FROM m GROUP BY 1, 2",
    )
    .await;
    rows(
        &c,
        "CREATE ALERT spike ON per_min WHEN zscore(total, 3) > 2 SEVERITY 'info' EMIT ON CLOSE",
    )
    .await;
    rows(
        &c,
        "CREATE ALERT busy ON per_min WHEN n > 3 SEVERITY 'medium'",
    )
    .await;
    let insert = |k: &str, minute: i64, v: f64| {
        format!("INSERT INTO m VALUES ('{k}', {v}, TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{} seconds')", minute * 60 + 5)
    };
    // Minutes 0..3 are steady for "a"; minute 4 spikes.
    for (minute, v) in [(0, 10.0), (1, 11.0), (2, 9.0), (3, 10.0), (4, 90.0)] {
        rows(&c, &insert("a", minute, v)).await;
    }
    // Minute 4 is still open: EMIT ON CLOSE has not fired.
    assert_eq!(
        scalar(
            &c,
            "SELECT count(*) FROM system.alerts WHERE rule = 'spike'"
        )
        .await,
        "0"
    );
    rows(&c, &insert("a", 5, 10.0)).await; // closes minute 4
    let fired = rows(
        &c,
        "SELECT key, bucket, severity, values FROM system.alerts WHERE rule = 'spike'",
    )
    .await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0][0].as_deref(), Some("{\"k\":\"a\"}"));
    assert!(
        fired[0][1]
            .as_deref()
            .unwrap()
            .starts_with("2026-01-01 00:04:00"),
        "{fired:?}"
    );
    assert!(
        fired[0][3]
            .as_deref()
            .unwrap()
            .contains("\"zscore(total, 3)\""),
        "{fired:?}"
    );

    // Fires once per key and bucket, as soon as it holds.
    for _ in 0..6 {
        rows(&c, &insert("b", 7, 1.0)).await;
    }
    assert_eq!(
        scalar(&c, "SELECT count(*) FROM system.alerts WHERE rule = 'busy'").await,
        "1"
    );
    assert_eq!(
        rows(
            &c,
            "SELECT rule, fired FROM system.alert_rules ORDER BY rule"
        )
        .await,
        vec![
            vec![Some("busy".into()), Some("1".into())],
            vec![Some("spike".into()), Some("1".into())]
        ]
    );

    // Errors name the problem.
    for (sql, state, text) in [
        ("CREATE ALERT x ON nosuch WHEN a > 1", "42P01", "nosuch"),
        ("CREATE ALERT x ON m WHEN nosuch > 1", "42703", "nosuch"),
        (
            "CREATE ALERT x ON m WHEN v / prev(v) > 2",
            "42P17",
            "materialized view",
        ),
        (
            "CREATE ALERT x ON m WHEN v > 1 EMIT ON CLOSE",
            "42P17",
            "EMIT ON CLOSE",
        ),
        ("CREATE ALERT x ON m WHEN v + 1", "42P17", "boolean"),
        (
            "CREATE ALERT busy ON per_min WHEN n > 1",
            "42710",
            "already exists",
        ),
        (
            "CREATE ALERT x ON system.alerts WHEN true",
            "42P17",
            "system.alerts",
        ),
        ("DROP TABLE m", "2BP01", "alert rule"),
        ("DROP MATERIALIZED VIEW per_min", "2BP01", "alert rule"),
        ("DROP ALERT nosuch", "42704", "nosuch"),
    ] {
        let (got, msg) = sqlstate(&c, sql).await;
        assert_eq!(got, state, "{sql}: {msg}");
        assert!(msg.contains(text), "{sql}: {msg}");
    }
    rows(&c, "CREATE ALERT IF NOT EXISTS busy ON per_min WHEN n > 1").await;
    rows(&c, "DROP ALERT busy").await;
    rows(&c, "DROP ALERT IF EXISTS busy").await;
    rows(&c, "DROP ALERT spike").await;
    rows(&c, "DROP MATERIALIZED VIEW per_min").await;
    // The alerts stay, and survive a restart.
    drop(c);
    rows(&s.client().await, "CHECKPOINT").await;
    let s = s.restart();
    let c = s.client().await;
    assert_eq!(scalar(&c, "SELECT count(*) FROM system.alerts").await, "2");
    assert_eq!(
        scalar(&c, "SELECT count(*) FROM system.alert_rules").await,
        "0"
    );
}
