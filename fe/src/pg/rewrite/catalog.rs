//! Rewrites for what psql's catalog queries use that DataFusion does not plan:
//!
//! - the `tableoid` system column of a catalog row (`\dd` joins `pg_description` on
//!   `pgc.tableoid = d.classoid`): every row of a system catalog has that catalog's
//!   OID, so `alias.tableoid` becomes the constant (1247 for `pg_type`);
//! - a scalar subquery over pg_catalog that returns a plain column (`\dT`'s
//!   `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid)`): DataFusion
//!   decorrelates only aggregates, so its value becomes `first_value(...)`, the same
//!   for the at most one row PostgreSQL allows;
//! - an `oid[]` column compared with an array literal in text (`polroles <> '{0}'`).

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, Expr, Ident, Query, Select, SelectItem, SetExpr,
    Statement, TableFactor, TableWithJoins, Value, VisitMut, VisitorMut,
};

use crate::catalog::pg::catalog_oid;

/// Whether a relation name is a system catalog (`pg_class`, `pg_catalog.pg_type` ...).
fn is_catalog(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let last = name.rsplit('.').next().unwrap_or("");
    last.starts_with("pg_") && (!name.contains('.') || name.starts_with("pg_catalog."))
}

/// Alias (or bare name) → relation name, for the relations of a FROM clause.
fn relations(from: &[TableWithJoins]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut add = |f: &TableFactor| {
        if let TableFactor::Table { name, alias, .. } = f {
            let relation = name.to_string();
            let key = match alias {
                Some(a) => a.name.value.clone(),
                None => name.0.last().map(|p| p.to_string()).unwrap_or_default(),
            };
            out.insert(key.to_ascii_lowercase(), relation);
        }
    };
    for t in from {
        add(&t.relation);
        for j in &t.joins {
            add(&j.relation);
        }
    }
    out
}

fn tableoid_of(select: &mut Select) {
    let rels = relations(&select.from);
    let only = (rels.len() == 1)
        .then(|| rels.values().next().cloned())
        .flatten();
    let _ = visit_expressions_mut(select, |e| {
        let relation = match e {
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [alias, column] if column.value.eq_ignore_ascii_case("tableoid") => {
                    rels.get(&alias.value.to_ascii_lowercase()).cloned()
                }
                _ => None,
            },
            Expr::Identifier(Ident { value, .. }) if value.eq_ignore_ascii_case("tableoid") => {
                only.clone()
            }
            _ => None,
        };
        if let Some(oid) = relation.as_deref().and_then(catalog_oid) {
            *e = Expr::value(Value::Number(oid.to_string(), false));
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The SELECTs of a set expression (`UNION ALL` branches), not those of subqueries.
fn selects(body: &mut SetExpr, f: &mut dyn FnMut(&mut Select)) {
    match body {
        SetExpr::Select(s) => f(s),
        SetExpr::SetOperation { left, right, .. } => {
            selects(left, f);
            selects(right, f);
        }
        SetExpr::Query(q) => selects(&mut q.body, f),
        _ => {}
    }
}

const AGGREGATES: [&str; 18] = [
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "first_value",
    "last_value",
    "json_agg",
    "jsonb_agg",
    "bit_and",
    "bit_or",
    "stddev",
    "variance",
];

fn has_aggregate(e: &Expr) -> bool {
    visit_expressions(e, |e| {
        if let Expr::Function(f) = e {
            let name = f.name.to_string().to_ascii_lowercase();
            let name = name.trim_start_matches("pg_catalog.");
            if AGGREGATES.contains(&name) || f.over.is_some() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })
    .is_break()
}

/// `(SELECT e FROM pg_... WHERE ...)` with `e` made `first_value(e)`, when it is a
/// plain column over system catalogs.
fn first_value_of(q: &mut Query) {
    if q.with.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return;
    }
    let SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    let plain = select.projection.len() == 1
        && select.group_by
            == datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(vec![], vec![])
        && select.having.is_none()
        && select.distinct.is_none()
        && !select.from.is_empty()
        && relations(&select.from).values().all(|r| is_catalog(r))
        && select.from.iter().all(|t| {
            matches!(t.relation, TableFactor::Table { args: None, .. })
                && t.joins
                    .iter()
                    .all(|j| matches!(j.relation, TableFactor::Table { args: None, .. }))
        });
    if !plain {
        return;
    }
    let (expr, alias) = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) => (e.clone(), None),
        SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
        _ => return,
    };
    if has_aggregate(&expr) {
        return;
    }
    let Some(wrapped) = super::parse_expr(&format!("first_value({expr})")) else {
        return;
    };
    // Named as PostgreSQL names the column (`nspname`, not `first_value`).
    let alias = alias.or_else(|| match &expr {
        Expr::Identifier(i) => Some(i.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().cloned(),
        _ => None,
    });
    select.projection[0] = match alias {
        Some(alias) => SelectItem::ExprWithAlias {
            expr: wrapped,
            alias,
        },
        None => SelectItem::UnnamedExpr(wrapped),
    };
}

/// Catalog columns of type `oid[]` that psql compares with an array literal in text
/// (`polroles <> '{0}'`, `\dp`).
const OID_ARRAY_COLUMNS: [&str; 1] = ["polroles"];

/// `oid_array_column <> '{0}'` with the text made an array (DataFusion does not read
/// PostgreSQL's array literals).
fn oid_array_literal(e: &mut Expr) {
    let Expr::BinaryOp { left, right, .. } = e else {
        return;
    };
    let is_column = |e: &Expr| match e {
        Expr::Identifier(i) => OID_ARRAY_COLUMNS.contains(&i.value.as_str()),
        Expr::CompoundIdentifier(p) => p
            .last()
            .is_some_and(|i| OID_ARRAY_COLUMNS.contains(&i.value.as_str())),
        _ => false,
    };
    let literal = if is_column(left) {
        right
    } else if is_column(right) {
        left
    } else {
        return;
    };
    let Expr::Value(v) = literal.as_ref() else {
        return;
    };
    let Value::SingleQuotedString(text) = &v.value else {
        return;
    };
    let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
        return;
    };
    let oids: Option<Vec<i64>> = inner
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().parse().ok())
        .collect();
    let Some(oids) = oids else {
        return;
    };
    let list: Vec<String> = oids.iter().map(|o| format!("CAST({o} AS INT)")).collect();
    if let Some(array) = super::parse_expr(&format!("make_array({})", list.join(", "))) {
        **literal = array;
    }
}

struct CatalogQueries;

impl VisitorMut for CatalogQueries {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        selects(&mut q.body, &mut tableoid_of);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Expr::Subquery(q) = e {
            first_value_of(q);
        }
        oid_array_literal(e);
        ControlFlow::Continue(())
    }
}

/// Applies the rewrites of the module documentation to a statement, in place.
pub(super) fn catalog_queries(stmt: &mut Statement) {
    let _ = stmt.visit(&mut CatalogQueries);
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        catalog_queries(&mut s);
        s.to_string()
    }

    #[test]
    fn tableoid_is_the_catalogs_oid() {
        assert_eq!(
            rewritten(
                "SELECT pgc.oid, pgc.tableoid FROM pg_catalog.pg_constraint pgc \
                 UNION ALL SELECT o.oid, o.tableoid FROM pg_catalog.pg_opclass o"
            ),
            "SELECT pgc.oid, 2606 FROM pg_catalog.pg_constraint pgc \
             UNION ALL SELECT o.oid, 2616 FROM pg_catalog.pg_opclass o"
        );
        // A user table's tableoid is left alone.
        assert_eq!(
            rewritten("SELECT t.tableoid FROM trades t"),
            "SELECT t.tableoid FROM trades t"
        );
    }

    #[test]
    fn catalog_scalar_subqueries_are_aggregated() {
        assert_eq!(
            rewritten(
                "SELECT 1 FROM pg_type t WHERE (t.typrelid = 0 OR \
                 (SELECT c.relkind = 'c' FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid))"
            ),
            "SELECT 1 FROM pg_type t WHERE (t.typrelid = 0 OR \
             (SELECT first_value(c.relkind = 'c') FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid))"
        );
        // A column keeps its name.
        assert_eq!(
            rewritten(
                "SELECT (SELECT n.nspname FROM pg_namespace n WHERE n.oid = c.relnamespace) \
                 FROM pg_class c"
            ),
            "SELECT (SELECT first_value(n.nspname) AS nspname FROM pg_namespace n \
             WHERE n.oid = c.relnamespace) FROM pg_class c"
        );
        // Already aggregated, or over a user table: unchanged.
        let agg = "SELECT (SELECT count(*) FROM pg_class c WHERE c.oid = 1)";
        assert_eq!(
            rewritten(agg),
            "SELECT (SELECT count(*) FROM pg_class c WHERE c.oid = 1)"
        );
        let user = "SELECT (SELECT x FROM trades WHERE y = 1)";
        assert_eq!(rewritten(user), user);
    }
}
