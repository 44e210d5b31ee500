//! Statements that nest expressions deeply, made plannable or refused before planning.
//!
//! sqlparser reads `a + b + c + ...` and `x = 1 OR x = 2 OR ...` in a loop, into a
//! left-deep tree as deep as the chain is long; everything after it (the catalog crate's
//! rewrites, DataFusion's planner, its optimizer, dropping the tree) walks that tree
//! recursively. A generated query with a few thousand terms overflowed a connection
//! thread's stack, which aborts the whole server, and long OR chains took time quadratic
//! in their length to plan. PostgreSQL answers such statements with 54001 (`stack depth
//! limit exceeded`) and builds AND/OR lists flat.
//!
//! So before a long statement is planned, its AND/OR chains of [`BALANCE_FROM`] terms or
//! more are rebuilt as balanced trees (same operands, same order: `AND` and `OR` are
//! associative, also with NULLs), and a statement whose expressions still nest deeper
//! than [`MAX_DEPTH`] (arithmetic chains, whose grouping changes results) is refused
//! with 54001. The check walks the tree with a depth count that stops the walk at the
//! limit, and takes the refused tree apart without recursion.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Statement, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use eddy_proto::{Error, ErrorCode, Result};

/// How deep expressions may nest (PostgreSQL's default stack allows a few thousand).
pub const MAX_DEPTH: usize = 1000;
/// AND/OR chains of this many terms or more are balanced.
const BALANCE_FROM: usize = 32;
/// A statement shorter than this cannot hold a chain worth balancing or refusing.
const CHECK_FROM_BYTES: usize = 512;

/// `sql` as it should be planned: `None` to plan it as it is, `Some(text)` when long
/// AND/OR chains were balanced; an error when expressions nest deeper than
/// [`MAX_DEPTH`].
pub fn prepare(sql: &str) -> Result<Option<String>> {
    if sql.len() < CHECK_FROM_BYTES {
        return Ok(None);
    }
    let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        // Not plain SQL (eddy's own DDL): the parsers after this one say what is wrong.
        return Ok(None);
    };
    let mut walk = Walk::default();
    for s in &mut statements {
        if s.visit(&mut walk).is_break() {
            // The tree above the cut is at most MAX_DEPTH deep: dropped as usual.
            return Err(Error::new(
                ErrorCode::StatementTooComplex,
                format!(
                    "stack depth limit exceeded: expressions nest more than {MAX_DEPTH} deep \
                     (a chain of that many + - * / or || terms; use IN (...) or split the statement)"
                ),
            ));
        }
    }
    Ok(walk.balanced.then(|| {
        statements
            .iter()
            .map(Statement::to_string)
            .collect::<Vec<_>>()
            .join(";\n")
    }))
}

#[derive(Default)]
struct Walk {
    depth: usize,
    balanced: bool,
}

impl VisitorMut for Walk {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp {
            op: op @ (BinaryOperator::And | BinaryOperator::Or),
            ..
        } = expr
        {
            let op = op.clone();
            let terms = take_chain(expr, &op);
            // A balanced tree's spines are short: it is never balanced again.
            *expr = if terms.len() >= BALANCE_FROM {
                self.balanced = true;
                balance(terms, &op)
            } else {
                left_deep(terms, &op)
            };
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            drop_iteratively(std::mem::replace(expr, Expr::Value(Value::Null.into())));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _: &mut Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// The terms of the left-deep chain of `op` at `e`, in order, taken out of `e`.
fn take_chain(e: &mut Expr, op: &BinaryOperator) -> Vec<Expr> {
    let mut terms = Vec::new();
    let mut cur = std::mem::replace(e, Expr::Value(Value::Null.into()));
    loop {
        match cur {
            Expr::BinaryOp { left, op: o, right } if &o == op => {
                terms.push(*right);
                cur = *left;
            }
            other => {
                terms.push(other);
                break;
            }
        }
    }
    terms.reverse();
    terms
}

/// `terms` joined by `op` as the parser joins them, `((a op b) op c) ...`.
fn left_deep(terms: Vec<Expr>, op: &BinaryOperator) -> Expr {
    let mut terms = terms.into_iter();
    let first = terms.next().expect("a chain has a term");
    terms.fold(first, |left, right| Expr::BinaryOp {
        left: Box::new(left),
        op: op.clone(),
        right: Box::new(right),
    })
}

/// `terms` joined by `op` as a balanced tree, left to right, each half in parentheses
/// so that its text parses back into the same tree.
fn balance(mut terms: Vec<Expr>, op: &BinaryOperator) -> Expr {
    if terms.len() == 1 {
        return terms.pop().expect("one term");
    }
    let right = terms.split_off(terms.len() / 2);
    let half = |terms: Vec<Expr>| match terms.len() {
        1 => balance(terms, op),
        _ => Expr::Nested(Box::new(balance(terms, op))),
    };
    Expr::BinaryOp {
        left: Box::new(half(terms)),
        op: op.clone(),
        right: Box::new(half(right)),
    }
}

/// Drops `e` without recursing along its chains of operators (the parser bounds the
/// nesting of everything else).
fn drop_iteratively(e: Expr) {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryOp { left, right, .. } => {
                stack.push(*left);
                stack.push(*right);
            }
            Expr::UnaryOp { expr, .. } | Expr::Nested(expr) => stack.push(*expr),
            other => drop(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(term: &str, op: &str, n: usize) -> String {
        vec![term; n].join(op)
    }

    #[test]
    fn short_statements_are_left_alone() {
        assert_eq!(prepare("SELECT 1 + 1").unwrap(), None);
        let sql = format!("SELECT {}", chain("1", " + ", 300));
        assert_eq!(prepare(&sql).unwrap(), None);
    }

    #[test]
    fn long_or_chains_become_balanced_with_their_terms_in_order() {
        let terms: Vec<String> = (0..5000).map(|i| format!("a = {i}")).collect();
        let sql = format!("SELECT count(*) FROM t WHERE {}", terms.join(" OR "));
        let out = prepare(&sql).unwrap().expect("balanced");
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &out).unwrap();
        // Same terms, same order.
        let flat = out.replace(['(', ')'], "");
        assert!(flat.ends_with(&terms.join(" OR ")), "{}", &flat[..200]);
        // And shallow: a walk with the depth limit passes.
        let mut walk = Walk::default();
        assert!(statements[0].visit(&mut walk).is_continue());
    }

    #[test]
    fn deep_arithmetic_is_refused_not_overflowed() {
        for n in [MAX_DEPTH + 10, 200_000] {
            let sql = format!("SELECT {}", chain("1", " + ", n));
            let e = prepare(&sql).unwrap_err();
            assert_eq!(e.code, ErrorCode::StatementTooComplex);
            assert!(
                e.message.contains("stack depth limit exceeded"),
                "{}",
                e.message
            );
        }
        // Just under the limit passes.
        let sql = format!("SELECT {}", chain("1", " + ", MAX_DEPTH - 10));
        assert_eq!(prepare(&sql).unwrap(), None);
    }
}
