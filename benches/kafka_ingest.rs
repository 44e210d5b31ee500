//! Kafka → table ingest, side by side in one run (`cargo bench --bench kafka_ingest`):
//!
//! 1. a bare rdkafka consumer reading the topic: the ceiling the broker allows;
//! 2. eddy: `CREATE SOURCE` on the same topic until every row is queryable;
//! 3. DuckDB inserting the same rows from NDJSON (through the Python package);
//! 4. produce → visible latency at a steady 50k rows/s: p50 / p99.
//!
//! Needs tansu (`scripts/test.sh` installs it, or `TANSU=/path`; started as the tests start
//! it, `tests/it/broker.rs`) and, for DuckDB, a Python
//! with `duckdb` (`.venv-bench/bin/python` from `benches/peers/requirements.txt`, or
//! `BENCH_PYTHON`). Options: `--rows N` (default 3000000), `--partitions N` (default 4).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;

#[allow(dead_code)]
#[path = "../tests/it/broker.rs"]
mod broker;
use broker::Broker;

#[path = "common/mod.rs"]
mod common;
use common::{arg, now_ms, percentile, start_eddy};

fn tick(seq: u64, ts_ms: i64) -> String {
    // About 100 bytes, as the commodity ticks the demo and the issue describe.
    format!(
        "{{\"seq\":{seq},\"symbol\":\"SYM{:03}\",\"price\":{}.{:02},\"volume\":{},\"ts\":{ts_ms}}}",
        seq % 500,
        1000 + seq % 997,
        seq % 100,
        1 + seq % 50,
    )
}

fn produce(addr: &str, topic: &str, rows: u64, partitions: i32, ndjson: Option<&Path>) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "none")
        .create()
        .unwrap();
    let mut file = ndjson.map(|p| std::io::BufWriter::new(std::fs::File::create(p).unwrap()));
    let start = Instant::now();
    let base_us = 1_767_225_600_000_000i64;
    for seq in 0..rows {
        let v = tick(seq, (base_us + seq as i64) / 1000);
        if let Some(f) = file.as_mut() {
            writeln!(f, "{v}").unwrap();
        }
        let mut rec = BaseRecord::<(), str>::to(topic)
            .payload(&v)
            .partition((seq % partitions as u64) as i32);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        if seq % 500_000 == 0 && seq > 0 {
            eprintln!("  produced {seq} / {rows}");
        }
    }
    p.flush(Duration::from_secs(120)).unwrap();
    eprintln!(
        "  produced {rows} rows in {:.1}s",
        start.elapsed().as_secs_f64()
    );
}

/// What a consumer with no work beyond reading can do: the broker's ceiling.
fn bare_consumer(addr: &str, topic: &str, rows: u64, partitions: i32) -> f64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "bench-bare")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let start = Instant::now();
    let (mut n, mut bytes) = (0u64, 0usize);
    while n < rows {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            bytes += m.payload().map_or(0, |p| p.len());
            n += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "  bare consumer: {n} rows, {:.0} MB in {secs:.2}s",
        bytes as f64 / 1e6
    );
    n as f64 / secs
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    let r = c.simple_query(sql).await.unwrap();
    for m in r {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            return row.get(0).unwrap_or("0").parse().unwrap_or(0);
        }
    }
    0
}

const TABLE: &str = "CREATE TABLE ticks (seq bigint NOT NULL, symbol text, price double precision, \
                     volume bigint, ts timestamptz) WITH (time_column = 'ts', partition_by = 'day')";

fn duckdb_insert(ndjson: &Path, rows: u64) -> Option<f64> {
    let py = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| ".venv-bench/bin/python".into());
    let script = format!(
        r#"
import duckdb, time
con = duckdb.connect()
con.execute("CREATE TABLE ticks (seq BIGINT, symbol VARCHAR, price DOUBLE, volume BIGINT, ts TIMESTAMPTZ)")
t = time.perf_counter()
con.execute("INSERT INTO ticks SELECT seq, symbol, price, volume, make_timestamp(ts * 1000) FROM read_json('{}', format='newline_delimited', columns={{'seq':'BIGINT','symbol':'VARCHAR','price':'DOUBLE','volume':'BIGINT','ts':'BIGINT'}})")
n = con.execute("SELECT count(*) FROM ticks").fetchone()[0]
assert n == {rows}, n
print(n / (time.perf_counter() - t))
"#,
        ndjson.display()
    );
    let out = Command::new(&py).args(["-c", &script]).output().ok()?;
    if !out.status.success() {
        eprintln!(
            "  duckdb: skipped ({py}: {}); create .venv-bench as benches/README.md says",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[tokio::main]
async fn main() {
    let rows = arg("--rows", 3_000_000) as u64;
    let partitions = arg("--partitions", 4) as i32;
    let dir = tempfile::tempdir().unwrap();
    eprintln!("kafka_ingest: {rows} ticks (~100 B JSON) over {partitions} partitions");
    let broker = Broker::start_direct();
    let addr = broker.addr.clone();
    broker.create_topic("ticks", partitions).await;
    let ndjson = dir.path().join("ticks.ndjson");
    eprintln!("producing...");
    produce(&addr, "ticks", rows, partitions, Some(&ndjson));

    eprintln!("bare rdkafka consumer...");
    let bare = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || bare_consumer(&addr, "ticks", rows, partitions)
    })
    .await
    .unwrap();

    eprintln!("eddy CREATE SOURCE...");
    let (_eddy, client, _) = start_eddy(&dir.path().join("eddy")).await;
    let c = &client;
    c.simple_query(TABLE).await.unwrap();
    let start = Instant::now();
    c.simple_query(&format!(
        "CREATE SOURCE ticks_in FROM KAFKA (brokers = '{addr}', topic = 'ticks', start_offset = 'earliest') INTO ticks"
    ))
    .await
    .unwrap();
    let mut last_report = Instant::now();
    loop {
        let n = count(
            c,
            "SELECT sum(rows) FROM system.sources WHERE source = 'ticks_in'",
        )
        .await;
        if n as u64 >= rows {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!("  eddy: {n} / {rows} rows applied");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let eddy_secs = start.elapsed().as_secs_f64();
    let visible = count(c, "SELECT count(*) FROM ticks").await;
    assert_eq!(visible as u64, rows, "every produced row is queryable once");
    let eddy_rate = rows as f64 / eddy_secs;

    eprintln!("duckdb insert of the same rows...");
    let duck = duckdb_insert(&ndjson, rows);

    eprintln!("freshness at 50k rows/s for 10 s...");
    broker.create_topic("fresh", 1).await;
    c.simple_query("CREATE TABLE fresh (seq bigint NOT NULL, symbol text, price double precision, volume bigint, ts timestamptz)")
        .await
        .unwrap();
    c.simple_query(&format!(
        "CREATE SOURCE fresh_in FROM KAFKA (brokers = '{addr}', topic = 'fresh', start_offset = 'earliest') INTO fresh"
    ))
    .await
    .unwrap();
    let rate = 50_000u64;
    let secs = 10u64;
    let total = rate * secs;
    let sent_at: std::sync::Arc<Vec<std::sync::atomic::AtomicU64>> = std::sync::Arc::new(
        (0..total)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
    );
    let epoch = Instant::now();
    let producer = {
        let (addr, sent_at) = (addr.clone(), std::sync::Arc::clone(&sent_at));
        std::thread::spawn(move || {
            let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", &addr)
                .set("linger.ms", "1")
                .create()
                .unwrap();
            let per_ms = rate / 1000;
            for ms in 0..(secs * 1000) {
                let due = epoch + Duration::from_millis(ms);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                for i in 0..per_ms {
                    let seq = ms * per_ms + i;
                    let v = tick(seq, now_ms());
                    sent_at[seq as usize].store(
                        epoch.elapsed().as_micros() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    let _ = p.send(BaseRecord::<(), str>::to("fresh").payload(&v));
                }
            }
            p.flush(Duration::from_secs(30)).unwrap();
        })
    };
    let mut seen = -1i64;
    let mut latencies = Vec::with_capacity(total as usize);
    while seen + 1 < total as i64 {
        let m = count(c, "SELECT coalesce(max(seq), -1) FROM fresh").await;
        let now = epoch.elapsed().as_micros() as u64;
        for s in (seen + 1)..=m {
            let sent = sent_at[s as usize].load(std::sync::atomic::Ordering::Relaxed);
            latencies.push((now.saturating_sub(sent)) as f64 / 1000.0);
        }
        seen = seen.max(m);
    }
    producer.join().unwrap();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));

    println!();
    println!(
        "Kafka -> table ingest, {rows} ticks (~100 B JSON), {partitions} partitions, tansu broker"
    );
    println!("{:<34} {:>14} {:>10}", "", "rows/s", "vs bare");
    println!(
        "{:<34} {:>14.0} {:>10}",
        "bare rdkafka consumer (ceiling)", bare, "1.00x"
    );
    println!(
        "{:<34} {:>14.0} {:>9.2}x",
        "eddy CREATE SOURCE -> queryable",
        eddy_rate,
        eddy_rate / bare
    );
    match duck {
        Some(d) => {
            println!(
                "{:<34} {:>14.0} {:>9.2}x",
                "duckdb INSERT from NDJSON",
                d,
                d / bare
            );
            println!("eddy / duckdb: {:.2}x", eddy_rate / d);
        }
        None => println!("{:<34} {:>14}", "duckdb INSERT from NDJSON", "skipped"),
    }
    let target = (500_000f64).min(0.8 * bare);
    println!(
        "target: >= {:.0} rows/s (500k or 80% of bare, the lower): {}",
        target,
        if eddy_rate >= target {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "produce -> visible at {rate} rows/s: p50 {p50:.1} ms, p99 {p99:.1} ms (target p99 < 200 ms: {})",
        if p99 < 200.0 { "met" } else { "NOT met" }
    );
}
