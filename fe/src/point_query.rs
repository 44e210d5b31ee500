//! Prepared point queries answered from the primary-key index, without DataFusion.
//!
//! `SELECT * FROM t WHERE id = $1` prepared once and run many times (a pool of psycopg,
//! pgJDBC or asyncpg clients looking rows up by key) reads one row, yet binding the
//! parameter into the plan, planning the scan and running DataFusion's operators cost
//! several times the lookup itself. Doris answers such statements on a short-circuit
//! path; so does eddy: when a prepared statement's optimized plan is one scan of a
//! primary-key table whose only filters pin every key column to a parameter or literal
//! (`key = $n`, of the column's own type), projected to plain columns, each run asks the
//! BE for that key's row and hands the result on as it is.
//!
//! The answer is the one DataFusion gives: the BE's key lookup returns exactly the live
//! rows holding the key (which is why the provider reports such filters exact, see
//! [`crate::key_filter`]), the projection picks columns, a NULL parameter matches no row,
//! and `LIMIT` keeps the first rows. Whenever a run cannot be answered this way (a
//! parameter of another type, a BE that did not use the index), it says so and the
//! statement runs through DataFusion as before.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection, TableScan};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use eddy_proto::{BeService, Predicate, PredicateOp, Result, ScanRequest};
use futures::{stream, TryStreamExt};

use crate::provider::{scalar_of, EddyTable};

/// How a prepared point query runs (see the module documentation).
pub struct PointPlan {
    be: Arc<dyn BeService>,
    table: String,
    /// The columns the BE reads.
    read: Vec<String>,
    /// For each key column, where its value comes from.
    keys: Vec<(String, KeyValue)>,
    /// Output column `i` is column `output[i]` of what the BE reads.
    output: Vec<usize>,
    schema: SchemaRef,
    fetch: Option<usize>,
}

enum KeyValue {
    /// The parameter at this position (`$1` is 0).
    Param(usize),
    Literal(ScalarValue),
}

impl std::fmt::Debug for PointPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointPlan")
            .field("table", &self.table)
            .field("read", &self.read)
            .field("output", &self.output)
            .finish()
    }
}

impl PointPlan {
    /// The point plan of an optimized plan, when it has the shape this module answers.
    pub fn of(plan: &LogicalPlan) -> Option<Self> {
        // Output columns as indices into the scan's output, and the output schema.
        let (columns, scan) = match plan {
            LogicalPlan::TableScan(scan) => {
                ((0..scan.projected_schema.fields().len()).collect(), scan)
            }
            LogicalPlan::Projection(Projection { expr, input, .. }) => {
                let LogicalPlan::TableScan(scan) = input.as_ref() else {
                    return None;
                };
                let columns = expr
                    .iter()
                    .map(|e| match e.clone().unalias() {
                        Expr::Column(c) => scan.projected_schema.index_of_column(&c).ok(),
                        _ => None,
                    })
                    .collect::<Option<Vec<usize>>>()?;
                (columns, scan)
            }
            _ => return None,
        };
        let TableScan {
            source,
            projection,
            projected_schema,
            filters,
            fetch,
            statistics_requests,
            ..
        } = scan;
        if !statistics_requests.is_empty() {
            return None;
        }
        let provider = source_as_provider(source).ok()?;
        let any: &dyn std::any::Any = provider.as_ref();
        let table = any.downcast_ref::<EddyTable>()?;
        if table.view || table.key.is_empty() || filters.len() != table.key.len() {
            return None;
        }
        let mut keys: Vec<(String, KeyValue)> = Vec::with_capacity(filters.len());
        for f in filters {
            let (column, value) = key_equality(table, f)?;
            if keys.iter().any(|(c, _)| c == column) {
                return None;
            }
            keys.push((column.to_string(), value));
        }
        let read: Vec<String> = match projection {
            Some(p) => p
                .iter()
                .map(|i| table.schema.field(*i).name().clone())
                .collect(),
            None => table
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
        };
        let schema = Arc::clone(plan.schema().inner());
        // The BE reads the table's types; the plan must expect the same.
        let same_types = columns.iter().zip(schema.fields()).all(|(i, f)| {
            projected_schema.field(*i).data_type() == f.data_type()
                && table
                    .schema
                    .field_with_name(&read[*i])
                    .is_ok_and(|t| t.data_type() == f.data_type())
        });
        if !same_types {
            return None;
        }
        Some(Self {
            be: Arc::clone(&table.be),
            table: table.name.clone(),
            read,
            keys,
            output: columns,
            schema,
            fetch: *fetch,
        })
    }

    /// The result of one run with `params`, or `None` when this run needs DataFusion.
    pub async fn run(
        &self,
        params: Option<&ParamValues>,
    ) -> Result<Option<SendableRecordBatchStream>> {
        let mut predicates = Vec::with_capacity(self.keys.len());
        let mut matches_nothing = self.fetch == Some(0);
        for (column, value) in &self.keys {
            let v = match value {
                KeyValue::Literal(v) => v,
                KeyValue::Param(i) => match params {
                    Some(ParamValues::List(list)) => match list.get(*i) {
                        Some(p) => &p.value,
                        None => return Ok(None),
                    },
                    _ => return Ok(None),
                },
            };
            // `key = NULL` is never true.
            if v.is_null() {
                matches_nothing = true;
                continue;
            }
            let Some(scalar) = scalar_of(v) else {
                return Ok(None);
            };
            predicates.push(Predicate {
                column: column.clone(),
                op: PredicateOp::Eq,
                values: vec![scalar],
            });
        }
        if matches_nothing {
            crate::metrics::POINT_QUERIES.inc();
            return Ok(Some(self.stream(vec![])));
        }
        let snapshot = self
            .be
            .scan(ScanRequest {
                table: self.table.clone(),
                projection: Some(self.read.clone()),
                predicates,
                limit: None,
                target_partitions: 1,
            })
            .await?;
        if snapshot.stats().key_lookup_rows.is_none() {
            return Ok(None);
        }
        let mut batches = Vec::new();
        let mut left = self.fetch.unwrap_or(usize::MAX);
        for p in 0..snapshot.partitions() {
            let found: Vec<RecordBatch> = snapshot.execute(p)?.try_collect().await?;
            for b in found {
                if left == 0 {
                    break;
                }
                let b = b.slice(0, b.num_rows().min(left));
                left -= b.num_rows();
                let columns = self
                    .output
                    .iter()
                    .map(|i| Arc::clone(b.column(*i)))
                    .collect();
                let out = RecordBatch::try_new(Arc::clone(&self.schema), columns);
                match out {
                    Ok(o) => batches.push(o),
                    // A type or nullability the plan did not expect: let DataFusion say.
                    Err(_) => return Ok(None),
                }
            }
        }
        crate::metrics::POINT_QUERIES.inc();
        Ok(Some(self.stream(batches)))
    }

    fn stream(&self, batches: Vec<RecordBatch>) -> SendableRecordBatchStream {
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream::iter(batches.into_iter().map(Ok)),
        ))
    }
}

/// A keyed equality (see [`crate::key_filter::key_equality`]) and where its value comes from.
fn key_equality<'a>(table: &EddyTable, e: &'a Expr) -> Option<(&'a str, KeyValue)> {
    let (column, value) = crate::key_filter::key_equality(&table.key, &table.schema, e)?;
    let value = match value {
        Expr::Placeholder(p) => {
            let i: usize = p.id.strip_prefix('$')?.parse().ok()?;
            KeyValue::Param(i.checked_sub(1)?)
        }
        Expr::Literal(v, _) => KeyValue::Literal(v.clone()),
        _ => return None,
    };
    Some((column, value))
}
