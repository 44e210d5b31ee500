//! Publishing a rule's alerts to a Kafka topic, exactly once, without transactions.
//!
//! Every alert is recorded in `system.alerts` before it is offered here, so the table is
//! the source of truth and the in-memory queue only a fast path. The sink keeps *progress*
//! (durable, through [`AlertStore`]): per partition the offset after the last alert whose
//! delivery (and every earlier one's) the broker acknowledged, and the detection time
//! after it. Whenever it (re)connects, after a restart, a broker outage, a delivery error
//! or a queue overflow, it *reconciles* the way Materialize keeps sink progress: it reads
//! the topic back from the progress offsets, collects the ids of this rule's alerts already
//! there, and publishes the recorded alerts since the progress time that are not. Alert
//! ids are deterministic, so an alert fired again by a replay after a crash is recognised.
//! The producer is idempotent, so its own retries never duplicate. Transactions are not
//! needed (and the test broker has none).

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_proto::{AlertDef, Error, ErrorCode, KafkaSinkDef, Result};
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// One alert on its way to the topic.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: String,
    /// The message key: the alert's key object as JSON.
    pub key: String,
    pub payload: String,
    pub detected_micros: i64,
    /// When the triggering data arrived (Kafka timestamp or write time), for latency.
    pub origin_micros: Option<i64>,
}

/// Where a sink's delivery stands, stored durably.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkProgress {
    /// Partition → offset after the last acknowledged alert of the acknowledged prefix.
    pub offsets: BTreeMap<i32, i64>,
    /// Every alert detected before this (µs) is acknowledged.
    pub since_micros: i64,
}

/// What a sink needs from the engine.
pub trait AlertStore: Send + Sync + 'static {
    /// The rule's alerts recorded in `system.alerts` detected at or after `since_micros`,
    /// oldest first.
    fn recorded(&self, rule: &AlertDef, since_micros: i64) -> Result<Vec<Outgoing>>;
    fn load_progress(&self, rule: &AlertDef) -> Result<Option<SinkProgress>>;
    fn save_progress(&self, rule: &AlertDef, progress: &SinkProgress) -> Result<()>;
    /// Alerts of `rule` detected up to this time (µs) can never fire again: the rows that
    /// fired them are sealed, so no replay reaches them. Progress is saved only that far,
    /// so that after a restart the read-back covers every alert a replay may fire again.
    fn sealed_through(&self, rule: &AlertDef) -> i64;
    /// Called per acknowledged alert, with its latency when known.
    fn delivered(&self, rule: &str, latency_secs: Option<f64>);
}

/// Counters shared with the engine (`system.alert_rules`, `/metrics`).
#[derive(Debug, Default)]
pub struct SinkShared {
    in_queue: AtomicU64,
    in_flight: AtomicU64,
    backlog: AtomicU64,
    pub delivered: AtomicU64,
    overflow: AtomicBool,
    stop: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

impl SinkShared {
    /// Alerts recorded but not yet acknowledged by the broker.
    pub fn queued(&self) -> u64 {
        self.in_queue.load(Ordering::Relaxed)
            + self.in_flight.load(Ordering::Relaxed)
            + self.backlog.load(Ordering::Relaxed)
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock() = e;
    }
}

/// A running sink.
#[derive(Debug)]
pub struct AlertSink {
    tx: SyncSender<Outgoing>,
    pub shared: Arc<SinkShared>,
    thread: Option<JoinHandle<()>>,
}

impl AlertSink {
    /// Starts publishing `rule`'s alerts; at most `queue_max` wait in memory.
    pub fn start(rule: AlertDef, store: Arc<dyn AlertStore>, queue_max: usize) -> Result<Self> {
        let Some(sink) = rule.sink.clone() else {
            return Err(Error::new(ErrorCode::Internal, "alert rule has no sink"));
        };
        let (tx, rx) = sync_channel(queue_max.max(1));
        let shared = Arc::new(SinkShared::default());
        let worker = Worker {
            rule,
            sink,
            store,
            shared: Arc::clone(&shared),
            rx,
            producer: None,
            acks: Arc::new(Mutex::new(Vec::new())),
            inflight: VecDeque::new(),
            next_seq: 0,
            progress: None,
            progress_dirty: false,
            saved_at: Instant::now(),
            recent: HashSet::new(),
            recent_order: VecDeque::new(),
            checkpoints: VecDeque::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("alert-sink-{}", worker.rule.name))
            .spawn(move || worker.run())
            .map_err(|e| Error::new(ErrorCode::Internal, format!("alert sink thread: {e}")))?;
        Ok(Self {
            tx,
            shared,
            thread: Some(thread),
        })
    }

    /// Hands over an alert already recorded in `system.alerts`. Never blocks: when the
    /// queue is full the alert stays only in the table and the sink reconciles.
    pub fn offer(&self, m: Outgoing) {
        match self.tx.try_send(m) {
            Ok(()) => {
                self.shared.in_queue.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                self.shared.backlog.fetch_add(1, Ordering::Relaxed);
                self.shared.overflow.store(true, Ordering::SeqCst);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Drop for AlertSink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Ack = (u64, std::result::Result<(i32, i64), String>);

struct Ctx {
    acks: Arc<Mutex<Vec<Ack>>>,
}

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<u64>;
    fn delivery(&self, r: &DeliveryResult<'_>, seq: Box<u64>) {
        let res = match r {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        self.acks.lock().push((*seq, res));
    }
}

struct Inflight {
    id: String,
    seq: u64,
    detected: i64,
    origin: Option<i64>,
    acked: Option<(i32, i64)>,
}

struct Worker {
    rule: AlertDef,
    sink: KafkaSinkDef,
    store: Arc<dyn AlertStore>,
    shared: Arc<SinkShared>,
    rx: Receiver<Outgoing>,
    producer: Option<BaseProducer<Ctx>>,
    acks: Arc<Mutex<Vec<Ack>>>,
    inflight: VecDeque<Inflight>,
    next_seq: u64,
    progress: Option<SinkProgress>,
    progress_dirty: bool,
    saved_at: Instant,
    /// Ids known to be on the topic (read back, or acknowledged), newest last.
    recent: HashSet<String>,
    recent_order: VecDeque<String>,
    /// Progress after each acknowledged prefix, with the last alert's detection time:
    /// what may be saved once that time is sealed.
    checkpoints: VecDeque<(i64, SinkProgress)>,
}

/// Ids of delivered alerts remembered to skip repeats (a replay firing them again).
const RECENT_MAX: usize = 200_000;

fn kafka_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::StorageIo, format!("alert sink {what}: {e}"))
}

#[derive(Deserialize)]
struct Header {
    alert_id: String,
    rule: String,
}

impl Worker {
    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.sink.brokers)
            .set("client.id", format!("eddy-alert-{}", self.rule.name));
        for (k, v) in &self.sink.properties {
            c.set(k, v);
        }
        c
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let mut reconcile = true;
        while !self.stopping() {
            if reconcile || self.shared.overflow.load(Ordering::SeqCst) {
                match self.reconcile() {
                    Ok(()) => {
                        reconcile = false;
                        backoff = Duration::from_millis(100);
                        self.shared.set_error(None);
                    }
                    Err(e) => {
                        tracing::warn!(rule = %self.rule.name, error = %e, "alert sink not delivering; retrying");
                        self.shared.set_error(Some(e.message));
                        self.sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            let step = self.step();
            if let Err(e) = step {
                tracing::warn!(rule = %self.rule.name, error = %e, "alert delivery failed; reconciling");
                self.shared.set_error(Some(e.message));
                reconcile = true;
            }
            self.save_progress(false);
        }
        // Deliver what is in flight before leaving; whatever is not stays in the table.
        if let Some(p) = &self.producer {
            let _ = p.flush(Duration::from_secs(5));
            let _ = self.take_acks();
        }
        self.save_progress(true);
    }

    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stopping() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One round of the steady state: publish what was queued, take acknowledgements.
    fn step(&mut self) -> Result<()> {
        let first = match self.rx.recv_timeout(Duration::from_millis(20)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.shared.stop.store(true, Ordering::SeqCst);
                None
            }
        };
        let mut batch: Vec<Outgoing> = first.into_iter().collect();
        while batch.len() < 1024 {
            match self.rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        for m in batch {
            self.shared.in_queue.fetch_sub(1, Ordering::Relaxed);
            if self.shared.overflow.load(Ordering::SeqCst) {
                // The table has this one too; the reconcile about to run publishes it.
                continue;
            }
            if self.recent.contains(&m.id) {
                continue;
            }
            self.send(m)?;
        }
        self.take_acks()
    }

    fn remember(&mut self, id: String) {
        if self.recent.insert(id.clone()) {
            self.recent_order.push_back(id);
            while self.recent_order.len() > RECENT_MAX {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    fn send(&mut self, m: Outgoing) -> Result<()> {
        let Some(producer) = &self.producer else {
            return Err(kafka_err("send", "not connected"));
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = if m.key == "{}" {
            self.rule.name.clone()
        } else {
            m.key.clone()
        };
        let mut record = BaseRecord::with_opaque_to(&self.sink.topic, Box::new(seq))
            .key(&key)
            .payload(&m.payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(50));
                    if self.stopping() {
                        return Ok(());
                    }
                }
                Err((e, _)) => return Err(kafka_err("send", e)),
            }
        }
        self.inflight.push_back(Inflight {
            id: m.id,
            seq,
            detected: m.detected_micros,
            origin: m.origin_micros,
            acked: None,
        });
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Applies delivery reports; advances progress over the acknowledged prefix.
    fn take_acks(&mut self) -> Result<()> {
        if let Some(p) = &self.producer {
            p.poll(Duration::ZERO);
            if let Some((code, reason)) = p.client().fatal_error() {
                return Err(kafka_err("producer", format!("{code:?}: {reason}")));
            }
        }
        let acks = std::mem::take(&mut *self.acks.lock());
        let mut failure = None;
        for (seq, res) in acks {
            match res {
                Ok(at) => {
                    if let Some(front) = self.inflight.front() {
                        let i = (seq - front.seq) as usize;
                        if let Some(f) = self.inflight.get_mut(i) {
                            f.acked = Some(at);
                        }
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let now = chrono::Utc::now().timestamp_micros();
        let mut advanced = None;
        while self.inflight.front().is_some_and(|f| f.acked.is_some()) {
            let f = self.inflight.pop_front().expect("checked");
            let (part, off) = f.acked.expect("checked");
            let p = self.progress.get_or_insert_with(SinkProgress::default);
            let o = p.offsets.entry(part).or_insert(0);
            *o = (*o).max(off + 1);
            p.since_micros = p.since_micros.max(f.detected + 1);
            self.progress_dirty = true;
            self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.shared.delivered.fetch_add(1, Ordering::Relaxed);
            let latency = f.origin.map(|o| (now - o).max(0) as f64 / 1e6);
            self.store.delivered(&self.rule.name, latency);
            advanced = Some(f.detected);
            self.remember(f.id);
        }
        if let (Some(d), Some(p)) = (advanced, &self.progress) {
            self.checkpoints.push_back((d, p.clone()));
        }
        match failure {
            Some(e) => Err(kafka_err("delivery", e)),
            None => Ok(()),
        }
    }

    /// Saves the newest checkpoint whose alerts can no longer fire again.
    fn save_progress(&mut self, now: bool) {
        if !self.progress_dirty || (!now && self.saved_at.elapsed() < Duration::from_millis(500)) {
            return;
        }
        self.saved_at = Instant::now();
        let sealed = self.store.sealed_through(&self.rule);
        let mut best = None;
        while self.checkpoints.front().is_some_and(|(d, _)| *d <= sealed) {
            best = self.checkpoints.pop_front().map(|(_, p)| p);
        }
        self.progress_dirty = !self.checkpoints.is_empty();
        let Some(p) = best else {
            return;
        };
        match self.store.save_progress(&self.rule, &p) {
            Ok(()) => {}
            Err(e) => {
                self.progress_dirty = true;
                tracing::warn!(rule = %self.rule.name, error = %e, "saving alert sink progress failed");
            }
        }
    }

    /// Brings the topic in line with `system.alerts` (see the module docs).
    fn reconcile(&mut self) -> Result<()> {
        // A producer of unknown state is dropped (destroying it waits for its requests).
        if let Some(p) = self.producer.take() {
            let _ = p.flush(Duration::from_secs(2));
            let _ = self.take_acks();
            drop(p);
        }
        self.inflight.clear();
        self.shared.in_flight.store(0, Ordering::Relaxed);
        self.acks.lock().clear();
        // Everything queued is in the table: read it from there instead.
        self.shared.overflow.store(false, Ordering::SeqCst);
        while self.rx.try_recv().is_ok() {
            self.shared.in_queue.fetch_sub(1, Ordering::Relaxed);
        }
        // Where to read back from. Broker-reported end offsets are not relied on (some
        // Kafka-compatible brokers report them loosely): each partition is read from the
        // progress offset, or its start, until the broker says it is at the end.
        let progress = match self.progress.clone() {
            Some(p) => p,
            None => self
                .store
                .load_progress(&self.rule)?
                .unwrap_or(SinkProgress {
                    offsets: BTreeMap::new(),
                    since_micros: self.rule.created_micros,
                }),
        };
        let candidates = self.store.recorded(&self.rule, progress.since_micros)?;
        self.shared
            .backlog
            .store(candidates.len() as u64, Ordering::Relaxed);

        let mut consumer_cfg = self.config();
        consumer_cfg
            .set(
                "group.id",
                format!("eddy-alert-readback-{}", self.rule.name),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "5");
        let consumer: BaseConsumer = consumer_cfg
            .create()
            .map_err(|e| kafka_err("consumer", e))?;
        let timeout = Duration::from_secs(10);
        let md = consumer
            .fetch_metadata(Some(&self.sink.topic), timeout)
            .map_err(|e| kafka_err(&format!("brokers {}", self.sink.brokers), e))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == self.sink.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(kafka_err(
                "topic",
                format!(
                    "topic \"{}\" does not exist on {}",
                    self.sink.topic, self.sink.brokers
                ),
            ));
        }
        let ranges: Vec<(i32, Offset)> = partitions
            .iter()
            .map(|p| {
                (
                    *p,
                    progress
                        .offsets
                        .get(p)
                        // From a little earlier: some brokers (tansu 0.6) skip the rest of
                        // a record batch a fetch starts inside (reading more is harmless).
                        .map_or(Offset::Beginning, |o| Offset::Offset((*o - 20_000).max(0))),
                )
            })
            .collect();
        let delivered = self.read_back(&consumer, &ranges)?;
        for id in &delivered {
            self.remember(id.clone());
        }
        let pending: Vec<Outgoing> = candidates
            .into_iter()
            .filter(|m| !delivered.contains(&m.id))
            .collect();
        self.shared
            .backlog
            .store(pending.len() as u64, Ordering::Relaxed);
        self.progress = Some(progress);
        let mut cfg = self.config();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000")
            .set("queue.buffering.max.messages", "100000");
        let producer: BaseProducer<Ctx> = cfg
            .create_with_context(Ctx {
                acks: Arc::clone(&self.acks),
            })
            .map_err(|e| kafka_err("producer", e))?;
        self.producer = Some(producer);
        let n = pending.len();
        for m in pending {
            self.remember(m.id.clone());
            self.send(m)?;
            self.shared.backlog.fetch_sub(1, Ordering::Relaxed);
        }
        if n > 0 {
            tracing::info!(rule = %self.rule.name, alerts = n, "published alerts the topic was missing");
        }
        // Wait for them, so that a failure is noticed here, not after new alerts.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.inflight.is_empty() && !self.stopping() {
            if let Some(p) = &self.producer {
                p.poll(Duration::from_millis(20));
            }
            self.take_acks()?;
            if Instant::now() > deadline {
                return Err(kafka_err(
                    "delivery",
                    "timed out waiting for acknowledgements",
                ));
            }
        }
        self.save_progress(true);
        Ok(())
    }

    /// Ids of this rule's alerts in the topic, each partition read from its offset to its
    /// end.
    fn read_back(
        &self,
        consumer: &BaseConsumer,
        ranges: &[(i32, Offset)],
    ) -> Result<HashSet<String>> {
        let mut ids = HashSet::new();
        if ranges.is_empty() {
            return Ok(ids);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, from) in ranges {
            tpl.add_partition_offset(&self.sink.topic, *p, *from)
                .map_err(|e| kafka_err("assign", e))?;
        }
        consumer.assign(&tpl).map_err(|e| kafka_err("assign", e))?;
        let mut remaining: BTreeSet<i32> = ranges.iter().map(|(p, _)| *p).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !remaining.is_empty() {
            if Instant::now() > deadline || self.stopping() {
                return Err(kafka_err("read back", "timed out reading the topic back"));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if let Some(Ok(h)) = m.payload().map(serde_json::from_slice::<Header>) {
                        if h.rule == self.rule.name {
                            ids.insert(h.alert_id);
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    remaining.remove(&p);
                }
                Some(Err(e)) => return Err(kafka_err("read back", e)),
                None => {}
            }
        }
        Ok(ids)
    }
}
