//! The `eddy` binary: wires the FE, BE and ingest crates into the roles an operator runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use eddy_be::{BeConfig, Engine};
use eddy_fe::FeConfig;
use eddy_ingest::generator::GeneratorKind;
use eddy_proto::BeService;
use eddy_proto::SourceDef;
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(
    name = "eddy",
    version,
    about = "Real-time OLAP store with streaming ingest"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run FE, BE and ingest in one process (the embedded default).
    Standalone(ServerArgs),
    /// Run standalone with the demo schema fed by live generated data.
    Demo {
        #[command(flatten)]
        server: ServerArgs,
        /// Generated ticks per second (events get half, orders a fiftieth).
        #[arg(long, env = "EDDY_DEMO_ROWS_PER_SECOND", default_value_t = 2000)]
        rows_per_second: u64,
    },
}

#[derive(Args, Debug)]
struct ServerArgs {
    /// Data directory (WAL, local segments, endpoints.json). `demo` uses a temporary one
    /// when unset.
    #[arg(long, env = "EDDY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML config file with `[fe]` and `[be]` sections; env `EDDY__FE__KEY` /
    /// `EDDY__BE__KEY` override it, and flags override both.
    #[arg(long, env = "EDDY_CONFIG")]
    config: Option<PathBuf>,
    /// PostgreSQL wire protocol address (port 0 picks a free port).
    #[arg(long, env = "EDDY_PG_LISTEN")]
    pg_listen: Option<String>,
    /// HTTP address for ingest, /health and /metrics.
    #[arg(long, env = "EDDY_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// Arrow Flight SQL address.
    #[arg(long, env = "EDDY_FLIGHT_LISTEN")]
    flight_listen: Option<String>,
    /// Where segments live: `s3://bucket/prefix` or `file:///path` (default: DATA_DIR/store).
    #[arg(long, env = "EDDY_OBJECT_STORE_URL")]
    object_store_url: Option<String>,
    /// Endpoint of an S3-compatible store.
    #[arg(long, env = "EDDY_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    fe: FeConfig,
    be: BeConfig,
}

/// Parses an env value as a TOML scalar (number, bool) or else a string.
fn toml_scalar(v: &str) -> toml::Value {
    v.parse::<i64>()
        .map(toml::Value::Integer)
        .or_else(|_| v.parse::<bool>().map(toml::Value::Boolean))
        .or_else(|_| v.parse::<f64>().map(toml::Value::Float))
        .unwrap_or_else(|_| toml::Value::String(v.to_string()))
}

/// Defaults, then the file, then `EDDY__SECTION__KEY` env vars, then flags.
fn load_config(args: &ServerArgs, default_dir: &Path) -> anyhow::Result<Config> {
    let mut root = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("read config {}", p.display()))?;
            text.parse::<toml::Table>()
                .with_context(|| format!("parse config {}", p.display()))?
        }
        None => toml::Table::new(),
    };
    for (k, v) in std::env::vars() {
        let Some(rest) = k.strip_prefix("EDDY__") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let sec = root
            .entry(section.to_ascii_lowercase())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(t) = sec.as_table_mut() {
            t.insert(key.to_ascii_lowercase(), toml_scalar(&v));
        }
    }
    let mut cfg: Config = toml::Value::Table(root)
        .try_into()
        .context("invalid config")?;
    if let Some(d) = &args.data_dir {
        cfg.be.data_dir = d.clone();
    } else if args.config.is_none() || cfg.be.data_dir == BeConfig::default().data_dir {
        cfg.be.data_dir = default_dir.to_path_buf();
    }
    let set = |dst: &mut String, src: &Option<String>| {
        if let Some(s) = src {
            dst.clone_from(s);
        }
    };
    set(&mut cfg.fe.pg_listen, &args.pg_listen);
    set(&mut cfg.fe.http_listen, &args.http_listen);
    set(&mut cfg.fe.flight_listen, &args.flight_listen);
    if args.object_store_url.is_some() {
        cfg.be.object_store_url.clone_from(&args.object_store_url);
    }
    if args.s3_endpoint.is_some() {
        cfg.be.s3_endpoint.clone_from(&args.s3_endpoint);
        cfg.be.s3_allow_http = cfg.be.s3_allow_http
            || args
                .s3_endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"));
    }
    cfg.be.validate().map_err(anyhow::Error::msg)?;
    Ok(cfg)
}

/// Starts BE and FE; writes `DATA_DIR/endpoints.json` once every listener is bound.
async fn start(cfg: Config) -> anyhow::Result<(Arc<dyn BeService>, eddy_fe::Endpoints)> {
    let data_dir = cfg.be.data_dir.clone();
    let be: Arc<dyn BeService> = Engine::open(cfg.be).await.context("open storage")?;
    let endpoints = eddy_fe::start(&cfg.fe, Arc::clone(&be))
        .await
        .context("start servers")?;
    let json = serde_json::json!({
        "pg": endpoints.pg.to_string(),
        "http": endpoints.http.to_string(),
        "flight": endpoints.flight.to_string(),
    });
    let tmp = data_dir.join("endpoints.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&json)?)?;
    std::fs::rename(&tmp, data_dir.join("endpoints.json"))?;
    tracing::info!(pg = %endpoints.pg, http = %endpoints.http, flight = %endpoints.flight, data_dir = %data_dir.display(), "eddy is ready");
    Ok((be, endpoints))
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDDY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    // The config is read before the runtime starts: the allocator policy must be in place
    // before the worker threads make their first allocations.
    let (cfg, demo, _temp) = match Cli::parse().command {
        Command::Standalone(args) => (load_config(&args, Path::new("eddy-data"))?, None, None),
        Command::Demo {
            server,
            rows_per_second,
        } => {
            let temp = if server.data_dir.is_none() {
                Some(tempfile::tempdir()?)
            } else {
                None
            };
            let dir = temp
                .as_ref()
                .map(|t| t.path().to_path_buf())
                .unwrap_or_else(|| "eddy-data".into());
            (load_config(&server, &dir)?, Some(rows_per_second), temp)
        }
    };
    match eddy_be::malloc::configure(cfg.be.malloc_retain_bytes) {
        Some(p) => tracing::debug!(
            retain_bytes = p.retain_bytes,
            arenas = p.arenas,
            "malloc policy"
        ),
        None => tracing::debug!(
            "allocator defaults kept (be.malloc_retain_bytes is 0, or the allocator is not glibc's)"
        ),
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?
        .block_on(async move {
            match demo {
                None => {
                    let _servers = start(cfg).await?;
                    shutdown_signal().await;
                    Ok(())
                }
                Some(rows_per_second) => run_demo(cfg, rows_per_second).await,
            }
        })
}

/// `eddy demo`: standalone with the demo schema, sources, views and alert rules.
async fn run_demo(cfg: Config, rows_per_second: u64) -> anyhow::Result<()> {
    let data_dir = cfg.be.data_dir.clone();
    let (be, endpoints) = start(cfg).await?;
    let plan = [
        (GeneratorKind::Ticks, rows_per_second),
        (GeneratorKind::Events, rows_per_second / 2),
        (GeneratorKind::Orders, (rows_per_second / 50).max(1)),
    ];
    for (i, (kind, rate)) in plan.into_iter().enumerate() {
        let def = kind.demo_table();
        let table = def.name.clone();
        be.create_table(def, true).await?;
        let options = [
            ("kind", kind.as_str().to_string()),
            ("rows_per_second", rate.to_string()),
            ("seed", (42 + i).to_string()),
        ];
        let source = SourceDef {
            name: format!("demo_{table}"),
            connector: "generator".into(),
            options: options
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            table,
            paused: false,
        };
        be.create_source(source, true).await?;
    }
    // The order log the per-user rollup counts, fed like `orders` but append-only.
    be.create_table(eddy_ingest::generator::order_events_table(), true)
        .await?;
    let events = SourceDef {
        name: "demo_order_events".into(),
        connector: "generator".into(),
        options: [
            ("kind", "orders".to_string()),
            ("rows_per_second", (rows_per_second / 50).max(1).to_string()),
            ("seed", "45".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        table: "order_events".into(),
        paused: false,
    };
    be.create_source(events, true).await?;
    for view in eddy_ingest::generator::demo_views() {
        be.create_rollup(view, true).await?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as i64;
    for rule in eddy_ingest::generator::demo_alerts(now) {
        be.create_alert(rule, true).await?;
    }
    tokio::spawn(eddy_ingest::alert::tail::print_alerts(
        Arc::clone(&be),
        std::time::Duration::from_secs(1),
    ));
    println!(
                "\neddy demo is running: live commodity ticks, clickstream events and orders.\n\n  \
                 psql -h {} -p {} -U eddy -d eddy\n\n  \
                 SELECT symbol, count(*), last_value(price ORDER BY ts) FROM ticks GROUP BY symbol;\n  \
                 SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC;\n  \
                 SELECT status, count(*), sum(total_amount) FROM orders GROUP BY status;\n  \
                 SELECT source, state, rows, rows_per_second FROM system.sources;\n  \
                 SELECT * FROM bars_1m WHERE symbol = 'GC' ORDER BY bucket DESC LIMIT 5;\n  \
                 SELECT * FROM user_sessions ORDER BY session_end DESC LIMIT 5;\n  \
                 SELECT view_name, rows, open_buckets, late_rows_dropped FROM system.rollups;\n  \
                 SELECT rule, severity, key, bucket, values FROM system.alerts ORDER BY detected_at DESC LIMIT 10;\n\n  \
                 Alerts print below as they fire (rules: SELECT * FROM system.alert_rules).\n\n  \
                 Arrow Flight SQL (ADBC, pyarrow): grpc://{}\n  \
                 metrics: http://{}/metrics   (Ctrl-C stops; data in {})\n",
                endpoints.pg.ip(),
                endpoints.pg.port(),
                endpoints.flight,
                endpoints.http,
                data_dir.display()
            );
    shutdown_signal().await;
    Ok(())
}
