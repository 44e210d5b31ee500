//! Exact `count(DISTINCT x)` over integers as one roaring bitmap per group.
//!
//! DataFusion's own distinct count keeps a hash set of values per group (and a list of
//! them as its partial state); for the integer ids views count (users, products, sessions)
//! a compressed bitmap is several times smaller, merges by union, and serializes into a
//! compact partial state. Values are mapped to `u64` by their two's-complement bits, which
//! is a bijection, so the count is exact for every integer type.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanArray, Int64Array,
};
use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use roaring::RoaringTreemap;

/// Whether values of this type can go into a roaring bitmap losslessly.
pub(super) fn supported(t: &DataType) -> bool {
    t.is_integer()
}

#[derive(Debug, Default)]
pub(super) struct RoaringDistinct {
    sets: Vec<RoaringTreemap>,
    /// Values held over all groups (kept as they change: `size` is called per batch).
    values: u64,
}

/// Estimated bytes per value in a roaring array container, and per group's bitmap.
const BYTES_PER_VALUE: u64 = 2;
const BYTES_PER_GROUP: usize = 64;

fn as_u64s(a: &ArrayRef) -> Result<Vec<Option<u64>>> {
    let c = arrow::compute::cast(a, &DataType::Int64)?;
    Ok(c.as_primitive::<arrow::datatypes::Int64Type>()
        .iter()
        .map(|v| v.map(|v| v as u64))
        .collect())
}

impl RoaringDistinct {
    fn take(&mut self, emit_to: EmitTo) -> Vec<RoaringTreemap> {
        match emit_to {
            EmitTo::All => std::mem::take(&mut self.sets),
            EmitTo::First(n) => {
                let rest = self.sets.split_off(n);
                std::mem::replace(&mut self.sets, rest)
            }
        }
    }
}

impl RoaringDistinct {
    /// Every group's partial state, as [`GroupsAccumulator::state`] gives it, left in place.
    pub(super) fn peek_state(&self) -> Result<Vec<ArrayRef>> {
        Ok(vec![serialize(&self.sets)?])
    }

    /// Every group's distinct count, as `evaluate` gives it, left in place.
    pub(super) fn counts(&self) -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            self.sets.iter().map(|s| s.len() as i64),
        ))
    }
}

fn serialize(sets: &[RoaringTreemap]) -> Result<ArrayRef> {
    let mut b = BinaryBuilder::new();
    let mut buf = Vec::new();
    for s in sets {
        buf.clear();
        s.serialize_into(&mut buf)
            .map_err(|e| DataFusionError::Internal(format!("roaring state: {e}")))?;
        b.append_value(&buf);
    }
    Ok(Arc::new(b.finish()))
}

impl GroupsAccumulator for RoaringDistinct {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.sets.resize_with(total_num_groups, RoaringTreemap::new);
        let v = as_u64s(&values[0])?;
        for (row, (g, value)) in group_indices.iter().zip(v).enumerate() {
            if opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                continue;
            }
            if let Some(x) = value {
                self.values += self.sets[*g].insert(x) as u64;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let sets = self.take(emit_to);
        self.values = self.sets.iter().map(|s| s.len()).sum();
        Ok(Arc::new(Int64Array::from_iter_values(
            sets.iter().map(|s| s.len() as i64),
        )))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let sets = self.take(emit_to);
        self.values = self.sets.iter().map(|s| s.len()).sum();
        Ok(vec![serialize(&sets)?])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.sets.resize_with(total_num_groups, RoaringTreemap::new);
        let states: &BinaryArray = values[0].as_binary();
        for (row, g) in group_indices.iter().enumerate() {
            if states.is_null(row) {
                continue;
            }
            let other = RoaringTreemap::deserialize_from(states.value(row))
                .map_err(|e| DataFusionError::Internal(format!("roaring state: {e}")))?;
            let before = self.sets[*g].len();
            self.sets[*g] |= other;
            self.values += self.sets[*g].len() - before;
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut b = BinaryBuilder::new();
        let mut buf = Vec::new();
        for (row, v) in as_u64s(&values[0])?.into_iter().enumerate() {
            let mut set = RoaringTreemap::new();
            let keep = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            if let (true, Some(x)) = (keep, v) {
                set.insert(x);
            }
            buf.clear();
            set.serialize_into(&mut buf)
                .map_err(|e| DataFusionError::Internal(format!("roaring state: {e}")))?;
            b.append_value(&buf);
        }
        Ok(vec![Arc::new(b.finish())])
    }

    fn size(&self) -> usize {
        (self.values * BYTES_PER_VALUE) as usize + self.sets.capacity() * BYTES_PER_GROUP
    }
}
