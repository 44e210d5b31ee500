//! `CREATE SOURCE ... FROM GENERATOR (kind = 'ticks', rows_per_second = 5000)`: the demo's
//! data without Kafka, written through the BE's durable write path ten times a second.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_proto::{Error, ErrorCode, Result, SourceDef};

use super::options::GeneratorOptions;
use super::status::{PartitionProgress, SourceShared};
use super::SourceSink;
use crate::generator::Generator;

pub(super) fn spawn(
    def: &SourceDef,
    opts: GeneratorOptions,
    sink: Arc<dyn SourceSink>,
    shared: Arc<SourceShared>,
) -> Result<Vec<JoinHandle<()>>> {
    let table = def.table.clone();
    shared.ensure_partition(-1);
    let t = std::thread::Builder::new()
        .name(format!("source-{}", def.name))
        .spawn(move || run(table, opts, sink, shared))
        .map_err(|e| Error::new(ErrorCode::Internal, format!("start source thread: {e}")))?;
    Ok(vec![t])
}

fn run(
    table: String,
    opts: GeneratorOptions,
    sink: Arc<dyn SourceSink>,
    shared: Arc<SourceShared>,
) {
    let mut gen = Generator::new(opts.kind, opts.seed);
    let tick = Duration::from_millis(100);
    let per_tick = (opts.rows_per_second / 10).max(1) as usize;
    let mut last = chrono::Utc::now().timestamp_micros();
    let mut next = Instant::now();
    while !shared.stopping() {
        next += tick;
        let now_i = Instant::now();
        if next > now_i {
            std::thread::sleep(next - now_i);
        } else {
            next = now_i; // behind: skip the missed ticks rather than burst
        }
        let now = chrono::Utc::now().timestamp_micros();
        if shared.paused() {
            shared.set_quiet(true);
            last = now;
            continue;
        }
        shared.set_quiet(false);
        let batch = gen.next_batch(per_tick, last, now);
        last = now;
        let rows = batch.num_rows() as u64;
        match sink.write(&table, batch) {
            Ok(()) => shared.record(
                -1,
                PartitionProgress {
                    rows,
                    newest_timestamp_ms: Some(now / 1000),
                    ..Default::default()
                },
            ),
            Err(e) if e.code == ErrorCode::TableNotFound => {
                shared.set_failed(e.message);
                return;
            }
            Err(e) => shared.set_error(format!("write failed (retrying next tick): {e}")),
        }
    }
}
