//! The FE's Prometheus metrics.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<T: prometheus::core::Collector + Clone + 'static>(c: T) -> T {
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

/// Statements executed, over every front end.
pub static QUERIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new("eddy_fe_queries_total", "Statements executed").expect("valid metric"))
});
pub static QUERY_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new("eddy_fe_query_errors_total", "Statements that failed")
            .expect("valid metric"),
    )
});
/// Wall time from receiving a statement to its last row.
pub static QUERY_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(
            HistogramOpts::new("eddy_fe_query_duration_seconds", "Statement latency").buckets(
                vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            ),
        )
        .expect("valid metric"),
    )
});
/// The bound of DataFusion's memory pool (queries beyond it spill or fail).
pub static MEMORY_POOL_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new("eddy_fe_memory_pool_bytes", "Query memory pool size").expect("valid metric"),
    )
});
/// Prepared point queries answered from the primary-key index without DataFusion.
pub static POINT_QUERIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "eddy_fe_point_queries_total",
            "Prepared point queries answered from the primary-key index without DataFusion",
        )
        .expect("valid metric"),
    )
});
pub static HTTP_ROWS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new("eddy_fe_http_ingest_rows_total", "Rows accepted over HTTP")
            .expect("valid metric"),
    )
});
pub static CONNECTIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new("eddy_fe_pg_connections", "Open PostgreSQL connections")
            .expect("valid metric"),
    )
});

pub static MAX_CONNECTIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "eddy_fe_pg_max_connections",
            "Most PostgreSQL connections served at once (fe.pg_max_connections)",
        )
        .expect("valid metric"),
    )
});
pub static REFUSED_CONNECTIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "eddy_fe_pg_refused_connections_total",
            "PostgreSQL connections refused because fe.pg_max_connections were open",
        )
        .expect("valid metric"),
    )
});

pub fn init(memory_pool_bytes: u64) {
    MEMORY_POOL_BYTES.set(memory_pool_bytes as i64);
    LazyLock::force(&QUERIES);
    LazyLock::force(&QUERY_ERRORS);
    LazyLock::force(&QUERY_SECONDS);
    LazyLock::force(&POINT_QUERIES);
    LazyLock::force(&HTTP_ROWS);
    LazyLock::force(&CONNECTIONS);
    LazyLock::force(&MAX_CONNECTIONS);
    LazyLock::force(&REFUSED_CONNECTIONS);
}

pub fn render() -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&REGISTRY.gather())
        .unwrap_or_default()
}
