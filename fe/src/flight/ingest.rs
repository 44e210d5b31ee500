//! Bulk ingest (`CommandStatementIngest`, what ADBC's `adbc_ingest` sends): Arrow batches
//! appended to a table through [`BeService::write`], so they are conformed to the table
//! schema, validated (row/column errors, NOT NULL) and durable exactly like INSERT, COPY
//! and HTTP writes. All batches of one request are written at once: all or nothing.

use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use eddy_proto::{BeService, ColumnDef, ColumnType, Error, ErrorCode, Result, TableDef};

use super::metadata::CATALOG;

/// The eddy column type that stores an Arrow type without loss.
fn column_type(name: &str, t: &DataType) -> Result<ColumnType> {
    Ok(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::Text,
        DataType::Boolean => ColumnType::Bool,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => ColumnType::Int16,
        DataType::Int32 | DataType::UInt16 => ColumnType::Int32,
        DataType::Int64 | DataType::UInt32 => ColumnType::Int64,
        DataType::Float16 | DataType::Float32 => ColumnType::Float32,
        DataType::Float64 => ColumnType::Float64,
        DataType::Decimal128(p, s) if *p <= 38 => ColumnType::Numeric {
            precision: *p,
            scale: *s,
        },
        DataType::Date32 | DataType::Date64 => ColumnType::Date,
        DataType::Timestamp(_, None) => ColumnType::Timestamp,
        DataType::Timestamp(_, Some(_)) => ColumnType::TimestampTz,
        other => {
            return Err(Error::new(
                ErrorCode::Unsupported,
                format!("column \"{name}\": Arrow type {other} cannot be stored"),
            ))
        }
    })
}

fn table_def(name: &str, schema: &Schema) -> Result<TableDef> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            Ok(ColumnDef {
                name: f.name().clone(),
                ty: column_type(f.name(), f.data_type())?,
                nullable: f.is_nullable(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TableDef {
        name: name.to_string(),
        columns,
        primary_key: Vec::new(),
        time_column: None,
        partition_by: None,
        retention_secs: None,
    })
}

async fn create(be: &dyn BeService, name: &str, schema: Option<&Schema>) -> Result<()> {
    let Some(schema) = schema else {
        return Err(Error::new(
            ErrorCode::InvalidValue,
            "cannot create a table from an upload without a schema",
        ));
    };
    be.create_table(table_def(name, schema)?, false).await
}

/// Creates, replaces or checks the target table as the command's options ask, then writes.
pub(crate) async fn ingest(
    be: &dyn BeService,
    cmd: &CommandStatementIngest,
    batches: Vec<RecordBatch>,
) -> Result<i64> {
    if cmd.catalog.as_deref().is_some_and(|c| c != CATALOG)
        || cmd.schema.as_deref().is_some_and(|s| s != "public")
    {
        return Err(Error::new(
            ErrorCode::TableNotFound,
            format!(
                "relation \"{}\" does not exist (tables live in eddy.public)",
                cmd.table
            ),
        ));
    }
    if cmd.temporary {
        return Err(Error::new(
            ErrorCode::Unsupported,
            "temporary tables are not supported",
        ));
    }
    if cmd.transaction_id.is_some() {
        return Err(Error::new(
            ErrorCode::Unsupported,
            "transactions are not supported; each ingest commits on its own",
        ));
    }
    let opts = cmd.table_definition_options.unwrap_or_default();
    let if_not_exist = TableNotExistOption::try_from(opts.if_not_exist)
        .unwrap_or(TableNotExistOption::Unspecified);
    let if_exists =
        TableExistsOption::try_from(opts.if_exists).unwrap_or(TableExistsOption::Unspecified);
    let schema = batches.first().map(|b| b.schema());
    let exists = be.table(&cmd.table).is_some();
    match (exists, if_exists, if_not_exist) {
        (true, TableExistsOption::Fail, _) => {
            return Err(Error::new(
                ErrorCode::TableAlreadyExists,
                format!("relation \"{}\" already exists", cmd.table),
            ))
        }
        (true, TableExistsOption::Replace, _) => {
            be.drop_table(&cmd.table, true).await?;
            create(be, &cmd.table, schema.as_deref()).await?;
        }
        (true, _, _) => {}
        (false, _, TableNotExistOption::Create) => {
            create(be, &cmd.table, schema.as_deref()).await?
        }
        (false, _, _) => {
            return Err(Error::new(
                ErrorCode::TableNotFound,
                format!("relation \"{}\" does not exist", cmd.table),
            ))
        }
    }
    let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    if batches.is_empty() {
        return Ok(0);
    }
    Ok(be.write(&cmd.table, batches).await? as i64)
}
