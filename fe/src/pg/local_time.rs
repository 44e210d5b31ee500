//! `timestamptz` in the session's TimeZone, as PostgreSQL does it, for what DataFusion
//! does in UTC because eddy's `timestamptz` columns are `Timestamp(_, "UTC")`:
//!
//! - text read as `timestamptz` without an offset (`ts > '2026-01-01 00:00:00'`, an
//!   INSERT of such text into a timestamptz column) is local time in the session's
//!   zone; text with an offset or `Z` keeps it. DataFusion's type coercion casts the
//!   text to the column's type, which reads it as UTC; this rule casts it to the
//!   session's zone first (where Arrow reads it as local time), then to the column's.
//! - a `timestamptz` cast to `timestamp` is the local time in the session's zone (Arrow
//!   keeps the UTC wall time);
//! - `date_trunc(unit, timestamptz)` truncates in the session's zone (midnight, the
//!   first of the month ... in New York, not in UTC) and still returns the instant as
//!   a `timestamptz`.
//!
//! The session's zone reaches the rule as DataFusion's `execution.time_zone` option,
//! which the pgwire front end sets from `TimeZone` for each statement.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Cast, Expr, ExprSchemable, LogicalPlan, TryCast};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule described in the module documentation. It runs after DataFusion's
/// type coercion, which adds the casts it rewrites.
#[derive(Debug, Default)]
pub struct SessionTimeZone;

fn is_utc(zone: &str) -> bool {
    matches!(
        zone.to_ascii_uppercase().as_str(),
        "UTC" | "+00:00" | "Z" | "ETC/UTC" | "GMT" | "+00"
    )
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// `expr` (text) as a timestamp in `to`'s unit and zone, read as local time in `zone`.
fn text_in_zone(expr: Expr, to: &DataType, zone: &str) -> Option<Expr> {
    let DataType::Timestamp(unit, Some(tz)) = to else {
        return None;
    };
    if tz.as_ref() == zone {
        return None;
    }
    let local = DataType::Timestamp(*unit, Some(Arc::from(zone)));
    Some(Expr::Cast(Cast::new(
        Box::new(Expr::Cast(Cast::new(Box::new(expr), local))),
        to.clone(),
    )))
}

/// `expr` (a timestamp with a zone) as the local time in `zone`, in `to`'s unit: Arrow's
/// cast to a timestamp without zone keeps the UTC wall time.
fn local_time_in_zone(expr: &Expr, from: &DataType, to: &DataType, zone: &str) -> Option<Expr> {
    let (DataType::Timestamp(unit, Some(_)), DataType::Timestamp(_, None)) = (from, to) else {
        return None;
    };
    let zoned = Expr::Cast(Cast::new(
        Box::new(expr.clone()),
        DataType::Timestamp(*unit, Some(Arc::from(zone))),
    ));
    let local = datafusion::functions::datetime::expr_fn::to_local_time(vec![zoned]);
    Some(Expr::Cast(Cast::new(Box::new(local), to.clone())))
}

fn rewrite(e: Expr, schema: &DFSchema, zone: &str) -> Result<Transformed<Expr>> {
    match e {
        Expr::Cast(Cast { expr, field }) => {
            let from = expr.get_type(schema).ok();
            if let Some(local) = from
                .as_ref()
                .and_then(|t| local_time_in_zone(&expr, t, field.data_type(), zone))
            {
                return Ok(Transformed::yes(local));
            }
            let text = from.as_ref().is_some_and(is_text);
            match text
                .then(|| text_in_zone((*expr).clone(), field.data_type(), zone))
                .flatten()
            {
                Some(new) => Ok(Transformed::yes(new)),
                None => Ok(Transformed::no(Expr::Cast(Cast { expr, field }))),
            }
        }
        Expr::TryCast(TryCast { expr, field }) => {
            let text = expr.get_type(schema).map(|t| is_text(&t)).unwrap_or(false);
            let DataType::Timestamp(unit, Some(tz)) = field.data_type() else {
                return Ok(Transformed::no(Expr::TryCast(TryCast { expr, field })));
            };
            if !text || tz.as_ref() == zone {
                return Ok(Transformed::no(Expr::TryCast(TryCast { expr, field })));
            }
            let local = DataType::Timestamp(*unit, Some(Arc::from(zone)));
            let to = field.data_type().clone();
            Ok(Transformed::yes(Expr::Cast(Cast::new(
                Box::new(Expr::TryCast(TryCast::new(expr, local))),
                to,
            ))))
        }
        Expr::ScalarFunction(f) if f.func.name() == "date_trunc" && f.args.len() == 2 => {
            let arg_type = f.args[1].get_type(schema).ok();
            let Some(DataType::Timestamp(unit, Some(tz))) = arg_type else {
                return Ok(Transformed::no(Expr::ScalarFunction(f)));
            };
            if tz.as_ref() == zone {
                return Ok(Transformed::no(Expr::ScalarFunction(f)));
            }
            let Ok(result_type) = Expr::ScalarFunction(f.clone()).get_type(schema) else {
                return Ok(Transformed::no(Expr::ScalarFunction(f)));
            };
            let local = DataType::Timestamp(unit, Some(Arc::from(zone)));
            let mut args = f.args;
            let ts = args
                .pop()
                .expect("date_trunc has two arguments, checked above");
            args.push(Expr::Cast(Cast::new(Box::new(ts), local)));
            let truncated = Expr::ScalarFunction(ScalarFunction::new_udf(f.func, args));
            Ok(Transformed::yes(Expr::Cast(Cast::new(
                Box::new(truncated),
                result_type,
            ))))
        }
        other => Ok(Transformed::no(other)),
    }
}

impl AnalyzerRule for SessionTimeZone {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let Some(zone) = config.execution.time_zone.as_deref() else {
            return Ok(plan);
        };
        if is_utc(zone) {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|p| {
            crate::plan_exprs::rewrite_exprs(p, |e, schema| rewrite(e, schema, zone))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "eddy_session_time_zone"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn one(sql: &str, zone: &str) -> String {
        let ctx = SessionContext::new();
        ctx.add_analyzer_rule(Arc::new(SessionTimeZone));
        let state = ctx.state();
        let mut state = state;
        state.config_mut().options_mut().execution.time_zone = Some(zone.into());
        let ctx = SessionContext::new_with_state(state);
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let col = arrow::compute::cast(batches[0].column(0), &DataType::Utf8).unwrap();
        arrow::array::AsArray::as_string::<i32>(&col)
            .value(0)
            .to_string()
    }

    #[tokio::test]
    async fn text_without_offset_is_local_time() {
        let utc = "arrow_cast('2026-01-01 00:00:00', 'Timestamp(Microsecond, Some(\"UTC\"))')";
        assert_eq!(
            one(&format!("SELECT {utc} = '2026-01-01 00:00:00'"), "UTC").await,
            "true"
        );
        // In New York, text without an offset is five hours behind UTC in January ...
        assert_eq!(
            one(
                &format!("SELECT {utc} + interval '5 hours' = '2026-01-01 00:00:00'"),
                "America/New_York"
            )
            .await,
            "true"
        );
        // ... and text with one keeps it.
        assert_eq!(
            one(
                &format!("SELECT {utc} = '2026-01-01 00:00:00+00:00'"),
                "America/New_York"
            )
            .await,
            "true"
        );
    }

    #[tokio::test]
    async fn timestamptz_to_timestamp_is_local_time() {
        let ts = "arrow_cast('2026-01-01T20:00:00Z', 'Timestamp(Microsecond, Some(\"UTC\"))')";
        let q = format!("SELECT CAST({ts} AS TIMESTAMP)");
        assert_eq!(one(&q, "Asia/Kolkata").await, "2026-01-02T01:30:00");
        assert_eq!(one(&q, "America/New_York").await, "2026-01-01T15:00:00");
        assert_eq!(one(&q, "UTC").await, "2026-01-01T20:00:00");
        // Also when the value already carries the session's zone.
        let kolkata =
            "arrow_cast('2026-01-01T20:00:00Z', 'Timestamp(Microsecond, Some(\"Asia/Kolkata\"))')";
        let q = format!("SELECT CAST({kolkata} AS TIMESTAMP)");
        assert_eq!(one(&q, "Asia/Kolkata").await, "2026-01-02T01:30:00");
    }

    #[tokio::test]
    async fn date_trunc_in_session_zone() {
        // 03:00 UTC on the 2nd is 22:00 on the 1st in New York: the day starts at
        // 05:00 UTC on the 1st.
        let ts = "arrow_cast('2026-01-02T03:00:00Z', 'Timestamp(Microsecond, Some(\"UTC\"))')";
        assert_eq!(
            one(
                &format!("SELECT date_trunc('day', {ts})"),
                "America/New_York"
            )
            .await,
            "2026-01-01T05:00:00Z"
        );
        assert_eq!(
            one(&format!("SELECT date_trunc('day', {ts})"), "UTC").await,
            "2026-01-02T00:00:00Z"
        );
    }
}
