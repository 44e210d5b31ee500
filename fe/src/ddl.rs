//! Translates DDL statements (CREATE TABLE, ALTER TABLE ADD COLUMN) into catalog types.

use datafusion::sql::sqlparser::ast::{
    ColumnDef as SqlColumnDef, ColumnOption, CreateTable, CreateTableOptions, CreateView,
    Expr as SqlExpr, SqlOption, TableConstraint, Value,
};
use eddy_proto::{ColumnDef, ColumnType, Error, ErrorCode, PartitionBy, Result, TableDef};

fn bad(msg: String) -> Error {
    Error::new(ErrorCode::InvalidTableDefinition, msg)
}

/// Parses a PostgreSQL type name as written in DDL.
pub fn parse_type(sql_type: &str) -> Result<ColumnType> {
    let t = sql_type.trim().to_ascii_lowercase();
    let base = t.split('(').next().unwrap_or("").trim();
    let args: Vec<i64> = t
        .split_once('(')
        .map(|(_, r)| {
            r.trim_end_matches(')')
                .split(',')
                .filter_map(|a| a.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    Ok(match base {
        "text" | "string" => ColumnType::Text,
        "varchar" | "character varying" => ColumnType::Varchar {
            length: match args.first() {
                None => None,
                Some(n) => Some(char_length(*n)?),
            },
        },
        // `char` without a length is `char(1)`, as in PostgreSQL.
        "char" | "character" | "bpchar" => ColumnType::Char {
            length: char_length(*args.first().unwrap_or(&1))?,
        },
        "boolean" | "bool" => ColumnType::Bool,
        "smallint" | "int2" => ColumnType::Int16,
        "int" | "integer" | "int4" => ColumnType::Int32,
        "bigint" | "int8" => ColumnType::Int64,
        "real" | "float4" => ColumnType::Float32,
        "double precision" | "float8" | "double" | "float" => ColumnType::Float64,
        "numeric" | "decimal" => {
            let precision = *args.first().unwrap_or(&38);
            let scale = *args.get(1).unwrap_or(&if args.is_empty() { 9 } else { 0 });
            if !(1..=38).contains(&precision) || scale < 0 || scale > precision {
                return Err(bad(format!(
                    "NUMERIC precision {precision} and scale {scale} are out of range (1..38)"
                )));
            }
            ColumnType::Numeric {
                precision: precision as u8,
                scale: scale as i8,
            }
        }
        "date" => ColumnType::Date,
        "timestamp" | "timestamp without time zone" | "datetime" => ColumnType::Timestamp,
        "timestamptz" | "timestamp with time zone" => ColumnType::TimestampTz,
        "jsonb" | "json" => ColumnType::Jsonb,
        _ if t.starts_with("timestamp")
            && t.ends_with("with time zone")
            && !t.contains("without") =>
        {
            ColumnType::TimestampTz
        }
        _ if t.starts_with("timestamp") => ColumnType::Timestamp,
        _ => {
            return Err(Error::new(
                ErrorCode::Unsupported,
                format!("type \"{sql_type}\" is not supported"),
            ));
        }
    })
}

/// The `n` of `varchar(n)` / `char(n)`, within PostgreSQL's limits.
fn char_length(n: i64) -> Result<u32> {
    if !(1..=10_485_760).contains(&n) {
        return Err(bad(format!(
            "length for type varchar must be between 1 and 10485760, not {n}"
        )));
    }
    Ok(n as u32)
}

fn column_def(c: &SqlColumnDef) -> Result<(ColumnDef, bool)> {
    let ty = parse_type(&c.data_type.to_string())?;
    let mut nullable = true;
    let mut pk = false;
    for opt in &c.options {
        match &opt.option {
            ColumnOption::NotNull => nullable = false,
            ColumnOption::Null => nullable = true,
            ColumnOption::PrimaryKey(_) => {
                pk = true;
                nullable = false;
            }
            other => {
                return Err(Error::new(
                    ErrorCode::Unsupported,
                    format!(
                        "column option {other} on \"{}\" is not supported",
                        c.name.value
                    ),
                ))
            }
        }
    }
    Ok((
        ColumnDef {
            name: c.name.value.clone(),
            ty,
            nullable,
        },
        pk,
    ))
}

fn option_text(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        SqlExpr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// Parses a retention such as `30 days`, `12 hours`, `90d`, `3600` (seconds).
pub fn parse_retention(s: &str) -> Result<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| bad(format!("retention '{s}' must look like '30 days'")))?;
    let mult = match unit.trim() {
        "" | "s" | "sec" | "second" | "seconds" => 1,
        "m" | "min" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        "month" | "months" => 30 * 86_400,
        "y" | "year" | "years" => 365 * 86_400,
        u => return Err(bad(format!("unknown retention unit '{u}'"))),
    };
    Ok(n * mult)
}

/// `CREATE TABLE` → table definition. Primary-key columns are NOT NULL, as in PostgreSQL.
pub fn table_def(ct: &CreateTable) -> Result<TableDef> {
    if ct.query.is_some() {
        return Err(Error::new(
            ErrorCode::Unsupported,
            "CREATE TABLE AS is not supported yet; use CREATE TABLE then INSERT ... SELECT",
        ));
    }
    let name = ct
        .name
        .0
        .last()
        .map(|p| p.to_string().trim_matches('"').to_string())
        .unwrap_or_default();
    let mut columns = Vec::new();
    let mut primary_key = Vec::new();
    for c in &ct.columns {
        let (def, pk) = column_def(c)?;
        if pk {
            primary_key.push(def.name.clone());
        }
        columns.push(def);
    }
    for con in &ct.constraints {
        match con {
            TableConstraint::PrimaryKey(p) => {
                if !primary_key.is_empty() {
                    return Err(bad(format!(
                        "multiple primary keys for table \"{name}\" are not allowed"
                    )));
                }
                for ic in &p.columns {
                    primary_key.push(ic.column.expr.to_string().trim_matches('"').to_string());
                }
            }
            other => {
                return Err(Error::new(
                    ErrorCode::Unsupported,
                    format!("constraint {other} is not supported"),
                ))
            }
        }
    }
    for k in &primary_key {
        if let Some(c) = columns.iter_mut().find(|c| &c.name == k) {
            c.nullable = false;
        }
    }
    let mut def = TableDef {
        name,
        columns,
        primary_key,
        time_column: None,
        partition_by: None,
        retention_secs: None,
    };
    let opts: &[SqlOption] = match &ct.table_options {
        CreateTableOptions::None => &[],
        CreateTableOptions::With(o)
        | CreateTableOptions::Options(o)
        | CreateTableOptions::Plain(o) => o,
        CreateTableOptions::TableProperties(o) => o,
    };
    for o in opts {
        let SqlOption::KeyValue { key, value } = o else {
            return Err(bad(format!("table option {o} is not supported")));
        };
        let v = option_text(value);
        match key.value.to_ascii_lowercase().as_str() {
            "time_column" => def.time_column = Some(v),
            "partition_by" => def.partition_by = Some(PartitionBy::parse(&v)?),
            "retention" => def.retention_secs = Some(parse_retention(&v)?),
            other => {
                return Err(bad(format!(
                    "unknown table option \"{other}\" (known: time_column, partition_by, retention)"
                )))
            }
        }
    }
    def.validate()?;
    Ok(def)
}

/// `ALTER TABLE ... ADD COLUMN` column.
pub fn added_column(c: &SqlColumnDef) -> Result<ColumnDef> {
    let (def, pk) = column_def(c)?;
    if pk {
        return Err(Error::new(
            ErrorCode::Unsupported,
            "cannot add a primary key column",
        ));
    }
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_retention() {
        assert_eq!(
            parse_type("NUMERIC(12, 2)").unwrap(),
            ColumnType::Numeric {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(
            parse_type("timestamp with time zone").unwrap(),
            ColumnType::TimestampTz
        );
        assert_eq!(parse_type("TIMESTAMP(6)").unwrap(), ColumnType::Timestamp);
        assert_eq!(
            parse_type("character varying(20)").unwrap(),
            ColumnType::Varchar { length: Some(20) }
        );
        assert_eq!(
            parse_type("VARCHAR").unwrap(),
            ColumnType::Varchar { length: None }
        );
        assert_eq!(
            parse_type("CHAR(3)").unwrap(),
            ColumnType::Char { length: 3 }
        );
        assert_eq!(parse_type("char").unwrap(), ColumnType::Char { length: 1 });
        assert!(parse_type("varchar(0)").is_err());
        assert!(parse_type("point").is_err());
        assert_eq!(parse_retention("30 days").unwrap(), 30 * 86_400);
        assert_eq!(parse_retention("12h").unwrap(), 12 * 3_600);
    }
}

/// `CREATE MATERIALIZED VIEW name [WITH (lateness = '30 seconds')] AS SELECT ...` → the
/// view definition the BE compiles.
pub fn rollup_def(cv: &CreateView) -> Result<eddy_proto::RollupDef> {
    if cv.or_replace || cv.or_alter {
        return Err(Error::new(
            ErrorCode::Unsupported,
            "CREATE OR REPLACE MATERIALIZED VIEW is not supported; DROP it and CREATE it again",
        ));
    }
    if !cv.columns.is_empty() {
        return Err(bad(
            "name a materialized view's columns with AS in its SELECT list".into(),
        ));
    }
    let opts: &[SqlOption] = match &cv.options {
        CreateTableOptions::None => &[],
        CreateTableOptions::With(o)
        | CreateTableOptions::Options(o)
        | CreateTableOptions::Plain(o)
        | CreateTableOptions::TableProperties(o) => o,
    };
    let mut lateness_secs = None;
    for o in opts {
        let SqlOption::KeyValue { key, value } = o else {
            return Err(bad(format!("view option {o} is not supported")));
        };
        match key.value.to_ascii_lowercase().as_str() {
            "lateness" => lateness_secs = Some(parse_retention(&option_text(value))?),
            other => {
                return Err(bad(format!(
                    "unknown materialized view option \"{other}\" (known: lateness)"
                )))
            }
        }
    }
    let name = cv
        .name
        .0
        .last()
        .map(|p| p.to_string().trim_matches('"').to_string())
        .unwrap_or_default();
    Ok(eddy_proto::RollupDef {
        name,
        sql: cv.query.to_string(),
        lateness_secs,
    })
}
