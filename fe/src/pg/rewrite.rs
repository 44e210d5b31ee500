//! Rewrites of PostgreSQL set-returning functions DataFusion lacks into forms it plans,
//! applied to each statement before planning:
//!
//! - `generate_subscripts(a, 1)` (SQLAlchemy's primary key, unique constraint and index
//!   reflection number array elements with it next to `unnest(a)`) becomes
//!   `unnest(generate_series(1, array_length(a, 1)))`; DataFusion zips several unnests
//!   in one select list as PostgreSQL does, so the subscripts line up with the elements.
//! - `ARRAY(SELECT e FROM unnest(a) x)` (psql's `\d+`) becomes
//!   `array_transform(a, x -> e)`;
//! - any other `ARRAY(SELECT e FROM ... [WHERE ...] [ORDER BY ...])` (psql's `\du`)
//!   becomes the scalar subquery `(SELECT array_agg(e ORDER BY ...) FROM ... WHERE ...)`,
//!   which DataFusion decorrelates. One difference remains: over no rows it gives NULL
//!   where PostgreSQL gives an empty array.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, visit_relations_mut, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, ObjectNamePart, OrderByKind, Query, SelectItem, SetExpr, Statement,
    TableFactor, Value,
};
use datafusion::sql::sqlparser::dialect::{Dialect, DuckDbDialect, PostgreSqlDialect};
use datafusion::sql::sqlparser::parser::Parser;

/// The plain positional arguments of a call, or `None` for anything fancier.
fn plain_args(args: &FunctionArguments) -> Option<Vec<&Expr>> {
    let FunctionArguments::List(list) = args else {
        return None;
    };
    if !list.clauses.is_empty() || list.duplicate_treatment.is_some() {
        return None;
    }
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

fn parse_expr(sql: &str) -> Option<Expr> {
    parse_expr_in(&PostgreSqlDialect {}, sql)
}

fn parse_expr_in(dialect: &dyn Dialect, sql: &str) -> Option<Expr> {
    Parser::new(dialect)
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

/// `ARRAY(subquery)` in a form DataFusion plans (see the module documentation).
fn array_of_subquery(q: &Query) -> Option<Expr> {
    if q.with.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    if select.projection.len() != 1
        || select.group_by
            != datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(vec![], vec![])
        || select.having.is_some()
        || select.distinct.is_some()
    {
        return None;
    }
    let item = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
        _ => return None,
    };
    // SELECT e FROM unnest(a) x: a map over the array.
    if let [from] = select.from.as_slice() {
        if from.joins.is_empty() && select.selection.is_none() && q.order_by.is_none() {
            // `unnest(a) x`, or `pg_catalog.unnest(a) x`, which parses as a table function.
            let unnested = match &from.relation {
                TableFactor::UNNEST {
                    alias: Some(alias),
                    array_exprs,
                    with_offset: false,
                    with_ordinality: false,
                    ..
                } => match array_exprs.as_slice() {
                    [array] => Some((array.to_string(), alias)),
                    _ => None,
                },
                TableFactor::Table {
                    name,
                    alias: Some(alias),
                    args: Some(args),
                    ..
                } if name.to_string().to_ascii_lowercase().ends_with("unnest") => {
                    match args.args.as_slice() {
                        [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] => {
                            Some((array.to_string(), alias))
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some((array, alias)) = unnested {
                return parse_expr_in(
                    &DuckDbDialect {},
                    &format!("array_transform({array}, {} -> {item})", alias.name),
                );
            }
        }
    }
    let order = match &q.order_by {
        None => String::new(),
        Some(o) => match &o.kind {
            OrderByKind::Expressions(exprs) => {
                let keys: Vec<String> = exprs
                    .iter()
                    .map(|e| match &e.expr {
                        // ORDER BY 1 names the only output column.
                        Expr::Value(v) if matches!(v.value, Value::Number(..)) => {
                            format!("{item}{}", e.options)
                        }
                        _ => e.to_string(),
                    })
                    .collect();
                format!(" ORDER BY {}", keys.join(", "))
            }
            OrderByKind::All(_) => return None,
        },
    };
    let agg = parse_expr(&format!("array_agg({item}{order})"))?;
    let mut q = q.clone();
    q.order_by = None;
    let SetExpr::Select(select) = q.body.as_mut() else {
        return None;
    };
    select.projection = vec![SelectItem::UnnamedExpr(agg)];
    Some(Expr::Subquery(Box::new(q)))
}

/// pg_catalog relations eddy adds to the crate's, which its parser does not know to
/// qualify (pg_catalog is implicitly on every search_path).
const EDDY_CATALOG_RELATIONS: [&str; 1] = ["pg_indexes"];

/// Rewrites the calls named in the module documentation, in place.
pub(crate) fn postgres_functions(stmt: &mut Statement) {
    let _ = visit_relations_mut(stmt, |name| {
        if let [ObjectNamePart::Identifier(id)] = name.0.as_slice() {
            if EDDY_CATALOG_RELATIONS.contains(&id.value.to_ascii_lowercase().as_str()) {
                name.0
                    .insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions_mut(stmt, |e| {
        let Expr::Function(f) = e else {
            return ControlFlow::<()>::Continue(());
        };
        let name = f.name.to_string().to_ascii_lowercase();
        let name = name.trim_start_matches("pg_catalog.");
        if let ("array", FunctionArguments::Subquery(q)) = (name, &f.args) {
            if let Some(new) = array_of_subquery(q) {
                *e = new;
            }
            return ControlFlow::Continue(());
        }
        let replacement = match plain_args(&f.args).as_deref() {
            Some([array, dim]) if name == "generate_subscripts" && f.over.is_none() => {
                parse_expr(&format!(
                    "unnest(generate_series(1, CAST(array_length({array}, {dim}) AS BIGINT)))"
                ))
            }
            _ => None,
        };
        if let Some(new) = replacement {
            *e = new;
        }
        ControlFlow::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_subscripts_becomes_unnest() {
        let mut s = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT unnest(i.indkey), generate_subscripts(i.indkey, 1) AS ord FROM pg_index i",
        )
        .unwrap()
        .remove(0);
        postgres_functions(&mut s);
        assert_eq!(
            s.to_string(),
            "SELECT unnest(i.indkey), unnest(generate_series(1, CAST(array_length(i.indkey, 1) AS BIGINT))) AS ord FROM pg_index i"
        );
    }

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        postgres_functions(&mut s);
        s.to_string()
    }

    #[test]
    fn array_subqueries_become_aggregates_or_maps() {
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT b.rolname FROM pg_roles b WHERE b.oid = r.oid ORDER BY 1) FROM pg_roles r"),
            "SELECT (SELECT array_agg(b.rolname ORDER BY b.rolname) FROM pg_roles b WHERE b.oid = r.oid) FROM pg_roles r"
        );
        assert_eq!(
            rewritten("SELECT array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x) FROM pg_class tc"),
            "SELECT array_transform(tc.reloptions, x -> 'toast.' || x) FROM pg_class tc"
        );
    }
}
