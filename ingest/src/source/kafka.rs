//! The Kafka source: one thread polls the broker and cuts batches, a second decodes them and
//! delivers them with their offsets, so decoding overlaps fetching.
//!
//! Offsets are never committed ahead of the data: the BE persists them with the segment
//! that holds the rows, and a restarted source seeks to what the table holds. Offsets are
//! also committed to the consumer group (best effort) after they are durable, only so that
//! Kafka's own tools show the group's lag.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_proto::{Error, ErrorCode, Result, SourceDef};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use super::assign::{plan, StartAt};
use super::options::KafkaOptions;
use super::order::Order;
use super::records::{next_offsets, RawBatch, RecordDecoder};
use super::status::{PartitionProgress, SourceShared};
use super::{Rejection, SourceSink};

/// Batches cut but not yet applied; bounds the memory between the two threads.
const PIPELINE_DEPTH: usize = 2;

struct Ctx {
    shared: Arc<SourceShared>,
    topic: String,
}

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        if let Some(t) = s.topics.get(&self.topic) {
            for (pid, p) in &t.partitions {
                if *pid >= 0 && p.hi_offset >= 0 {
                    self.shared.set_high_watermark(*pid, p.hi_offset);
                }
            }
        }
        let learned: Vec<_> = s.brokers.values().filter(|b| b.nodeid >= 0).collect();
        if !learned.is_empty() {
            let up = learned.iter().any(|b| b.state == "UP");
            self.shared.set_connected(
                up,
                (!up).then(|| "no broker is reachable; retrying".to_string()),
            );
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let down = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        );
        let msg = format!("{error}: {reason}");
        if down {
            self.shared.set_connected(false, Some(msg));
        } else {
            self.shared.set_error(msg);
        }
    }
}

impl ConsumerContext for Ctx {}

fn client_config(name: &str, opts: &KafkaOptions) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &opts.brokers)
        .set(
            "group.id",
            opts.group_id
                .clone()
                .unwrap_or_else(|| format!("eddy-{name}")),
        )
        .set("client.id", format!("eddy-{name}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        // Brokers may hold a fetch for the whole wait; a short wait keeps freshness.
        .set("fetch.wait.max.ms", "5")
        .set("statistics.interval.ms", "1000");
    for (k, v) in &opts.properties {
        c.set(k, v);
    }
    c
}

pub(super) fn spawn(
    def: &SourceDef,
    opts: KafkaOptions,
    sink: Arc<dyn SourceSink>,
    shared: Arc<SourceShared>,
) -> Result<Vec<JoinHandle<()>>> {
    let table = sink.table_def(&def.table).ok_or_else(|| {
        Error::new(
            ErrorCode::TableNotFound,
            format!("relation \"{}\" does not exist", def.table),
        )
    })?;
    let decoder = RecordDecoder::new(
        table.arrow_schema(),
        table.primary_key.clone(),
        opts.decode.clone(),
    )?;
    let consumer: BaseConsumer<Ctx> = client_config(&def.name, &opts)
        .create_with_context(Ctx {
            shared: Arc::clone(&shared),
            topic: opts.topic.clone(),
        })
        .map_err(|e| {
            Error::new(
                ErrorCode::InvalidSourceOption,
                format!("cannot create Kafka consumer: {e}"),
            )
        })?;
    let producer: Option<BaseProducer> = match &opts.dead_letter_topic {
        None => None,
        Some(_) => {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", &opts.brokers);
            for (k, v) in &opts.properties {
                c.set(k, v);
            }
            Some(c.create().map_err(|e| {
                Error::new(
                    ErrorCode::InvalidSourceOption,
                    format!("cannot create dead-letter producer: {e}"),
                )
            })?)
        }
    };
    let (tx, rx) = sync_channel::<RawBatch>(PIPELINE_DEPTH);
    let applier = Applier {
        name: def.name.clone(),
        table: def.table.clone(),
        topic: opts.topic.clone(),
        dead_letter_topic: opts.dead_letter_topic.clone(),
        producer,
        decoder,
        sink: Arc::clone(&sink),
        shared: Arc::clone(&shared),
        table_columns: table.columns.len(),
        key: table.primary_key.clone(),
        decode_opts: opts.decode.clone(),
    };
    let apply = std::thread::Builder::new()
        .name(format!("source-{}-apply", def.name))
        .spawn(move || applier.run(rx))
        .map_err(|e| Error::new(ErrorCode::Internal, format!("start source thread: {e}")))?;
    let (name, table_name) = (def.name.clone(), def.table.clone());
    let poll = std::thread::Builder::new()
        .name(format!("source-{}", def.name))
        .spawn(move || {
            let mut p = Poller {
                name,
                table: table_name,
                opts,
                consumer,
                sink,
                shared,
                assigned: BTreeSet::new(),
                order: Order::default(),
            };
            p.run(tx)
        })
        .map_err(|e| Error::new(ErrorCode::Internal, format!("start source thread: {e}")))?;
    Ok(vec![poll, apply])
}

struct Poller {
    name: String,
    table: String,
    opts: KafkaOptions,
    consumer: BaseConsumer<Ctx>,
    sink: Arc<dyn SourceSink>,
    shared: Arc<SourceShared>,
    assigned: BTreeSet<i32>,
    order: Order,
}

/// Records re-read before a resume offset. Kafka returns the record batch that contains
/// the offset a fetch asks for and the client drops the records before it, but some
/// Kafka-compatible brokers (tansu 0.6) return only batches that *start* at or after it,
/// which would silently skip the rest of a batch a restart resumes in. Resuming this many
/// records earlier (more than a producer batch holds: librdkafka's default
/// `batch.num.messages` is 10000) and dropping what was already applied is exact on both.
const RESUME_LOOKBACK: i64 = 20_000;

impl Poller {
    /// Assigns partitions the topic has and the source does not read yet.
    fn discover(&mut self) {
        let md = match self
            .consumer
            .fetch_metadata(Some(&self.opts.topic), Duration::from_secs(5))
        {
            Ok(md) => md,
            Err(e) => {
                self.shared
                    .set_connected(false, Some(format!("cannot read topic metadata: {e}")));
                return;
            }
        };
        let Some(t) = md.topics().iter().find(|t| t.name() == self.opts.topic) else {
            return;
        };
        if let Some(e) = t.error() {
            self.shared.set_error(format!(
                "topic \"{}\": {:?}",
                self.opts.topic,
                RDKafkaErrorCode::from(e)
            ));
            return;
        }
        let available: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        let applied = match self.sink.offsets(&self.name, &self.table) {
            Ok((applied, _)) => applied,
            Err(e) => {
                self.shared.set_error(e.message);
                return;
            }
        };
        let first = self.assigned.is_empty();
        let new = plan(
            &self.assigned,
            &available,
            &applied,
            self.opts.start_offset,
            first,
        );
        if new.is_empty() {
            return;
        }
        // 'latest' is resolved to a number and recorded as the source's position, so a
        // restart before the first record arrives does not skip what came meanwhile.
        let mut resolved = BTreeMap::new();
        for (p, at) in &new {
            if *at == StartAt::End {
                match self
                    .consumer
                    .fetch_watermarks(&self.opts.topic, *p, Duration::from_secs(5))
                {
                    Ok((_, high)) => {
                        resolved.insert(*p, high);
                    }
                    Err(e) => {
                        self.shared
                            .set_error(format!("cannot read the end of partition {p}: {e}"));
                        return;
                    }
                }
            }
        }
        if !resolved.is_empty() {
            if let Err(e) = self
                .sink
                .deliver(&self.name, &self.table, Vec::new(), &resolved, None)
            {
                self.shared.set_error(e.message);
                return;
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (p, at) in &new {
            let off = match at {
                StartAt::Offset(o) => {
                    self.order.expect(*p, *o, true);
                    Offset::Offset((*o - RESUME_LOOKBACK).max(0))
                }
                StartAt::Beginning => Offset::Beginning,
                StartAt::End => {
                    self.order.expect(*p, resolved[p], false);
                    Offset::Offset(resolved[p])
                }
            };
            if tpl.add_partition_offset(&self.opts.topic, *p, off).is_err() {
                continue;
            }
        }
        match self.consumer.incremental_assign(&tpl) {
            Ok(()) => {
                for (p, at) in new {
                    tracing::info!(source = %self.name, partition = p, start = ?at, "assigned partition");
                    self.assigned.insert(p);
                    self.shared.ensure_partition(p);
                }
            }
            Err(e) => self
                .shared
                .set_error(format!("cannot assign partitions: {e}")),
        }
    }

    /// Commits durable offsets to the consumer group so Kafka tools show the lag.
    fn commit_durable(&self) {
        let Ok((_, durable)) = self.sink.offsets(&self.name, &self.table) else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for (p, o) in durable {
            if self.assigned.contains(&p) {
                let _ = tpl.add_partition_offset(&self.opts.topic, p, Offset::Offset(o));
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(source = %self.name, error = %e, "group offset commit failed");
            }
        }
    }

    fn set_paused(&self, paused: bool) {
        let Ok(a) = self.consumer.assignment() else {
            return;
        };
        let r = if paused {
            self.consumer.pause(&a)
        } else {
            self.consumer.resume(&a)
        };
        if let Err(e) = r {
            self.shared.set_error(format!("cannot pause/resume: {e}"));
        }
    }

    fn run(&mut self, tx: std::sync::mpsc::SyncSender<RawBatch>) {
        let mut buf = RawBatch::default();
        let mut deadline = Instant::now();
        let mut next_discovery = Instant::now();
        let mut next_commit = Instant::now() + Duration::from_secs(1);
        let mut paused = false;
        while !self.shared.stopping() {
            let now = Instant::now();
            if now >= next_discovery {
                self.discover();
                next_discovery = now
                    + if self.assigned.is_empty() {
                        Duration::from_millis(500)
                    } else {
                        self.opts.partition_discovery_interval
                    };
            }
            if now >= next_commit {
                self.commit_durable();
                next_commit = now + Duration::from_secs(1);
            }
            if self.shared.paused() != paused {
                paused = self.shared.paused();
                self.set_paused(paused);
            }
            if paused || self.assigned.is_empty() {
                if !buf.is_empty() {
                    self.shared.batch_sent();
                    if tx.send(std::mem::take(&mut buf)).is_err() {
                        return;
                    }
                }
                self.shared.set_quiet(paused);
                // Serve callbacks (statistics, errors) without taking messages.
                let _ = self.consumer.poll(Duration::from_millis(0));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            self.shared.set_quiet(false);
            let wait = if buf.is_empty() {
                Duration::from_millis(100)
            } else {
                deadline.saturating_duration_since(now)
            };
            // Drain what the client has fetched; the clock is read only every few hundred
            // records (reading it per record cost more than decoding).
            let mut due = false;
            let mut polled = 0u32;
            loop {
                match self
                    .consumer
                    .poll(if polled == 0 { wait } else { Duration::ZERO })
                {
                    Some(Ok(m)) => {
                        if !self
                            .order
                            .take(m.partition(), m.offset(), &self.shared, &self.name)
                        {
                            polled += 1;
                            continue;
                        }
                        if buf.is_empty() {
                            deadline = Instant::now() + self.opts.max_batch_interval;
                        }
                        buf.push(
                            m.partition(),
                            m.offset(),
                            m.timestamp().to_millis(),
                            m.key(),
                            m.payload(),
                            &self.opts.decode,
                        );
                    }
                    Some(Err(e)) => {
                        self.shared.set_error(format!("consume: {e}"));
                        break;
                    }
                    None => {
                        due = !buf.is_empty() && Instant::now() >= deadline;
                        break;
                    }
                }
                polled += 1;
                if buf.len() >= self.opts.max_batch_rows {
                    due = true;
                    break;
                }
                if polled % 256 == 0 {
                    due = Instant::now() >= deadline;
                    break;
                }
            }
            if due && !buf.is_empty() {
                self.shared.batch_sent();
                if tx.send(std::mem::take(&mut buf)).is_err() {
                    return;
                }
            }
        }
    }
}

struct Applier {
    name: String,
    table: String,
    topic: String,
    dead_letter_topic: Option<String>,
    producer: Option<BaseProducer>,
    decoder: RecordDecoder,
    sink: Arc<dyn SourceSink>,
    shared: Arc<SourceShared>,
    table_columns: usize,
    key: Vec<String>,
    decode_opts: super::options::DecodeOptions,
}

impl Applier {
    fn run(mut self, rx: Receiver<RawBatch>) {
        while let Ok(raw) = rx.recv() {
            if self.shared.stopping() {
                return;
            }
            self.refresh_decoder();
            if !self.apply(&raw) {
                return;
            }
            self.shared.batch_applied();
        }
    }

    /// Picks up columns added by `ALTER TABLE ... ADD COLUMN` while the source runs.
    fn refresh_decoder(&mut self) {
        let Some(def) = self.sink.table_def(&self.table) else {
            return;
        };
        if def.columns.len() == self.table_columns {
            return;
        }
        match RecordDecoder::new(
            def.arrow_schema(),
            self.key.clone(),
            self.decode_opts.clone(),
        ) {
            Ok(d) => {
                self.decoder = d;
                self.table_columns = def.columns.len();
            }
            Err(e) => self.shared.set_error(e.message),
        }
    }

    /// Retries `f` until it succeeds or the source stops; false when stopping.
    fn retry(&self, what: &str, mut f: impl FnMut() -> Result<()>) -> bool {
        let mut backoff = Duration::from_millis(50);
        loop {
            match f() {
                Ok(()) => return true,
                Err(e) if e.code == ErrorCode::TableNotFound => {
                    self.shared.set_failed(e.message);
                    return false;
                }
                Err(e) => {
                    tracing::warn!(source = %self.name, error = %e, "{what} failed; retrying");
                    self.shared.set_error(format!("{what}: {e}"));
                }
            }
            if self.shared.stopping() {
                return false;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    fn apply(&mut self, raw: &RawBatch) -> bool {
        let decoded = self.decoder.decode(raw);
        let offsets = next_offsets(raw);
        let mut per_part: BTreeMap<i32, PartitionProgress> = BTreeMap::new();
        for r in &raw.records {
            let p = per_part.entry(r.partition).or_default();
            p.rows += 1;
            p.next_offset = Some(p.next_offset.map_or(r.offset + 1, |o| o.max(r.offset + 1)));
            if let Some(ts) = r.timestamp_ms {
                p.newest_timestamp_ms = Some(p.newest_timestamp_ms.map_or(ts, |t| t.max(ts)));
            }
        }
        if !decoded.rejected.is_empty() {
            let rejections: Vec<Rejection> = decoded
                .rejected
                .iter()
                .map(|(i, reason)| {
                    let m = &raw.records[*i];
                    if let Some(p) = per_part.get_mut(&m.partition) {
                        p.rows -= 1;
                        p.rejected += 1;
                    }
                    Rejection {
                        source: self.name.clone(),
                        topic: Some(self.topic.clone()),
                        partition: m.partition,
                        offset: m.offset,
                        key: raw.key_text(*i),
                        payload: raw.payload_text(*i),
                        error: reason.clone(),
                    }
                })
                .collect();
            self.dead_letter(&rejections);
            let sink = Arc::clone(&self.sink);
            if !self.retry("recording rejected records", || {
                sink.reject(rejections.clone())
            }) {
                return false;
            }
        }
        let origin_ms = raw.records.iter().filter_map(|r| r.timestamp_ms).min();
        let sink = Arc::clone(&self.sink);
        let (name, table) = (self.name.clone(), self.table.clone());
        let changes = decoded.changes;
        if !self.retry("applying records", || {
            sink.deliver(&name, &table, changes.clone(), &offsets, origin_ms)
        }) {
            return false;
        }
        for (p, progress) in per_part {
            self.shared.record(p, progress);
        }
        true
    }

    /// Copies rejected records to the dead-letter topic, with the reason in headers.
    fn dead_letter(&self, rejections: &[Rejection]) {
        let (Some(producer), Some(topic)) = (&self.producer, &self.dead_letter_topic) else {
            return;
        };
        for r in rejections {
            let partition = r.partition.to_string();
            let offset = r.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "eddy.error",
                    value: Some(r.error.as_bytes()),
                })
                .insert(Header {
                    key: "eddy.source",
                    value: Some(r.source.as_bytes()),
                })
                .insert(Header {
                    key: "eddy.partition",
                    value: Some(partition.as_bytes()),
                })
                .insert(Header {
                    key: "eddy.offset",
                    value: Some(offset.as_bytes()),
                });
            let payload = r.payload.clone().unwrap_or_default();
            let key = r.key.clone().unwrap_or_default();
            let rec = BaseRecord::to(topic)
                .payload(&payload)
                .key(&key)
                .headers(headers);
            if let Err((e, _)) = producer.send(rec) {
                self.shared
                    .set_error(format!("dead-letter topic \"{topic}\": {e}"));
            }
        }
        if let Err(e) = producer.flush(Duration::from_secs(5)) {
            self.shared
                .set_error(format!("dead-letter topic \"{topic}\": {e}"));
        }
    }
}
