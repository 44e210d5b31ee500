//! Kafka sources against a real broker (tansu): JSON and CSV topics with several
//! partitions, Debezium CDC, rejected records and the dead-letter topic, kill -9 cycles
//! during a stream, a broker outage, pause/resume, and the DDL's errors.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

use crate::broker::{produce, Broker};
use crate::harness::{eventually, rows, scalar, sqlstate, tempdir, Server};

const TICKS: &str =
    "CREATE TABLE ticks (seq bigint NOT NULL, symbol text, price double precision, \
                     ts timestamptz) WITH (time_column = 'ts', partition_by = 'hour')";

fn tick_json(seq: i64) -> String {
    // Alternate the two event-time encodings a topic may carry.
    let ts = if seq % 2 == 0 {
        format!("\"2026-01-01T00:{:02}:{:02}Z\"", (seq / 60) % 60, seq % 60)
    } else {
        (1_767_225_600_000i64 + seq * 1000).to_string()
    };
    format!(
        "{{\"seq\":{seq},\"symbol\":\"S{}\",\"price\":{}.5,\"ts\":{ts}}}",
        seq % 7,
        seq % 100
    )
}

fn source_sql(name: &str, broker: &Broker, topic: &str, table: &str, extra: &str) -> String {
    format!(
        "CREATE SOURCE {name} FROM KAFKA (brokers = '{}', topic = '{topic}'{extra}) INTO {table}",
        broker.addr
    )
}

/// Waits until `table` holds rows `0..n` of `seq` exactly once each.
async fn assert_arrives(c: &tokio_postgres::Client, table: &str, n: i64, secs: u64) {
    let ok = eventually(secs, || async { count_distinct(c, table).await == (n, n) }).await;
    assert!(
        ok,
        "{table}: (rows, distinct seq) = {:?}, want {n}",
        count_distinct(c, table).await
    );
}

async fn fetch_metrics(s: &Server) -> String {
    let r = reqwest::get(s.http_url("/metrics")).await.unwrap();
    r.text().await.unwrap()
}

async fn source_state(c: &tokio_postgres::Client, source: &str) -> String {
    scalar(
        c,
        &format!("SELECT min(state) FROM system.sources WHERE source = '{source}'"),
    )
    .await
}

async fn count_distinct(c: &tokio_postgres::Client, table: &str) -> (i64, i64) {
    let r = rows(
        c,
        &format!("SELECT count(*), count(DISTINCT seq) FROM {table}"),
    )
    .await;
    (
        r[0][0].as_deref().unwrap().parse().unwrap(),
        r[0][1].as_deref().unwrap().parse().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_json_and_csv_topics_with_partitions_land_every_record() {
    let b = Broker::start().await;
    b.create_topic("ticks-json", 3).await;
    b.create_topic("ticks-csv", 2).await;
    let p = b.producer();
    let json: Vec<_> = (0..3000i64)
        .map(|s| ((s % 3) as i32, format!("k{s}"), Some(tick_json(s))))
        .collect();
    produce(&p, "ticks-json", &json).await;
    let csv: Vec<_> = (0..2000i64)
        .map(|s| {
            let line = format!(
                "{s}|S{}|{}.25|2026-01-01 00:00:{:02}",
                s % 5,
                s % 10,
                s % 60
            );
            ((s % 2) as i32, format!("k{s}"), Some(line))
        })
        .collect();
    produce(&p, "ticks-csv", &csv).await;

    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, TICKS).await;
    rows(&c, &TICKS.replace("TABLE ticks", "TABLE ticks_csv")).await;
    rows(
        &c,
        &source_sql("tj", &b, "ticks-json", "ticks", ", format = 'json'"),
    )
    .await;
    rows(
        &c,
        &source_sql(
            "tc",
            &b,
            "ticks-csv",
            "ticks_csv",
            ", format = 'csv', delimiter = '|'",
        ),
    )
    .await;
    assert_arrives(&c, "ticks", 3000, 60).await;
    assert_arrives(&c, "ticks_csv", 2000, 60).await;
    let expected: f64 = (0..3000).map(|s| (s % 100) as f64 + 0.5).sum();
    assert_eq!(
        scalar(&c, &format!("SELECT sum(price) = {expected} FROM ticks")).await,
        "t"
    );
    // Epoch-millisecond and RFC 3339 times land on the same clock.
    assert_eq!(
        scalar(
            &c,
            "SELECT count(*) FROM ticks WHERE ts >= '2026-01-01' AND ts < '2026-01-02'"
        )
        .await,
        "3000"
    );
    assert_eq!(
        scalar(
            &c,
            "SELECT count(*) FROM ticks_csv WHERE symbol = 'S3' AND price = 3.25"
        )
        .await,
        "200"
    );
    // Progress per partition, and offsets become durable with a seal.
    rows(&c, "CHECKPOINT").await;
    let status = rows(
        &c,
        "SELECT partition, state, consumed_offset, committed_offset, rows, rejected \
         FROM system.sources WHERE source = 'tj' ORDER BY partition",
    )
    .await;
    assert_eq!(status.len(), 3, "{status:?}");
    for (i, r) in status.iter().enumerate() {
        assert_eq!(r[0].as_deref(), Some(i.to_string().as_str()));
        assert_eq!(r[1].as_deref(), Some("running"));
        assert_eq!(r[2].as_deref(), Some("1000"), "{r:?}");
        assert_eq!(r[3].as_deref(), Some("1000"), "{r:?}");
        assert_eq!(r[4].as_deref(), Some("1000"));
        assert_eq!(r[5].as_deref(), Some("0"));
    }
    let lag_known = eventually(10, || async {
        scalar(
            &c,
            "SELECT coalesce(sum(lag), -1) FROM system.sources WHERE source = 'tj'",
        )
        .await
            == "0"
    })
    .await;
    assert!(lag_known, "lag reaches 0 once the high watermark is known");
    let metrics = fetch_metrics(&s).await;
    assert!(
        metrics.contains("eddy_source_rows{partition=\"0\",source=\"tj\"} 1000"),
        "per-partition rows on /metrics"
    );
    assert!(metrics.contains("eddy_source_lag{"), "lag on /metrics");
    assert!(
        metrics.contains("eddy_source_freshness_seconds{"),
        "freshness on /metrics"
    );

    // New records keep flowing in, and a restart resumes without doubling.
    let more: Vec<_> = (3000..3300i64)
        .map(|s| ((s % 3) as i32, format!("k{s}"), Some(tick_json(s))))
        .collect();
    produce(&p, "ticks-json", &more).await;
    assert_arrives(&c, "ticks", 3300, 30).await;
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count_distinct(&c, "ticks").await, (3300, 3300));
}

fn debezium(op: &str, before: Option<&str>, after: Option<&str>, wrapped: bool) -> String {
    let body = format!(
        "{{\"before\":{},\"after\":{},\"source\":{{\"table\":\"orders\"}},\"op\":\"{op}\",\"ts_ms\":1}}",
        before.unwrap_or("null"),
        after.unwrap_or("null")
    );
    if wrapped {
        format!("{{\"schema\":{{\"type\":\"struct\"}},\"payload\":{body}}}")
    } else {
        body
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_debezium_stream_upserts_and_deletes_by_key() {
    let b = Broker::start().await;
    b.create_topic("pg.public.orders", 2).await;
    let p = b.producer();
    let mut recs = Vec::new();
    // 200 orders created (snapshot reads for the first 50), every third updated, every
    // fifth deleted, with tombstones after deletes as Debezium sends them.
    for id in 0..200i64 {
        let op = if id < 50 { "r" } else { "c" };
        let after = format!("{{\"id\":{id},\"status\":\"new\",\"amount\":{id}.0}}");
        recs.push((
            (id % 2) as i32,
            id.to_string(),
            Some(debezium(op, None, Some(&after), id % 2 == 0)),
        ));
    }
    for id in (0..200i64).step_by(3) {
        let before = format!("{{\"id\":{id},\"status\":\"new\",\"amount\":{id}.0}}");
        let after = format!(
            "{{\"id\":{id},\"status\":\"paid\",\"amount\":{}.0}}",
            id * 2
        );
        recs.push((
            (id % 2) as i32,
            id.to_string(),
            Some(debezium("u", Some(&before), Some(&after), false)),
        ));
    }
    for id in (0..200i64).step_by(5) {
        let before = format!("{{\"id\":{id}}}");
        recs.push((
            (id % 2) as i32,
            id.to_string(),
            Some(debezium("d", Some(&before), None, true)),
        ));
        recs.push(((id % 2) as i32, id.to_string(), None));
    }
    produce(&p, "pg.public.orders", &recs).await;

    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(
        &c,
        "CREATE TABLE orders (id bigint NOT NULL, status text, amount double precision, PRIMARY KEY (id))",
    )
    .await;
    rows(
        &c,
        &source_sql(
            "cdc",
            &b,
            "pg.public.orders",
            "orders",
            ", format = 'debezium-json'",
        ),
    )
    .await;
    let live = (0..200).filter(|id| id % 5 != 0).count();
    let paid = (0..200).filter(|id| id % 5 != 0 && id % 3 == 0).count();
    let expected_sum: i64 = (0..200i64)
        .filter(|id| id % 5 != 0)
        .map(|id| if id % 3 == 0 { id * 2 } else { id })
        .sum();
    let ok = eventually(60, || async {
        scalar(&c, "SELECT count(*) FROM orders").await == live.to_string()
            && scalar(&c, "SELECT count(*) FROM orders WHERE status = 'paid'").await
                == paid.to_string()
    })
    .await;
    assert!(
        ok,
        "orders: {:?}",
        rows(
            &c,
            "SELECT count(*), count(*) FILTER (WHERE status = 'paid') FROM orders"
        )
        .await
    );
    assert_eq!(
        scalar(&c, "SELECT sum(amount)::bigint FROM orders").await,
        expected_sum.to_string()
    );
    assert_eq!(
        scalar(&c, "SELECT count(*) FROM orders WHERE id % 5 = 0").await,
        "0"
    );
    assert_eq!(
        scalar(&c, "SELECT count(*) FROM system.rejected").await,
        "0",
        "tombstones are skipped, not rejected"
    );
    // The same state after a restart that re-reads from the durable offsets.
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    assert!(
        eventually(30, || async {
            scalar(&c, "SELECT count(*) FROM orders").await == live.to_string()
        })
        .await
    );
    assert_eq!(
        scalar(&c, "SELECT sum(amount)::bigint FROM orders").await,
        expected_sum.to_string()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_bad_records_go_to_rejected_and_dead_letter_while_the_rest_arrives() {
    let b = Broker::start().await;
    b.create_topic("dirty", 2).await;
    b.create_topic("dirty-dlq", 1).await;
    let p = b.producer();
    let mut recs: Vec<(i32, String, Option<String>)> = Vec::new();
    let mut bad = Vec::new();
    for seq in 0..1000i64 {
        let part = (seq % 2) as i32;
        let v = match seq % 100 {
            13 => {
                bad.push(seq);
                "{\"seq\": 13, \"price\": ".to_string() // malformed JSON
            }
            47 => {
                bad.push(seq);
                format!("{{\"seq\":{seq},\"price\":\"cheap\"}}") // wrong type
            }
            71 => {
                bad.push(seq);
                format!("{{\"seq\":{seq},\"symbol\":\"{}\"}}", "x".repeat(5000))
                // oversized
            }
            88 => {
                bad.push(seq);
                "{\"symbol\":\"no seq\"}".to_string() // NOT NULL column missing
            }
            _ => tick_json(seq),
        };
        recs.push((part, format!("key-{seq}"), Some(v)));
    }
    produce(&p, "dirty", &recs).await;

    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, TICKS).await;
    rows(
        &c,
        &source_sql(
            "dirty_in",
            &b,
            "dirty",
            "ticks",
            ", max_record_bytes = '4096', dead_letter_topic = 'dirty-dlq'",
        ),
    )
    .await;
    let good = 1000 - bad.len() as i64;
    assert_arrives(&c, "ticks", good, 60).await;
    assert!(
        eventually(20, || async {
            scalar(&c, "SELECT count(*) FROM system.rejected").await == bad.len().to_string()
        })
        .await
    );
    let rej = rows(
        &c,
        "SELECT source, topic, partition, \"offset\", key, error, payload FROM system.rejected \
         ORDER BY partition, \"offset\"",
    )
    .await;
    for r in &rej {
        assert_eq!(r[0].as_deref(), Some("dirty_in"));
        assert_eq!(r[1].as_deref(), Some("dirty"));
        let key = r[4].as_deref().unwrap();
        let seq: i64 = key.trim_start_matches("key-").parse().unwrap();
        assert!(bad.contains(&seq), "{r:?}");
        // Offsets within a partition follow production order: seq = 2 * offset + partition.
        let (part, off): (i64, i64) = (
            r[2].as_deref().unwrap().parse().unwrap(),
            r[3].as_deref().unwrap().parse().unwrap(),
        );
        assert_eq!(seq, off * 2 + part, "{r:?}");
        let error = r[5].as_deref().unwrap();
        let expect = match seq % 100 {
            13 => "JSON",
            47 => "price",
            71 => "max_record_bytes",
            _ => "seq",
        };
        assert!(error.contains(expect), "seq {seq}: {error}");
    }
    let metrics = fetch_metrics(&s).await;
    let rejected_total: i64 = metrics
        .lines()
        .filter(|l| l.starts_with("eddy_source_rejected{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(rejected_total, bad.len() as i64);
    assert_eq!(
        scalar(
            &c,
            "SELECT sum(rejected) FROM system.sources WHERE source = 'dirty_in'"
        )
        .await,
        bad.len().to_string()
    );

    // The dead-letter topic holds each rejected record with its reason in headers.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b.addr)
        .set("group.id", "dlq-check")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["dirty-dlq"]).unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < bad.len() && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap()).to_string();
            let h = m.headers().expect("headers");
            let names: Vec<String> = h.iter().map(|h| h.key.to_string()).collect();
            assert!(names.contains(&"eddy.error".to_string()), "{names:?}");
            seen.push(key);
        }
    }
    assert_eq!(seen.len(), bad.len(), "dead-letter records: {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_five_kill9_cycles_during_a_stream_keep_each_record_exactly_once() {
    const TOTAL: i64 = 500_000;
    let b = Broker::start().await;
    b.create_topic("stream", 4).await;
    let p = b.producer();
    let dir = tempdir();
    let env = [
        ("EDDY__BE__SEAL_INTERVAL_MS", "700"),
        ("EDDY__BE__MEMTABLE_BYTES_MAX", "4000000"),
        // Each seal's offsets and each resume, for the failure message's log.
        (
            "EDDY_LOG",
            "info,eddy_be::maintenance=debug,eddy_ingest::source=debug",
        ),
    ];
    let mut s = Server::start(dir.path(), &env);
    {
        let c = s.client().await;
        rows(&c, TICKS).await;
        rows(
            &c,
            &format!("CREATE MATERIALIZED VIEW per_minute AS {PER_MINUTE}"),
        )
        .await;
        rows(
            &c,
            &source_sql("st", &b, "stream", "ticks", ", max_batch_rows = '5000'"),
        )
        .await;
    }
    // Produce steadily over ~10 s while the server is killed and restarted.
    let produced = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (p, produced, done) = (Arc::clone(&p), Arc::clone(&produced), Arc::clone(&done));
        tokio::spawn(async move {
            for chunk in 0..(TOTAL / 10_000) {
                let recs: Vec<_> = (chunk * 10_000..(chunk + 1) * 10_000)
                    .map(|s| ((s % 4) as i32, format!("k{s}"), Some(tick_json(s))))
                    .collect();
                produce(&p, "stream", &recs).await;
                produced.fetch_add(recs.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    for cycle in 0..5 {
        tokio::time::sleep(Duration::from_millis(1300 + cycle * 250)).await;
        s.kill9();
        s = s.restart();
    }
    producer.await.unwrap();
    assert!(done.load(Ordering::SeqCst));
    let c = s.client().await;
    let ok = eventually(120, || async {
        count_distinct(&c, "ticks").await.0 >= TOTAL
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        ok,
        "caught up: {:?}; sources: {:?}; {}",
        count_distinct(&c, "ticks").await,
        rows(&c, "SELECT partition, state, consumed_offset, committed_offset, high_watermark, last_error FROM system.sources").await,
        seq_anomalies(&c).await
    );
    let got = count_distinct(&c, "ticks").await;
    // What the broker sent again and the source dropped (tansu re-sends after a resume).
    eprintln!(
        "{}",
        fetch_metrics(&s)
            .await
            .lines()
            .filter(|l| l.starts_with("eddy_source_redelivered"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    if got != (TOTAL, TOTAL) {
        panic!(
            "exactly once after 5 kill -9: (rows, distinct) = {got:?}; the topic holds {} records; {}; log kept in {}",
            topic_records(&b, "stream", 4),
            seq_anomalies(&c).await,
            dir.keep().join("eddy.log").display()
        );
    }
    assert_eq!(
        scalar(&c, "SELECT min(seq) || ',' || max(seq) FROM ticks").await,
        format!("0,{}", TOTAL - 1)
    );
    assert_view_exactly_once(&c).await;
    // One more cycle after everything is in: still exactly once.
    drop(c);
    s.kill9();
    let s = s.restart();
    let c = s.client().await;
    assert!(
        eventually(60, || async {
            count_distinct(&c, "ticks").await.0 >= TOTAL
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count_distinct(&c, "ticks").await, (TOTAL, TOTAL));
    assert_view_exactly_once(&c).await;
}

const PER_MINUTE: &str = "SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS bucket, \
    count(*) AS n, sum(seq) AS s FROM ticks GROUP BY 1, 2";

/// The view fed by the source equals its query over the table: no record counted twice or
/// missed across the kill -9 cycles (its state commits with the same offsets as the rows).
async fn assert_view_exactly_once(c: &tokio_postgres::Client) {
    let view = rows(c, "SELECT * FROM per_minute ORDER BY 1, 2").await;
    let raw = rows(
        c,
        &format!(
            "{} ORDER BY 1, 2",
            PER_MINUTE.replace("FROM ticks", "FROM (SELECT * FROM ticks) ticks")
        ),
    )
    .await;
    assert_eq!(view.len(), raw.len());
    assert!(
        view == raw,
        "the view differs from its query over the table"
    );
    assert_eq!(scalar(c, "SELECT sum(n) FROM per_minute").await, "500000");
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_broker_outage_and_pause_resume_lose_nothing() {
    let b = Broker::start().await;
    b.create_topic("flaky", 2).await;
    let p = b.producer();
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, TICKS).await;
    rows(&c, &source_sql("fl", &b, "flaky", "ticks", "")).await;
    let batch = |from: i64, to: i64| -> Vec<(i32, String, Option<String>)> {
        (from..to)
            .map(|s| ((s % 2) as i32, format!("k{s}"), Some(tick_json(s))))
            .collect()
    };
    produce(&p, "flaky", &batch(0, 1000)).await;
    assert_arrives(&c, "ticks", 1000, 30).await;

    // The broker goes away mid-stream: the source says so, then resumes by itself.
    b.stop();
    let shows_outage = eventually(30, || async {
        source_state(&c, "fl").await == "disconnected"
    })
    .await;
    assert!(
        shows_outage,
        "{:?}",
        rows(&c, "SELECT state, last_error FROM system.sources").await
    );
    assert!(fetch_metrics(&s)
        .await
        .contains("eddy_source_state{source=\"fl\",state=\"disconnected\"} 1"));
    let pending = {
        let p = Arc::clone(&p);
        tokio::spawn(async move { produce(&p, "flaky", &batch(1000, 2000)).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.resume();
    pending.await.unwrap();
    assert_arrives(&c, "ticks", 2000, 60).await;
    assert!(eventually(15, || async { source_state(&c, "fl").await == "running" }).await);

    // Paused: nothing new lands, and the state says so, across a restart too.
    rows(&c, "ALTER SOURCE fl PAUSE").await;
    produce(&p, "flaky", &batch(2000, 2500)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count_distinct(&c, "ticks").await, (2000, 2000));
    assert_eq!(source_state(&c, "fl").await, "paused");
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(source_state(&c, "fl").await, "paused");
    assert_eq!(count_distinct(&c, "ticks").await, (2000, 2000));
    rows(&c, "ALTER SOURCE fl RESUME").await;
    assert_arrives(&c, "ticks", 2500, 30).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn source_ddl_errors_name_the_problem_and_generator_sources_feed_tables() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, TICKS).await;
    rows(&c, "CREATE TABLE plain (id bigint)").await;
    let cases = [
        ("CREATE SOURCE a FROM KAFKA (brokers = 'x:1', topic = 't', tpoic = 'u') INTO ticks", "22023", "unknown option tpoic"),
        ("CREATE SOURCE a FROM KAFKA (brokers = 'x:1') INTO ticks", "22023", "topic is required"),
        ("CREATE SOURCE a FROM KAFKA (brokers = 'x:1', topic = 't') INTO nope", "42P01", "\"nope\" does not exist"),
        ("CREATE SOURCE a FROM KAFKA (brokers = 'x:1', topic = 't', format = 'debezium-json') INTO plain", "22023", "PRIMARY KEY"),
        ("CREATE SOURCE a FROM KAFKA (brokers = 'x:1', topic = 't', path.nope = 'a.b') INTO ticks", "42703", "nope"),
        ("CREATE SOURCE a FROM GENERATOR (kind = 'weather') INTO ticks", "22023", "weather"),
        ("CREATE SOURCE a FROM KAFKA (brokers = 'x:1' topic = 't') INTO ticks", "42601", "expected , or )"),
        ("DROP SOURCE nope", "42704", "source \"nope\" does not exist"),
        ("ALTER SOURCE nope PAUSE", "42704", "does not exist"),
    ];
    for (sql, state, msg) in cases {
        let (got_state, got_msg) = sqlstate(&c, sql).await;
        assert_eq!(got_state, state, "{sql}: {got_msg}");
        assert!(got_msg.contains(msg), "{sql}: {got_msg}");
    }
    rows(&c, "DROP SOURCE IF EXISTS nope").await;

    // A generator source creates its table when missing and writes continuously.
    rows(
        &c,
        "CREATE SOURCE gen FROM GENERATOR (kind = 'ticks', rows_per_second = 2000) INTO gen_ticks",
    )
    .await;
    assert!(
        eventually(20, || async {
            scalar(&c, "SELECT count(*) > 200 FROM gen_ticks").await == "t"
        })
        .await
    );
    let (st, msg) = sqlstate(&c, "DROP TABLE gen_ticks").await;
    assert_eq!(st, "2BP01", "{msg}");
    assert!(msg.contains("DROP SOURCE gen"), "{msg}");
    let (st, _) = sqlstate(
        &c,
        "CREATE SOURCE gen FROM GENERATOR (kind = 'ticks') INTO gen_ticks",
    )
    .await;
    assert_eq!(st, "42710");
    rows(
        &c,
        "CREATE SOURCE IF NOT EXISTS gen FROM GENERATOR (kind = 'ticks') INTO gen_ticks",
    )
    .await;
    let r = rows(
        &c,
        "SELECT connector, state, rows > 0 FROM system.sources WHERE source = 'gen'",
    )
    .await;
    assert_eq!(
        r,
        vec![vec![
            Some("generator".into()),
            Some("running".into()),
            Some("t".into())
        ]]
    );
    // Sources are part of the catalog: they survive a restart.
    drop(c);
    let s = s.restart();
    let c = s.client().await;
    let before: i64 = scalar(&c, "SELECT count(*) FROM gen_ticks")
        .await
        .parse()
        .unwrap();
    assert!(
        eventually(20, || async {
            scalar(&c, "SELECT count(*) FROM gen_ticks")
                .await
                .parse::<i64>()
                .unwrap()
                > before
        })
        .await
    );
    rows(&c, "DROP SOURCE gen").await;
    assert_eq!(scalar(&c, "SELECT count(*) FROM system.sources").await, "0");
    rows(&c, "DROP TABLE gen_ticks").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_latest_start_is_remembered_across_a_restart() {
    let b = Broker::start().await;
    b.create_topic("late", 1).await;
    let p = b.producer();
    let batch = |from: i64, to: i64| -> Vec<(i32, String, Option<String>)> {
        (from..to)
            .map(|s| (0, format!("k{s}"), Some(tick_json(s))))
            .collect()
    };
    // One record per produce request: tansu answers ListOffsets(latest) with the last
    // batch's base offset + 1, so multi-record batches would hide the true end.
    for r in batch(0, 100) {
        produce(&p, "late", std::slice::from_ref(&r)).await;
    }
    let dir = tempdir();
    let mut s = Server::start(dir.path(), &[]);
    {
        let c = s.client().await;
        rows(&c, TICKS).await;
        rows(
            &c,
            &source_sql("lt", &b, "late", "ticks", ", start_offset = 'latest'"),
        )
        .await;
        let positioned = eventually(20, || async {
            rows(&c, "CHECKPOINT").await;
            scalar(
                &c,
                "SELECT committed_offset FROM system.sources WHERE source = 'lt'",
            )
            .await
                == "100"
        })
        .await;
        assert!(
            positioned,
            "{:?}",
            rows(&c, "SELECT * FROM system.sources").await
        );
        assert_eq!(
            scalar(&c, "SELECT count(*) FROM ticks").await,
            "0",
            "'latest' skips what was there"
        );
    }
    // Records produced while eddy is down are read after the restart, not skipped.
    s.kill9();
    produce(&p, "late", &batch(100, 150)).await;
    let s = s.restart();
    let c = s.client().await;
    assert_arrives_from(&c, 100, 150).await;
}

async fn assert_arrives_from(c: &tokio_postgres::Client, from: i64, to: i64) {
    let want = ((to - from).to_string(), from.to_string());
    let ok = eventually(30, || async {
        let r = rows(c, "SELECT count(*), min(seq) FROM ticks").await;
        (
            r[0][0].clone().unwrap_or_default(),
            r[0][1].clone().unwrap_or_default(),
        ) == want
    })
    .await;
    assert!(
        ok,
        "{:?}",
        rows(c, "SELECT count(*), min(seq), max(seq) FROM ticks").await
    );
}

/// How many records `topic` holds, read to the end of each of its partitions.
fn topic_records(b: &Broker, topic: &str, partitions: i32) -> usize {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b.addr)
        .set("group.id", "count-records")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let (mut n, mut open) = (0, partitions);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while open > 0 && std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => n += 1,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => open -= 1,
            _ => {}
        }
    }
    n
}

/// Where `ticks` departs from exactly once, per partition (`seq % 4`): duplicated and
/// missing sequence numbers, as (partition, count, first, last).
async fn seq_anomalies(c: &tokio_postgres::Client) -> String {
    let dup = rows(
        c,
        "SELECT seq % 4, count(*), min(seq), max(seq) FROM \
         (SELECT seq FROM ticks GROUP BY seq HAVING count(*) > 1) d GROUP BY 1 ORDER BY 1",
    )
    .await;
    let missing = rows(
        c,
        "SELECT value % 4, count(*), min(value), max(value) FROM generate_series(0, 499999) \
         WHERE value NOT IN (SELECT seq FROM ticks) GROUP BY 1 ORDER BY 1",
    )
    .await;
    format!("duplicated (partition, n, min, max): {dup:?}; missing: {missing:?}")
}
