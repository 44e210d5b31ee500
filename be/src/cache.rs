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

type Key = (u64, u32, Arc<str>);

#[derive(Debug, Default)]
struct Inner {
    columns: HashMap<Key, (ArrayRef, u64)>,
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

    pub fn column(&self, segment: u64, row_group: u32, column: &str) -> Option<ArrayRef> {
        let mut inner = self.inner.lock();
        inner.clock += 1;
        let now = inner.clock;
        let key: Key = (segment, row_group, Arc::from(column));
        match inner.columns.get_mut(&key) {
            Some((a, used)) => {
                *used = now;
                metrics::SEGMENT_CACHE_HITS.inc();
                Some(Arc::clone(a))
            }
            None => {
                metrics::SEGMENT_CACHE_MISSES.inc();
                None
            }
        }
    }

    pub fn insert_column(&self, segment: u64, row_group: u32, column: &str, array: ArrayRef) {
        if self.budget == 0 {
            return;
        }
        let size = array.get_array_memory_size();
        let mut inner = self.inner.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some((old, _)) = inner
            .columns
            .insert((segment, row_group, Arc::from(column)), (array, now))
        {
            inner.bytes -= old.get_array_memory_size();
        }
        inner.bytes += size;
        if inner.bytes > self.budget {
            // Evict the oldest entries down to 90% of the budget in one pass.
            let mut by_age: Vec<(u64, Key)> = inner
                .columns
                .iter()
                .map(|(k, (_, t))| (*t, k.clone()))
                .collect();
            by_age.sort_unstable_by_key(|(t, _)| *t);
            let target = self.budget / 10 * 9;
            for (_, k) in by_age {
                if inner.bytes <= target {
                    break;
                }
                if let Some((a, _)) = inner.columns.remove(&k) {
                    inner.bytes -= a.get_array_memory_size();
                }
            }
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
        let keys: Vec<Key> = inner
            .columns
            .keys()
            .filter(|k| k.0 == segment)
            .cloned()
            .collect();
        for k in keys {
            if let Some((a, _)) = inner.columns.remove(&k) {
                inner.bytes -= a.get_array_memory_size();
            }
        }
        metrics::SEGMENT_CACHE_BYTES.set(inner.bytes as i64);
    }
}
