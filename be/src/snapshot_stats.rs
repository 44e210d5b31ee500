//! Exact statistics of a scan snapshot (row count, per-column min/max/nulls) from segment
//! and row-group metadata, and from the memtable rows themselves. The planner answers
//! `count(*)`, `min` and `max` from them without reading rows, so a value is given only
//! when it is exact: a row group with deleted rows, or a key lookup, leaves its columns
//! unknown. The row count is always exact; memtable columns are summarized only while the
//! memtable part is small, since the planner asks on every query.

use arrow::datatypes::DataType;
use eddy_proto::{ColumnStatistics, Scalar, SnapshotStatistics};

use crate::scan::{SegmentRead, Work};
use crate::segment::{min_max, ColumnRange};

/// Above this many memtable rows in a snapshot its columns are left unknown rather than
/// scanned for min/max on every query (64 k rows take well under a millisecond).
const MEMTABLE_STATS_ROWS_MAX: usize = 64 * 1024;

/// One column's running range; `None` once anything about it is not exact.
type Acc = Option<ColumnRange>;

/// Whether min/max of this type compare the way DataFusion's `min`/`max` do. Floats are
/// left out: NaN orders differently in places.
fn exact_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Date32
            | DataType::Timestamp(_, _)
            | DataType::Decimal128(_, _)
            | DataType::Utf8
    )
}

fn merge(acc: Acc, range: ColumnRange) -> Acc {
    acc?.union(&range)
}

/// Statistics of the rows `work` returns, columns in the order of `fields`.
pub(crate) fn statistics<'a>(
    fields: &[(String, DataType)],
    work: impl Iterator<Item = &'a Work>,
) -> SnapshotStatistics {
    let mut rows = 0u64;
    let mut cols: Vec<Acc> = fields
        .iter()
        .map(|(_, t)| {
            exact_type(t).then_some(ColumnRange {
                min: Scalar::Null,
                max: Scalar::Null,
                nulls: 0,
            })
        })
        .collect();
    let work: Vec<&Work> = work.collect();
    let memtable_rows: usize = work
        .iter()
        .map(|w| match w {
            Work::Batch(b) => b.num_rows(),
            _ => 0,
        })
        .sum();
    // The planner asks on every query: memtable rows are read for min/max only while few.
    let read_memtable = memtable_rows <= MEMTABLE_STATS_ROWS_MAX;
    for w in work {
        match w {
            Work::Batch(b) if !read_memtable => {
                rows += b.num_rows() as u64;
                cols.iter_mut().for_each(|c| *c = None);
            }
            Work::Batch(b) => {
                rows += b.num_rows() as u64;
                for (acc, col) in cols.iter_mut().zip(b.columns()) {
                    if acc.is_some() {
                        let (min, max) = min_max(col);
                        let nulls = col.null_count() as u64;
                        *acc = merge(acc.take(), ColumnRange { min, max, nulls });
                    }
                }
            }
            Work::Segment(read) => segment(read, fields, &mut rows, &mut cols),
            Work::Rows(_, found) => {
                rows += found.len() as u64;
                cols.iter_mut().for_each(|c| *c = None);
            }
        }
    }
    SnapshotStatistics {
        rows,
        columns: cols
            .into_iter()
            .map(|c| {
                c.map(|r| ColumnStatistics {
                    min: r.min,
                    max: r.max,
                    nulls: r.nulls,
                })
            })
            .collect(),
    }
}

fn segment(read: &SegmentRead, fields: &[(String, DataType)], rows: &mut u64, cols: &mut [Acc]) {
    let meta = &read.segment.meta;
    let starts = meta.row_group_starts();
    for &rg in &read.row_groups {
        let group = &meta.row_groups[rg];
        let deleted = read.deleted.as_ref().map_or(0, |d| {
            d.range_cardinality(starts[rg] as u32..(starts[rg] + group.rows) as u32)
        });
        *rows += group.rows - deleted;
        for (acc, (name, _)) in cols.iter_mut().zip(fields) {
            if deleted > 0 {
                *acc = None;
                continue;
            }
            *acc = match group.columns.get(name) {
                Some(r) => merge(acc.take(), r.clone()),
                // A column added after the segment was written: NULL in all its rows.
                None if !meta.columns.contains_key(name) => merge(
                    acc.take(),
                    ColumnRange {
                        min: Scalar::Null,
                        max: Scalar::Null,
                        nulls: group.rows,
                    },
                ),
                None => None,
            };
        }
    }
}
