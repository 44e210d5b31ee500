//! Schemas DataFusion resolves names in: `public` (the BE's tables, looked up live so DDL
//! from any session is visible at once) and `system` (tables, segments).

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{MemTable, SchemaProvider};
use datafusion::datasource::TableProvider;
use datafusion::error::Result;
use eddy_proto::BeService;

use crate::provider::EddyTable;

#[derive(Debug)]
pub struct EddySchema {
    pub be: Arc<dyn BeService>,
}

#[async_trait]
impl SchemaProvider for EddySchema {
    fn table_names(&self) -> Vec<String> {
        self.be.tables().into_iter().map(|t| t.def.name).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.be.table(name).map(|def| {
            Arc::new(EddyTable {
                be: Arc::clone(&self.be),
                name: def.name.clone(),
                schema: nullable(&def.arrow_schema()),
            }) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.be.table(name).is_some()
    }
}

/// The schema DataFusion plans with: every column nullable, because NOT NULL is checked
/// by the BE on write, where the error names the row and column.
fn nullable(schema: &arrow::datatypes::SchemaRef) -> arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

/// `system.*`: built from the BE's state at the moment a query plans.
#[derive(Debug)]
pub struct SystemSchema {
    pub be: Arc<dyn BeService>,
}

const SYSTEM_TABLES: [&str; 2] = ["tables", "segments"];

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

impl SystemSchema {
    fn tables_batch(&self) -> Result<RecordBatch> {
        let t = self.be.tables();
        let schema = Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("columns", DataType::UInt32, false),
            Field::new("primary_key", DataType::Utf8, true),
            Field::new("time_column", DataType::Utf8, true),
            Field::new("partition_by", DataType::Utf8, true),
            Field::new("retention_seconds", DataType::UInt64, true),
            Field::new("rows", DataType::UInt64, false),
            Field::new("memtable_rows", DataType::UInt64, false),
            Field::new("memtable_bytes", DataType::UInt64, false),
            Field::new("segments", DataType::UInt64, false),
            Field::new("segment_bytes", DataType::UInt64, false),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                t.iter().map(|i| i.def.name.clone()),
            )),
            Arc::new(UInt32Array::from_iter_values(
                t.iter().map(|i| i.def.columns.len() as u32),
            )),
            Arc::new(StringArray::from_iter(t.iter().map(|i| {
                (!i.def.primary_key.is_empty()).then(|| i.def.primary_key.join(", "))
            }))),
            Arc::new(StringArray::from_iter(
                t.iter().map(|i| i.def.time_column.clone()),
            )),
            Arc::new(StringArray::from_iter(
                t.iter().map(|i| i.def.partition_by.map(|p| p.as_str())),
            )),
            Arc::new(UInt64Array::from_iter(
                t.iter().map(|i| i.def.retention_secs),
            )),
            Arc::new(UInt64Array::from_iter_values(t.iter().map(|i| i.rows))),
            Arc::new(UInt64Array::from_iter_values(
                t.iter().map(|i| i.memtable_rows),
            )),
            Arc::new(UInt64Array::from_iter_values(
                t.iter().map(|i| i.memtable_bytes),
            )),
            Arc::new(UInt64Array::from_iter_values(t.iter().map(|i| i.segments))),
            Arc::new(UInt64Array::from_iter_values(
                t.iter().map(|i| i.segment_bytes),
            )),
        ];
        Ok(RecordBatch::try_new(schema, cols)?)
    }

    fn segments_batch(&self) -> Result<RecordBatch> {
        let s = self.be.segments();
        let schema = Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("partition", DataType::Utf8, false),
            Field::new("segment_id", DataType::UInt64, false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("deleted_rows", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new("min_time", ts_type(), true),
            Field::new("max_time", ts_type(), true),
            Field::new("created", ts_type(), false),
            Field::new("level", DataType::UInt32, false),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                s.iter().map(|i| i.table.clone()),
            )),
            Arc::new(StringArray::from_iter_values(
                s.iter().map(|i| i.partition.clone()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                s.iter().map(|i| i.segment_id),
            )),
            Arc::new(UInt64Array::from_iter_values(s.iter().map(|i| i.rows))),
            Arc::new(UInt64Array::from_iter_values(
                s.iter().map(|i| i.deleted_rows),
            )),
            Arc::new(UInt64Array::from_iter_values(s.iter().map(|i| i.bytes))),
            Arc::new(TimestampMicrosecondArray::from_iter(
                s.iter().map(|i| i.min_time_micros),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter(
                s.iter().map(|i| i.max_time_micros),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                s.iter().map(|i| i.created_micros),
            )),
            Arc::new(UInt32Array::from_iter_values(s.iter().map(|i| i.level))),
        ];
        Ok(RecordBatch::try_new(schema, cols)?)
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        SYSTEM_TABLES.iter().map(|s| s.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "tables" => self.tables_batch()?,
            "segments" => self.segments_batch()?,
            _ => return Ok(None),
        };
        let t = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(t)))
    }

    fn table_exist(&self, name: &str) -> bool {
        SYSTEM_TABLES.contains(&name)
    }
}
