//! Table definitions as the catalog stores them, and the facts `system.*` tables show.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};

/// The SQL column types eddy stores, each with one Arrow representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    Text,
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Numeric {
        precision: u8,
        scale: i8,
    },
    Date,
    Timestamp,
    TimestampTz,
    /// JSON documents, stored as their text.
    Jsonb,
    /// `varchar(n)` (`character varying`): text of at most `length` characters; `None`
    /// is `varchar` without a length, which takes any text.
    Varchar {
        length: Option<u32>,
    },
    /// `char(n)` (`character`, PostgreSQL's `bpchar`): text blank-padded to `length`
    /// characters.
    Char {
        length: u32,
    },
}

impl ColumnType {
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::Text
            | ColumnType::Jsonb
            | ColumnType::Varchar { .. }
            | ColumnType::Char { .. } => DataType::Utf8,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Int16 => DataType::Int16,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Numeric { precision, scale } => DataType::Decimal128(precision, scale),
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
            }
        }
    }

    /// The PostgreSQL spelling of the type, as `\d` and `information_schema` show it.
    pub fn sql_name(self) -> String {
        match self {
            ColumnType::Text => "text".into(),
            ColumnType::Jsonb => "jsonb".into(),
            ColumnType::Bool => "boolean".into(),
            ColumnType::Int16 => "smallint".into(),
            ColumnType::Int32 => "integer".into(),
            ColumnType::Int64 => "bigint".into(),
            ColumnType::Float32 => "real".into(),
            ColumnType::Float64 => "double precision".into(),
            ColumnType::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
            ColumnType::Date => "date".into(),
            ColumnType::Timestamp => "timestamp without time zone".into(),
            ColumnType::TimestampTz => "timestamp with time zone".into(),
            ColumnType::Varchar { length: None } => "character varying".into(),
            ColumnType::Varchar {
                length: Some(length),
            } => format!("character varying({length})"),
            ColumnType::Char { length } => format!("character({length})"),
        }
    }

    /// The most characters a value may have (`varchar(n)`, `char(n)`).
    pub fn max_chars(self) -> Option<u32> {
        match self {
            ColumnType::Varchar { length } => length,
            ColumnType::Char { length } => Some(length),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
}

/// Time partitioning granularity of a table's segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitionBy {
    Hour,
    Day,
    Month,
}

impl PartitionBy {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "hour" => Ok(PartitionBy::Hour),
            "day" => Ok(PartitionBy::Day),
            "month" => Ok(PartitionBy::Month),
            other => Err(Error::new(
                ErrorCode::InvalidTableDefinition,
                format!("partition_by must be 'hour', 'day' or 'month', not '{other}'"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PartitionBy::Hour => "hour",
            PartitionBy::Day => "day",
            PartitionBy::Month => "month",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Column names of the primary key; non-empty makes an upsert table.
    #[serde(default)]
    pub primary_key: Vec<String>,
    #[serde(default)]
    pub time_column: Option<String>,
    #[serde(default)]
    pub partition_by: Option<PartitionBy>,
    #[serde(default)]
    pub retention_secs: Option<u64>,
}

/// `schema` with every column nullable: how scans and query plans see a table, because
/// NOT NULL is checked on write, where the error can name the row and column, and a query
/// engine must not re-check it with a vaguer message.
pub fn nullable_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

impl TableDef {
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.ty.arrow_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn has_primary_key(&self) -> bool {
        !self.primary_key.is_empty()
    }

    /// Checks the definition is self-consistent: keys and time column exist, names unique.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::new(ErrorCode::InvalidTableDefinition, m));
        if self.columns.is_empty() {
            return bad(format!(
                "table \"{}\" must have at least one column",
                self.name
            ));
        }
        for (i, c) in self.columns.iter().enumerate() {
            if self.columns[..i].iter().any(|o| o.name == c.name) {
                return Err(Error::new(
                    ErrorCode::ColumnAlreadyExists,
                    format!("column \"{}\" specified more than once", c.name),
                ));
            }
        }
        for k in &self.primary_key {
            match self.column(k) {
                None => return bad(format!("primary key column \"{k}\" does not exist")),
                Some(c) if c.nullable => {
                    return bad(format!("primary key column \"{k}\" must be NOT NULL"))
                }
                Some(_) => {}
            }
        }
        if let Some(tc) = &self.time_column {
            match self.column(tc).map(|c| c.ty) {
                Some(ColumnType::Timestamp | ColumnType::TimestampTz | ColumnType::Date) => {}
                Some(_) => return bad(format!("time_column \"{tc}\" must be a timestamp or date")),
                None => return bad(format!("time_column \"{tc}\" does not exist")),
            }
        }
        if self.time_column.is_none()
            && (self.partition_by.is_some() || self.retention_secs.is_some())
        {
            return bad("partition_by and retention need a time_column".into());
        }
        Ok(())
    }
}

/// A table and its storage figures, for `system.tables`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableInfo {
    pub def: TableDef,
    pub rows: u64,
    pub memtable_rows: u64,
    pub memtable_bytes: u64,
    pub segments: u64,
    pub segment_bytes: u64,
}

/// One live segment, for `system.segments`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub table: String,
    pub partition: String,
    pub segment_id: u64,
    pub rows: u64,
    pub deleted_rows: u64,
    pub bytes: u64,
    pub min_time_micros: Option<i64>,
    pub max_time_micros: Option<i64>,
    pub created_micros: i64,
    /// How many compactions produced this segment (0 = sealed from a memtable).
    pub level: u32,
}
