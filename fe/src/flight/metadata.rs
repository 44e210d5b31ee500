//! Flight SQL metadata commands: catalogs, schemas, tables (with their Arrow schemas),
//! table types, primary keys and the server's SQL facts. Tables are listed from DataFusion's
//! `information_schema`, so Flight SQL shows exactly what SQL can query.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int32Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTableTypes,
    CommandGetTables, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity,
};
use eddy_proto::{Error, ErrorCode, Result};

use crate::query::{Outcome, QueryEngine};

/// eddy's one catalog.
pub(crate) const CATALOG: &str = "eddy";

fn arrow_err(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Internal, e.to_string())
}

/// The table type Flight SQL clients see for an `information_schema.tables` row.
fn table_type(schema: &str, df_type: &str) -> &'static str {
    if schema == "system" || schema == "information_schema" {
        "SYSTEM TABLE"
    } else if df_type == "VIEW" {
        "VIEW"
    } else {
        "TABLE"
    }
}

pub(crate) fn sql_info() -> Result<SqlInfoData> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "eddy");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    // 0 = SQL_SUPPORTED_TRANSACTION_NONE: every write commits on its own.
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.build().map_err(arrow_err)
}

pub(crate) fn catalogs(cmd: CommandGetCatalogs) -> Result<RecordBatch> {
    let mut b = cmd.into_builder();
    b.append(CATALOG);
    b.build().map_err(arrow_err)
}

pub(crate) fn catalogs_schema() -> SchemaRef {
    CommandGetCatalogs::default().into_builder().schema()
}

/// `(schema, table, information_schema table_type)` of every table SQL can see.
async fn list(engine: &QueryEngine) -> Result<Vec<(String, String, String)>> {
    let batches = engine
        .query(
            "SELECT table_schema, table_name, table_type FROM information_schema.tables \
             WHERE table_catalog = 'eddy' ORDER BY table_schema, table_name",
        )
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let (s, n, t) = (
            string_column(b.column(0))?,
            string_column(b.column(1))?,
            string_column(b.column(2))?,
        );
        for i in 0..b.num_rows() {
            out.push((s[i].clone(), n[i].clone(), t[i].clone()));
        }
    }
    Ok(out)
}

fn string_column(a: &ArrayRef) -> Result<Vec<String>> {
    let a = arrow::compute::cast(a, &DataType::Utf8).map_err(arrow_err)?;
    Ok(a.as_string::<i32>()
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}

pub(crate) async fn schemas(engine: &QueryEngine, cmd: CommandGetDbSchemas) -> Result<RecordBatch> {
    let mut b = cmd.into_builder();
    let mut seen: Vec<String> = list(engine).await?.into_iter().map(|t| t.0).collect();
    seen.push("public".into());
    seen.sort();
    seen.dedup();
    for s in seen {
        b.append(CATALOG, s);
    }
    b.build().map_err(arrow_err)
}

pub(crate) fn schemas_schema() -> SchemaRef {
    CommandGetDbSchemas::default().into_builder().schema()
}

/// A table's Arrow schema: eddy tables from their definition (which knows NOT NULL), other
/// tables as a `SELECT *` of them plans, without running it.
pub(crate) async fn table_schema(
    engine: &QueryEngine,
    schema: &str,
    table: &str,
) -> Result<SchemaRef> {
    if schema == "public" {
        if let Some(def) = engine.be().table(table) {
            return Ok(def.arrow_schema());
        }
    }
    let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let sql = format!("SELECT * FROM {}.{} LIMIT 0", ident(schema), ident(table));
    let mut stmts = engine.parse(&sql)?;
    let stmt = stmts
        .pop()
        .ok_or_else(|| Error::new(ErrorCode::Internal, "empty table schema query"))?;
    match engine.execute(stmt).await? {
        Outcome::Rows(s) => Ok(s.schema()),
        _ => Err(Error::new(ErrorCode::Internal, "SELECT returned no rows")),
    }
}

pub(crate) async fn tables(engine: &QueryEngine, cmd: CommandGetTables) -> Result<RecordBatch> {
    let mut b = cmd.into_builder();
    let with_schema = b.include_schema();
    let empty = Schema::empty();
    for (schema, table, df_type) in list(engine).await? {
        let ty = table_type(&schema, &df_type);
        if with_schema {
            let s = table_schema(engine, &schema, &table).await?;
            b.append(CATALOG, &schema, &table, ty, &s)
        } else {
            b.append(CATALOG, &schema, &table, ty, &empty)
        }
        .map_err(arrow_err)?;
    }
    b.build().map_err(arrow_err)
}

pub(crate) fn tables_schema(cmd: &CommandGetTables) -> SchemaRef {
    cmd.clone().into_builder().schema()
}

pub(crate) fn table_types(cmd: CommandGetTableTypes) -> Result<RecordBatch> {
    let mut b = cmd.into_builder();
    for t in ["SYSTEM TABLE", "TABLE", "VIEW"] {
        b.append(t);
    }
    b.build().map_err(arrow_err)
}

pub(crate) fn table_types_schema() -> SchemaRef {
    CommandGetTableTypes::default().into_builder().schema()
}

pub(crate) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

pub(crate) fn primary_keys(
    engine: &QueryEngine,
    cmd: &CommandGetPrimaryKeys,
) -> Result<RecordBatch> {
    let mut cols: [StringBuilder; 5] = Default::default();
    let mut seq = Int32Builder::new();
    let in_scope = cmd.catalog.as_deref().is_none_or(|c| c == CATALOG)
        && cmd.db_schema.as_deref().is_none_or(|s| s == "public");
    if let Some(def) = engine.be().table(&cmd.table).filter(|_| in_scope) {
        for (i, k) in def.primary_key.iter().enumerate() {
            cols[0].append_value(CATALOG);
            cols[1].append_value("public");
            cols[2].append_value(&def.name);
            cols[3].append_value(k);
            cols[4].append_value(format!("{}_pkey", def.name));
            seq.append_value(i32::try_from(i + 1).unwrap_or(i32::MAX));
        }
    }
    let mut arrays: Vec<ArrayRef> = cols
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    arrays.push(Arc::new(seq.finish()));
    RecordBatch::try_new(primary_keys_schema(), arrays).map_err(arrow_err)
}
