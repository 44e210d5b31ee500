//! Point lookups by primary key.
//!
//! When a scan's equality predicates pin every key column of an upsert table (`id = 7`,
//! `id IN (1, 2)`, `a = 1 AND b = 'x'`), the primary-key index ([`crate::pk`]) already
//! says which live row holds each key, so the scan reads exactly those rows instead of
//! every row group whose zone map admits the values: PostgreSQL's index scan, Doris'
//! short-key point query. The rows found are a superset of the answer only in the sense
//! that other predicates still apply; the FE re-applies the whole filter as for any scan.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray, UInt32Array,
};
use arrow::compute::{cast_with_options, take, CastOptions};
use arrow::datatypes::{DataType, TimeUnit};
use eddy_proto::{Predicate, PredicateOp, Result, Scalar};

use crate::pk::RowLoc;
use crate::table::TableState;

/// Most keys one lookup resolves (the product of the value lists); a scan pinning more
/// reads row groups as usual.
pub const MAX_KEYS: usize = 1024;

/// The live rows holding the keys the predicates pin, or `None` when the table has no
/// primary key or the predicates do not pin every key column to values of its type.
pub fn locate(st: &TableState, preds: &[Predicate]) -> Result<Option<Vec<RowLoc>>> {
    let Some(pk) = &st.pk else {
        return Ok(None);
    };
    if let [column] = pk.columns() {
        if let Some(found) = int_key(preds, column).and_then(|v| pk.locate_ints(&v)) {
            return Ok(Some(found));
        }
    }
    let mut lists = Vec::with_capacity(pk.columns().len());
    for column in pk.columns() {
        let Some(p) = preds
            .iter()
            .find(|p| p.op == PredicateOp::Eq && &p.column == column)
        else {
            return Ok(None);
        };
        let Ok(field) = st.schema.field_with_name(column) else {
            return Ok(None);
        };
        let Some(values) = values_array(&p.values, field.data_type()) else {
            return Ok(None);
        };
        lists.push(values);
    }
    let Some(keys) = cross_product(&lists)? else {
        return Ok(None);
    };
    Ok(Some(pk.locate(&keys)?))
}

/// The integer values an equality predicate pins `column` to, if it does and they all are
/// integers (at most [`MAX_KEYS`]): the common point query on an integer key, answered
/// without building key arrays.
fn int_key(preds: &[Predicate], column: &str) -> Option<Vec<i64>> {
    let p = preds
        .iter()
        .find(|p| p.op == PredicateOp::Eq && p.column == column)?;
    if p.values.len() > MAX_KEYS {
        return None;
    }
    p.values
        .iter()
        .map(|v| match v {
            Scalar::Int(x) => Some(*x),
            _ => None,
        })
        .collect()
}

/// Every combination of one value per column, as equally long columns.
fn cross_product(lists: &[ArrayRef]) -> Result<Option<Vec<ArrayRef>>> {
    let total = lists
        .iter()
        .try_fold(1usize, |acc, l| acc.checked_mul(l.len()))
        .filter(|n| *n <= MAX_KEYS);
    let Some(total) = total else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(lists.len());
    // Mixed radix: the last column varies fastest.
    let mut stride = 1usize;
    let mut strides = vec![0; lists.len()];
    for (i, l) in lists.iter().enumerate().rev() {
        strides[i] = stride;
        stride *= l.len();
    }
    for (l, s) in lists.iter().zip(strides) {
        let idx = UInt32Array::from_iter_values((0..total).map(|k| ((k / s) % l.len()) as u32));
        out.push(take(l.as_ref(), &idx, None).map_err(internal)?);
    }
    Ok(Some(out))
}

fn internal(e: arrow::error::ArrowError) -> eddy_proto::Error {
    eddy_proto::Error::new(eddy_proto::ErrorCode::Internal, format!("key lookup: {e}"))
}

/// `values` as an array of type `dt`, when every value is of a kind that converts to it
/// exactly (an integer into an integer column in range, a string into a string column, a
/// timestamp into a microsecond timestamp column ...). `None` means "cannot say exactly",
/// and the scan falls back to pruning.
fn values_array(values: &[Scalar], dt: &DataType) -> Option<ArrayRef> {
    // Every value through `f`, or `None` if one is of another kind.
    fn each<'a, T>(values: &'a [Scalar], f: impl Fn(&'a Scalar) -> Option<T>) -> Option<Vec<T>> {
        values.iter().map(f).collect()
    }
    let natural: ArrayRef = match dt {
        dt if dt.is_integer() => Arc::new(Int64Array::from(each(values, |v| match v {
            Scalar::Int(x) => Some(*x),
            _ => None,
        })?)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            Arc::new(StringArray::from(each(values, |v| match v {
                Scalar::Str(s) => Some(s.as_str()),
                _ => None,
            })?))
        }
        DataType::Boolean => Arc::new(BooleanArray::from(each(values, |v| match v {
            Scalar::Bool(b) => Some(*b),
            _ => None,
        })?)),
        DataType::Date32 => Arc::new(Date32Array::from(each(values, |v| match v {
            Scalar::Date(d) => Some(*d),
            _ => None,
        })?)),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => Arc::new(
            TimestampMicrosecondArray::from(each(values, |v| match v {
                Scalar::TimestampMicros(t) => Some(*t),
                _ => None,
            })?)
            .with_timezone_opt(tz.clone()),
        ),
        DataType::Decimal128(p, s) => Arc::new(
            Decimal128Array::from(each(values, |v| match v {
                Scalar::Decimal(x, vs) if vs == s => Some(*x),
                _ => None,
            })?)
            .with_precision_and_scale(*p, *s)
            .ok()?,
        ),
        DataType::Float64 => Arc::new(Float64Array::from(each(values, |v| match v {
            Scalar::Float(f) => Some(*f),
            _ => None,
        })?)),
        _ => return None,
    };
    if natural.data_type() == dt {
        return Some(natural);
    }
    // Integers narrower than i64 and other string types: an exact cast or nothing (a value
    // out of the column's range matches no row, but saying so is the filter's job).
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(&natural, dt, &options).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int32Array};

    fn ints(v: &[i64]) -> Vec<Scalar> {
        v.iter().map(|x| Scalar::Int(*x)).collect()
    }

    #[test]
    fn integers_convert_only_in_range() {
        let a = values_array(&ints(&[1, 2]), &DataType::Int32).unwrap();
        assert_eq!(
            a.as_any().downcast_ref::<Int32Array>().unwrap().values(),
            &[1, 2]
        );
        assert!(values_array(&ints(&[5_000_000_000]), &DataType::Int32).is_none());
        assert!(values_array(&[Scalar::Float(1.5)], &DataType::Int64).is_none());
        assert!(values_array(&[Scalar::Int(1)], &DataType::Utf8).is_none());
    }

    #[test]
    fn decimals_need_the_column_scale() {
        let dt = DataType::Decimal128(10, 2);
        assert!(values_array(&[Scalar::Decimal(150, 2)], &dt).is_some());
        assert!(values_array(&[Scalar::Decimal(15, 1)], &dt).is_none());
    }

    #[test]
    fn cross_product_pairs_every_value() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let b: ArrayRef = Arc::new(StringArray::from(vec!["x", "y", "z"]));
        let out = cross_product(&[a, b]).unwrap().unwrap();
        let a = out[0].as_any().downcast_ref::<Int64Array>().unwrap();
        let b = out[1].as_any().downcast_ref::<StringArray>().unwrap();
        let pairs: Vec<(i64, &str)> = (0..a.len()).map(|i| (a.value(i), b.value(i))).collect();
        assert_eq!(
            pairs,
            vec![(1, "x"), (1, "y"), (1, "z"), (2, "x"), (2, "y"), (2, "z")]
        );
        let big: ArrayRef = Arc::new(Int64Array::from_iter_values(0..40));
        assert!(cross_product(&[Arc::clone(&big), big]).unwrap().is_none());
    }
}
