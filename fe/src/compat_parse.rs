//! datafusion-pg-catalog's [`PostgresCompatibilityParser`], with `'name'::regproc`
//! resolved as PostgreSQL resolves it.
//!
//! The crate rewrites `'name'::regproc` into `(SELECT oid FROM pg_proc WHERE proname =
//! 'name')`, which answers with one of the overloads when several functions share the
//! name: psql's `\sf date_trunc` then printed one `date_trunc` where PostgreSQL says
//! `more than one function named "date_trunc"` (42725). Here such casts become
//! `eddy_regproc('name')` (see `crate::catalog::pg`) before the crate's rewrites run.
//!
//! The crate's parser applies its rewrite rules inside `parse`, after replacing a few whole
//! client queries it cannot run (its private "blacklist") at the token level. So a
//! statement with a `regproc` cast is parsed again and rewritten by the crate's public
//! rules, in the crate's order, with eddy's cast rewrite first; that statement replaces the
//! crate's only when the same rules without it give exactly the crate's statement, that is
//! when no blacklisted query was replaced.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::Statement;
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
    /// The crate's rules, in the order `PostgresCompatibilityParser::new` applies them.
    rules: Vec<Arc<dyn SqlStatementRewriteRule>>,
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
                Arc::new(RemoveSubqueryFromProjection),
                Arc::new(FixVersionColumnName),
            ],
        }
    }

    fn rewrite(&self, mut s: Statement) -> Statement {
        for rule in &self.rules {
            s = rule.rewrite(s);
        }
        s
    }

    /// Parses `sql` into rewritten statements (see the module documentation).
    pub(crate) fn parse(&self, sql: &str) -> Result<Vec<Statement>, ParserError> {
        let crate_statements = self.compat.parse(sql)?;
        if !sql.to_ascii_lowercase().contains("regproc") {
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
                if !crate::pg::regproc_casts(&mut ours) || self.rewrite(raw) != theirs {
                    return theirs;
                }
                self.rewrite(ours)
            })
            .collect())
    }
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
        // Without a regproc cast, exactly the crate's statement.
        let sql = "SELECT c.relname, (SELECT 1 FROM pg_namespace) FROM pg_class c";
        assert_eq!(
            one(sql),
            PostgresCompatibilityParser::new().parse(sql).unwrap()[0].to_string()
        );
    }
}
