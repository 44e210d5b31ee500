//! A real Kafka-protocol broker for tests: tansu on a free loopback port, in memory, behind
//! a TCP relay this process controls, so a test can take "the broker" away and bring it back
//! without losing the topic's data. Clients (eddy's sources and the test's producer) only
//! know the relay's address: tansu advertises it.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The tansu binary: `$TANSU`, else `~/.cargo/bin/tansu` (where `scripts/test.sh` installs it).
fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let p = home.join("bin/tansu");
    assert!(
        p.exists(),
        "tansu is not installed at {}; run scripts/test.sh (it installs it) or set TANSU",
        p.display()
    );
    p
}

/// Starts tansu in memory on `port`, advertising `advertised`, and waits until it listens.
pub fn spawn_tansu(port: u16, advertised: u16) -> Child {
    let child = Command::new(tansu_bin())
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{advertised}"),
            "--storage-engine",
            "memory://tansu/",
            "--silent",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tansu");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "tansu did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

pub struct Broker {
    child: Child,
    /// What clients use: the relay.
    pub addr: String,
    relay_up: watch::Sender<bool>,
}

impl Broker {
    /// tansu behind a relay the test controls ([`Broker::stop`], [`Broker::resume`]).
    pub async fn start() -> Broker {
        let tansu_port = free_port();
        let relay_port = free_port();
        let child = spawn_tansu(tansu_port, relay_port);
        let (tx, rx) = watch::channel(true);
        tokio::spawn(relay(relay_port, tansu_port, rx));
        while TcpStream::connect(("127.0.0.1", relay_port)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Broker {
            child,
            addr: format!("127.0.0.1:{relay_port}"),
            relay_up: tx,
        }
    }

    /// tansu reached directly (benchmarks: no relay in the path).
    #[allow(dead_code)] // used by benches/kafka_ingest.rs, which includes this file
    pub fn start_direct() -> Broker {
        let port = free_port();
        let child = spawn_tansu(port, port);
        Broker {
            child,
            addr: format!("127.0.0.1:{port}"),
            relay_up: watch::channel(true).0,
        }
    }

    /// Makes the broker unreachable: closes the listener and every open connection.
    pub fn stop(&self) {
        self.relay_up.send_replace(false);
    }

    /// Makes it reachable again on the same address.
    pub fn resume(&self) {
        self.relay_up.send_replace(true);
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .create()
            .unwrap();
        let r = admin
            .create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap();
        for t in r {
            t.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
    }

    pub fn producer(&self) -> Arc<FutureProducer> {
        Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", &self.addr)
                .set("linger.ms", "5")
                // Retries of a slow broker must not write a record twice: tests count
                // exactly-once against what was produced.
                .set("enable.idempotence", "true")
                .set("message.timeout.ms", "120000")
                .create()
                .unwrap(),
        )
    }
}

/// Produces `(partition, key, payload)` records and waits for each to be acknowledged.
pub async fn produce(p: &FutureProducer, topic: &str, records: &[(i32, String, Option<String>)]) {
    let futs: Vec<_> = records
        .iter()
        .map(|(part, key, value)| {
            let mut r = FutureRecord::to(topic).partition(*part).key(key.as_str());
            if let Some(v) = value {
                r = r.payload(v.as_str());
            }
            p.send_result(r).expect("producer queue has room")
        })
        .collect();
    for f in futs {
        f.await
            .expect("delivery future")
            .unwrap_or_else(|(e, _)| panic!("produce failed: {e}"));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn relay(port: u16, target: u16, mut up: watch::Receiver<bool>) {
    loop {
        if !*up.borrow() {
            if up.changed().await.is_err() {
                return;
            }
            continue;
        }
        let listener = match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (conn_stop, _) = watch::channel(false);
        loop {
            tokio::select! {
                acc = listener.accept() => {
                    let Ok((mut inbound, _)) = acc else { continue };
                    let mut stop = conn_stop.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = stop.changed() => {}
                        }
                    });
                }
                r = up.changed() => {
                    if r.is_err() { return; }
                    if !*up.borrow() {
                        let _ = conn_stop.send(true);
                        break; // drops the listener: connections are refused
                    }
                }
            }
        }
    }
}
