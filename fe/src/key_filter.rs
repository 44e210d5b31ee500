//! Primary-key equalities a key lookup answers exactly, so DataFusion drops their filter.
//!
//! `SELECT * FROM t WHERE id = $1` on a table keyed by `id` reads one row from the
//! primary-key index ([`eddy_proto::ScanStats::key_lookup_rows`]); filtering that row again
//! costs little, but planning the filter (its statistics and interval analysis) costs more
//! than the lookup. So when a filter's equalities pin every key column, the provider
//! reports them [`TableProviderFilterPushDown::Exact`] and DataFusion plans no filter for
//! them.
//!
//! Exact is a promise the scan keeps whatever the BE decides: a filter is *keyed* when it
//! is `key = value` or `key IN (values)` with values of the column's own type, and a scan
//! with keyed filters checks that the BE answered with a lookup that applied each of them
//! (one per key column); otherwise it filters the rows itself ([`guard`]). Whether a
//! filter is keyed depends only on its shape, never on its values, so the set the scan
//! guards always contains every filter reported exact, even when the plan was optimized
//! with placeholders and a parameter turns out NULL.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

/// Whether `v` is a literal or a typed placeholder of the key column `c`'s own type, of
/// a type the lookup takes as it is.
fn of_key_type(schema: &Schema, c: &str, v: &Expr) -> bool {
    let Ok(field) = schema.field_with_name(c) else {
        return false;
    };
    let ty = field.data_type();
    exact_type(ty)
        && match v {
            Expr::Literal(s, _) => &s.data_type() == ty,
            Expr::Placeholder(p) => p.field.as_ref().is_some_and(|f| f.data_type() == ty),
            _ => false,
        }
}

/// The key column `key = value` (either way round) pins and its value, when the value is
/// of the column's own type (see [`of_key_type`]).
pub(crate) fn key_equality<'a>(
    key: &[String],
    schema: &Schema,
    e: &'a Expr,
) -> Option<(&'a str, &'a Expr)> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = e
    else {
        return None;
    };
    let column = |e: &'a Expr| match e {
        Expr::Column(c) if key.iter().any(|k| k == &c.name) => Some(c.name.as_str()),
        _ => None,
    };
    match (column(left), column(right)) {
        (Some(c), _) if of_key_type(schema, c, right) => Some((c, right.as_ref())),
        (_, Some(c)) if of_key_type(schema, c, left) => Some((c, left.as_ref())),
        _ => None,
    }
}

/// The key column a keyed filter pins, or `None` if the filter is not keyed.
fn keyed_column<'a>(key: &[String], schema: &Schema, e: &'a Expr) -> Option<&'a str> {
    if let Some((c, _)) = key_equality(key, schema, e) {
        return Some(c);
    }
    match e {
        Expr::InList(l) if !l.negated => {
            let c = match l.expr.as_ref() {
                Expr::Column(c) if key.iter().any(|k| k == &c.name) => c.name.as_str(),
                _ => return None,
            };
            l.list
                .iter()
                .all(|v| of_key_type(schema, c, v))
                .then_some(c)
        }
        _ => None,
    }
}

/// Key types whose values reach the BE's lookup without conversion.
fn exact_type(ty: &DataType) -> bool {
    ty.is_integer()
        || matches!(
            ty,
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Boolean
                | DataType::Date32
                | DataType::Timestamp(TimeUnit::Microsecond, _)
        )
}

/// How `filters` push down to a table keyed by `key`: exact for the keyed ones when they
/// pin every key column once, inexact (pruning only) otherwise.
pub fn pushdown(
    key: &[String],
    schema: &Schema,
    filters: &[&Expr],
) -> Vec<TableProviderFilterPushDown> {
    let inexact = vec![TableProviderFilterPushDown::Inexact; filters.len()];
    if key.is_empty() {
        return inexact;
    }
    let keyed: Vec<Option<&str>> = filters
        .iter()
        .map(|f| keyed_column(key, schema, f))
        .collect();
    if !pins_each_once(key, keyed.iter().flatten().copied()) {
        return inexact;
    }
    keyed
        .iter()
        .map(|k| match k {
            Some(_) => TableProviderFilterPushDown::Exact,
            None => TableProviderFilterPushDown::Inexact,
        })
        .collect()
}

/// Whether the columns name every key column exactly once.
fn pins_each_once<'a>(key: &[String], columns: impl Iterator<Item = &'a str>) -> bool {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for c in columns {
        *seen.entry(c).or_default() += 1;
    }
    key.iter().all(|k| seen.get(k.as_str()).copied() == Some(1)) && seen.len() == key.len()
}

/// What a scan with keyed filters must read and check.
pub struct Guard {
    keyed: Vec<Expr>,
    /// The columns the query asked for, as indices into the table.
    projection: Option<Vec<usize>>,
    /// The columns read: the projection plus the keyed filters' columns.
    pub read: Option<Vec<usize>>,
}

/// The guard of a scan, or `None` when none of its filters is keyed.
pub fn guard(
    key: &[String],
    schema: &Schema,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
) -> Option<Guard> {
    let keyed: Vec<Expr> = filters
        .iter()
        .filter(|f| keyed_column(key, schema, f).is_some())
        .cloned()
        .collect();
    if keyed.is_empty() {
        return None;
    }
    let read = projection.map(|p| {
        let mut read = p.clone();
        for f in &keyed {
            for c in f.column_refs() {
                if let Ok(i) = schema.index_of(&c.name) {
                    if !read.contains(&i) {
                        read.push(i);
                    }
                }
            }
        }
        read
    });
    Some(Guard {
        keyed,
        projection: projection.cloned(),
        read,
    })
}

impl Guard {
    /// The scan, filtered by the keyed filters unless the BE's lookup applied them all,
    /// then narrowed to the projection. `looked_up`: the BE answered from the key index.
    pub fn finish(
        self,
        key: &[String],
        table: &Schema,
        state: &dyn Session,
        scan: Arc<dyn ExecutionPlan>,
        looked_up: bool,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let applied = looked_up
            && pins_each_once(
                key,
                self.keyed
                    .iter()
                    .filter_map(|f| keyed_column(key, table, f)),
            );
        let scanned: SchemaRef = scan.schema();
        let mut plan = scan;
        if !applied {
            let predicate = conjunction(self.keyed).expect("guards hold keyed filters");
            let df_schema = DFSchema::try_from(Arc::clone(&scanned))?;
            let predicate = create_physical_expr(
                &predicate,
                &df_schema,
                state.execution_props(),
                &Default::default(),
            )?;
            plan = Arc::new(FilterExec::try_new(predicate, plan)?);
        }
        if let (Some(projection), Some(read)) = (&self.projection, &self.read) {
            if projection.len() < read.len() {
                let exprs = (0..projection.len()).map(|i| {
                    let name = scanned.field(i).name().clone();
                    let column: Arc<dyn datafusion::physical_expr::PhysicalExpr> = Arc::new(
                        datafusion::physical_expr::expressions::Column::new(&name, i),
                    );
                    (column, name)
                });
                plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;
    use datafusion::logical_expr::{col, lit, Expr};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, false),
            Field::new("v", DataType::Float64, true),
        ])
    }

    fn exact(key: &[&str], filters: &[Expr]) -> Vec<bool> {
        let key: Vec<String> = key.iter().map(|s| s.to_string()).collect();
        let refs: Vec<&Expr> = filters.iter().collect();
        pushdown(&key, &schema(), &refs)
            .into_iter()
            .map(|p| p == TableProviderFilterPushDown::Exact)
            .collect()
    }

    #[test]
    fn exact_only_when_every_key_column_is_pinned_once_by_its_own_type() {
        let a1 = col("a").eq(lit(1i64));
        assert_eq!(exact(&["a"], &[a1.clone()]), [true]);
        assert_eq!(
            exact(&["a"], &[a1.clone(), col("v").gt(lit(1.0))]),
            [true, false]
        );
        assert_eq!(
            exact(
                &["a"],
                &[col("a").in_list(vec![lit(1i64), lit(2i64)], false)]
            ),
            [true]
        );
        // A value of another type goes through a conversion the lookup does not make.
        assert_eq!(exact(&["a"], &[col("a").eq(lit(1i32))]), [false]);
        // Two equalities on one key column: the lookup would use one of them.
        assert_eq!(
            exact(&["a"], &[a1.clone(), col("a").eq(lit(2i64))]),
            [false, false]
        );
        // A composite key needs both columns.
        assert_eq!(exact(&["a", "b"], &[a1.clone()]), [false]);
        assert_eq!(
            exact(&["a", "b"], &[a1.clone(), col("b").eq(lit("x"))]),
            [true, true]
        );
        // No key, or a non-key column.
        assert_eq!(exact(&[], &[a1.clone()]), [false]);
        assert_eq!(exact(&["b"], &[a1]), [false]);
        assert_eq!(
            exact(&["v"], &[col("v").eq(lit(1.0))]),
            [false],
            "float keys"
        );
        assert_eq!(exact(&["a"], &[col("a").not_eq(lit(1i64))]), [false]);
    }

    #[test]
    fn guard_reads_the_filtered_columns_too() {
        let key = vec!["a".to_string()];
        let g = guard(&key, &schema(), Some(&vec![2]), &[col("a").eq(lit(1i64))]).unwrap();
        assert_eq!(g.read, Some(vec![2, 0]));
        assert!(guard(&key, &schema(), None, &[col("v").eq(lit(1.0))]).is_none());
    }
}
