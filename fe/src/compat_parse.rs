//! datafusion-pg-catalog's [`PostgresCompatibilityParser`], with two of its rewrites that
//! changed answers undone.
//!
//! - Its `RemoveSubqueryFromProjection` replaces every correlated scalar subquery in a
//!   select list with NULL: `SELECT o.id, (SELECT count(*) FROM item i WHERE i.ord =
//!   o.id) FROM ord o` answered NULL counts. Here such subqueries over eddy's tables are
//!   kept and planned by DataFusion, which decorrelates the aggregated ones into joins
//!   (and eddy the plain ones, see `crate::single_row`); a correlated subquery it cannot
//!   plan is an error rather than a silent NULL. Those over the system catalogs are kept
//!   too, but clients' catalog queries (psql's `\d`, SQLAlchemy's column reflection) hold
//!   correlated subqueries for features eddy has no objects for (column defaults,
//!   collations, identity sequences) that DataFusion cannot decorrelate: a statement
//!   whose catalog subqueries do not decorrelate is planned again with the crate's NULL
//!   for them ([`has_catalog_subqueries`], [`null_catalog_subqueries`]), the answer for
//!   objects eddy does not have. The other half of the rule, `LIMIT 1`
//!   on an uncorrelated subquery in a select list, stays for the catalogs only: over
//!   eddy's tables it answered one of several rows where PostgreSQL says `more than one
//!   row returned by a subquery used as an expression` (21000), as DataFusion's own plan
//!   does.
//! - It rewrites `'name'::regproc` into `(SELECT oid FROM pg_proc WHERE proname =
//!   'name')`, which answers with one of the overloads when several functions share the
//!   name: psql's `\sf date_trunc` then printed one `date_trunc` where PostgreSQL says
//!   `more than one function named "date_trunc"` (42725). Here such casts become
//!   `eddy_regproc('name')` (see `crate::catalog::pg`) before the crate's rewrites run.
//!
//! The crate's parser applies its rewrite rules inside `parse`, after replacing a few whole
//! client queries it cannot run (its private "blacklist") at the token level. So a
//! statement that may hold either is parsed again and rewritten by the crate's public
//! rules, in the crate's order, with eddy's changes; that statement replaces the crate's
//! only when the same rules without eddy's changes give exactly the crate's statement,
//! that is when no blacklisted query was replaced.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_relations, Expr, Query, SelectItem, SetExpr, Statement, TableFactor,
    Value, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion_pg_catalog::sql::rules::{
    AliasDuplicatedProjectionRewrite, CurrentUserVariableToSessionUserFunctionCall,
    FixArrayLiteral, FixVersionColumnName, PrependUnqualifiedPgTableName,
    RemoveSubqueryFromProjection, ResolveUnqualifiedIdentifier, RewriteArrayAnyAllOperation,
    RewritePgCatalogOperator, RewriteRegCastToSubquery, SqlStatementRewriteRule,
    StripCallableQualifier, StripCollate,
};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

/// See the module documentation.
pub(crate) struct CompatParser {
    compat: PostgresCompatibilityParser,
    /// The crate's rules before `RemoveSubqueryFromProjection`, in the order
    /// `PostgresCompatibilityParser::new` applies them.
    rules: Vec<Arc<dyn SqlStatementRewriteRule>>,
    remove_subqueries: RemoveSubqueryFromProjection,
    version_name: FixVersionColumnName,
}

impl CompatParser {
    pub(crate) fn new() -> Self {
        Self {
            compat: PostgresCompatibilityParser::new(),
            rules: vec![
                Arc::new(AliasDuplicatedProjectionRewrite),
                Arc::new(ResolveUnqualifiedIdentifier),
                Arc::new(RewriteArrayAnyAllOperation),
                Arc::new(PrependUnqualifiedPgTableName),
                Arc::new(StripCallableQualifier),
                Arc::new(FixArrayLiteral),
                Arc::new(CurrentUserVariableToSessionUserFunctionCall),
                Arc::new(StripCollate),
                Arc::new(RewritePgCatalogOperator),
                Arc::new(RewriteRegCastToSubquery::new()),
            ],
            remove_subqueries: RemoveSubqueryFromProjection,
            version_name: FixVersionColumnName,
        }
    }

    /// The crate's rules; with `keep_correlated`, correlated subqueries in select lists
    /// are hidden from `RemoveSubqueryFromProjection` (see the module documentation).
    fn rewrite(&self, mut s: Statement, keep_correlated: bool) -> Statement {
        for rule in &self.rules {
            s = rule.rewrite(s);
        }
        if keep_correlated {
            s = keep_subqueries(s, Keep::Correlated, |s| self.remove_subqueries.rewrite(s));
        } else {
            s = self.remove_subqueries.rewrite(s);
        }
        self.version_name.rewrite(s)
    }

    /// Parses `sql` into rewritten statements (see the module documentation).
    pub(crate) fn parse(&self, sql: &str) -> Result<Vec<Statement>, ParserError> {
        let crate_statements = self.compat.parse(sql)?;
        // A subquery in a select list needs a second SELECT.
        if occurrences(sql, "regproc") == 0 && occurrences(sql, "select") < 2 {
            return Ok(crate_statements);
        }
        let Ok(raw) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
            return Ok(crate_statements);
        };
        if raw.len() != crate_statements.len() {
            return Ok(crate_statements);
        }
        Ok(raw
            .into_iter()
            .zip(crate_statements)
            .map(|(raw, theirs)| {
                let mut ours = raw.clone();
                crate::pg::regproc_casts(&mut ours);
                let ours = self.rewrite(ours, true);
                if ours == theirs || self.rewrite(raw, false) != theirs {
                    return theirs;
                }
                ours
            })
            .collect())
    }
}

/// How often `word` (lower case) occurs in `sql`, in any case, without copying `sql`.
fn occurrences(sql: &str, word: &str) -> usize {
    sql.as_bytes()
        .windows(word.len())
        .filter(|w| w.eq_ignore_ascii_case(word.as_bytes()))
        .count()
}

/// Which subqueries of select lists [`keep_subqueries`] hides from
/// `RemoveSubqueryFromProjection`.
#[derive(Clone, Copy, PartialEq)]
enum Keep {
    /// Those over eddy's tables, and the correlated ones over the catalogs.
    Correlated,
    /// Those over eddy's tables only.
    EddyTables,
}

/// `rewrite(s)` with the subqueries `keep` names out of its sight: they are wrapped in
/// parentheses, which the crate's `RemoveSubqueryFromProjection` does not look into, and
/// unwrapped after.
fn keep_subqueries(
    mut s: Statement,
    keep: Keep,
    rewrite: impl FnOnce(Statement) -> Statement,
) -> Statement {
    let _ = VisitMut::visit(&mut s, &mut Parenthesize(Some(keep)));
    let mut s = rewrite(s);
    let _ = VisitMut::visit(&mut s, &mut Parenthesize(None));
    s
}

/// Wraps the subqueries of select lists that `Some(keep)` names in parentheses, or
/// (`None`) unwraps them.
struct Parenthesize(Option<Keep>);

impl VisitorMut for Parenthesize {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        for item in &mut select.projection {
            let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item
            else {
                continue;
            };
            match (self.0, &*e) {
                (Some(keep), Expr::Subquery(q))
                    if !reads_catalog(q) || (keep == Keep::Correlated && correlated(q)) =>
                {
                    *e = Expr::Nested(Box::new(e.clone()));
                }
                (None, Expr::Nested(inner)) if matches!(**inner, Expr::Subquery(_)) => {
                    *e = (**inner).clone();
                }
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }
}

/// Whether the crate's `RemoveSubqueryFromProjection` takes `query` for correlated: it
/// holds a parameter, or a qualified name whose qualifier is not the alias of a relation
/// of its own FROM clause.
fn correlated(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let mut aliases = HashSet::new();
    for twj in &select.from {
        for factor in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
            if let TableFactor::Table { alias: Some(a), .. } = factor {
                aliases.insert(a.name.value.clone());
            }
        }
    }
    visit_expressions(query, |e| match e {
        Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => ControlFlow::Break(()),
        Expr::CompoundIdentifier(parts)
            if parts.first().is_some_and(|p| !aliases.contains(&p.value)) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// Whether a select list of `stmt` holds a correlated subquery over the catalogs, which
/// the crate would have made NULL (see the module documentation).
pub(crate) fn has_catalog_subqueries(stmt: &Statement) -> bool {
    struct Find(bool);
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            let SetExpr::Select(select) = query.body.as_ref() else {
                return ControlFlow::Continue(());
            };
            for item in &select.projection {
                if let SelectItem::UnnamedExpr(Expr::Subquery(q))
                | SelectItem::ExprWithAlias {
                    expr: Expr::Subquery(q),
                    ..
                } = item
                {
                    if reads_catalog(q) && correlated(q) {
                        self.0 = true;
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut find = Find(false);
    let _ = Visit::visit(stmt, &mut find);
    find.0
}

/// `stmt` with the correlated subqueries of its select lists over the catalogs made NULL,
/// as the crate makes them (see the module documentation).
pub(crate) fn null_catalog_subqueries(stmt: Statement) -> Statement {
    keep_subqueries(stmt, Keep::EddyTables, |s| {
        RemoveSubqueryFromProjection.rewrite(s)
    })
}

/// Whether `query` reads a system catalog (`pg_catalog`, `information_schema`).
fn reads_catalog(query: &Query) -> bool {
    visit_relations(query, |name| {
        let name = name.to_string().to_ascii_lowercase();
        let catalog = name.starts_with("pg_")
            || name.starts_with("pg_catalog.")
            || name.starts_with("information_schema.");
        if catalog {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

impl Default for CompatParser {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> String {
        let mut s = CompatParser::new().parse(sql).unwrap();
        assert_eq!(s.len(), 1);
        s.remove(0).to_string()
    }

    #[test]
    fn regproc_casts_resolve_by_name_and_the_rest_is_the_crates() {
        assert_eq!(
            one("SELECT 'date_trunc'::pg_catalog.regproc::pg_catalog.oid"),
            "SELECT eddy_regproc('date_trunc')::pg_catalog.oid"
        );
        // The crate's other rewrites still apply around it.
        assert_eq!(
            one("SELECT 'now'::regproc, 'pg_class'::regclass"),
            PostgresCompatibilityParser::new()
                .parse("SELECT eddy_regproc('now'), 'pg_class'::regclass")
                .unwrap()[0]
                .to_string()
        );
        // Without either, exactly the crate's statement (an uncorrelated subquery in a
        // select list gets its LIMIT 1).
        for sql in [
            "SELECT c.relname, (SELECT 1 FROM pg_namespace) FROM pg_class c",
            "SELECT 1",
            "SELECT a FROM (SELECT a FROM t) AS s",
        ] {
            assert_eq!(
                one(sql),
                PostgresCompatibilityParser::new().parse(sql).unwrap()[0].to_string()
            );
        }
    }

    #[test]
    fn words_are_counted_in_any_case() {
        assert_eq!(occurrences("Select (SELECT 1) sElEcT", "select"), 3);
        assert_eq!(occurrences("x::REGPROC", "regproc"), 1);
        assert_eq!(occurrences("sel", "select"), 0);
    }

    #[test]
    fn subqueries_in_select_lists_over_eddys_tables_are_kept() {
        assert_eq!(
            one("SELECT o.id, (SELECT count(*) FROM item i WHERE i.ord = o.id) AS n FROM ord o"),
            "SELECT o.id, (SELECT count(*) FROM item i WHERE i.ord = o.id) AS n FROM ord o"
        );
        assert_eq!(
            one(
                "SELECT (SELECT max(v) FROM item i WHERE i.ord = o.id), (SELECT 1 FROM t) \
                 FROM ord o"
            ),
            "SELECT (SELECT max(v) FROM item i WHERE i.ord = o.id), (SELECT 1 FROM t) \
             FROM ord o"
        );
        // Over the catalogs, kept for a first attempt; the fallback is the crate's NULL.
        let sql = "SELECT (SELECT nspname FROM pg_namespace n WHERE n.oid = c.relnamespace), \
                   (SELECT 1 FROM pg_type), (SELECT count(*) FROM t WHERE t.x = c.oid) FROM pg_class c";
        let kept = CompatParser::new().parse(sql).unwrap().remove(0);
        assert!(has_catalog_subqueries(&kept));
        assert_eq!(
            kept.to_string(),
            "SELECT (SELECT nspname FROM pg_catalog.pg_namespace n WHERE n.oid = c.relnamespace), \
             (SELECT 1 FROM pg_catalog.pg_type LIMIT 1), (SELECT count(*) FROM t WHERE t.x = c.oid) \
             FROM pg_catalog.pg_class c"
        );
        let fallback = null_catalog_subqueries(kept);
        assert!(!has_catalog_subqueries(&fallback));
        assert_eq!(
            fallback.to_string(),
            "SELECT NULL, (SELECT 1 FROM pg_catalog.pg_type LIMIT 1), \
             (SELECT count(*) FROM t WHERE t.x = c.oid) FROM pg_catalog.pg_class c"
        );
    }
}
