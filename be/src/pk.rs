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
use arrow::datatypes::{DataType, SchemaRef};
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
    /// The key columns' types, in key order.
    converter_types: Vec<DataType>,
    converter: RowConverter,
    map: KeyMap,
}

/// Index entries by encoded key. A key whose row encoding has a fixed width of at most 16
/// bytes (integers, dates, timestamps, booleans, and pairs of small ones) is packed into a
/// `u128` held inline: no allocation per key, and a probe compares in place instead of
/// following a pointer to the key's bytes (a cache miss per lookup on a large table).
/// Other keys (text, numeric) keep their bytes.
enum KeyMap {
    Packed(HashMap<u128, RowLoc, ahash::RandomState>),
    Bytes(HashMap<Box<[u8]>, RowLoc, ahash::RandomState>),
}

/// A fixed-width row (every row of the index has the same length, at most 16 bytes).
fn pack(row: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    b[..row.len()].copy_from_slice(row);
    u128::from_le_bytes(b)
}

impl KeyMap {
    fn new(types: &[DataType]) -> Self {
        // Arrow's row format: a null flag byte, then the value's bytes.
        let width = types.iter().try_fold(0usize, |w, dt| {
            let bytes = match dt {
                DataType::Boolean => Some(1),
                dt if dt.is_primitive() => dt.primitive_width(),
                _ => None,
            }?;
            Some(w + 1 + bytes)
        });
        match width {
            Some(w) if w <= 16 => Self::Packed(HashMap::default()),
            _ => Self::Bytes(HashMap::default()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Packed(m) => m.len(),
            Self::Bytes(m) => m.len(),
        }
    }

    fn get(&self, row: &[u8]) -> Option<RowLoc> {
        match self {
            Self::Packed(m) => m.get(&pack(row)).copied(),
            Self::Bytes(m) => m.get(row).copied(),
        }
    }

    fn get_mut(&mut self, row: &[u8]) -> Option<&mut RowLoc> {
        match self {
            Self::Packed(m) => m.get_mut(&pack(row)),
            Self::Bytes(m) => m.get_mut(row),
        }
    }

    fn insert(&mut self, row: &[u8], loc: RowLoc) -> Option<RowLoc> {
        match self {
            Self::Packed(m) => m.insert(pack(row), loc),
            Self::Bytes(m) => m.insert(row.into(), loc),
        }
    }

    fn remove(&mut self, row: &[u8]) -> Option<RowLoc> {
        match self {
            Self::Packed(m) => m.remove(&pack(row)),
            Self::Bytes(m) => m.remove(row),
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&RowLoc) -> bool) {
        match self {
            Self::Packed(m) => m.retain(|_, l| keep(l)),
            Self::Bytes(m) => m.retain(|_, l| keep(l)),
        }
    }
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
        let types: Vec<DataType> = columns
            .iter()
            .filter_map(|c| schema.field_with_name(c).ok())
            .map(|f| f.data_type().clone())
            .collect();
        let map = KeyMap::new(&types);
        let converter = RowConverter::new(fields)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("key encoder: {e}")))?;
        Ok(Self {
            columns: columns.to_vec(),
            converter_types: types,
            converter,
            map,
        })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
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
            .filter_map(|r| self.map.get(r.as_ref()))
            .collect())
    }

    /// Where the live rows of these values of a one-column integer key are, without the
    /// row converter: the values are encoded as Arrow's row format encodes the column's
    /// type (a valid-flag byte of 1, then the big-endian value with its sign bit flipped).
    /// `None` when the key is not one signed integer column or a value is out of its range;
    /// the caller then goes through [`PkIndex::locate`].
    pub fn locate_ints(&self, values: &[i64]) -> Option<Vec<RowLoc>> {
        let KeyMap::Packed(map) = &self.map else {
            return None;
        };
        let [field] = self.converter_types.as_slice() else {
            return None;
        };
        let width = match field {
            DataType::Int8 => 1,
            DataType::Int16 => 2,
            DataType::Int32 => 4,
            DataType::Int64 => 8,
            _ => return None,
        };
        let bits = 8 * width as u32;
        let mut out = Vec::with_capacity(values.len());
        for &v in values {
            if bits < 64 && (v < -(1i64 << (bits - 1)) || v >= 1i64 << (bits - 1)) {
                return None;
            }
            let mut row = [0u8; 9];
            row[0] = 1;
            let be = v.to_be_bytes();
            row[1..=width].copy_from_slice(&be[8 - width..]);
            row[1] ^= 0x80;
            if let Some(loc) = map.get(&pack(&row[..=width])) {
                out.push(*loc);
            }
        }
        Some(out)
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
            if let Some(old) = self.map.insert(row.as_ref(), loc) {
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
            self.map.insert(row.as_ref(), RowLoc { unit, row: *n });
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
        self.map.retain(|loc| loc.unit != unit);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Date32Array, Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn index(fields: Vec<Field>) -> (PkIndex, SchemaRef) {
        let names: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
        let schema = Arc::new(Schema::new(fields));
        (PkIndex::new(&schema, &names).unwrap(), schema)
    }

    /// Every key kind finds its row, replaces and deletes it, packed or not; the packed
    /// width is the row format's real width.
    #[test]
    fn keys_of_every_kind_upsert_locate_and_delete() {
        let cases: Vec<(Vec<Field>, Vec<ArrayRef>, bool)> = vec![
            (
                vec![Field::new("id", DataType::Int64, false)],
                vec![Arc::new(Int64Array::from(vec![
                    i64::MIN,
                    -1,
                    0,
                    7,
                    i64::MAX,
                ]))],
                true,
            ),
            (
                vec![
                    Field::new("a", DataType::Int32, false),
                    Field::new("d", DataType::Date32, false),
                    Field::new("b", DataType::Boolean, false),
                ],
                vec![
                    Arc::new(Int32Array::from(vec![1, 1, 2, -3, 0])),
                    Arc::new(Date32Array::from(vec![0, 1, 0, 19000, -5])),
                    Arc::new(BooleanArray::from(vec![true, false, true, true, false])),
                ],
                true,
            ),
            (
                vec![
                    Field::new("s", DataType::Utf8, false),
                    Field::new("n", DataType::Int64, false),
                ],
                vec![
                    Arc::new(StringArray::from(vec!["a", "a", "b", "", "long text"])),
                    Arc::new(Int64Array::from(vec![1, 2, 1, 1, 1])),
                ],
                false,
            ),
        ];
        for (fields, cols, packed) in cases {
            let (mut pk, schema) = index(fields);
            assert_eq!(matches!(pk.map, KeyMap::Packed(_)), packed, "{schema:?}");
            let batch = RecordBatch::try_new(Arc::clone(&schema), cols.clone()).unwrap();
            let rows = pk.keys(&batch).unwrap();
            if packed {
                assert!(rows.iter().all(|r| r.as_ref().len() <= 16));
            }
            let mut deletes = Deletes::new();
            pk.upsert(&rows, 1, 0, &mut deletes);
            assert_eq!(pk.len(), 5);
            let found = pk.locate(&cols).unwrap();
            let want: Vec<RowLoc> = (0..5).map(|row| RowLoc { unit: 1, row }).collect();
            assert_eq!(found, want);
            // The same keys again replace the first rows.
            pk.upsert(&rows, 2, 10, &mut deletes);
            assert_eq!(deletes[&1].len(), 5);
            assert_eq!(pk.locate(&cols).unwrap()[4], RowLoc { unit: 2, row: 14 });
            let first = batch.slice(0, 1);
            assert_eq!(pk.delete(&pk.keys(&first).unwrap(), &mut deletes), 1);
            assert_eq!(pk.locate(&cols).unwrap().len(), 4);
            pk.forget_unit(2);
            assert!(pk.is_empty());
        }
    }

    /// The hand-encoded integer probe finds exactly what the row converter's encoding
    /// finds, at every width, at the edges of each range, and refuses values out of range.
    #[test]
    fn integer_probe_matches_the_row_format() {
        use arrow::array::{Int16Array, Int8Array};
        let cases: Vec<(DataType, ArrayRef, Vec<i64>)> = vec![
            (
                DataType::Int8,
                Arc::new(Int8Array::from(vec![i8::MIN, -1, 0, 1, i8::MAX])),
                vec![i8::MIN as i64, -1, 0, 1, i8::MAX as i64],
            ),
            (
                DataType::Int16,
                Arc::new(Int16Array::from(vec![i16::MIN, -300, 0, 300, i16::MAX])),
                vec![i16::MIN as i64, -300, 0, 300, i16::MAX as i64],
            ),
            (
                DataType::Int32,
                Arc::new(Int32Array::from(vec![i32::MIN, -70000, 0, 70000, i32::MAX])),
                vec![i32::MIN as i64, -70000, 0, 70000, i32::MAX as i64],
            ),
            (
                DataType::Int64,
                Arc::new(Int64Array::from(vec![i64::MIN, -1, 0, 1 << 40, i64::MAX])),
                vec![i64::MIN, -1, 0, 1 << 40, i64::MAX],
            ),
        ];
        for (dt, col, values) in cases {
            let (mut pk, schema) = index(vec![Field::new("k", dt.clone(), false)]);
            let batch = RecordBatch::try_new(schema, vec![Arc::clone(&col)]).unwrap();
            pk.upsert(&pk.keys(&batch).unwrap(), 1, 0, &mut Deletes::new());
            let want = pk.locate(&[col]).unwrap();
            assert_eq!(want.len(), 5, "{dt}");
            assert_eq!(pk.locate_ints(&values), Some(want), "{dt}");
            // A value of the type's range that no row holds; then one out of range.
            assert_eq!(pk.locate_ints(&[2]), Some(vec![]), "{dt}");
            if dt != DataType::Int64 {
                assert_eq!(pk.locate_ints(&[i64::MAX]), None, "{dt}");
            }
        }
        let (pk, _) = index(vec![Field::new("s", DataType::Utf8, false)]);
        assert_eq!(pk.locate_ints(&[1]), None);
    }
}
