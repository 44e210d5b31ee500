//! Each Kafka record once, whatever the broker sends again.
//!
//! Offsets in a partition only grow, so a record at or below one already taken was taken
//! before: a restart reads from before its resume offset (kafka.rs explains why), and a
//! Kafka-compatible broker may send a stretch again (tansu 0.6 did, under load). Dropping
//! those here keeps exactly-once independent of the broker.

use std::collections::BTreeSet;

use super::status::SourceShared;

/// Keeps each record once. Per partition (indexed by its id), the offset of the next
/// record to take; -1 when any may come. A record below it was taken before (or applied
/// before a restart, when reading resumed `RESUME_LOOKBACK` records early) and is
/// dropped: offsets in a partition only grow, so this holds whatever the broker sends again.
#[derive(Default)]
pub(super) struct Order {
    next_offset: Vec<i64>,
    /// Partitions still re-reading their lookback (for the log line when it ends).
    resuming: BTreeSet<i32>,
}

impl Order {
    fn slot(&mut self, partition: i32) -> &mut i64 {
        let i = partition.max(0) as usize;
        if self.next_offset.len() <= i {
            self.next_offset.resize(i + 1, -1);
        }
        &mut self.next_offset[i]
    }

    /// Takes `offset` of `partition` from now on; `lookback` when reading starts earlier.
    pub(super) fn expect(&mut self, partition: i32, offset: i64, lookback: bool) {
        *self.slot(partition) = offset;
        if lookback {
            self.resuming.insert(partition);
        }
    }

    /// Whether the record at `offset` of `partition` is new; advances past it when so.
    pub(super) fn take(
        &mut self,
        partition: i32,
        offset: i64,
        shared: &SourceShared,
        source: &str,
    ) -> bool {
        let next = self.slot(partition);
        if offset < *next {
            let next = *next;
            if !self.resuming.contains(&partition) {
                tracing::debug!(
                    source,
                    partition,
                    offset,
                    next,
                    "dropped a record the broker sent again"
                );
                shared.redelivered(partition);
            }
            return false;
        }
        *next = offset + 1;
        // Per record on the hot path: the set is empty once every lookback has ended.
        if !self.resuming.is_empty() && self.resuming.remove(&partition) {
            tracing::debug!(source, partition, offset, "resumed after the lookback");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_proto::SourceDef;

    fn shared() -> SourceShared {
        SourceShared::new(&SourceDef {
            name: "s".into(),
            connector: "kafka".into(),
            options: Default::default(),
            table: "t".into(),
            paused: false,
        })
    }

    #[test]
    fn drops_what_was_taken_and_counts_only_true_redeliveries() {
        let sh = shared();
        let mut o = Order::default();
        o.expect(0, 100, true);
        // The lookback before the resume offset: dropped, not counted as redelivered.
        assert!(!o.take(0, 80, &sh, "s"));
        assert!(!o.take(0, 99, &sh, "s"));
        assert!(o.take(0, 100, &sh, "s"));
        assert!(o.take(0, 101, &sh, "s"));
        // The broker sends 100..101 again: dropped and counted.
        assert!(!o.take(0, 100, &sh, "s"));
        assert!(!o.take(0, 101, &sh, "s"));
        // Gaps (compacted topics, transaction markers) are fine.
        assert!(o.take(0, 150, &sh, "s"));
        // A partition read from its beginning takes its first record whatever it is.
        assert!(o.take(3, 7, &sh, "s"));
        assert!(!o.take(3, 7, &sh, "s"));
        assert!(o.take(3, 8, &sh, "s"));
        let st = sh.status(&Default::default());
        let red: Vec<(Option<i32>, u64)> =
            st.iter().map(|s| (s.partition, s.redelivered)).collect();
        assert_eq!(red, vec![(Some(0), 2), (Some(3), 1)]);
    }
}
