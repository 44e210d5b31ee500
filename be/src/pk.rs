//! The primary-key index of an upsert table: key → the one live row holding it.
//!
//! Algorithm: keys are encoded with Arrow's row format so that any combination of key
//! columns hashes and compares as bytes. An upsert of key `k` marks the row the index points
//! to as deleted (in the delete bitmap of the memtable or segment holding it) and points the
//! index at the new row; a delete marks and removes. This is Doris' merge-on-write: scans
//! only skip rows in delete bitmaps, and never merge versions. Replaying the same operation
//! against a state that already reflects it is harmless, which is what makes WAL replay on
//! top of a manifest snapshot correct.

use std::collections::HashMap;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use eddy_proto::{Error, ErrorCode, Result};
use roaring::RoaringBitmap;

/// Where a row lives: a memtable or segment (`unit`) and the row number inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLoc {
    pub unit: u64,
    pub row: u32,
}

pub type Deletes = HashMap<u64, RoaringBitmap>;

pub struct PkIndex {
    columns: Vec<String>,
    converter: RowConverter,
    map: HashMap<Box<[u8]>, RowLoc, ahash::RandomState>,
}

impl std::fmt::Debug for PkIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkIndex")
            .field("columns", &self.columns)
            .field("keys", &self.map.len())
            .finish()
    }
}

fn mark(deletes: &mut Deletes, loc: RowLoc) {
    deletes.entry(loc.unit).or_default().insert(loc.row);
}

impl PkIndex {
    pub fn new(schema: &SchemaRef, columns: &[String]) -> Result<Self> {
        let fields = columns
            .iter()
            .map(|c| {
                schema
                    .field_with_name(c)
                    .map(|f| SortField::new(f.data_type().clone()))
                    .map_err(|_| {
                        Error::new(
                            ErrorCode::ColumnNotFound,
                            format!("key column \"{c}\" not found"),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let converter = RowConverter::new(fields)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("key encoder: {e}")))?;
        Ok(Self {
            columns: columns.to_vec(),
            converter,
            map: HashMap::default(),
        })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The key columns, in key order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Where the live rows of these keys are (one array per key column, in key order);
    /// keys that no live row holds are left out.
    pub fn locate(&self, keys: &[ArrayRef]) -> Result<Vec<RowLoc>> {
        let rows = self
            .converter
            .convert_columns(keys)
            .map_err(|e| Error::new(ErrorCode::InvalidValue, format!("encode key: {e}")))?;
        Ok(rows
            .iter()
            .filter_map(|r| self.map.get(r.as_ref()).copied())
            .collect())
    }

    /// Encodes the key columns of `batch`.
    pub fn keys(&self, batch: &RecordBatch) -> Result<Rows> {
        let cols = self
            .columns
            .iter()
            .map(|c| {
                batch.column_by_name(c).cloned().ok_or_else(|| {
                    Error::new(
                        ErrorCode::ColumnNotFound,
                        format!("key column \"{c}\" missing"),
                    )
                })
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        self.converter
            .convert_columns(&cols)
            .map_err(|e| Error::new(ErrorCode::InvalidValue, format!("encode key: {e}")))
    }

    /// Points every key of `rows` at `unit`, rows `base..`, deleting what they replace.
    pub fn upsert(&mut self, rows: &Rows, unit: u64, base: u32, deletes: &mut Deletes) {
        for (i, row) in rows.iter().enumerate() {
            let loc = RowLoc {
                unit,
                row: base + i as u32,
            };
            if let Some(old) = self.map.insert(row.as_ref().into(), loc) {
                mark(deletes, old);
            }
        }
    }

    /// Deletes the live row of each key; returns how many existed.
    pub fn delete(&mut self, rows: &Rows, deletes: &mut Deletes) -> u64 {
        let mut n = 0;
        for row in rows.iter() {
            if let Some(old) = self.map.remove(row.as_ref()) {
                mark(deletes, old);
                n += 1;
            }
        }
        n
    }

    /// Adds live rows of a unit being loaded (no deletes: the unit's own bitmap is applied
    /// by the caller, who passes only live rows).
    pub fn load(&mut self, rows: &Rows, unit: u64, row_numbers: &[u32]) {
        for (row, n) in rows.iter().zip(row_numbers) {
            self.map
                .insert(row.as_ref().into(), RowLoc { unit, row: *n });
        }
    }

    /// After rows moved (seal, compaction): for row `i` of `rows`, if the index still
    /// points at `from[i]`, point it at `to[i]`.
    pub fn relocate(&mut self, rows: &Rows, from: &[RowLoc], to: &[RowLoc]) {
        for ((row, f), t) in rows.iter().zip(from).zip(to) {
            if let Some(cur) = self.map.get_mut(row.as_ref()) {
                if cur == f {
                    *cur = *t;
                }
            }
        }
    }

    /// Removes index entries that point into `unit` (the unit was dropped).
    pub fn forget_unit(&mut self, unit: u64) {
        self.map.retain(|_, loc| loc.unit != unit);
    }
}
