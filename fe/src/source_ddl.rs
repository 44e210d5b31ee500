//! The statements sqlparser does not know: `CREATE SOURCE`, `DROP SOURCE`, `ALTER SOURCE`
//! and `CHECKPOINT`. A query string is tokenized with sqlparser's PostgreSQL tokenizer and
//! split at top-level semicolons; these statements are parsed here, every other statement
//! is handed back to sqlparser as its own text.
//!
//! ```sql
//! CREATE SOURCE [IF NOT EXISTS] name FROM KAFKA|GENERATOR (key = 'value', ...) INTO table
//! DROP SOURCE [IF EXISTS] name
//! ALTER SOURCE name PAUSE | RESUME
//! ```
//!
//! `CREATE ALERT` and `DROP ALERT` are parsed in [`crate::alert_ddl`].

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};
use eddy_proto::{AlertDef, Error, ErrorCode, Result, SourceDef};

/// eddy's own statements, which sqlparser does not know.
#[derive(Debug, Clone, PartialEq)]
pub enum EddyStatement {
    Checkpoint,
    CreateSource { def: SourceDef, if_not_exists: bool },
    DropSource { name: String, if_exists: bool },
    AlterSource { name: String, pause: bool },
    CreateAlert { def: AlertDef, if_not_exists: bool },
    DropAlert { name: String, if_exists: bool },
}

/// One statement of a query string.
#[derive(Debug, PartialEq)]
pub enum Piece {
    /// Text for sqlparser.
    Sql(String),
    Eddy(EddyStatement),
}

pub(crate) fn syntax(msg: impl Into<String>) -> Error {
    Error::new(
        ErrorCode::SyntaxError,
        format!("syntax error: {}", msg.into()),
    )
}

fn significant(t: &Token) -> bool {
    !matches!(t, Token::Whitespace(_))
}

/// Splits `sql` into statements; `None` when it holds none of eddy's own statements (the
/// caller then parses the whole string with sqlparser, unchanged).
pub fn split(sql: &str) -> Result<Option<Vec<Piece>>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| syntax(e.to_string()))?;
    let mut statements: Vec<Vec<Token>> = vec![Vec::new()];
    let mut depth = 0i32;
    for t in tokens {
        match &t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => {
                statements.push(Vec::new());
                continue;
            }
            _ => {}
        }
        statements.last_mut().expect("non-empty").push(t);
    }
    let mut pieces = Vec::new();
    let mut own = false;
    for st in statements {
        let sig: Vec<&Token> = st
            .iter()
            .filter(|t| {
                significant(t)
                    && !matches!(t, Token::Whitespace(Whitespace::SingleLineComment { .. }))
            })
            .collect();
        if sig.is_empty() {
            continue;
        }
        let word = |i: usize| match sig.get(i) {
            Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
            _ => String::new(),
        };
        let piece = match (word(0).as_str(), word(1).as_str()) {
            ("CHECKPOINT", "") if sig.len() == 1 => EddyStatement::Checkpoint,
            ("CREATE", "SOURCE") => create_source(&sig[2..])?,
            ("DROP", "SOURCE") => drop_source(&sig[2..])?,
            ("ALTER", "SOURCE") => alter_source(&sig[2..])?,
            ("CREATE", "ALERT") => crate::alert_ddl::create_alert(&sig[2..])?,
            ("DROP", "ALERT") => crate::alert_ddl::drop_alert(&sig[2..])?,
            _ => {
                pieces.push(Piece::Sql(st.iter().map(|t| t.to_string()).collect()));
                continue;
            }
        };
        own = true;
        pieces.push(Piece::Eddy(piece));
    }
    Ok(own.then_some(pieces))
}

pub(crate) struct Cursor<'a> {
    pub t: &'a [&'a Token],
    pub i: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn peek(&self) -> Option<&'a Token> {
        self.t.get(self.i).copied()
    }

    pub(crate) fn next(&mut self) -> Option<&'a Token> {
        let t = self.peek();
        self.i += 1;
        t
    }

    pub(crate) fn keyword(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw) => {
                self.i += 1;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn expect_keyword(&mut self, kw: &str) -> Result<()> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(syntax(format!("expected {kw}, found {}", self.found())))
        }
    }

    /// An optional `IF NOT EXISTS`.
    pub(crate) fn if_not_exists(&mut self) -> Result<bool> {
        if !self.keyword("IF") {
            return Ok(false);
        }
        self.expect_keyword("NOT")?;
        self.expect_keyword("EXISTS")?;
        Ok(true)
    }

    /// An optional `IF EXISTS`.
    pub(crate) fn if_exists(&mut self) -> Result<bool> {
        if !self.keyword("IF") {
            return Ok(false);
        }
        self.expect_keyword("EXISTS")?;
        Ok(true)
    }

    pub(crate) fn found(&self) -> String {
        self.peek()
            .map(|t| format!("\"{t}\""))
            .unwrap_or_else(|| "end of statement".into())
    }

    pub(crate) fn ident(&mut self, what: &str) -> Result<String> {
        match self.next() {
            Some(Token::Word(w)) => Ok(if w.quote_style.is_some() {
                w.value.clone()
            } else {
                w.value.to_ascii_lowercase()
            }),
            other => Err(syntax(format!(
                "expected {what}, found {}",
                other
                    .map(|t| format!("\"{t}\""))
                    .unwrap_or_else(|| "end of statement".into())
            ))),
        }
    }

    pub(crate) fn end(&self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(syntax(format!("unexpected \"{t}\" at end of statement"))),
        }
    }
}

/// `key = 'value'` pairs; keys may be dotted (`properties.security.protocol`).
pub(crate) fn options(c: &mut Cursor<'_>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if !matches!(c.next(), Some(Token::LParen)) {
        return Err(syntax("expected ( and source options"));
    }
    if matches!(c.peek(), Some(Token::RParen)) {
        c.next();
        return Ok(out);
    }
    loop {
        let mut key = c.ident("an option name")?;
        while matches!(c.peek(), Some(Token::Period)) {
            c.next();
            key.push('.');
            key.push_str(&c.ident("an option name")?);
        }
        if !matches!(c.next(), Some(Token::Eq)) {
            return Err(syntax(format!("expected = after option {key}")));
        }
        let value = match c.next() {
            Some(Token::SingleQuotedString(s)) => s.clone(),
            Some(Token::Number(n, _)) => n.clone(),
            Some(Token::Word(w)) => w.value.clone(),
            other => {
                return Err(syntax(format!(
                    "option {key}: expected a quoted value, found {}",
                    other
                        .map(|t| format!("\"{t}\""))
                        .unwrap_or_else(|| "end of statement".into())
                )))
            }
        };
        if out.insert(key.clone(), value).is_some() {
            return Err(syntax(format!("option {key} is given twice")));
        }
        match c.next() {
            Some(Token::Comma) => continue,
            Some(Token::RParen) => return Ok(out),
            _ => return Err(syntax(format!("expected , or ) after option {key}"))),
        }
    }
}

fn create_source(t: &[&Token]) -> Result<EddyStatement> {
    let mut c = Cursor { t, i: 0 };
    let if_not_exists = c.if_not_exists()?;
    let name = c.ident("a source name")?;
    c.expect_keyword("FROM")?;
    let connector = c.ident("KAFKA or GENERATOR")?;
    let options = options(&mut c)?;
    c.expect_keyword("INTO")?;
    let table = c.ident("a table name")?;
    c.end()?;
    Ok(EddyStatement::CreateSource {
        def: SourceDef {
            name,
            connector,
            options,
            table,
            paused: false,
        },
        if_not_exists,
    })
}

fn drop_source(t: &[&Token]) -> Result<EddyStatement> {
    let mut c = Cursor { t, i: 0 };
    let if_exists = c.if_exists()?;
    let name = c.ident("a source name")?;
    c.end()?;
    Ok(EddyStatement::DropSource { name, if_exists })
}

fn alter_source(t: &[&Token]) -> Result<EddyStatement> {
    let mut c = Cursor { t, i: 0 };
    let name = c.ident("a source name")?;
    let pause = if c.keyword("PAUSE") {
        true
    } else if c.keyword("RESUME") {
        false
    } else {
        return Err(syntax(format!(
            "expected PAUSE or RESUME, found {}",
            c.found()
        )));
    };
    c.end()?;
    Ok(EddyStatement::AlterSource { name, pause })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_statements_among_others() {
        let p = split(
            "select 1; CREATE SOURCE IF NOT EXISTS s1 FROM KAFKA (brokers = '127.0.0.1:9092', \
             topic = 'a-b', properties.security.protocol = 'SSL', max_batch_rows = 10) INTO Ticks;\
             ALTER SOURCE s1 pause; drop source if exists s1; checkpoint",
        )
        .unwrap()
        .unwrap();
        assert_eq!(p[0], Piece::Sql("select 1".into()));
        let Piece::Eddy(EddyStatement::CreateSource { def, if_not_exists }) = &p[1] else {
            panic!("{p:?}")
        };
        assert!(if_not_exists);
        assert_eq!(def.connector, "kafka");
        assert_eq!(def.table, "ticks");
        assert_eq!(def.options["properties.security.protocol"], "SSL");
        assert_eq!(def.options["max_batch_rows"], "10");
        assert_eq!(
            p[2],
            Piece::Eddy(EddyStatement::AlterSource {
                name: "s1".into(),
                pause: true
            })
        );
        assert_eq!(
            p[3],
            Piece::Eddy(EddyStatement::DropSource {
                name: "s1".into(),
                if_exists: true
            })
        );
        assert_eq!(p[4], Piece::Eddy(EddyStatement::Checkpoint));
        assert!(split("select ';create source'").unwrap().is_none());
    }

    #[test]
    fn errors_name_what_was_expected() {
        let e = split("create source s from kafka (topic 'x') into t").unwrap_err();
        assert!(e.message.contains("expected = after option topic"), "{e}");
        let e = split("create source s from kafka (topic = 'x')").unwrap_err();
        assert!(e.message.contains("expected INTO"), "{e}");
        let e = split("alter source s stop").unwrap_err();
        assert!(e.message.contains("PAUSE or RESUME"), "{e}");
    }
}
