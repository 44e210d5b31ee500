//! A bounded cache of decoded segment columns, keyed by (segment, row group, column).
//!
//! Segments are immutable, so an entry never goes stale; it only ages out. This is what
//! Doris' page cache and ClickHouse's uncompressed cache do: repeated scans of hot data
//! skip Parquet decoding. Eviction drops the least recently used entries once the decoded
//! bytes pass `be.segment_cache_bytes`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use parking_lot::Mutex;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;

use crate::metrics;

/// A row group of a segment.
type Group = (u64, u32);

/// Entries by row group, then by column name: a lookup by `&str` needs no key allocation.
#[derive(Debug, Default)]
struct Inner {
    columns: HashMap<Group, HashMap<Arc<str>, (ArrayRef, u64)>>,
    footers: HashMap<u64, ArrowReaderMetadata>,
    bytes: usize,
    clock: u64,
}

#[derive(Debug)]
pub struct SegmentCache {
    budget: usize,
    inner: Mutex<Inner>,
}

impl SegmentCache {
    pub fn new(budget: usize) -> Self {
        metrics::SEGMENT_CACHE_CAPACITY.set(budget as i64);
        Self {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The cached columns `names` of a row group, in order (`None`: not cached), under one
    /// lock: a point query reads every column of one row group.
    pub fn columns<'a>(
        &self,
        segment: u64,
        row_group: u32,
        names: impl ExactSizeIterator<Item = &'a str>,
    ) -> Vec<Option<ArrayRef>> {
        let mut out = Vec::with_capacity(names.len());
        let mut inner = self.inner.lock();
        inner.clock += 1;
        let now = inner.clock;
        let (mut hits, mut misses) = (0, 0);
        let mut group = inner.columns.get_mut(&(segment, row_group));
        for name in names {
            let found = group
                .as_mut()
                .and_then(|g| g.get_mut(name))
                .map(|(a, used)| {
                    *used = now;
                    Arc::clone(a)
                });
            match found {
                Some(_) => hits += 1,
                None => misses += 1,
            }
            out.push(found);
        }
        drop(inner);
        metrics::SEGMENT_CACHE_HITS.inc_by(hits);
        metrics::SEGMENT_CACHE_MISSES.inc_by(misses);
        out
    }

    pub fn insert_column(&self, segment: u64, row_group: u32, column: &str, array: ArrayRef) {
        if self.budget == 0 {
            return;
        }
        let size = array.get_array_memory_size();
        let mut inner = self.inner.lock();
        inner.clock += 1;
        let now = inner.clock;
        let group = inner.columns.entry((segment, row_group)).or_default();
        let old = group.insert(Arc::from(column), (array, now));
        if let Some((old, _)) = old {
            inner.bytes -= old.get_array_memory_size();
        }
        inner.bytes += size;
        if inner.bytes > self.budget {
            inner.evict(self.budget / 10 * 9);
        }
        metrics::SEGMENT_CACHE_BYTES.set(inner.bytes as i64);
    }

    /// The decoded Parquet footer of a segment (read once per segment).
    pub fn footer(&self, segment: u64) -> Option<ArrowReaderMetadata> {
        self.inner.lock().footers.get(&segment).cloned()
    }

    pub fn insert_footer(&self, segment: u64, meta: ArrowReaderMetadata) {
        self.inner.lock().footers.insert(segment, meta);
    }

    /// Drops everything of a segment that no longer exists.
    pub fn forget_segment(&self, segment: u64) {
        let mut inner = self.inner.lock();
        inner.footers.remove(&segment);
        let groups: Vec<Group> = inner
            .columns
            .keys()
            .filter(|g| g.0 == segment)
            .copied()
            .collect();
        for g in groups {
            if let Some(cols) = inner.columns.remove(&g) {
                inner.bytes -= cols
                    .values()
                    .map(|(a, _)| a.get_array_memory_size())
                    .sum::<usize>();
            }
        }
        metrics::SEGMENT_CACHE_BYTES.set(inner.bytes as i64);
    }
}

impl Inner {
    /// Evicts the least recently used entries, oldest first, down to `target` bytes.
    fn evict(&mut self, target: usize) {
        let mut by_age: Vec<(u64, Group, Arc<str>)> = self
            .columns
            .iter()
            .flat_map(|(g, cols)| cols.iter().map(|(c, (_, t))| (*t, *g, Arc::clone(c))))
            .collect();
        by_age.sort_unstable_by_key(|(t, _, _)| *t);
        for (_, g, c) in by_age {
            if self.bytes <= target {
                break;
            }
            let Some(cols) = self.columns.get_mut(&g) else {
                continue;
            };
            if let Some((a, _)) = cols.remove(&c) {
                self.bytes -= a.get_array_memory_size();
            }
            if cols.is_empty() {
                self.columns.remove(&g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn col(n: i64) -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(0..n))
    }

    #[test]
    fn lookups_find_what_was_inserted_and_eviction_keeps_the_budget() {
        let size = col(1000).get_array_memory_size();
        let cache = SegmentCache::new(size * 3);
        cache.insert_column(1, 0, "a", col(1000));
        cache.insert_column(1, 0, "b", col(1000));
        cache.insert_column(2, 0, "a", col(1000));
        let got = cache.columns(1, 0, ["a", "x", "b"].into_iter());
        assert_eq!(
            got.iter().map(Option::is_some).collect::<Vec<_>>(),
            [true, false, true]
        );
        // Touch (1, 0, "a") so (1, 0, "b") is the oldest; a fourth entry evicts down to 90%.
        cache.columns(1, 0, ["a"].into_iter());
        cache.columns(2, 0, ["a"].into_iter());
        cache.insert_column(3, 1, "c", col(1000));
        assert!(cache.inner.lock().bytes <= size * 3);
        assert!(cache.columns(1, 0, ["b"].into_iter())[0].is_none());
        assert!(cache.columns(3, 1, ["c"].into_iter())[0].is_some());
        cache.forget_segment(3);
        assert!(cache.columns(3, 1, ["c"].into_iter())[0].is_none());
        let inner = cache.inner.lock();
        let held: usize = inner
            .columns
            .values()
            .flat_map(|c| c.values())
            .map(|(a, _)| a.get_array_memory_size())
            .sum();
        assert_eq!(inner.bytes, held);
    }
}
