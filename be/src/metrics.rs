//! The BE's Prometheus metrics, in a registry of its own so that the FE can serve them
//! next to its own (in-process now, fetched over RPC in cluster mode).

use std::sync::LazyLock;

use eddy_proto::SourceStatus;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

pub const LABEL_TABLE: &str = "table";

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<T: prometheus::core::Collector + Clone + 'static>(c: T) -> T {
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

/// Rows accepted by writes (all paths), per table.
pub static ROWS_INGESTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new("eddy_be_rows_ingested_total", "Rows accepted by writes"),
            &[LABEL_TABLE],
        )
        .expect("valid metric"),
    )
});
/// Arrow bytes accepted by writes, per table.
pub static BYTES_INGESTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "eddy_be_ingested_bytes_total",
                "Arrow bytes accepted by writes",
            ),
            &[LABEL_TABLE],
        )
        .expect("valid metric"),
    )
});
/// Live segments per table.
pub static SEGMENTS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new("eddy_be_segments", "Live segments"),
            &[LABEL_TABLE],
        )
        .expect("valid metric"),
    )
});
/// Bytes of live segments per table.
pub static SEGMENT_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new("eddy_be_segment_bytes", "Bytes of live segments"),
            &[LABEL_TABLE],
        )
        .expect("valid metric"),
    )
});
/// Bytes held in memtables (active and sealing) per table.
pub static MEMTABLE_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new("eddy_be_memtable_bytes", "Bytes held in memtables"),
            &[LABEL_TABLE],
        )
        .expect("valid metric"),
    )
});
/// The configured size at which a memtable seals (the bound on memtable memory).
pub static MEMTABLE_BYTES_MAX: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "eddy_be_memtable_bytes_max",
            "Memtable size that triggers a seal",
        )
        .expect("valid metric"),
    )
});
pub static SEALS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new("eddy_be_seals_total", "Memtables sealed into segments")
            .expect("valid metric"),
    )
});
pub static BULK_WRITES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "eddy_be_bulk_writes_total",
            "Large writes encoded straight into segments, bypassing the WAL and memtable",
        )
        .expect("valid metric"),
    )
});
pub static MALLOC_RETAIN_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "eddy_be_malloc_retain_bytes",
            "Free heap memory kept for reuse between trims (be.malloc_retain_bytes; 0: allocator defaults)",
        )
        .expect("valid metric"),
    )
});
pub static BULK_WRITE_ROWS_MIN: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "eddy_be_bulk_write_rows_min",
            "Writes of at least this many rows into append tables go straight to segments (0: never)",
        )
        .expect("valid metric"),
    )
});
pub static COMPACTIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "eddy_be_compactions_total",
            "Compactions that merged segments",
        )
        .expect("valid metric"),
    )
});
pub static COMPACTED_SEGMENTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "eddy_be_compacted_segments_total",
            "Segments merged away by compaction",
        )
        .expect("valid metric"),
    )
});
pub static RETENTION_DROPPED_SEGMENTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "eddy_be_retention_dropped_segments_total",
            "Segments dropped because their partition expired",
        )
        .expect("valid metric"),
    )
});
pub static SEGMENTS_PRUNED: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "eddy_be_scan_segments_pruned_total",
            "Segments skipped by scans",
        )
        .expect("valid metric"),
    )
});
pub static KEY_LOOKUPS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "eddy_be_scan_key_lookups_total",
            "Scans answered from the primary-key index (every key column pinned by equality)",
        )
        .expect("valid metric"),
    )
});
pub static WAL_FSYNCS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new("eddy_be_wal_fsyncs_total", "WAL group commits (fsyncs)")
            .expect("valid metric"),
    )
});
pub static WAL_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new("eddy_be_wal_bytes_total", "Bytes written to the WAL")
            .expect("valid metric"),
    )
});
/// The bound on writes waiting for the WAL writer.
pub static WAL_QUEUE_CAPACITY: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "eddy_be_wal_queue_capacity",
            "Writes that may wait for the WAL writer",
        )
        .expect("valid metric"),
    )
});
pub static WAL_GROUP_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(
            HistogramOpts::new("eddy_be_wal_group_size", "Writes sharing one fsync")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 1024.0]),
        )
        .expect("valid metric"),
    )
});

/// Prometheus text of every BE metric.
fn source_gauge(name: &str, help: &str) -> IntGaugeVec {
    register(
        IntGaugeVec::new(Opts::new(name, help), &["source", "partition"]).expect("valid metric"),
    )
}

fn source_fgauge(name: &str, help: &str) -> GaugeVec {
    register(GaugeVec::new(Opts::new(name, help), &["source", "partition"]).expect("valid metric"))
}

/// Rows a source has applied since the server started, per partition.
pub static SOURCE_ROWS: LazyLock<IntGaugeVec> =
    LazyLock::new(|| source_gauge("eddy_source_rows", "Rows applied by a source since start"));
pub static SOURCE_REJECTED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    source_gauge(
        "eddy_source_rejected",
        "Records a source rejected since start (see system.rejected)",
    )
});
pub static SOURCE_REDELIVERED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    source_gauge(
        "eddy_source_redelivered",
        "Records the broker sent again after they were applied, dropped since start",
    )
});
pub static SOURCE_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    source_gauge(
        "eddy_source_lag",
        "Records between the partition's high watermark and what is applied",
    )
});
pub static SOURCE_RATE: LazyLock<GaugeVec> =
    LazyLock::new(|| source_fgauge("eddy_source_rows_per_second", "Rows applied per second"));
pub static SOURCE_FRESHNESS: LazyLock<GaugeVec> = LazyLock::new(|| {
    source_fgauge(
        "eddy_source_freshness_seconds",
        "Age of the newest applied record when it was applied (record timestamp to queryable)",
    )
});
/// 1 for the state each source is in (running, paused, disconnected, failed).
pub static SOURCE_STATE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new("eddy_source_state", "1 for the state a source is in"),
            &["source", "state"],
        )
        .expect("valid metric"),
    )
});

/// Sets the source gauges from a fresh status snapshot (dropped sources disappear).
pub fn set_source_gauges(statuses: &[SourceStatus]) {
    SOURCE_ROWS.reset();
    SOURCE_REJECTED.reset();
    SOURCE_REDELIVERED.reset();
    SOURCE_LAG.reset();
    SOURCE_RATE.reset();
    SOURCE_FRESHNESS.reset();
    SOURCE_STATE.reset();
    for s in statuses {
        let p = s.partition.map(|p| p.to_string()).unwrap_or_default();
        let l = [s.source.as_str(), p.as_str()];
        SOURCE_ROWS.with_label_values(&l).set(s.rows as i64);
        SOURCE_REJECTED.with_label_values(&l).set(s.rejected as i64);
        SOURCE_REDELIVERED
            .with_label_values(&l)
            .set(s.redelivered as i64);
        if let Some(lag) = s.lag {
            SOURCE_LAG.with_label_values(&l).set(lag);
        }
        SOURCE_RATE.with_label_values(&l).set(s.rows_per_second);
        if let Some(f) = s.freshness_ms {
            SOURCE_FRESHNESS
                .with_label_values(&l)
                .set(f as f64 / 1000.0);
        }
        SOURCE_STATE
            .with_label_values(&[s.source.as_str(), s.state.as_str()])
            .set(1);
    }
}

pub fn render() -> String {
    let enc = prometheus::TextEncoder::new();
    enc.encode_to_string(&REGISTRY.gather()).unwrap_or_default()
}

/// Touches every metric so that `/metrics` lists them before the first event.
pub fn init(memtable_bytes_max: u64) {
    MEMTABLE_BYTES_MAX.set(memtable_bytes_max as i64);
    LazyLock::force(&ROWS_INGESTED);
    LazyLock::force(&BYTES_INGESTED);
    LazyLock::force(&SEGMENTS);
    LazyLock::force(&SEGMENT_BYTES);
    LazyLock::force(&MEMTABLE_BYTES);
    LazyLock::force(&SEALS);
    LazyLock::force(&BULK_WRITES);
    LazyLock::force(&BULK_WRITE_ROWS_MIN);
    LazyLock::force(&MALLOC_RETAIN_BYTES);
    LazyLock::force(&COMPACTIONS);
    LazyLock::force(&COMPACTED_SEGMENTS);
    LazyLock::force(&RETENTION_DROPPED_SEGMENTS);
    LazyLock::force(&SEGMENTS_PRUNED);
    LazyLock::force(&KEY_LOOKUPS);
    LazyLock::force(&WAL_FSYNCS);
    LazyLock::force(&WAL_BYTES);
    LazyLock::force(&WAL_QUEUE_CAPACITY);
    LazyLock::force(&WAL_GROUP_SIZE);
    LazyLock::force(&SEGMENT_CACHE_CAPACITY);
    LazyLock::force(&SEGMENT_CACHE_BYTES);
    LazyLock::force(&SEGMENT_CACHE_HITS);
    LazyLock::force(&SEGMENT_CACHE_MISSES);
    LazyLock::force(&ALERTS_FIRED);
    LazyLock::force(&ALERTS_DELIVERED);
    LazyLock::force(&ALERT_SINK_QUEUED);
    LazyLock::force(&ALERT_LATENCY);
}

/// The bound on decoded segment data kept in memory.
pub static SEGMENT_CACHE_CAPACITY: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "eddy_be_segment_cache_capacity_bytes",
            "Segment cache budget",
        )
        .expect("valid metric"),
    )
});
pub static SEGMENT_CACHE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new("eddy_be_segment_cache_bytes", "Decoded segment data cached")
            .expect("valid metric"),
    )
});
pub static SEGMENT_CACHE_HITS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "eddy_be_segment_cache_hits_total",
            "Column chunks served from the cache",
        )
        .expect("valid metric"),
    )
});
pub static SEGMENT_CACHE_MISSES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "eddy_be_segment_cache_misses_total",
            "Column chunks decoded from Parquet",
        )
        .expect("valid metric"),
    )
});

fn view_gauge(name: &str, help: &str) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), &["view"]).expect("metric"))
}

pub static VIEW_ROWS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    view_gauge(
        "eddy_rollup_rows",
        "Groups (buckets, sessions) in a materialized view",
    )
});
pub static VIEW_STATE_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    view_gauge(
        "eddy_rollup_state_bytes",
        "Bytes held by a materialized view's aggregate states",
    )
});
pub static VIEW_LATE_DROPPED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    view_gauge(
        "eddy_rollup_late_rows_dropped",
        "Rows later than a view's lateness, not in the view",
    )
});
pub static VIEW_LAG_ROWS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    view_gauge(
        "eddy_rollup_lag_rows",
        "Rows of a view's table its backfill has not aggregated yet",
    )
});

pub static VIEW_STATE_BYTES_MAX: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "eddy_rollup_state_bytes_max",
            "be.rollup_state_bytes_max: the state one view may hold before it stops",
        )
        .expect("metric"),
    )
});

/// Sets the per-view gauges from `system.rollups`' figures.
pub fn set_view_gauges(views: &[eddy_proto::RollupInfo]) {
    for g in [
        &VIEW_ROWS,
        &VIEW_STATE_BYTES,
        &VIEW_LATE_DROPPED,
        &VIEW_LAG_ROWS,
    ] {
        g.reset();
    }
    for v in views {
        let l = [v.def.name.as_str()];
        VIEW_ROWS.with_label_values(&l).set(v.rows as i64);
        VIEW_STATE_BYTES
            .with_label_values(&l)
            .set(v.state_bytes as i64);
        VIEW_LATE_DROPPED
            .with_label_values(&l)
            .set(v.late_rows_dropped as i64);
        VIEW_LAG_ROWS.with_label_values(&l).set(v.lag_rows() as i64);
    }
}

fn rule_counter(name: &str, help: &str) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), &["rule"]).expect("metric"))
}

/// Alerts fired (recorded in system.alerts), per rule.
pub static ALERTS_FIRED: LazyLock<IntCounterVec> =
    LazyLock::new(|| rule_counter("eddy_alerts_fired_total", "Alerts fired, per rule"));
/// Alerts a sink's broker acknowledged, per rule.
pub static ALERTS_DELIVERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    rule_counter(
        "eddy_alerts_delivered_total",
        "Alerts the sink's Kafka broker acknowledged, per rule",
    )
});
/// Alerts waiting for a sink, per rule (set at scrape).
pub static ALERT_SINK_QUEUED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "eddy_alert_sink_queued",
                "Alerts recorded but not yet acknowledged by the sink's broker, per rule",
            ),
            &["rule"],
        )
        .expect("metric"),
    )
});
pub static ALERT_SINK_QUEUE_MAX: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "eddy_alert_sink_queue_max",
            "be.alert_sink_queue_max: alerts one sink may queue in memory (the rest wait in system.alerts)",
        )
        .expect("metric"),
    )
});
/// From the triggering data's arrival (its Kafka timestamp, or the write) to the broker's
/// acknowledgement of the alert.
pub static ALERT_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(
            HistogramOpts::new(
                "eddy_alert_latency_seconds",
                "Triggering record's timestamp to the alert acknowledged on its topic",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("metric"),
    )
});
