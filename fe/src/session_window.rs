//! `SESSION(table, key, ts, INTERVAL 'gap')`: the table's rows, each with the start and
//! end (first and last event time) of its session: the maximal run of the key's events in
//! which consecutive events are at most `gap` apart. Rows with a NULL key or time belong
//! to no session and are left out.
//!
//! It is a view over the table built from window functions, so any query can use it, and
//! a materialized view `... FROM SESSION(events, user_id, ts, INTERVAL '30 minutes')`
//! equals the same query run here:
//!
//! ```text
//! new_session = ts - lag(ts) OVER (PARTITION BY key ORDER BY ts) > gap   (or no previous)
//! session_no  = sum(new_session) OVER (PARTITION BY key ORDER BY ts ROWS UNBOUNDED PRECEDING)
//! start, end  = min(ts), max(ts) OVER (PARTITION BY key, session_no)
//! ```

use std::sync::Arc;

use datafusion::catalog::TableFunctionImpl;
use datafusion::common::ScalarValue;
use datafusion::datasource::{provider_as_source, TableProvider, ViewTable};
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::{min_max::max_udaf, min_max::min_udaf, sum::sum_udaf};
use datafusion::functions_window::lead_lag::lag_udwf;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    cast, col, lit, when, Expr, ExprFunctionExt, LogicalPlanBuilder, WindowFrame, WindowFrameBound,
    WindowFrameUnits,
};
use eddy_proto::BeService;

use crate::provider::EddyTable;

/// The name `FROM SESSION(...)` calls.
pub const SESSION_FUNCTION: &str = "session";

#[derive(Debug)]
pub struct SessionFunction {
    pub be: Arc<dyn BeService>,
}

fn plan_err(m: String) -> DataFusionError {
    DataFusionError::Plan(m)
}

fn gap_micros(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => crate::rollup_rewrite::interval_micros(v),
        Expr::Cast(c) => gap_micros(&c.expr),
        _ => None,
    }
}

fn window(
    f: impl Into<datafusion::logical_expr::expr::WindowFunctionDefinition>,
    args: Vec<Expr>,
) -> Expr {
    Expr::from(WindowFunction::new(f, args))
}

impl TableFunctionImpl for SessionFunction {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let usage = "SESSION(table, key_column, time_column, INTERVAL 'gap')";
        let name = |e: &Expr| match e {
            Expr::Column(c) => Some(c.name.clone()),
            _ => None,
        };
        let [t, k, ts, gap] = args else {
            return Err(plan_err(format!(
                "{usage} takes 4 arguments, not {}",
                args.len()
            )));
        };
        let (Some(table), Some(key), Some(time)) = (name(t), name(k), name(ts)) else {
            return Err(plan_err(format!(
                "{usage}: table, key and time must be plain names"
            )));
        };
        let gap = gap_micros(gap).filter(|g| *g > 0).ok_or_else(|| {
            plan_err(format!(
                "{usage}: the gap must be a positive fixed interval such as INTERVAL '30 minutes'"
            ))
        })?;
        let def = self
            .be
            .table(&table)
            .ok_or_else(|| plan_err(format!("table \"{table}\" not found")))?;
        let schema = crate::catalog::nullable(&def.arrow_schema());
        for c in [&key, &time] {
            if schema.field_with_name(c).is_err() {
                return Err(plan_err(format!(
                    "SESSION(): column \"{c}\" not found in \"{table}\""
                )));
            }
        }
        let provider = Arc::new(EddyTable {
            be: Arc::clone(&self.be),
            name: table.clone(),
            schema: Arc::clone(&schema),
            view: false,
            key: vec![],
        });
        let (kc, tc) = (col(key.as_str()), col(time.as_str()));
        let micros = |e: Expr| cast(e, arrow::datatypes::DataType::Int64);
        let prev = window(lag_udwf(), vec![tc.clone()])
            .partition_by(vec![kc.clone()])
            .order_by(vec![tc.clone().sort(true, false)])
            .build()?
            .alias("__prev");
        let new_session = when(col("__prev").is_null(), lit(1i64))
            .when(
                (micros(tc.clone()) - micros(col("__prev"))).gt(lit(gap)),
                lit(1i64),
            )
            .otherwise(lit(0i64))?
            .alias("__new");
        let running = WindowFrame::new_bounds(
            WindowFrameUnits::Rows,
            WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
            WindowFrameBound::CurrentRow,
        );
        let session_no = window(sum_udaf(), vec![col("__new")])
            .partition_by(vec![kc.clone()])
            .order_by(vec![tc.clone().sort(true, false)])
            .window_frame(running)
            .build()?
            .alias("__session");
        let bound = |f| -> Result<Expr> {
            window(f, vec![tc.clone()])
                .partition_by(vec![kc.clone(), col("__session")])
                .build()
        };
        let original: Vec<Expr> = schema
            .fields()
            .iter()
            .map(|f| col(f.name().as_str()))
            .collect();
        let mut with_new = original.clone();
        with_new.push(new_session);
        let mut with_session = original.clone();
        with_session.push(col("__session"));
        let plan = LogicalPlanBuilder::scan(table.as_str(), provider_as_source(provider), None)?
            .filter(kc.clone().is_not_null().and(tc.clone().is_not_null()))?
            .window(vec![prev])?
            .project(with_new)?
            .window(vec![session_no])?
            .project(with_session)?
            .window(vec![
                bound(min_udaf())?.alias("session_start"),
                bound(max_udaf())?.alias("session_end"),
            ])?
            .project(
                original
                    .iter()
                    .cloned()
                    .chain([col("session_start"), col("session_end")])
                    .collect::<Vec<_>>(),
            )?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}
