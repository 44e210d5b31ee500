//! `CREATE ALERT` and `DROP ALERT`, which sqlparser does not know.
//!
//! ```sql
//! CREATE ALERT [IF NOT EXISTS] name ON table_or_view
//!   WHEN condition
//!   [SEVERITY expression]                 -- text; 'warning' when absent
//!   [EMIT ON UPDATE | EMIT ON CLOSE]       -- view rules; ON UPDATE is the default
//!   [SINK KAFKA (brokers = '...', topic = '...', properties.k = 'v', ...)]
//! DROP ALERT [IF EXISTS] name
//! ```
//!
//! The condition and severity are kept as SQL text (tokens re-joined) and compiled by the
//! BE against the source's columns.

use datafusion::sql::sqlparser::tokenizer::Token;
use eddy_proto::{AlertDef, Emit, KafkaSinkDef, Result};

use crate::source_ddl::{options, syntax, Cursor, EddyStatement};

/// Whether `t` is one of the clause keywords that end an expression.
fn clause(t: &Token) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none()
        && ["SEVERITY", "EMIT", "SINK"].contains(&w.value.to_ascii_uppercase().as_str()))
}

/// The tokens of one expression, up to the next clause keyword outside parentheses.
fn expression(c: &mut Cursor<'_>, what: &str) -> Result<String> {
    let mut depth = 0i32;
    let mut parts = Vec::new();
    while let Some(t) = c.peek() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if depth == 0 && clause(t) => break,
            _ => {}
        }
        parts.push(t.to_string());
        c.next();
    }
    if parts.is_empty() {
        return Err(syntax(format!("expected an expression after {what}")));
    }
    Ok(parts.join(" "))
}

/// A possibly schema-qualified relation name (`public.` is the default schema).
fn relation(c: &mut Cursor<'_>) -> Result<String> {
    let mut name = c.ident("a table or materialized view name")?;
    while matches!(c.peek(), Some(Token::Period)) {
        c.next();
        name.push('.');
        name.push_str(&c.ident("a table or materialized view name")?);
    }
    Ok(name.strip_prefix("public.").unwrap_or(&name).to_string())
}

pub fn create_alert(t: &[&Token]) -> Result<EddyStatement> {
    let mut c = Cursor { t, i: 0 };
    let if_not_exists = c.if_not_exists()?;
    let name = c.ident("an alert name")?;
    c.expect_keyword("ON")?;
    let source = relation(&mut c)?;
    c.expect_keyword("WHEN")?;
    let condition = expression(&mut c, "WHEN")?;
    let mut severity = None;
    let mut emit = None;
    let mut sink = None;
    while c.peek().is_some() {
        if c.keyword("SEVERITY") && severity.is_none() {
            severity = Some(expression(&mut c, "SEVERITY")?);
        } else if c.keyword("EMIT") && emit.is_none() {
            c.expect_keyword("ON")?;
            emit = Some(if c.keyword("CLOSE") {
                Emit::OnClose
            } else if c.keyword("UPDATE") {
                Emit::OnUpdate
            } else {
                return Err(syntax(format!(
                    "expected CLOSE or UPDATE after EMIT ON, found {}",
                    c.found()
                )));
            });
        } else if c.keyword("SINK") && sink.is_none() {
            c.expect_keyword("KAFKA")?;
            let mut opts = options(&mut c)?;
            let mut take = |k: &str| {
                opts.remove(k)
                    .ok_or_else(|| syntax(format!("SINK KAFKA needs the option {k} = '...'")))
            };
            let brokers = take("brokers")?;
            let topic = take("topic")?;
            let mut properties = std::collections::BTreeMap::new();
            for (k, v) in opts {
                match k.strip_prefix("properties.") {
                    Some(p) => {
                        properties.insert(p.to_string(), v);
                    }
                    None => {
                        return Err(syntax(format!(
                        "unknown SINK KAFKA option \"{k}\" (known: brokers, topic, properties.*)"
                    )))
                    }
                }
            }
            sink = Some(KafkaSinkDef {
                brokers,
                topic,
                properties,
            });
        } else {
            return Err(syntax(format!(
                "expected SEVERITY, EMIT ON CLOSE or SINK KAFKA (each at most once), found {}",
                c.found()
            )));
        }
    }
    Ok(EddyStatement::CreateAlert {
        def: AlertDef {
            name,
            source,
            condition,
            severity: severity.unwrap_or_else(|| "'warning'".into()),
            emit: emit.unwrap_or_default(),
            sink,
            created_micros: chrono::Utc::now().timestamp_micros(),
        },
        if_not_exists,
    })
}

pub fn drop_alert(t: &[&Token]) -> Result<EddyStatement> {
    let mut c = Cursor { t, i: 0 };
    let if_exists = c.if_exists()?;
    let name = c.ident("an alert name")?;
    c.end()?;
    Ok(EddyStatement::DropAlert { name, if_exists })
}

#[cfg(test)]
mod tests {
    use crate::source_ddl::{split, EddyStatement, Piece};
    use eddy_proto::Emit;

    fn create(sql: &str) -> eddy_proto::AlertDef {
        match split(sql).unwrap().unwrap().remove(0) {
            Piece::Eddy(EddyStatement::CreateAlert { def, .. }) => def,
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn parses_the_documented_rules() {
        let d = create(
            "CREATE ALERT price_move ON bars_1m \
               WHEN abs(close / prev(close) - 1) > 0.05 \
               SEVERITY CASE WHEN abs(close / prev(close) - 1) > 0.10 THEN 'critical' ELSE 'warning' END \
               SINK KAFKA (brokers = '127.0.0.1:9092', topic = 'price-alerts')",
        );
        assert_eq!(d.name, "price_move");
        assert_eq!(d.source, "bars_1m");
        assert_eq!(d.condition, "abs ( close / prev ( close ) - 1 ) > 0.05");
        assert!(d.severity.starts_with("CASE WHEN abs"), "{}", d.severity);
        assert!(d.severity.ends_with("END"), "{}", d.severity);
        assert_eq!(d.emit, Emit::OnUpdate);
        let s = d.sink.unwrap();
        assert_eq!(
            (s.brokers.as_str(), s.topic.as_str()),
            ("127.0.0.1:9092", "price-alerts")
        );

        let d = create("CREATE ALERT volume_spike ON bars_1m WHEN zscore(volume, 20) > 4 SEVERITY 'info' EMIT ON CLOSE");
        assert_eq!(d.emit, Emit::OnClose);
        assert_eq!(d.severity, "'info'");
        assert!(d.sink.is_none());

        let d = create("create alert big ON public.orders when total_amount > 10000");
        assert_eq!(d.source, "orders");
        assert_eq!(d.severity, "'warning'");

        let p = split("DROP ALERT IF EXISTS price_move").unwrap().unwrap();
        assert_eq!(
            p[0],
            Piece::Eddy(EddyStatement::DropAlert {
                name: "price_move".into(),
                if_exists: true
            })
        );
    }

    #[test]
    fn errors_name_what_was_wrong() {
        let e = split("CREATE ALERT a ON t SEVERITY 'x'").unwrap_err();
        assert!(e.message.contains("expected WHEN"), "{e}");
        let e = split("CREATE ALERT a ON t WHEN x > 1 SINK KAFKA (topic = 't')").unwrap_err();
        assert!(e.message.contains("brokers"), "{e}");
        let e = split("CREATE ALERT a ON t WHEN x > 1 EMIT ON SOMETIME").unwrap_err();
        assert!(e.message.contains("CLOSE or UPDATE"), "{e}");
        let e = split("CREATE ALERT a ON t WHEN").unwrap_err();
        assert!(e.message.contains("expression after WHEN"), "{e}");
    }
}
