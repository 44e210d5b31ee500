//! Prints alerts as they are recorded (`eddy demo`), by reading `system.alerts` through the
//! BE service like any client would.

use std::sync::Arc;
use std::time::Duration;

use eddy_proto::{BeService, ScanRequest, ALERTS_TABLE};
use futures::StreamExt;

use super::{firings_of, rfc3339};

/// Polls `system.alerts` every `every` and prints alerts newer than those already printed.
pub async fn print_alerts(be: Arc<dyn BeService>, every: Duration) {
    let mut printed_through = i64::MIN;
    loop {
        tokio::time::sleep(every).await;
        let Ok(snapshot) = be
            .scan(ScanRequest {
                table: ALERTS_TABLE.into(),
                projection: None,
                predicates: Vec::new(),
                limit: None,
                target_partitions: 1,
            })
            .await
        else {
            continue;
        };
        let mut fresh = Vec::new();
        for p in 0..snapshot.partitions() {
            let Ok(mut stream) = snapshot.execute(p) else {
                continue;
            };
            while let Some(Ok(batch)) = stream.next().await {
                if let Ok(rows) = firings_of(&batch) {
                    fresh.extend(rows.into_iter().filter(|(_, d)| *d > printed_through));
                }
            }
        }
        fresh.sort_by_key(|(_, d)| *d);
        for (f, d) in fresh {
            printed_through = printed_through.max(d);
            let when = f
                .bucket_micros
                .map(|b| format!("bucket {}", rfc3339(b)))
                .or_else(|| f.event_micros.map(|t| format!("at {}", rfc3339(t))))
                .unwrap_or_default();
            println!(
                "ALERT {:<8} {:<13} {} {} {}",
                f.severity.as_deref().unwrap_or("-"),
                f.rule,
                f.key,
                when,
                f.values
            );
        }
    }
}
