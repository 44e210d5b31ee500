//! Result columns that share a name, as PostgreSQL allows.
//!
//! PostgreSQL names `SELECT qty, qty::int FROM t` `qty | qty` and `SELECT count(*),
//! count(*)` `count | count`; DataFusion refuses a projection whose expressions have the
//! same name ("Projections require unique expression names"), and it names a cast of a
//! column after the column. When it refuses, the statement is planned again with each
//! repeated select item aliased to a name that cannot collide: the name PostgreSQL gives
//! it, [`MARK`] and its position. [`super::pg::column_names`] reports such a column by
//! its PostgreSQL name again.
//!
//! Planning is only retried for statements where [`may_repeat`] finds a candidate, so
//! that the statement is kept (cloned) for the retry only then.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, Expr, Ident, ObjectNamePart, OrderBy, OrderByKind, Query, SelectItem,
    SetExpr, Statement, Visit, VisitMut, Visitor, VisitorMut,
};

/// Separates a repeated column's PostgreSQL name from its position in the alias eddy
/// gives it (U+2063, an invisible separator nobody types in an alias).
pub(crate) const MARK: char = '\u{2063}';

/// Whether DataFusion refused `e` because two result columns have the same name.
pub(crate) fn is_repeated_name_error(e: &DataFusionError) -> bool {
    e.to_string()
        .contains("Projections require unique expression names")
}

/// Whether some SELECT in `stmt` may name two result columns alike: two items that
/// DataFusion would name the same, or a wildcard beside other items.
pub(crate) fn may_repeat(stmt: &Statement) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if repeats_in(&q.body, &sort_keys(q)) {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Finder(false);
    let _ = stmt.visit(&mut f);
    f.0
}

/// Aliases every repeated item of every SELECT in `stmt` (see the module).
pub(crate) fn alias_repeats(stmt: &mut Statement) {
    struct Aliaser;
    impl VisitorMut for Aliaser {
        type Break = ();
        fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            let sorts = sort_keys(q);
            alias_in(q.body.as_mut(), &sorts);
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Aliaser);
}

/// The columns a query's ORDER BY names plainly (`ORDER BY ts`, `ORDER BY t.ts`): one
/// not selected as such is planned as a hidden result column named like the column, so
/// an item DataFusion names the same (`ts::date`) collides with it.
fn sort_keys(q: &Query) -> HashSet<String> {
    let Some(OrderBy {
        kind: OrderByKind::Expressions(exprs),
        ..
    }) = &q.order_by
    else {
        return HashSet::new();
    };
    exprs
        .iter()
        .filter(|o| matches!(o.expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)))
        .map(|o| key(&o.expr))
        .collect()
}

fn repeats_in(body: &SetExpr, sorts: &HashSet<String>) -> bool {
    match body {
        SetExpr::Select(s) => !repeated_items(&s.projection, sorts).is_empty(),
        SetExpr::SetOperation { left, right, .. } => {
            let none = HashSet::new();
            repeats_in(left, &none) || repeats_in(right, &none)
        }
        _ => false,
    }
}

fn alias_in(body: &mut SetExpr, sorts: &HashSet<String>) {
    match body {
        SetExpr::Select(s) => {
            for i in repeated_items(&s.projection, sorts) {
                if let SelectItem::UnnamedExpr(e) = &s.projection[i] {
                    let alias = Ident::with_quote('"', format!("{}{MARK}{i}", pg_name(e)));
                    let expr = e.clone();
                    s.projection[i] = SelectItem::ExprWithAlias { expr, alias };
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            let none = HashSet::new();
            alias_in(left, &none);
            alias_in(right, &none);
        }
        _ => {}
    }
}

/// Positions of the unaliased items DataFusion may name like an earlier item (every
/// unaliased item when a wildcard is among them) or like a column the query sorts by
/// without selecting it as such; empty when there are none.
fn repeated_items(items: &[SelectItem], sorts: &HashSet<String>) -> Vec<usize> {
    if items.len() < 2 && sorts.is_empty() {
        return vec![];
    }
    let wildcard = items.iter().any(|i| {
        matches!(
            i,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    let mut seen = HashSet::new();
    let mut repeated = vec![];
    for (i, item) in items.iter().enumerate() {
        match item {
            SelectItem::UnnamedExpr(e) => {
                let k = key(e);
                let plain = matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                if (!plain && sorts.contains(&k)) || !seen.insert(k) || wildcard {
                    repeated.push(i);
                }
            }
            SelectItem::ExprWithAlias { alias, .. } => {
                seen.insert(alias.value.to_ascii_lowercase());
            }
            _ => {}
        }
    }
    repeated
}

/// What DataFusion names an unaliased item by, roughly: a column by its name whatever
/// its qualifier or cast, anything else by its text without casts (DataFusion names a
/// cast by its operand, so `pg_typeof(1::bigint)` is named as `pg_typeof(1)`).
fn key(e: &Expr) -> String {
    match e {
        Expr::Identifier(id) => id.value.to_ascii_lowercase(),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .map(|p| p.value.to_ascii_lowercase())
            .unwrap_or_default(),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => key(expr),
        // Planned as a cast, named by its operand.
        Expr::AtTimeZone { timestamp, .. } => key(timestamp),
        // DataFusion names every EXISTS alike, and a scalar subquery by its column.
        Expr::Exists { .. } => "exists".into(),
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s) => match s.projection.first() {
                Some(SelectItem::UnnamedExpr(e)) => key(e),
                Some(SelectItem::ExprWithAlias { alias, .. }) => alias.value.to_ascii_lowercase(),
                _ => q.to_string().to_ascii_lowercase(),
            },
            _ => q.to_string().to_ascii_lowercase(),
        },
        other => {
            let mut bare = other.clone();
            let _ = visit_expressions_mut(&mut bare, |e| {
                if let Expr::Cast { expr, .. } = e {
                    *e = (**expr).clone();
                }
                ControlFlow::<()>::Continue(())
            });
            bare.to_string().to_ascii_lowercase()
        }
    }
}

/// The name PostgreSQL gives an unaliased item, as far as the syntax tells it: kept in
/// the alias for columns of a subquery selected by an outer `*`.
fn pg_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(id) => id.value.clone(),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(|p| p.value.clone()).unwrap_or_default()
        }
        Expr::Cast { expr, .. } | Expr::Nested(expr) => pg_name(expr),
        Expr::AtTimeZone { .. } => "timezone".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s) => match s.projection.first() {
                Some(SelectItem::UnnamedExpr(e)) => pg_name(e),
                Some(SelectItem::ExprWithAlias { alias, .. }) => alias.value.clone(),
                _ => "?column?".into(),
            },
            _ => "?column?".into(),
        },
        Expr::Function(f) => match f.name.0.last() {
            Some(ObjectNamePart::Identifier(id)) => id.value.to_ascii_lowercase(),
            _ => "?column?".into(),
        },
        _ => "?column?".into(),
    }
}

/// The PostgreSQL name an alias from [`alias_repeats`] carries, if `name` is one.
pub(crate) fn unmarked(name: &str) -> Option<&str> {
    name.split_once(MARK).map(|(pg, _)| pg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn only_repeated_items_are_candidates() {
        assert!(may_repeat(&parse("SELECT qty, qty::int FROM t")));
        assert!(may_repeat(&parse("SELECT count(*), COUNT(*) FROM t")));
        assert!(may_repeat(&parse("SELECT *, qty FROM t")));
        assert!(may_repeat(&parse("SELECT * FROM (SELECT t.a, a FROM t) s")));
        assert!(may_repeat(&parse("SELECT 1 UNION SELECT a, a FROM t")));
        assert!(may_repeat(&parse(
            "SELECT pg_typeof(1::bigint), pg_typeof(1)"
        )));
        assert!(may_repeat(&parse("SELECT ts::date FROM t ORDER BY ts")));
        assert!(may_repeat(&parse(
            "SELECT EXISTS (SELECT 1 FROM t), EXISTS (SELECT 2 FROM t)"
        )));
        assert!(may_repeat(&parse(
            "SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM u)"
        )));
        assert!(!may_repeat(&parse("SELECT ts FROM t ORDER BY ts")));
        assert!(!may_repeat(&parse(
            "SELECT ts::date AS d FROM t ORDER BY ts"
        )));
        assert!(!may_repeat(&parse("SELECT a, b, a + 1, count(*) FROM t")));
        assert!(!may_repeat(&parse("SELECT a AS x, a AS y FROM t")));
        assert!(!may_repeat(&parse("SELECT 1")));
    }

    #[test]
    fn repeated_items_get_marked_aliases() {
        let mut s = parse("SELECT qty, qty::int, upper(s), upper(s) FROM t");
        alias_repeats(&mut s);
        let sql = s.to_string();
        assert!(
            sql.contains(&format!("qty::INT AS \"qty{MARK}1\"")),
            "{sql}"
        );
        assert!(
            sql.contains(&format!("upper(s) AS \"upper{MARK}3\"")),
            "{sql}"
        );
        assert!(sql.starts_with("SELECT qty, "), "{sql}");
        assert_eq!(unmarked(&format!("qty{MARK}1")), Some("qty"));
        assert_eq!(unmarked("qty"), None);
    }
}
