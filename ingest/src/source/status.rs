//! A source's live progress, shared between its threads and `system.sources` / `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eddy_proto::{SourceDef, SourceStatus};
use parking_lot::Mutex;

/// Rows per second over the last full second.
#[derive(Debug)]
struct Rate {
    window_start: Instant,
    window_rows: u64,
    per_second: f64,
}

impl Rate {
    fn new() -> Self {
        Self {
            window_start: Instant::now(),
            window_rows: 0,
            per_second: 0.0,
        }
    }

    fn add(&mut self, rows: u64) {
        self.roll();
        self.window_rows += rows;
    }

    fn roll(&mut self) {
        let e = self.window_start.elapsed();
        if e >= Duration::from_secs(1) {
            self.per_second = self.window_rows as f64 / e.as_secs_f64();
            self.window_rows = 0;
            self.window_start = Instant::now();
        }
    }

    fn get(&mut self) -> f64 {
        self.roll();
        self.per_second
    }
}

#[derive(Debug)]
struct Partition {
    consumed: Option<i64>,
    high_watermark: Option<i64>,
    rows: u64,
    rejected: u64,
    /// Records the broker sent again after they were taken, dropped (see `kafka::Poller`).
    redelivered: u64,
    freshness_ms: Option<i64>,
    rate: Rate,
}

impl Partition {
    fn new() -> Self {
        Self {
            consumed: None,
            high_watermark: None,
            rows: 0,
            rejected: 0,
            redelivered: 0,
            freshness_ms: None,
            rate: Rate::new(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    connected: bool,
    failed: Option<String>,
    last_error: Option<String>,
    partitions: BTreeMap<i32, Partition>,
}

/// Progress of one source. The partition key is -1 for sources without partitions.
#[derive(Debug)]
pub struct SourceShared {
    pub name: String,
    pub table: String,
    pub connector: String,
    pub topic: Option<String>,
    paused: AtomicBool,
    stop: AtomicBool,
    /// Set by the reading thread once it has seen `paused` and handed over what it read.
    quiet: AtomicBool,
    batches_sent: AtomicU64,
    batches_applied: AtomicU64,
    inner: Mutex<Inner>,
}

/// What one delivery did to one partition.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionProgress {
    pub next_offset: Option<i64>,
    pub rows: u64,
    pub rejected: u64,
    /// Newest record timestamp of the delivery (ms since the epoch).
    pub newest_timestamp_ms: Option<i64>,
}

impl SourceShared {
    pub fn new(def: &SourceDef) -> Self {
        Self {
            name: def.name.clone(),
            table: def.table.clone(),
            connector: def.connector.to_ascii_lowercase(),
            topic: def.options.get("topic").cloned(),
            paused: AtomicBool::new(def.paused),
            stop: AtomicBool::new(false),
            quiet: AtomicBool::new(false),
            batches_sent: AtomicU64::new(0),
            batches_applied: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                connected: true,
                failed: None,
                last_error: None,
                partitions: BTreeMap::new(),
            }),
        }
    }

    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }

    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// The reading thread reads nothing until it clears this (it has seen a pause).
    pub fn set_quiet(&self, quiet: bool) {
        self.quiet.store(quiet, Ordering::SeqCst);
    }

    pub fn batch_sent(&self) {
        self.batches_sent.fetch_add(1, Ordering::SeqCst);
    }

    pub fn batch_applied(&self) {
        self.batches_applied.fetch_add(1, Ordering::SeqCst);
    }

    /// After a pause: waits until nothing read before it is still being applied, so rows
    /// stop changing once `ALTER SOURCE ... PAUSE` returns. False on timeout.
    pub fn wait_quiet(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            let idle = self.batches_sent.load(Ordering::SeqCst)
                == self.batches_applied.load(Ordering::SeqCst);
            if self.quiet.load(Ordering::SeqCst) && idle {
                return true;
            }
            if start.elapsed() > timeout || self.stopping() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The broker is (un)reachable; an error message says why it is not.
    pub fn set_connected(&self, connected: bool, error: Option<String>) {
        let mut i = self.inner.lock();
        i.connected = connected;
        if let Some(e) = error {
            i.last_error = Some(e);
        }
    }

    pub fn connected(&self) -> bool {
        self.inner.lock().connected
    }

    pub fn set_error(&self, error: String) {
        self.inner.lock().last_error = Some(error);
    }

    /// The source cannot go on (its table was dropped, say); shown as state `failed`.
    pub fn set_failed(&self, error: String) {
        let mut i = self.inner.lock();
        i.failed = Some(error.clone());
        i.last_error = Some(error);
    }

    pub fn ensure_partition(&self, partition: i32) {
        self.inner
            .lock()
            .partitions
            .entry(partition)
            .or_insert_with(Partition::new);
    }

    pub fn set_high_watermark(&self, partition: i32, hw: i64) {
        if let Some(p) = self.inner.lock().partitions.get_mut(&partition) {
            p.high_watermark = Some(hw);
        }
    }

    pub fn record(&self, partition: i32, progress: PartitionProgress) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut i = self.inner.lock();
        i.connected = true;
        let p = i.partitions.entry(partition).or_insert_with(Partition::new);
        if let Some(o) = progress.next_offset {
            p.consumed = Some(p.consumed.map_or(o, |c| c.max(o)));
        }
        p.rows += progress.rows;
        p.rejected += progress.rejected;
        p.rate.add(progress.rows);
        if let Some(ts) = progress.newest_timestamp_ms {
            p.freshness_ms = Some((now_ms - ts).max(0));
        }
    }

    /// Counts a record of `partition` that the broker sent again and was dropped.
    pub fn redelivered(&self, partition: i32) {
        let mut i = self.inner.lock();
        i.partitions
            .entry(partition)
            .or_insert_with(Partition::new)
            .redelivered += 1;
    }

    pub fn state(&self) -> &'static str {
        let i = self.inner.lock();
        if i.failed.is_some() {
            "failed"
        } else if self.paused() {
            "paused"
        } else if !i.connected {
            "disconnected"
        } else {
            "running"
        }
    }

    pub fn status(&self, durable: &BTreeMap<i32, i64>) -> Vec<SourceStatus> {
        let state = self.state().to_string();
        let mut i = self.inner.lock();
        let last_error = i.last_error.clone();
        let mut out: Vec<SourceStatus> = i
            .partitions
            .iter_mut()
            .map(|(pid, p)| {
                let lag = match (p.high_watermark, p.consumed.or(durable.get(pid).copied())) {
                    (Some(h), Some(c)) => Some((h - c).max(0)),
                    (Some(h), None) => Some(h),
                    _ => None,
                };
                SourceStatus {
                    source: self.name.clone(),
                    table: self.table.clone(),
                    connector: self.connector.clone(),
                    state: state.clone(),
                    topic: self.topic.clone(),
                    partition: (*pid >= 0).then_some(*pid),
                    committed_offset: durable.get(pid).copied(),
                    consumed_offset: p.consumed.or(durable.get(pid).copied()),
                    high_watermark: p.high_watermark,
                    lag,
                    rows: p.rows,
                    rows_per_second: p.rate.get(),
                    rejected: p.rejected,
                    redelivered: p.redelivered,
                    last_error: last_error.clone(),
                    freshness_ms: p.freshness_ms,
                }
            })
            .collect();
        if out.is_empty() {
            out.push(SourceStatus {
                source: self.name.clone(),
                table: self.table.clone(),
                connector: self.connector.clone(),
                state,
                topic: self.topic.clone(),
                last_error,
                ..Default::default()
            });
        }
        out
    }
}
