//! Binds prepared-statement parameters by writing each value into the SQL text as a typed
//! literal. The bound text then takes exactly the path a plain statement takes (eddy DDL,
//! INSERT, DELETE, DataFusion queries), so a prepared statement can do anything a
//! statement can. Placeholders are `$n` (PostgreSQL) and `?` (ADBC's qmark style).

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use eddy_proto::{Error, ErrorCode, Result};

/// One placeholder: its byte range in the SQL and the 0-based parameter it names.
#[derive(Debug)]
struct Slot {
    start: usize,
    len: usize,
    index: usize,
}

fn slots(sql: &str) -> Result<Vec<Slot>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| Error::new(ErrorCode::SyntaxError, format!("syntax error: {e}")))?;
    // Byte offset of each line start, to turn (line, column in chars) into a byte offset.
    let mut line_starts = vec![0usize];
    line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    let mut next_qmark = 0usize;
    let mut out = Vec::new();
    for t in tokens {
        let (text_len, index) = match &t.token {
            Token::Question => {
                next_qmark += 1;
                (1, next_qmark - 1)
            }
            Token::Placeholder(p) if p == "?" => {
                next_qmark += 1;
                (1, next_qmark - 1)
            }
            Token::Placeholder(p) => {
                let n: usize = p[1..].parse().map_err(|_| {
                    Error::new(
                        ErrorCode::SyntaxError,
                        format!("syntax error: bad parameter {p}"),
                    )
                })?;
                if n == 0 {
                    return Err(Error::new(
                        ErrorCode::SyntaxError,
                        format!("there is no parameter {p}"),
                    ));
                }
                (p.len(), n - 1)
            }
            _ => continue,
        };
        let line = t.span.start.line as usize;
        let col = t.span.start.column as usize;
        let line_start = *line_starts.get(line.saturating_sub(1)).ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                "placeholder outside the statement text",
            )
        })?;
        let start = line_start
            + sql[line_start..]
                .char_indices()
                .nth(col.saturating_sub(1))
                .map(|(i, _)| i)
                .unwrap_or(0);
        out.push(Slot {
            start,
            len: text_len,
            index,
        });
    }
    Ok(out)
}

/// How many parameters the statement takes (the highest placeholder number).
pub(crate) fn count(sql: &str) -> Result<usize> {
    Ok(slots(sql)?.iter().map(|s| s.index + 1).max().unwrap_or(0))
}

/// The SQL with every placeholder replaced by row `row` of `params` (or NULL when `params`
/// is `None`, which is how a statement's result schema is found before values are bound).
pub(crate) fn bind(sql: &str, params: Option<&RecordBatch>, row: usize) -> Result<String> {
    let mut out = sql.to_string();
    for s in slots(sql)?.iter().rev() {
        let lit = match params {
            None => "NULL".to_string(),
            Some(b) => {
                let col = b.columns().get(s.index).ok_or_else(|| {
                    Error::new(
                        ErrorCode::InvalidValue,
                        format!("there is no parameter ${}", s.index + 1),
                    )
                })?;
                literal(col, row)?
            }
        };
        out.replace_range(s.start..s.start + s.len, &lit);
    }
    Ok(out)
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One value as SQL that evaluates to the same value and type.
fn literal(col: &ArrayRef, row: usize) -> Result<String> {
    if col.is_null(row) {
        return Ok("NULL".into());
    }
    let options = FormatOptions::default();
    let fmt = ArrayFormatter::try_new(col.as_ref(), &options)
        .map_err(|e| Error::new(ErrorCode::InvalidValue, e.to_string()))?;
    let text = fmt.value(row).to_string();
    Ok(match col.data_type() {
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => text,
        DataType::Float16 | DataType::Float32 => format!("CAST({} AS REAL)", quote(&text)),
        DataType::Float64 => format!("CAST({} AS DOUBLE PRECISION)", quote(&text)),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            format!("CAST({} AS NUMERIC({p}, {s}))", quote(&text))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => quote(&text),
        DataType::Date32 | DataType::Date64 => format!("DATE {}", quote(&text)),
        DataType::Timestamp(_, None) => format!("CAST({} AS TIMESTAMP)", quote(&text)),
        DataType::Timestamp(_, Some(_)) => format!("CAST({} AS TIMESTAMPTZ)", quote(&text)),
        other => {
            return Err(Error::new(
                ErrorCode::Unsupported,
                format!("parameters of type {other} are not supported"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};

    use super::*;

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["it's"])) as ArrayRef),
            (
                "c",
                Arc::new(Float64Array::from(vec![f64::NAN])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn binds_dollar_and_qmark_placeholders() {
        let b = batch();
        assert_eq!(
            bind("SELECT $2, $1 WHERE x = '$1'", Some(&b), 0).unwrap(),
            "SELECT 'it''s', 7 WHERE x = '$1'"
        );
        assert_eq!(
            bind("SELECT ?,\n  ? , ?", Some(&b), 0).unwrap(),
            "SELECT 7,\n  'it''s' , CAST('NaN' AS DOUBLE PRECISION)"
        );
        assert_eq!(count("SELECT $3 + $1").unwrap(), 3);
        assert_eq!(
            bind("SELECT $4", Some(&b), 0).unwrap_err().message,
            "there is no parameter $4"
        );
        assert_eq!(bind("SELECT 'é', $1", None, 0).unwrap(), "SELECT 'é', NULL");
    }
}
