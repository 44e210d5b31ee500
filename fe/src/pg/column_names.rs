//! Result column names as PostgreSQL gives them to a column without an alias.
//!
//! DataFusion names such a column by its expression (`count(*)`, `avg(t.price)`,
//! `Int64(1)`); PostgreSQL by what it is (`count`, `avg`, `?column?`): the function's
//! name for a call, the column's for a column, the type's for a cast of a constant, `case`
//! for CASE and `?column?` for anything else. Grafana names series by these and psql
//! prints them as headers, so RowDescription reports PostgreSQL's.

use datafusion::logical_expr::{Expr, LogicalPlan};

use crate::repeated_names::unmarked;

const UNNAMED: &str = "?column?";

/// PostgreSQL's name for each result column of `plan` whose name differs from
/// DataFusion's, by position; empty when every name is the same.
pub(crate) fn pg_names(plan: &LogicalPlan) -> Vec<Option<String>> {
    let Some(projection) = top_projection(plan) else {
        return vec![];
    };
    let LogicalPlan::Projection(p) = projection else {
        return vec![];
    };
    let fields = plan.schema().fields();
    if p.expr.len() != fields.len() {
        return vec![];
    }
    let names: Vec<Option<String>> = p
        .expr
        .iter()
        .zip(fields.iter())
        .map(|(e, f)| {
            let name = name_of(e, &p.input);
            (&name != f.name()).then_some(name)
        })
        .collect();
    if names.iter().all(Option::is_none) {
        vec![]
    } else {
        names
    }
}

/// The projection that names a plan's columns, through the nodes that keep them.
fn top_projection(plan: &LogicalPlan) -> Option<&LogicalPlan> {
    match plan {
        LogicalPlan::Projection(_) => Some(plan),
        LogicalPlan::Sort(s) => top_projection(&s.input),
        LogicalPlan::Limit(l) => top_projection(&l.input),
        LogicalPlan::Filter(f) => top_projection(&f.input),
        LogicalPlan::Distinct(d) => top_projection(d.input()),
        LogicalPlan::Union(u) => u.inputs.first().and_then(|i| top_projection(i)),
        _ => None,
    }
}

/// PostgreSQL's name for expression `e` over `input`.
fn name_of(e: &Expr, input: &LogicalPlan) -> String {
    match e {
        // DataFusion aliases `count(Int64(1))` as `count(*)` (`count(*) ROWS BETWEEN ...`
        // over a window); a user's alias rarely looks like a call.
        Expr::Alias(a)
            if a.name.ends_with(')')
                || a.name
                    == a.expr.schema_name().to_string().replacen(
                        "count(Int64(1))",
                        "count(*)",
                        1,
                    ) =>
        {
            let inner = name_of(&a.expr, input);
            if inner == UNNAMED {
                a.name.clone()
            } else {
                inner
            }
        }
        // eddy's alias for a repeated name (see `repeated_names`).
        Expr::Alias(a) if unmarked(&a.name).is_some() => name_of(&a.expr, input),
        Expr::Alias(a) => a.name.clone(),
        Expr::Column(c) => match derived(input, &c.name) {
            // DataFusion's own alias (`count(Int64(1)) AS count(*)`) is not the user's.
            Some((d, below)) => name_of(&d.unalias(), below),
            None => unmarked(&c.name).unwrap_or(&c.name).to_string(),
        },
        // integer arithmetic is an operator, planned as a function (see `pg_literals`).
        Expr::ScalarFunction(f)
            if crate::int_arithmetic::is_int_arithmetic(f)
                || crate::interval_arithmetic::is_interval_scale(f) =>
        {
            UNNAMED.into()
        }
        Expr::ScalarFunction(f) => match crate::single_row::original(f) {
            Some((e, input)) => name_of(e, input),
            // `ARRAY[...]`
            None if f.func.name() == "make_array" => "array".into(),
            // `ts AT TIME ZONE 'UTC'`
            None if f.func.name() == super::at_time_zone::NAME => "timezone".into(),
            // `x::jsonb`, and the JSON operators.
            None if f.func.name() == super::json::JSONB => "jsonb".into(),
            None if f.func.name() == super::json::JSON => "json".into(),
            None if super::json::is_operator(f.func.name()) => UNNAMED.into(),
            None => f.func.name().to_string(),
        },
        Expr::AggregateFunction(f) => f.func.name().to_string(),
        Expr::WindowFunction(w) => w.fun.name().to_string(),
        Expr::Cast(c) => cast_name(&c.expr, c.field.data_type(), input),
        Expr::TryCast(c) => cast_name(&c.expr, c.field.data_type(), input),
        Expr::Case(_) => "case".into(),
        Expr::Exists(_) => "exists".into(),
        // Named as its one column would be (`(SELECT count(*) ...)` is `count`).
        Expr::ScalarSubquery(s) => match top_projection(&s.subquery) {
            Some(LogicalPlan::Projection(p)) if p.expr.len() == 1 => name_of(&p.expr[0], &p.input),
            _ => s
                .subquery
                .schema()
                .fields()
                .first()
                .map(|f| f.name().clone())
                .unwrap_or_else(|| UNNAMED.into()),
        },
        _ => UNNAMED.into(),
    }
}

/// A cast is named by its operand, or by its type when the operand has no name
/// (`'1'::int` is `int4`).
fn cast_name(inner: &Expr, ty: &arrow::datatypes::DataType, input: &LogicalPlan) -> String {
    // A cast of a cast of a constant (`'...'::timestamptz::date`) is named by the outer.
    let mut operand = inner;
    while let Expr::Cast(c) = operand {
        operand = &c.expr;
    }
    let name = name_of(operand, input);
    if name != UNNAMED {
        return name;
    }
    arrow_pg::datatypes::into_pg_type(ty)
        .map(|t| t.name().to_string())
        .unwrap_or(name)
}

/// The expression an aggregate or window node below computes under `name`, if one does
/// (the projection above refers to it as a column), and the plan it is computed over.
fn derived<'a>(plan: &'a LogicalPlan, name: &str) -> Option<(Expr, &'a LogicalPlan)> {
    let named = |mut exprs: &mut dyn Iterator<Item = &Expr>| {
        Iterator::find(&mut exprs, |e| e.schema_name().to_string() == name).cloned()
    };
    match plan {
        LogicalPlan::Aggregate(a) => {
            named(&mut a.group_expr.iter().chain(a.aggr_expr.iter())).map(|e| (e, &*a.input))
        }
        LogicalPlan::Window(w) => named(&mut w.window_expr.iter())
            .map(|e| (e, &*w.input))
            .or_else(|| derived(&w.input, name)),
        LogicalPlan::Sort(s) => derived(&s.input, name),
        LogicalPlan::Limit(l) => derived(&l.input, name),
        LogicalPlan::Filter(f) => derived(&f.input, name),
        // The projection under a sort by a column not selected (`SELECT upper(s) FROM t
        // ORDER BY ts` projects ts too, then drops it). Each step goes down the plan, so
        // a column passed through ends where it is computed or read.
        LogicalPlan::Projection(p) => named(&mut p.expr.iter()).map(|e| (e, &*p.input)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn names(sql: &str) -> Vec<String> {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (a bigint, b text, ts timestamp)")
            .await
            .unwrap();
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        let renamed = pg_names(&plan);
        plan.schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                renamed
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| f.name().clone())
            })
            .collect()
    }

    #[tokio::test]
    async fn unaliased_columns_are_named_as_postgresql_names_them() {
        assert_eq!(names("SELECT 1").await, ["?column?"]);
        assert_eq!(
            names("SELECT 1 AS one, a, t.b FROM t").await,
            ["one", "a", "b"]
        );
        assert_eq!(
            names("SELECT count(*), avg(a), max(b) FROM t").await,
            ["count", "avg", "max"]
        );
        assert_eq!(
            names("SELECT b, count(*) FROM t GROUP BY b ORDER BY 2 DESC LIMIT 3").await,
            ["b", "count"]
        );
        assert_eq!(
            names("SELECT a + 1, upper(b), CASE WHEN a > 0 THEN 1 END FROM t").await,
            ["?column?", "upper", "case"]
        );
        assert_eq!(
            names("SELECT '1'::int, a::text, date_trunc('hour', ts), '2'::int::text FROM t").await,
            ["int4", "a", "date_trunc", "text"]
        );
        assert_eq!(
            names("SELECT row_number() OVER (ORDER BY a) FROM t").await,
            ["row_number"]
        );
        assert_eq!(
            names("SELECT count(*) OVER (), sum(a) OVER (ORDER BY a) FROM t").await,
            ["count", "sum"]
        );
        assert_eq!(
            names("SELECT row_number() OVER (ORDER BY a)::bigint FROM t ORDER BY a").await,
            ["row_number"]
        );
        assert_eq!(
            names("SELECT rank() OVER (ORDER BY a), count(*) OVER (), b FROM t ORDER BY a").await,
            ["rank", "count", "b"]
        );
        assert_eq!(names("SELECT upper(b) FROM t ORDER BY a").await, ["upper"]);
        assert_eq!(
            names("SELECT a AS x, b, upper(b) FROM t ORDER BY a, b").await,
            ["x", "b", "upper"]
        );
        assert_eq!(
            names("SELECT ARRAY[1, 2], (SELECT count(*) FROM t), (SELECT max(b) AS m FROM t)")
                .await,
            ["array", "count", "m"]
        );
    }
}
