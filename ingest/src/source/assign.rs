//! Which partitions a Kafka source reads, and where it starts in each.
//!
//! eddy assigns partitions itself (as Flink's Kafka source does) instead of joining a
//! group rebalance: the table's manifest, not the group, holds the offsets that matter,
//! and a topic that gains partitions is picked up by the periodic metadata check.

use std::collections::{BTreeMap, BTreeSet};

use super::options::StartOffset;

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Offset(i64),
    Beginning,
    End,
}

/// Partitions of `available` not yet in `assigned`, each with where to start: after the
/// last applied record when the table has one, else `policy` for partitions that existed
/// when the source started, and the beginning for partitions that appeared later (their
/// first records may predate the metadata check that found them).
pub fn plan(
    assigned: &BTreeSet<i32>,
    available: &[i32],
    applied: &BTreeMap<i32, i64>,
    policy: StartOffset,
    first_assignment: bool,
) -> Vec<(i32, StartAt)> {
    let mut out: Vec<(i32, StartAt)> = available
        .iter()
        .copied()
        .filter(|p| !assigned.contains(p))
        .map(|p| {
            let at = match (applied.get(&p), policy, first_assignment) {
                (Some(o), _, _) => StartAt::Offset(*o),
                (None, StartOffset::Latest, true) => StartAt::End,
                _ => StartAt::Beginning,
            };
            (p, at)
        })
        .collect();
    out.sort_by_key(|(p, _)| *p);
    out.dedup_by_key(|(p, _)| *p);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_assignment_resumes_or_follows_policy() {
        let applied = BTreeMap::from([(0, 42)]);
        let got = plan(
            &BTreeSet::new(),
            &[1, 0, 2],
            &applied,
            StartOffset::Latest,
            true,
        );
        assert_eq!(
            got,
            vec![
                (0, StartAt::Offset(42)),
                (1, StartAt::End),
                (2, StartAt::End)
            ]
        );
        let got = plan(
            &BTreeSet::new(),
            &[0, 1],
            &applied,
            StartOffset::Earliest,
            true,
        );
        assert_eq!(got, vec![(0, StartAt::Offset(42)), (1, StartAt::Beginning)]);
    }

    #[test]
    fn new_partitions_start_at_the_beginning_and_old_ones_are_kept() {
        let assigned = BTreeSet::from([0, 1]);
        let got = plan(
            &assigned,
            &[0, 1, 2, 3],
            &BTreeMap::new(),
            StartOffset::Latest,
            false,
        );
        assert_eq!(got, vec![(2, StartAt::Beginning), (3, StartAt::Beginning)]);
        assert!(plan(
            &assigned,
            &[0, 1],
            &BTreeMap::new(),
            StartOffset::Latest,
            false
        )
        .is_empty());
    }
}
