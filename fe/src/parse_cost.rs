//! Statements whose parse would take exponential time, refused before they are parsed.
//!
//! sqlparser 0.62 (the version DataFusion 55 uses) reads each argument of a function
//! call twice with the PostgreSQL dialect: first as the name of a named argument
//! (`f(a + b => 1)`), and when no `=>` follows, again as the argument. The first read
//! parses the whole nested call, so `abs(abs(abs(...)))` costs 2^depth: 20 levels took
//! 1.3 s in a release build, 24 more than 10 s, 30 hours, all on the connection's
//! thread, before the statement can be cancelled or timed out. A `CAST((` chain that
//! reaches the parser's recursion limit backtracks the same way. Upstream fixed this
//! after 0.62 (apache/datafusion-sqlparser-rs#2392); until DataFusion moves to it, eddy
//! estimates the parse's cost from the tokens and refuses a statement that would take
//! more than about a tenth of a second with PostgreSQL's 54001.
//!
//! The estimate counts each token once per read: a token inside `d` nested calls is
//! read 2^d times. A parenthesis is a call's when a word other than a keyword that
//! opens a parenthesised list (`IN (`, `VALUES (`, `OVER (`, `AS t(` ...) comes before
//! it; counting a few non-calls as calls only over-estimates.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use eddy_proto::{Error, ErrorCode, Result};

/// Token reads the parse may take: 2^20, about 0.2 s in a release build (17 nested
/// calls of one argument each).
const MAX_READS: u64 = 1 << 20;

/// Keywords followed by a parenthesised list that is not a call's arguments.
const NOT_CALLS: &[Keyword] = &[
    Keyword::ALL,
    Keyword::AND,
    Keyword::ANY,
    Keyword::AS,
    Keyword::BETWEEN,
    Keyword::BY,
    Keyword::ELSE,
    Keyword::EXISTS,
    Keyword::FILTER,
    Keyword::FROM,
    Keyword::IN,
    Keyword::INTO,
    Keyword::IS,
    Keyword::JOIN,
    Keyword::LATERAL,
    Keyword::NOT,
    Keyword::ON,
    Keyword::OR,
    Keyword::OVER,
    Keyword::SELECT,
    Keyword::SOME,
    Keyword::TABLE,
    Keyword::THEN,
    Keyword::USING,
    Keyword::VALUES,
    Keyword::WHEN,
    Keyword::WHERE,
    Keyword::WITH,
    Keyword::WITHIN,
];

/// An error when parsing `sql` would read its tokens more than [`MAX_READS`] times.
/// Text that does not tokenize is left to the parser to report.
pub fn check(sql: &str) -> Result<()> {
    // Short of 2^20 reads whatever the nesting.
    if sql.len() < 40 {
        return Ok(());
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let (reads, depth) = reads(&tokens);
    if reads <= MAX_READS {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::StatementTooComplex,
        format!(
            "stack depth limit exceeded: function calls nest {depth} deep, which the SQL \
             parser reads in time exponential in the depth (about 16 is the most it reads \
             quickly); compute inner parts in a subquery or CTE"
        ),
    ))
}

/// The estimated token reads of a parse, and the deepest nesting of calls.
fn reads(tokens: &[Token]) -> (u64, u32) {
    // For each open parenthesis, whether it opened a call.
    let mut open: Vec<bool> = Vec::new();
    let (mut depth, mut deepest, mut reads) = (0u32, 0u32, 0u64);
    let mut previous: Option<&Token> = None;
    for token in tokens {
        if matches!(token, Token::Whitespace(_)) {
            continue;
        }
        match token {
            Token::LParen => {
                let call =
                    matches!(previous, Some(Token::Word(w)) if !NOT_CALLS.contains(&w.keyword));
                open.push(call);
                depth += u32::from(call);
                deepest = deepest.max(depth);
            }
            Token::RParen => {
                if open.pop() == Some(true) {
                    depth -= 1;
                }
            }
            _ => {}
        }
        reads = reads.saturating_add(1u64.checked_shl(depth.min(63)).unwrap_or(u64::MAX));
        previous = Some(token);
    }
    (reads, deepest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(call: &str, n: usize) -> String {
        format!("SELECT {}1{}", format!("{call}(").repeat(n), ")".repeat(n))
    }

    #[test]
    fn everyday_statements_pass() {
        for sql in [
            "SELECT 1",
            "SELECT round(6378.138 * 2 * asin(sqrt(power(sin((radians(lat) - radians(40.05)) / 2), 2) \
             + cos(radians(lat)) * cos(radians(40.05)) * power(sin((radians(lon) - radians(116.3)) / 2), 2))) * 1000, 0) FROM t",
            "SELECT date_trunc('hour', CAST(ts AS timestamp)), count(*) FROM t WHERE x IN (SELECT y FROM u WHERE z IN (1, 2)) \
             GROUP BY 1 ORDER BY 1",
            "SELECT coalesce(nullif(trim(lower(upper(substr(concat(a, b), 1, 3)))), ''), 'x') FROM t",
        ] {
            assert!(check(sql).is_ok(), "{sql}");
        }
        assert!(check(&nested("abs", 16)).is_ok());
    }

    #[test]
    fn exponential_nesting_is_refused_with_54001() {
        let err = check(&nested("abs", 18)).unwrap_err();
        assert_eq!(err.code, ErrorCode::StatementTooComplex);
        assert!(err.message.contains("nest 18 deep"), "{}", err.message);
        let cast = format!("SELECT {}1{}", "CAST((".repeat(24), ") AS int)".repeat(24));
        assert!(check(&cast).is_err());
        // Parentheses that are not calls cost nothing extra.
        let parens = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
        assert!(check(&parens).is_ok());
        let ins = format!(
            "SELECT 1 FROM t WHERE {}",
            "a IN (SELECT b FROM u WHERE ".repeat(30) + "true" + &")".repeat(30)
        );
        assert!(check(&ins).is_ok());
    }
}
