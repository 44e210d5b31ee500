//! PostgreSQL's ordered-set aggregates: `mode() WITHIN GROUP (ORDER BY x)` and
//! `percentile_disc(f) WITHIN GROUP (ORDER BY x)`, which DataFusion lacks, and
//! `percentile_cont(f)`. Dashboards written for PostgreSQL use them for "the most common
//! status", "the median latency as an actual sample" and "the p99 latency". DataFusion's
//! own `percentile_cont` truncates its interpolation weight to six decimals, so its p90 of
//! 117.25 and 117.5 is 117.27499975 where PostgreSQL (and DuckDB) say 117.275; this one
//! interpolates as PostgreSQL does, in float8.
//!
//! DataFusion's SQL planner turns `f(args) WITHIN GROUP (ORDER BY x DESC)` into `f(x, args)`
//! with `x DESC` as the aggregate's ORDER BY, for functions whose
//! `supports_within_group_clause` is true. The accumulator sees the direction in
//! `AccumulatorArgs::order_bys` whatever the order sensitivity, so both functions declare
//! themselves order-insensitive: they collect the non-NULL values and sort them once in
//! `evaluate`, and the planner adds no sort before the aggregate, keeps repartitioning and
//! lets several of them with different orderings share one aggregate.
//!
//! The state is the collected values as one list, so partial aggregates on several
//! partitions merge by concatenation. Values compare as arrow's sort kernel compares them,
//! which for floats is a total order (`-0.0` sorts before `0.0`, NaN after everything).

use std::mem::size_of;
use std::sync::Arc;

use arrow::array::{new_empty_array, Array, ArrayRef, AsArray, ListArray, RecordBatch};
use arrow::buffer::OffsetBuffer;
use arrow::compute::kernels::partition::partition;
use arrow::compute::{concat, filter, is_not_null, sort, sort_to_indices, SortOptions};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Schema};
use datafusion::common::{exec_err, not_impl_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::{format_state_name, AggregateOrderSensitivity};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Signature, Volatility,
};

/// `mode`, `percentile_disc` and `percentile_cont`, to register with the session (after
/// DataFusion's, which the last replaces).
pub fn udafs() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::new_from_impl(OrderedSet::new(Kind::Mode)),
        AggregateUDF::new_from_impl(OrderedSet::new(Kind::PercentileDisc)),
        AggregateUDF::new_from_impl(OrderedSet::new(Kind::PercentileCont)),
    ]
}

/// Which ordered-set aggregate a [`OrderedSet`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `mode() WITHIN GROUP (ORDER BY x)`: arguments `(x)`.
    Mode,
    /// `percentile_disc(f) WITHIN GROUP (ORDER BY x)`: arguments `(x, f)`.
    PercentileDisc,
    /// `percentile_cont(f) WITHIN GROUP (ORDER BY x)`: arguments `(x, f)`, `x` a number.
    PercentileCont,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct OrderedSet {
    kind: Kind,
    signature: Signature,
}

impl OrderedSet {
    fn new(kind: Kind) -> Self {
        let signature = match kind {
            Kind::Mode => Signature::any(1, Volatility::Immutable),
            // User-defined so the ordered value keeps its type, whatever it is, while the
            // fraction is cast to Float64 (see `coerce_types`).
            Kind::PercentileDisc | Kind::PercentileCont => {
                Signature::user_defined(Volatility::Immutable)
            }
        };
        Self { kind, signature }
    }
}

impl AggregateUDFImpl for OrderedSet {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Mode => "mode",
            Kind::PercentileDisc => "percentile_disc",
            Kind::PercentileCont => "percentile_cont",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The type of the ordered value, of which `mode` and `percentile_disc` return one;
    /// `percentile_cont` interpolates in float8.
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(_) if self.kind == Kind::PercentileCont => Ok(DataType::Float64),
            Some(t) => Ok(t.clone()),
            None => plan_err!("{} needs a WITHIN GROUP (ORDER BY ...) value", self.name()),
        }
    }

    /// `percentile_disc(x, f)`: `x` as it is, `f` (any number or NULL) as Float64;
    /// `percentile_cont` also reads `x` as Float64.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [value, fraction] = arg_types else {
            return plan_err!(
                "{} takes one fraction and one WITHIN GROUP (ORDER BY ...) value, got {} arguments",
                self.name(),
                arg_types.len()
            );
        };
        if !(fraction.is_numeric() || fraction.is_null()) {
            return plan_err!(
                "{}'s fraction must be a number between 0 and 1, got a value of type {fraction}",
                self.name()
            );
        }
        if self.kind == Kind::PercentileCont {
            if !(value.is_numeric() || value.is_null()) {
                return plan_err!(
                    "percentile_cont interpolates numbers; ORDER BY a value of type {value} needs percentile_disc"
                );
            }
            return Ok(vec![DataType::Float64, DataType::Float64]);
        }
        Ok(vec![value.clone(), DataType::Float64])
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let Some(value_field) = args.input_fields.first() else {
            return plan_err!("{} needs a WITHIN GROUP (ORDER BY ...) value", self.name());
        };
        let values = Field::new(
            format_state_name(args.name, "values"),
            values_list_type(value_field.data_type()),
            true,
        );
        Ok(vec![values.into()])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            return not_impl_err!("{} does not support DISTINCT", self.name());
        }
        let Some(value_field) = args.expr_fields.first() else {
            return plan_err!("{} needs a WITHIN GROUP (ORDER BY ...) value", self.name());
        };
        let compute = match self.kind {
            Kind::Mode => Compute::Mode,
            Kind::PercentileDisc => Compute::PercentileDisc(fraction(&args)?),
            Kind::PercentileCont => Compute::PercentileCont(fraction(&args)?),
        };
        Ok(Box::new(OrderedSetAccumulator {
            compute,
            descending: descending(&args),
            values: Values::new(value_field.data_type().clone()),
        }))
    }

    /// The accumulator sorts what it collected itself, so the input needs no order.
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn supports_within_group_clause(&self) -> bool {
        true
    }
}

/// The state's type: a list of the ordered value's type.
fn values_list_type(value_type: &DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(value_type.clone(), true)))
}

/// Whether the WITHIN GROUP ordering is descending. The SQL planner always passes the one
/// ordering; a call without it (`mode(x)`) orders ascending. `is_reversed` stays false:
/// only order-sensitive aggregates get reversed by the optimizer.
fn descending(args: &AccumulatorArgs) -> bool {
    args.order_bys
        .first()
        .is_some_and(|order| order.options.descending)
}

/// A percentile's fraction, which must be a constant; NULL makes the result NULL as in
/// PostgreSQL. Its range is checked when a group has values, also as in PostgreSQL.
fn fraction(args: &AccumulatorArgs) -> Result<Option<f64>> {
    let name = args.name;
    let [_, fraction] = args.exprs else {
        return plan_err!(
            "{name} takes one fraction and one WITHIN GROUP (ORDER BY ...) value, got {} arguments",
            args.exprs.len()
        );
    };
    // A constant evaluates to a scalar without any column; anything else fails here.
    let no_columns = RecordBatch::new_empty(Arc::new(Schema::empty()));
    let Ok(ColumnarValue::Scalar(value)) = fraction.evaluate(&no_columns) else {
        return plan_err!("{name}'s fraction must be a constant, got {fraction}");
    };
    match value.cast_to(&DataType::Float64)? {
        ScalarValue::Float64(f) => Ok(f),
        other => plan_err!("{name}'s fraction must be a number, got {other:?}"),
    }
}

/// PostgreSQL's 22003 for a fraction outside 0..=1.
fn check_fraction(fraction: f64) -> Result<()> {
    if (0.0..=1.0).contains(&fraction) {
        return Ok(());
    }
    crate::error::data_error(
        eddy_proto::ErrorCode::OutOfRange,
        format!("percentile value {fraction} is not between 0 and 1"),
    )
}

/// What to compute from the sorted values.
#[derive(Debug, Clone, Copy)]
enum Compute {
    Mode,
    PercentileDisc(Option<f64>),
    PercentileCont(Option<f64>),
}

#[derive(Debug)]
struct OrderedSetAccumulator {
    compute: Compute,
    descending: bool,
    values: Values,
}

impl OrderedSetAccumulator {
    fn sort_options(&self) -> SortOptions {
        SortOptions {
            descending: self.descending,
            nulls_first: false,
        }
    }
}

impl Accumulator for OrderedSetAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values.first() {
            Some(values) => self.values.push(values),
            None => exec_err!("ordered-set aggregate called without its ordered value"),
        }
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(lists) = states.first().and_then(|s| s.as_list_opt::<i32>()) else {
            return exec_err!("ordered-set aggregate state must be a list of values");
        };
        for row in 0..lists.len() {
            if lists.is_valid(row) {
                self.values.push(&lists.value(row))?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values = self.values.all()?;
        let list = ListArray::new(
            Arc::new(Field::new_list_field(values.data_type().clone(), true)),
            OffsetBuffer::from_lengths([values.len()]),
            values,
            None,
        );
        Ok(vec![ScalarValue::List(Arc::new(list))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let values = self.values.all()?;
        if values.is_empty() {
            return ScalarValue::try_from(values.data_type());
        }
        let options = self.sort_options();
        match self.compute {
            Compute::Mode => mode(&values, options),
            Compute::PercentileDisc(None) | Compute::PercentileCont(None) => {
                ScalarValue::try_from(values.data_type())
            }
            Compute::PercentileDisc(Some(f)) => percentile_disc(&values, f, options),
            Compute::PercentileCont(Some(f)) => percentile_cont(&values, f, self.descending),
        }
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.values.size()
    }
}

/// The most frequent value; among equally frequent ones the first in the sort order, as
/// PostgreSQL picks. `values` is non-empty and has no NULLs.
fn mode(values: &ArrayRef, options: SortOptions) -> Result<ScalarValue> {
    let sorted = sort(values, Some(options))?;
    let runs = partition(&[Arc::clone(&sorted)])?.ranges();
    let mut best = 0..0;
    for run in runs {
        // Strictly longer only, so the earliest of equally long runs stays.
        if run.len() > best.len() {
            best = run;
        }
    }
    ScalarValue::try_from_array(&sorted, best.start)
}

/// PostgreSQL's `percentile_disc`: the first value in the sort order whose position
/// (1-based row / row count) reaches `fraction`. `values` is non-empty and has no NULLs.
fn percentile_disc(values: &ArrayRef, fraction: f64, options: SortOptions) -> Result<ScalarValue> {
    check_fraction(fraction)?;
    let rows = values.len();
    // PostgreSQL's rownum = ceil(fraction * rows), at least 1; `rows` is far below 2^52, so
    // the float product is exact enough and within 0..=rows.
    let position = ((fraction * rows as f64).ceil() as usize).clamp(1, rows);
    let index = position - 1;
    // Only the first `position` values need to be in order.
    let order = sort_to_indices(values, Some(options), Some(position))?;
    if order.len() <= index {
        return exec_err!(
            "percentile_disc: sorting {rows} values gave {} positions, needed {position}",
            order.len()
        );
    }
    ScalarValue::try_from_array(values, order.value(index) as usize)
}

/// PostgreSQL's `percentile_cont`: at position `fraction * (rows - 1)` in the sort order
/// (0-based), the value there, or between the two values around it in proportion.
/// `values` is a non-empty Float64 array without NULLs. Floats order totally (NaN last),
/// and only the one or two values needed are selected, not the whole input sorted.
fn percentile_cont(values: &ArrayRef, fraction: f64, descending: bool) -> Result<ScalarValue> {
    check_fraction(fraction)?;
    let Some(floats) = values.as_primitive_opt::<Float64Type>() else {
        return exec_err!(
            "percentile_cont: values must be float8, got {}",
            values.data_type()
        );
    };
    let mut v: Vec<f64> = floats.values().to_vec();
    let order = |a: &f64, b: &f64| match descending {
        true => b.total_cmp(a),
        false => a.total_cmp(b),
    };
    let position = fraction * (v.len() - 1) as f64;
    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
    let (_, first, rest) = v.select_nth_unstable_by(lo, order);
    let first = *first;
    if hi == lo {
        return Ok(ScalarValue::Float64(Some(first)));
    }
    // The value right after `first` in the order is the least of those after it.
    let Some(second) = rest.iter().copied().min_by(order) else {
        return exec_err!(
            "percentile_cont: no value after position {lo} of {}",
            floats.len()
        );
    };
    Ok(ScalarValue::Float64(Some(
        first + (second - first) * (position - lo as f64),
    )))
}

/// Chunks at most this many arrays uncompacted, so per-group updates of a few rows each do
/// not leave thousands of tiny arrays behind.
const MAX_PENDING: usize = 32;

/// The non-NULL values collected so far, as arrays: the compacted chunks `arrays[..pending]`
/// followed by up to [`MAX_PENDING`] arrays as they arrived. Updates copy each value into
/// a chunk at most once; [`Values::all`] joins the chunks when the state or result is due.
#[derive(Debug)]
struct Values {
    data_type: DataType,
    arrays: Vec<ArrayRef>,
    pending: usize,
    /// The arrays' memory, counting only what slices refer to: the groups accumulator
    /// adapter hands each group a slice of one shared array, which the groups' sizes then
    /// add up to rather than each counting whole.
    bytes: usize,
}

impl Values {
    fn new(data_type: DataType) -> Self {
        Self {
            data_type,
            arrays: Vec::new(),
            pending: 0,
            bytes: 0,
        }
    }

    /// Adds the non-NULL values of `array`.
    fn push(&mut self, array: &ArrayRef) -> Result<()> {
        let nulls = array.logical_null_count();
        if nulls == array.len() {
            return Ok(());
        }
        let array = if nulls == 0 {
            Arc::clone(array)
        } else {
            filter(array, &is_not_null(array)?)?
        };
        self.bytes += memory(&array);
        self.arrays.push(array);
        if self.arrays.len() - self.pending > MAX_PENDING {
            self.compact(self.pending)?;
        }
        Ok(())
    }

    /// Concatenates `arrays[from..]` into one chunk, which ends the compacted ones.
    fn compact(&mut self, from: usize) -> Result<()> {
        if self.arrays.len() - from > 1 {
            let tail = self.arrays.split_off(from);
            let parts: Vec<&dyn Array> = tail.iter().map(|a| a.as_ref()).collect();
            let chunk = concat(&parts)?;
            self.bytes = self
                .bytes
                .saturating_sub(tail.iter().map(memory).sum::<usize>());
            self.bytes += memory(&chunk);
            self.arrays.push(chunk);
        }
        self.pending = self.arrays.len();
        Ok(())
    }

    /// All values as one array, which then also replaces the chunks.
    fn all(&mut self) -> Result<ArrayRef> {
        self.compact(0)?;
        Ok(match self.arrays.first() {
            Some(array) => Arc::clone(array),
            None => new_empty_array(&self.data_type),
        })
    }

    fn size(&self) -> usize {
        self.bytes + self.arrays.capacity() * size_of::<ArrayRef>()
    }
}

/// The memory `array` refers to (its slice of shared buffers, not the whole buffers).
fn memory(array: &ArrayRef) -> usize {
    let data = array.to_data();
    data.get_slice_memory_size()
        .unwrap_or_else(|_| data.get_array_memory_size())
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::util::display::array_value_to_string;
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    fn context(partitions: usize) -> SessionContext {
        let ctx = SessionContext::new_with_config(
            SessionConfig::new().with_target_partitions(partitions),
        );
        for udaf in udafs() {
            ctx.register_udaf(udaf);
        }
        ctx
    }

    /// Runs `sql` and returns the result as a pretty table, one line per row.
    async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<String>> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(pretty_format_batches(&batches)?
            .to_string()
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// The single value `sql` returns, as text ("NULL" for NULL).
    async fn single(ctx: &SessionContext, sql: &str) -> Result<String> {
        let batches = ctx.sql(sql).await?.collect().await?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 1, "{sql}");
        let batch = batches
            .iter()
            .find(|b| b.num_rows() == 1)
            .expect("one batch holds the row");
        let column = batch.column(0);
        Ok(if column.is_null(0) {
            "NULL".to_string()
        } else {
            array_value_to_string(column, 0)?
        })
    }

    const ONE_TO_FOUR: &str = "(VALUES (1), (2), (3), (4)) AS t(x)";

    #[tokio::test]
    async fn mode_of_text_takes_smallest_of_ties() -> Result<()> {
        let ctx = context(1);
        let sql = "SELECT mode() WITHIN GROUP (ORDER BY s) FROM \
                   (VALUES ('pear'), ('apple'), ('pear'), ('fig'), ('apple'), (NULL), (NULL), (NULL)) AS t(s)";
        assert_eq!(single(&ctx, sql).await?, "apple");
        Ok(())
    }

    #[tokio::test]
    async fn mode_descending_takes_largest_of_ties() -> Result<()> {
        let ctx = context(1);
        let sql = "SELECT mode() WITHIN GROUP (ORDER BY s DESC) FROM \
                   (VALUES ('pear'), ('apple'), ('pear'), ('fig'), ('apple')) AS t(s)";
        assert_eq!(single(&ctx, sql).await?, "pear");
        Ok(())
    }

    #[tokio::test]
    async fn mode_of_other_types() -> Result<()> {
        let ctx = context(1);
        for (values, expected) in [
            ("(3), (1), (3), (2)", "3"),
            ("(1.5), (2.5), (2.5)", "2.5"),
            ("(true), (false), (true)", "true"),
            (
                "(DATE '2024-01-02'), (DATE '2024-01-01'), (DATE '2024-01-02')",
                "2024-01-02",
            ),
            (
                "(TIMESTAMP '2024-01-01 10:00:00'), (TIMESTAMP '2024-01-01 09:00:00')",
                "2024-01-01T09:00:00",
            ),
        ] {
            let sql =
                format!("SELECT mode() WITHIN GROUP (ORDER BY v) FROM (VALUES {values}) AS t(v)");
            assert_eq!(single(&ctx, &sql).await?, expected, "{sql}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn mode_with_group_by() -> Result<()> {
        let ctx = context(1);
        let sql = "SELECT g, mode() WITHIN GROUP (ORDER BY v) AS m FROM \
                   (VALUES ('a', 1), ('a', 2), ('a', 2), ('b', 5), ('b', 4), ('c', NULL), ('d', 7)) AS t(g, v) \
                   GROUP BY g ORDER BY g";
        assert_eq!(
            run(&ctx, sql).await?,
            [
                "+---+---+",
                "| g | m |",
                "+---+---+",
                "| a | 2 |",
                "| b | 4 |",
                "| c |   |",
                "| d | 7 |",
                "+---+---+",
            ]
        );
        Ok(())
    }

    #[tokio::test]
    async fn mode_of_nothing_is_null() -> Result<()> {
        let ctx = context(1);
        let sql = format!("SELECT mode() WITHIN GROUP (ORDER BY x) FROM {ONE_TO_FOUR} WHERE x > 9");
        assert_eq!(single(&ctx, &sql).await?, "NULL");
        Ok(())
    }

    #[tokio::test]
    async fn percentile_cont_interpolates_as_postgres() -> Result<()> {
        // PostgreSQL 15's answers.
        let ctx = context(1);
        let prices = "(VALUES (117.25), (117.5), (100.0), (117.25), (101.0), (117.5), \
                      (90.0), (117.25), (117.5), (NULL), (110.0)) AS t(p)";
        for (f, order, expected) in [
            ("0.9", "", "117.5"),
            ("0.5", "", "117.25"),
            ("0.85", "", "117.5"),
            ("0.15", " DESC", "117.5"),
            ("0", "", "90.0"),
            ("1", "", "117.5"),
            ("0.25", "", "103.25"),
            ("0.3", "", "107.3"),
            ("0.7", " DESC", "107.3"),
        ] {
            let sql = format!(
                "SELECT percentile_cont({f}) WITHIN GROUP (ORDER BY p{order}) FROM {prices}"
            );
            assert_eq!(single(&ctx, &sql).await?, expected, "{sql}");
        }
        let ints = "SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY x) FROM \
                    (VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9), (10)) AS t(x)";
        assert_eq!(single(&ctx, ints).await?, "9.1");
        let err = ctx
            .sql(&format!(
                "SELECT percentile_cont(1.5) WITHIN GROUP (ORDER BY p) FROM {prices}"
            ))
            .await?
            .collect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not between 0 and 1"), "{err}");
        Ok(())
    }

    #[tokio::test]
    async fn percentile_disc_follows_postgres() -> Result<()> {
        let ctx = context(1);
        for (fraction, expected) in [
            ("0.5", "2"),
            ("0", "1"),
            ("0.0", "1"),
            ("0.25", "1"),
            ("0.26", "2"),
            ("0.75", "3"),
            ("1", "4"),
            ("1.0", "4"),
        ] {
            let sql = format!(
                "SELECT percentile_disc({fraction}) WITHIN GROUP (ORDER BY x) FROM {ONE_TO_FOUR}"
            );
            assert_eq!(single(&ctx, &sql).await?, expected, "{sql}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn percentile_disc_ignores_nulls() -> Result<()> {
        let ctx = context(1);
        let sql = "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY x) FROM \
                   (VALUES (NULL), (4), (NULL), (1), (3), (2), (NULL)) AS t(x)";
        assert_eq!(single(&ctx, sql).await?, "2");
        Ok(())
    }

    #[tokio::test]
    async fn percentile_disc_descending() -> Result<()> {
        let ctx = context(1);
        let sql = format!(
            "SELECT percentile_disc(0.25) WITHIN GROUP (ORDER BY x DESC) FROM {ONE_TO_FOUR}"
        );
        assert_eq!(single(&ctx, &sql).await?, "4");
        let sql = format!(
            "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY x DESC) FROM {ONE_TO_FOUR}"
        );
        assert_eq!(single(&ctx, &sql).await?, "3");
        Ok(())
    }

    #[tokio::test]
    async fn percentile_disc_of_text_and_empty_input() -> Result<()> {
        let ctx = context(1);
        let sql = "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY s) FROM \
                   (VALUES ('c'), ('a'), ('b')) AS t(s)";
        assert_eq!(single(&ctx, sql).await?, "b");
        let sql = format!(
            "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY x) FROM {ONE_TO_FOUR} WHERE x > 9"
        );
        assert_eq!(single(&ctx, &sql).await?, "NULL");
        let sql =
            format!("SELECT percentile_disc(NULL) WITHIN GROUP (ORDER BY x) FROM {ONE_TO_FOUR}");
        assert_eq!(single(&ctx, &sql).await?, "NULL");
        Ok(())
    }

    #[tokio::test]
    async fn percentile_disc_out_of_range_fails() -> Result<()> {
        let ctx = context(1);
        for fraction in ["1.5", "-0.1"] {
            let sql = format!(
                "SELECT percentile_disc({fraction}) WITHIN GROUP (ORDER BY x) FROM {ONE_TO_FOUR}"
            );
            let err = single(&ctx, &sql).await.expect_err(&sql).to_string();
            assert!(
                err.contains(&format!(
                    "percentile value {fraction} is not between 0 and 1"
                )),
                "{err}"
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn percentile_disc_fraction_must_be_constant() -> Result<()> {
        let ctx = context(1);
        let sql = "SELECT percentile_disc(f) WITHIN GROUP (ORDER BY x) FROM \
                   (VALUES (1, 0.5), (2, 0.5)) AS t(x, f)";
        let err = single(&ctx, sql).await.expect_err(sql).to_string();
        assert!(err.contains("must be a constant"), "{err}");
        Ok(())
    }

    /// Four partitions of two batches each, grouped: partial aggregates on each partition
    /// and `merge_batch` in the final one.
    #[tokio::test]
    async fn several_partitions_with_group_by() -> Result<()> {
        let ctx = context(4);
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Utf8, false),
            Field::new("x", DataType::Int64, true),
            Field::new("y", DataType::Float64, true),
        ]));
        // Group "a" holds 1..=100 with 7 repeated, "b" holds 1..=50 with 3 and 40 repeated
        // equally often; rows are spread round-robin over partitions and batches.
        let mut rows: Vec<(&str, Option<i64>)> = Vec::new();
        rows.extend((1..=100).map(|x| ("a", Some(x))));
        rows.extend([("a", Some(7)), ("a", Some(7)), ("a", None)]);
        rows.extend((1..=50).map(|x| ("b", Some(x))));
        rows.extend([("b", Some(40)), ("b", Some(3)), ("b", None)]);
        let mut partitions = vec![Vec::new(); 4];
        for (p, partition) in partitions.iter_mut().enumerate() {
            for b in 0..2 {
                let chunk: Vec<_> = rows
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % 8 == p * 2 + b)
                    .map(|(_, r)| *r)
                    .collect();
                let g = StringArray::from_iter_values(chunk.iter().map(|r| r.0));
                let x = Int64Array::from_iter(chunk.iter().map(|r| r.1));
                let y = Float64Array::from_iter(chunk.iter().map(|r| r.1.map(|v| v as f64)));
                partition.push(RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(g), Arc::new(x), Arc::new(y)],
                )?);
            }
        }
        ctx.register_table("t", Arc::new(MemTable::try_new(schema, partitions)?))?;
        let sql = "SELECT g, \
                     mode() WITHIN GROUP (ORDER BY x) AS m, \
                     mode() WITHIN GROUP (ORDER BY x DESC) AS m_desc, \
                     percentile_disc(0.5) WITHIN GROUP (ORDER BY x) AS p50, \
                     percentile_disc(0.9) WITHIN GROUP (ORDER BY y DESC) AS p90_desc, \
                     percentile_cont(0.9) WITHIN GROUP (ORDER BY x) AS c90, \
                     percentile_cont(0.25) WITHIN GROUP (ORDER BY y DESC) AS c25_desc, \
                     count(x) AS n \
                   FROM t GROUP BY g ORDER BY g";
        // a: 102 values, 1..=100 plus 7, 7: the 51st is 49. Descending, the 92nd is 9.
        // b: 52 values, 1..=50 plus 3, 40: the 26th is 25. Descending, the 47th is 5.
        // The percentile_cont columns are PostgreSQL 15's answers.
        assert_eq!(
            run(&ctx, sql).await?,
            [
                "+---+---+--------+-----+----------+------+----------+-----+",
                "| g | m | m_desc | p50 | p90_desc | c90  | c25_desc | n   |",
                "+---+---+--------+-----+----------+------+----------+-----+",
                "| a | 7 | 7      | 49  | 9.0      | 89.9 | 74.75    | 102 |",
                "| b | 3 | 40     | 25  | 5.0      | 44.9 | 38.25    | 52  |",
                "+---+---+--------+-----+----------+------+----------+-----+",
            ]
        );
        // Without GROUP BY: one partial aggregate per partition, merged into one.
        // 154 values: 1..=50 twice, 51..=100 once, 7 twice more, 3 and 40 once more.
        let sql = "SELECT mode() WITHIN GROUP (ORDER BY x) AS m, \
                     percentile_disc(0.5) WITHIN GROUP (ORDER BY x) AS p50 FROM t";
        assert_eq!(
            run(&ctx, sql).await?,
            [
                "+---+-----+",
                "| m | p50 |",
                "+---+-----+",
                "| 7 | 37  |",
                "+---+-----+",
            ]
        );
        Ok(())
    }

    /// Many updates of a few rows each: compaction keeps every value.
    #[test]
    fn compaction_keeps_values() -> Result<()> {
        let mut values = Values::new(DataType::Int64);
        for i in 0..1000_i64 {
            let array: ArrayRef = Arc::new(Int64Array::from(vec![Some(i), None]));
            values.push(&array)?;
            assert!(values.arrays.len() <= 1000 / MAX_PENDING + MAX_PENDING + 1);
        }
        let all = values.all()?;
        assert_eq!(all.len(), 1000);
        assert_eq!(all.null_count(), 0);
        assert_eq!(values.arrays.len(), 1);
        assert!(values.size() >= 1000 * size_of::<i64>());
        Ok(())
    }
}
