//! Timestamps and times cast to text as PostgreSQL prints them.
//!
//! `ts::text` is Arrow's cast to DataFusion, which prints `2026-01-01T10:00:00Z`; PostgreSQL
//! prints `2026-01-01 10:00:00+00`, in the session's TimeZone, as it sends the value itself
//! in a text result (see [`super::datetime`]). Labels built from timestamps (`ts::text ||
//! ' UTC'`, Grafana's string series) differ otherwise. This analyzer rule, run after type
//! coercion, turns each cast of a timestamp or time to text into [`TEXT_FN`], which
//! prints it as a text result would; dates already print the same.

use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{exec_err, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::analyzer::AnalyzerRule;

use super::datetime::{is_temporal_text, temporal_as_text, SessionTz};

/// The function printing a timestamp or time as PostgreSQL's text output.
pub(super) const TEXT_FN: &str = "eddy_temporal_text";

/// See the module documentation.
#[derive(Debug, Default)]
pub struct TemporalText;

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn rewrite(
    e: Expr,
    schema: &DFSchema,
    zone: &str,
    f: &Arc<ScalarUDF>,
) -> Result<Transformed<Expr>> {
    let (Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })) = &e else {
        return Ok(Transformed::no(e));
    };
    let to = field.data_type();
    if !is_text(to) || !expr.get_type(schema).is_ok_and(|t| is_temporal_text(&t)) {
        return Ok(Transformed::no(e));
    }
    let zone = Expr::Literal(ScalarValue::Utf8(Some(zone.to_string())), None);
    let text = Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::clone(f),
        vec![(**expr).clone(), zone],
    ));
    Ok(Transformed::yes(if *to == DataType::Utf8 {
        text
    } else {
        Expr::Cast(Cast::new(Box::new(text), to.clone()))
    }))
}

impl AnalyzerRule for TemporalText {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        // Most statements cast nothing to text: skip the per-node schema work for them.
        let any = crate::plan_exprs::any_node(&plan, |node| {
            crate::plan_exprs::any_expr(node, |e| {
                matches!(e, Expr::Cast(Cast { field, .. }) | Expr::TryCast(TryCast { field, .. })
                    if is_text(field.data_type()))
            })
        })?;
        if !any {
            return Ok(plan);
        }
        let zone = config
            .execution
            .time_zone
            .as_deref()
            .unwrap_or("UTC")
            .to_string();
        let f = Arc::new(udf());
        plan.transform_up_with_subqueries(|p| {
            crate::plan_exprs::rewrite_exprs(p, |e, schema| rewrite(e, schema, &zone, &f))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "eddy_temporal_text"
    }
}

/// `eddy_temporal_text(value, zone)`: see the module documentation.
pub(super) fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(TemporalTextFn {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TemporalTextFn {
    signature: Signature,
}

impl ScalarUDFImpl for TemporalTextFn {
    fn name(&self) -> &str {
        TEXT_FN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let zone = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(z))) => z.clone(),
            other => {
                return exec_err!("{TEXT_FN}: the zone must be a text constant, got {other:?}")
            }
        };
        let Some(tz) = SessionTz::parse(&zone) else {
            return exec_err!("{TEXT_FN}: unknown time zone {zone}");
        };
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let values = args.args[0].to_array(if scalar { 1 } else { args.number_rows })?;
        let Some(text) = temporal_as_text(&values, tz) else {
            return exec_err!("{TEXT_FN}: not a timestamp or time: {}", values.data_type());
        };
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&text as &dyn Array, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(text) as Arc<dyn Array>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, StringArray};
    use datafusion::prelude::{SessionConfig, SessionContext};

    async fn texts(zone: &str, sql: &str) -> Vec<Option<String>> {
        let mut config = SessionConfig::new();
        config.options_mut().execution.time_zone = Some(zone.to_string());
        let ctx = SessionContext::new_with_config(config);
        ctx.add_analyzer_rule(Arc::new(TemporalText));
        ctx.register_udf(udf());
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let b = &batches[0];
        (0..b.num_columns())
            .map(|i| {
                let c = arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap();
                let s: &StringArray = c.as_string::<i32>();
                (!s.is_null(0)).then(|| s.value(0).to_string())
            })
            .collect()
    }

    #[tokio::test]
    async fn timestamps_cast_to_text_print_as_postgresql_prints_them() {
        let got = texts(
            "UTC",
            "SELECT CAST(TIMESTAMPTZ '2026-01-01 10:00:00+00' AS TEXT), \
             CAST(TIMESTAMP '2026-01-01 10:00:00.25' AS TEXT), \
             CAST(CAST(NULL AS TIMESTAMP) AS TEXT), CAST(DATE '2026-01-01' AS TEXT), \
             CAST(TIMESTAMPTZ '2026-01-01 10:00:00+00' AS TEXT) || ' x'",
        )
        .await;
        assert_eq!(
            got,
            vec![
                Some("2026-01-01 10:00:00+00".into()),
                Some("2026-01-01 10:00:00.25".into()),
                None,
                Some("2026-01-01".into()),
                Some("2026-01-01 10:00:00+00 x".into()),
            ]
        );
        // In the session's zone, with its offset.
        let got = texts(
            "America/New_York",
            "SELECT CAST(TIMESTAMPTZ '2026-01-01 10:00:00+00' AS TEXT)",
        )
        .await;
        assert_eq!(got, vec![Some("2026-01-01 05:00:00-05".into())]);
    }
}
