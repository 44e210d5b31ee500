//! Alert rules in the ingest path, side by side in one run (`cargo bench --bench
//! alert_latency`):
//!
//! 1. throughput: the same ticks from Kafka into a table with 1-minute bars, once without
//!    and once with the price-move rule (with its Kafka sink) active; the ratio is the
//!    rules' cost (target: at least 0.90);
//! 2. latency: ticks produced at a steady 50k/s with a planted price jump every 200 ms;
//!    for each jump, the time from producing the jump tick to consuming its alert from the
//!    alert topic: p50 / p99 (target p99 < 250 ms).
//!
//! Needs tansu (`scripts/test.sh` installs it, or `TANSU=/path`). Options: `--rows N`
//! (throughput ticks, default 2000000), `--seconds N` (latency run, default 20).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

const SYMBOLS: u64 = 100;
const PARTITIONS: i32 = 4;
/// Event time runs at one minute per wall second, so 1-minute bars close every second.
const EVENT_SPEEDUP: i64 = 60;

/// Ticks of `SYMBOLS` symbols whose prices wobble, with planted jumps.
struct Ticks {
    level: Vec<f64>,
}

impl Ticks {
    fn new() -> Self {
        Self {
            level: (0..SYMBOLS).map(|s| 50.0 + s as f64).collect(),
        }
    }

    fn tick(&mut self, seq: u64, event_ms: i64, jump: bool) -> (String, String) {
        let s = seq % SYMBOLS;
        if jump {
            // Up 7%, or back down when far above the start (prices stay in range).
            let up = self.level[s as usize] < 80.0 + s as f64;
            self.level[s as usize] *= if up { 1.07 } else { 1.0 / 1.07 };
        }
        let wobble = 1.0 + 0.0001 * ((seq % 7) as f64 - 3.0);
        (
            format!("SYM{s:03}"),
            format!(
                "{{\"symbol\":\"SYM{s:03}\",\"price\":{:.5},\"volume\":{},\"ts\":{event_ms}}}",
                self.level[s as usize] * wobble,
                1 + seq % 50
            ),
        )
    }
}

fn producer(addr: &str, linger_ms: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", linger_ms)
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .create()
        .unwrap()
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &str, v: &str, part: i32) {
    let mut rec = BaseRecord::<str, str>::to(topic)
        .key(key)
        .payload(v)
        .partition(part);
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                rec = r;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Preloads `rows` ticks (a jump every 10k ticks) into each of `topics`.
fn preload(addr: &str, topics: &[&str], rows: u64) {
    let p = producer(addr, "20");
    let mut ticks = Ticks::new();
    let base_ms = 1_767_225_600_000i64;
    for seq in 0..rows {
        let (k, v) = ticks.tick(seq, base_ms + seq as i64, seq % 10_000 == 5_000);
        for t in topics {
            send(&p, t, &k, &v, ((seq % SYMBOLS) % PARTITIONS as u64) as i32);
        }
        if seq % 500_000 == 0 && seq > 0 {
            eprintln!("  produced {seq} / {rows}");
        }
    }
    p.flush(Duration::from_secs(120)).unwrap();
}

/// Quantile `q` of a Prometheus histogram in `text` (upper bound of its bucket), in ms.
fn histogram_quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&format!("{name}_bucket{{le=\""))?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(le, _)| le * 1000.0)
}

async fn scalar(c: &tokio_postgres::Client, sql: &str) -> String {
    for m in c.simple_query(sql).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            return row.get(0).unwrap_or("").to_string();
        }
    }
    String::new()
}

async fn run(c: &tokio_postgres::Client, sql: &str) {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A table, its 1-minute bars and, when `rule`, the price-move rule with a Kafka sink.
async fn setup(c: &tokio_postgres::Client, name: &str, addr: &str, rule: bool) {
    run(c, &format!("CREATE TABLE {name} (symbol text NOT NULL, price double precision, volume bigint, ts timestamptz NOT NULL) WITH (time_column = 'ts')")).await;
    run(c, &format!("CREATE MATERIALIZED VIEW {name}_bars WITH (lateness = '60 seconds') AS SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS bucket, first_value(price ORDER BY ts) AS open, max(price) AS high, min(price) AS low, last_value(price ORDER BY ts) AS close, sum(volume) AS volume FROM {name} GROUP BY 1, 2")).await;
    if rule {
        run(c, &format!("CREATE ALERT {name}_move ON {name}_bars WHEN abs(close / prev(close) - 1) > 0.05 SEVERITY CASE WHEN abs(close / prev(close) - 1) > 0.10 THEN 'critical' ELSE 'warning' END SINK KAFKA (brokers = '{addr}', topic = '{name}-alerts')")).await;
    }
}

/// Starts a source on `topic` into `table` and times it until every row is applied.
async fn ingest(
    c: &tokio_postgres::Client,
    addr: &str,
    topic: &str,
    table: &str,
    rows: u64,
) -> f64 {
    let start = Instant::now();
    run(c, &format!("CREATE SOURCE {table}_in FROM KAFKA (brokers = '{addr}', topic = '{topic}', start_offset = 'earliest') INTO {table}")).await;
    let mut last = Instant::now();
    loop {
        let n: u64 = scalar(
            c,
            &format!(
                "SELECT coalesce(sum(rows), 0) FROM system.sources WHERE source = '{table}_in'"
            ),
        )
        .await
        .parse()
        .unwrap_or(0);
        if n >= rows {
            break;
        }
        if last.elapsed() > Duration::from_secs(2) {
            eprintln!("  {table}: {n} / {rows} rows applied");
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rate = rows as f64 / start.elapsed().as_secs_f64();
    // An idle source still polls the broker (every 5 ms per partition): stop it, so that
    // every run has the broker to itself.
    run(c, &format!("DROP SOURCE {table}_in")).await;
    rate
}

#[tokio::main]
async fn main() {
    let rows = arg("--rows", 2_000_000) as u64;
    let seconds = arg("--seconds", 20) as u64;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_direct();
    let addr = broker.addr.clone();
    broker.create_topic("ticks", PARTITIONS).await;
    for t in ["ruled_a", "ruled_b"] {
        broker.create_topic(&format!("{t}-alerts"), 1).await;
    }
    broker.create_topic("live", PARTITIONS).await;
    broker.create_topic("live-alerts", 1).await;
    eprintln!("alert_latency: producing {rows} ticks ({SYMBOLS} symbols)...");
    preload(&addr, &["ticks"], rows);
    let (_eddy, c, http) = start_eddy(&dir.path().join("eddy")).await;
    // Without and with the rule, twice each, alternating: the best of each is compared.
    let (mut plain, mut ruled) = (0f64, 0f64);
    for round in ["a", "b"] {
        let (p, r) = (format!("plain_{round}"), format!("ruled_{round}"));
        setup(&c, &p, &addr, false).await;
        setup(&c, &r, &addr, true).await;
        eprintln!("throughput without rules ({round})...");
        plain = plain.max(ingest(&c, &addr, "ticks", &p, rows).await);
        eprintln!("throughput with the price rule ({round})...");
        ruled = ruled.max(ingest(&c, &addr, "ticks", &r, rows).await);
    }
    let fired = scalar(
        &c,
        "SELECT fired FROM system.alert_rules WHERE rule = 'ruled_a_move'",
    )
    .await;

    eprintln!("latency at 50k ticks/s for {seconds} s, a jump every 200 ms...");
    setup(&c, "live", &addr, true).await;
    run(
        &c,
        &format!("CREATE SOURCE live_in FROM KAFKA (brokers = '{addr}', topic = 'live') INTO live"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // (symbol, bucket start ms) of each jump -> when it was produced.
    let jumps: Arc<Mutex<HashMap<(String, i64), Instant>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (addr, jumps, done) = (addr.clone(), Arc::clone(&jumps), Arc::clone(&done));
        std::thread::spawn(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &addr)
                .set("group.id", "bench-alerts")
                .set("isolation.level", "read_committed")
                .set("fetch.wait.max.ms", "5")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("live-alerts", 0, Offset::Beginning)
                .unwrap();
            c.assign(&tpl).unwrap();
            let mut lat = Vec::new();
            let mut unmatched = 0;
            let idle_until = |d: &AtomicBool| d.load(Ordering::SeqCst);
            let mut quiet_since = Instant::now();
            loop {
                match c.poll(Duration::from_millis(5)) {
                    Some(Ok(m)) => {
                        let got = Instant::now();
                        quiet_since = got;
                        let v: serde_json::Value =
                            serde_json::from_slice(m.payload().unwrap()).unwrap();
                        let sym = v["key"]["symbol"].as_str().unwrap().to_string();
                        let bucket =
                            chrono::DateTime::parse_from_rfc3339(v["bucket"].as_str().unwrap())
                                .unwrap()
                                .timestamp_millis();
                        match jumps.lock().unwrap().get(&(sym, bucket)) {
                            Some(sent) => {
                                lat.push(got.duration_since(*sent).as_secs_f64() * 1000.0)
                            }
                            None => unmatched += 1,
                        }
                    }
                    _ => {
                        if idle_until(&done) && quiet_since.elapsed() > Duration::from_secs(3) {
                            return (lat, unmatched);
                        }
                    }
                }
            }
        })
    };
    let producer = {
        let (addr, jumps) = (addr.clone(), Arc::clone(&jumps));
        std::thread::spawn(move || {
            // linger.ms = 5, the Kafka 4 producer default: one request per record would
            // saturate the in-memory test broker on a small machine.
            let p = producer(&addr, "5");
            let mut ticks = Ticks::new();
            let rate = 50_000u64;
            let per_ms = rate / 1000;
            let epoch = Instant::now();
            let base_ms = now_ms();
            let mut planted = 0u64;
            for ms in 0..(seconds * 1000) {
                let due = epoch + Duration::from_millis(ms);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let event_ms = base_ms + ms as i64 * EVENT_SPEEDUP;
                for i in 0..per_ms {
                    let seq = ms * per_ms + i;
                    // A jump every 200 ms, past the first buckets (prev() needs one).
                    let jump = ms >= 2000 && ms % 200 == 0 && i == (ms / 200) % per_ms;
                    let (k, v) = ticks.tick(seq, event_ms, jump);
                    if jump {
                        let bucket = event_ms - event_ms.rem_euclid(60_000);
                        jumps
                            .lock()
                            .unwrap()
                            .insert((k.clone(), bucket), Instant::now());
                        planted += 1;
                    }
                    send(
                        &p,
                        "live",
                        &k,
                        &v,
                        ((seq % SYMBOLS) % PARTITIONS as u64) as i32,
                    );
                }
            }
            p.flush(Duration::from_secs(30)).unwrap();
            planted
        })
    };
    let planted = producer.join().unwrap();
    done.store(true, Ordering::SeqCst);
    let (mut lat, unmatched) = consumer.join().unwrap();
    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());

    println!();
    println!("Alert rules in the ingest path: {rows} ticks, {SYMBOLS} symbols, {PARTITIONS} partitions, tansu");
    println!("{:<44} {:>12} {:>8}", "", "ticks/s", "ratio");
    println!(
        "{:<44} {:>12.0} {:>8}",
        "Kafka -> ticks + bars_1m", plain, "1.00x"
    );
    println!(
        "{:<44} {:>12.0} {:>7.2}x",
        "  + price-move rule with Kafka sink",
        ruled,
        ruled / plain
    );
    println!("  alerts fired on the preloaded ticks: {fired}");
    println!(
        "target: with rules >= 0.90 of without: {}",
        if ruled / plain >= 0.9 {
            "met"
        } else {
            "NOT met"
        }
    );
    if lat.is_empty() {
        println!("latency: no alert consumed ({planted} jumps planted, {unmatched} unmatched)");
    } else {
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        println!(
            "produce -> alert consumed at 50k ticks/s: {} of {planted} jumps alerted ({unmatched} other alerts); p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms (target p99 < 250 ms: {})",
            lat.len(),
            lat.last().unwrap(),
            if p99 < 250.0 { "met" } else { "NOT met" }
        );
    }
    if let (Some(p50), Some(p99)) = (
        histogram_quantile(&metrics, "eddy_alert_latency_seconds", 0.5),
        histogram_quantile(&metrics, "eddy_alert_latency_seconds", 0.99),
    ) {
        println!(
            "eddy_alert_latency_seconds (record timestamp -> sink ack, all rules): p50 <= {p50:.0} ms, p99 <= {p99:.0} ms"
        );
    }
}
