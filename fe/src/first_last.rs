//! `first_value(v ORDER BY k)` and `last_value(v ORDER BY k)` for the shape OHLC bars and
//! "latest value per key" queries have: a primitive value ordered by one integer, date or
//! timestamp key. Their groups accumulator keeps each group's (key, value) in flat vectors
//! and compares integers.
//!
//! DataFusion's own functions stay for every other shape (several keys, IGNORE NULLS,
//! string values) and for the row accumulator. Theirs is not reused for this one because
//! its groups accumulator visits every group on every batch and moves values through
//! `ScalarValue`s: with 1.4 M groups (1-minute bars of 1,000 symbols over a day) that cost
//! most of the query. The state layout is DataFusion's (value, key, is_set), so partial
//! and final aggregation may use either implementation.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, PrimitiveArray};
use arrow::buffer::NullBuffer;
use arrow::compute::SortOptions;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Decimal128Type, FieldRef, Float32Type, Float64Type,
    Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::Result;
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, ReversedUDAF, Signature,
};

/// `first_value` and `last_value`, to register over DataFusion's.
pub fn udafs() -> Vec<AggregateUDF> {
    vec![
        wrap(first_value_udaf().as_ref().clone(), true),
        wrap(last_value_udaf().as_ref().clone(), false),
    ]
}

fn wrap(inner: AggregateUDF, first: bool) -> AggregateUDF {
    AggregateUDF::new_from_impl(FirstLast { inner, first })
}

/// DataFusion's function, with [`KeyedGroups`] as its groups accumulator where it applies.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FirstLast {
    inner: AggregateUDF,
    first: bool,
}

/// The order key's type and direction when the fast accumulator applies.
fn fast_shape(args: &AccumulatorArgs) -> Option<(DataType, SortOptions)> {
    let [order] = args.order_bys else {
        return None;
    };
    if args.ignore_nulls || args.is_distinct || args.exprs.len() != 1 {
        return None;
    }
    let key_type = order.expr.data_type(args.schema).ok()?;
    let key_ok = matches!(
        key_type,
        DataType::Int64 | DataType::Int32 | DataType::Date32 | DataType::Timestamp(_, _)
    );
    (key_ok && value_supported(args.return_field.data_type())).then_some((key_type, order.options))
}

fn value_supported(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Float64
            | DataType::Float32
            | DataType::Int64
            | DataType::Int32
            | DataType::Int16
            | DataType::Date32
            | DataType::Decimal128(_, _)
            | DataType::Timestamp(_, _)
    )
}

impl AggregateUDFImpl for FirstLast {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner.return_field(arg_fields)
    }

    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.accumulator(acc_args)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        fast_shape(&args).is_some() || self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        let Some((key_type, options)) = fast_shape(&args) else {
            return self.inner.create_groups_accumulator(args);
        };
        let value_type = args.return_field.data_type().clone();
        let shape = Shape {
            first: self.first,
            options,
            key_type,
            value_type: value_type.clone(),
        };
        macro_rules! keyed {
            ($t:ty) => {
                Ok(Box::new(KeyedGroups::<$t>::new(shape)))
            };
        }
        match value_type {
            DataType::Float64 => keyed!(Float64Type),
            DataType::Float32 => keyed!(Float32Type),
            DataType::Int64 => keyed!(Int64Type),
            DataType::Int32 => keyed!(Int32Type),
            DataType::Int16 => keyed!(Int16Type),
            DataType::Date32 => keyed!(Date32Type),
            DataType::Decimal128(_, _) => keyed!(Decimal128Type),
            DataType::Timestamp(TimeUnit::Second, _) => keyed!(TimestampSecondType),
            DataType::Timestamp(TimeUnit::Millisecond, _) => keyed!(TimestampMillisecondType),
            DataType::Timestamp(TimeUnit::Microsecond, _) => keyed!(TimestampMicrosecondType),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => keyed!(TimestampNanosecondType),
            _ => self.inner.create_groups_accumulator(args),
        }
    }

    fn with_beneficial_ordering(
        self: Arc<Self>,
        beneficial_ordering: bool,
    ) -> Result<Option<Arc<dyn AggregateUDFImpl>>> {
        let inner = Arc::clone(self.inner.inner()).with_beneficial_ordering(beneficial_ordering)?;
        Ok(inner.map(|i| {
            Arc::new(FirstLast {
                inner: AggregateUDF::new_from_shared_impl(i),
                first: self.first,
            }) as _
        }))
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.inner().order_sensitivity()
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        match self.inner.inner().reverse_expr() {
            ReversedUDAF::Reversed(r) => {
                ReversedUDAF::Reversed(Arc::new(wrap(r.as_ref().clone(), !self.first)))
            }
            other => other,
        }
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn supports_null_handling_clause(&self) -> bool {
        self.inner.inner().supports_null_handling_clause()
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }
}

/// What one accumulator computes.
#[derive(Debug, Clone)]
struct Shape {
    /// `first_value` (the smallest key wins) or `last_value` (the largest).
    first: bool,
    options: SortOptions,
    key_type: DataType,
    value_type: DataType,
}

/// A key in an order where smaller means earlier under the ORDER BY's direction and NULL
/// placement: (rank, value), rank 1 for non-NULL keys.
type Rank = (u8, i64);

impl Shape {
    fn rank(&self, key: Option<i64>) -> Rank {
        match key {
            None if self.options.nulls_first => (0, 0),
            None => (2, 0),
            Some(k) if self.options.descending => (1, !k),
            Some(k) => (1, k),
        }
    }

    fn key(&self, rank: Rank) -> Option<i64> {
        match rank {
            (1, k) if self.options.descending => Some(!k),
            (1, k) => Some(k),
            _ => None,
        }
    }

    /// Whether a row ranked `new` replaces the group's current one. Ties keep the row seen
    /// first, as DataFusion's accumulators do.
    fn better(&self, new: Rank, current: Rank) -> bool {
        if self.first {
            new < current
        } else {
            new > current
        }
    }
}

/// Per group: is a row set, its key's rank, its value and whether that value is non-NULL.
#[derive(Debug)]
struct KeyedGroups<V: ArrowPrimitiveType> {
    shape: Shape,
    set: Vec<bool>,
    ranks: Vec<Rank>,
    values: Vec<V::Native>,
    valid: Vec<bool>,
}

/// The keys as i64 (timestamps and Int64 reinterpreted, Int32 and Date32 widened).
fn keys_i64(keys: &ArrayRef) -> Result<Int64Array> {
    Ok(match keys.data_type() {
        DataType::Int64 => keys.as_primitive::<Int64Type>().clone(),
        _ => arrow::compute::cast(keys, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone(),
    })
}

fn passes(mask: Option<&BooleanArray>, i: usize) -> bool {
    mask.is_none_or(|m| m.is_valid(i) && m.value(i))
}

impl<V: ArrowPrimitiveType> KeyedGroups<V> {
    fn new(shape: Shape) -> Self {
        Self {
            shape,
            set: Vec::new(),
            ranks: Vec::new(),
            values: Vec::new(),
            valid: Vec::new(),
        }
    }

    fn resize(&mut self, groups: usize) {
        self.set.resize(groups, false);
        self.ranks.resize(groups, (0, 0));
        self.values.resize(groups, V::Native::default());
        self.valid.resize(groups, false);
    }

    /// Offers each row (that passes `filter` and, when merging, is a set state) to its
    /// group.
    fn offer(
        &mut self,
        values: &ArrayRef,
        keys: &ArrayRef,
        groups: &[usize],
        filter: Option<&BooleanArray>,
        is_set: Option<&BooleanArray>,
        total: usize,
    ) -> Result<()> {
        self.resize(total);
        let values = values.as_primitive::<V>();
        let keys = keys_i64(keys)?;
        if filter.is_none() && is_set.is_none() && keys.null_count() == 0 {
            // Every row offered and every key set (an update over a NOT NULL time column,
            // the usual case): the loop below without its per-row checks.
            let (first, descending) = (self.shape.first, self.shape.options.descending);
            let nulls = values.nulls();
            for ((i, &g), &k) in groups.iter().enumerate().zip(keys.values()) {
                let rank = (1, if descending { !k } else { k });
                let current = self.ranks[g];
                if !self.set[g]
                    || (if first {
                        rank < current
                    } else {
                        rank > current
                    })
                {
                    self.set[g] = true;
                    self.ranks[g] = rank;
                    self.values[g] = values.value(i);
                    self.valid[g] = nulls.is_none_or(|n| n.is_valid(i));
                }
            }
            return Ok(());
        }
        for (i, &g) in groups.iter().enumerate() {
            if !passes(filter, i) || !passes(is_set, i) {
                continue;
            }
            let rank = self.shape.rank(keys.is_valid(i).then(|| keys.value(i)));
            if !self.set[g] || self.shape.better(rank, self.ranks[g]) {
                self.set[g] = true;
                self.ranks[g] = rank;
                self.values[g] = values.value(i);
                self.valid[g] = values.is_valid(i);
            }
        }
        Ok(())
    }

    /// The emitted groups' (set, ranks, values as an array).
    fn take(&mut self, emit_to: EmitTo) -> (Vec<bool>, Vec<Rank>, ArrayRef) {
        let set = emit_to.take_needed(&mut self.set);
        let ranks = emit_to.take_needed(&mut self.ranks);
        let values = emit_to.take_needed(&mut self.values);
        let valid = emit_to.take_needed(&mut self.valid);
        let nulls = NullBuffer::from(
            set.iter()
                .zip(&valid)
                .map(|(s, v)| *s && *v)
                .collect::<Vec<_>>(),
        );
        let array = PrimitiveArray::<V>::new(values.into(), Some(nulls))
            .with_data_type(self.shape.value_type.clone());
        (set, ranks, Arc::new(array))
    }
}

impl<V: ArrowPrimitiveType> GroupsAccumulator for KeyedGroups<V> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.offer(
            &values[0],
            &values[1],
            group_indices,
            opt_filter,
            None,
            total_num_groups,
        )
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.take(emit_to).2)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (set, ranks, values) = self.take(emit_to);
        let keys: Int64Array = set
            .iter()
            .zip(&ranks)
            .map(|(s, r)| if *s { self.shape.key(*r) } else { None })
            .collect();
        let keys = arrow::compute::cast(&keys, &self.shape.key_type)?;
        Ok(vec![values, keys, Arc::new(BooleanArray::from(set))])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let is_set = values[2].as_boolean();
        self.offer(
            &values[0],
            &values[1],
            group_indices,
            None,
            Some(is_set),
            total_num_groups,
        )
    }

    /// Each row as its own group's state: set where it passes the filter.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = values[0].len();
        let set: BooleanArray = (0..rows).map(|i| Some(passes(opt_filter, i))).collect();
        Ok(vec![
            Arc::clone(&values[0]),
            Arc::clone(&values[1]),
            Arc::new(set),
        ])
    }

    fn size(&self) -> usize {
        self.set.capacity()
            + self.valid.capacity()
            + self.ranks.capacity() * size_of::<Rank>()
            + self.values.capacity() * size_of::<V::Native>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    /// Runs `sql` over a table with NULL keys and values, split into batches of two rows
    /// over three partitions (so partial states merge), with DataFusion's functions and
    /// with these, and compares.
    async fn same_as_datafusion(sql: &str) {
        let ddl = "CREATE TABLE t AS SELECT * FROM (VALUES \
            ('a', 1, 10.0, CAST(100 AS BIGINT)), ('a', 3, 30.0, 300), ('a', 2, NULL, 200), \
            ('b', NULL, 5.0, 50), ('b', 7, 70.0, 700), ('b', 6, 71.0, 701), \
            ('c', NULL, 1.0, 1), ('c', 9, 2.0, 2), ('d', 4, 4.0, NULL)) AS v(g, k, x, y)";
        let config = || {
            datafusion::prelude::SessionConfig::new()
                .with_batch_size(2)
                .with_target_partitions(3)
        };
        let plain = SessionContext::new_with_config(config());
        plain.sql(ddl).await.unwrap().collect().await.unwrap();
        let ours = SessionContext::new_with_config(config());
        for f in udafs() {
            ours.register_udaf(f);
        }
        ours.sql(ddl).await.unwrap().collect().await.unwrap();
        let a = plain.sql(sql).await.unwrap().collect().await.unwrap();
        let b = ours.sql(sql).await.unwrap().collect().await.unwrap();
        assert_eq!(
            arrow::util::pretty::pretty_format_batches(&a)
                .unwrap()
                .to_string(),
            arrow::util::pretty::pretty_format_batches(&b)
                .unwrap()
                .to_string(),
            "{sql}"
        );
    }

    #[tokio::test]
    async fn agrees_with_datafusion() {
        for order in [
            "k",
            "k DESC",
            "k NULLS FIRST",
            "k DESC NULLS LAST",
            "y",
            "y DESC",
        ] {
            same_as_datafusion(&format!(
                "SELECT g, first_value(x ORDER BY {order}) AS f, last_value(x ORDER BY {order}) AS l, \
                 first_value(y ORDER BY {order}) AS fy, last_value(k ORDER BY {order}) AS lk \
                 FROM t GROUP BY g ORDER BY g"
            ))
            .await;
        }
        same_as_datafusion(
            "SELECT g, first_value(x ORDER BY k) FILTER (WHERE y > 100) AS f FROM t GROUP BY g ORDER BY g",
        )
        .await;
    }
}
