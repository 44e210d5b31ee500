//! Exact statistics of a scan snapshot (row count, per-column min/max/nulls) from segment
//! and row-group metadata, and from the memtable rows themselves. The planner answers
//! `count(*)`, `min` and `max` from them without reading rows, so a value is given only
//! when it is exact: a row group with deleted rows, or a key lookup, leaves its columns
//! unknown.

use std::cmp::Ordering;

use arrow::datatypes::DataType;
use eddy_proto::{ColumnStatistics, Scalar, SnapshotStatistics};

use crate::scan::{SegmentRead, Work};
use crate::segment::min_max;

/// One column's running statistics; `None` once anything about it is not exact.
type Acc = Option<ColumnStatistics>;

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

fn pick(a: Scalar, b: Scalar, want: Ordering) -> Option<Scalar> {
    match (&a, &b) {
        (Scalar::Null, _) => Some(b),
        (_, Scalar::Null) => Some(a),
        _ => match a.compare(&b)? {
            o if o == want => Some(a),
            _ => Some(b),
        },
    }
}

fn merge(acc: Acc, min: Scalar, max: Scalar, nulls: u64) -> Acc {
    let acc = acc?;
    Some(ColumnStatistics {
        min: pick(acc.min, min, Ordering::Less)?,
        max: pick(acc.max, max, Ordering::Greater)?,
        nulls: acc.nulls + nulls,
    })
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
            exact_type(t).then_some(ColumnStatistics {
                min: Scalar::Null,
                max: Scalar::Null,
                nulls: 0,
            })
        })
        .collect();
    for w in work {
        match w {
            Work::Batch(b) => {
                rows += b.num_rows() as u64;
                for (acc, col) in cols.iter_mut().zip(b.columns()) {
                    if acc.is_some() {
                        let (min, max) = min_max(col);
                        *acc = merge(acc.take(), min, max, col.null_count() as u64);
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
        columns: cols,
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
                Some(r) => merge(acc.take(), r.min.clone(), r.max.clone(), r.nulls),
                // A column added after the segment was written: NULL in all its rows.
                None if !meta.columns.contains_key(name) => {
                    merge(acc.take(), Scalar::Null, Scalar::Null, group.rows)
                }
                None => None,
            };
        }
    }
}
