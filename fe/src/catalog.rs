//! Schemas DataFusion resolves names in: `public` (the BE's tables, looked up live so DDL
//! from any session is visible at once) and `system` (tables, segments, sources, rejected),
//! and `pg_catalog` completed from the BE's table definitions ([`pg`]).

pub mod pg;

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{MemTable, SchemaProvider};
use datafusion::datasource::TableProvider;
use datafusion::error::Result;
use eddy_proto::{
    alerts_table_def, rejected_table_def, BeService, SourceStatus, ALERTS_TABLE, REJECTED_TABLE,
};

use crate::provider::EddyTable;

#[derive(Debug)]
pub struct EddySchema {
    pub be: Arc<dyn BeService>,
}

#[async_trait]
impl SchemaProvider for EddySchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .be
            .tables()
            .into_iter()
            .map(|t| t.def.name)
            .filter(|n| !is_internal(n))
            .collect();
        names.extend(self.be.rollups().into_iter().map(|r| r.def.name));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if is_internal(name) {
            return Ok(None);
        }
        Ok(be_table(&self.be, name).or_else(|| crate::rollup_catalog::view_table(&self.be, name)))
    }

    fn table_exist(&self, name: &str) -> bool {
        !is_internal(name) && (self.be.table(name).is_some() || self.be.rollup(name).is_some())
    }
}

/// BE tables that back `system.*` (their names hold a dot) are not user tables.
fn is_internal(name: &str) -> bool {
    name.contains('.')
}

fn be_table(be: &Arc<dyn BeService>, name: &str) -> Option<Arc<dyn TableProvider>> {
    be.table(name).map(|def| {
        Arc::new(EddyTable {
            be: Arc::clone(be),
            name: def.name.clone(),
            schema: nullable(&def.arrow_schema()),
            view: false,
            key: def.primary_key.clone(),
        }) as Arc<dyn TableProvider>
    })
}

/// The schema DataFusion plans with: every column nullable, because NOT NULL is checked
/// by the BE on write, where the error names the row and column.
pub(crate) use eddy_proto::nullable_schema as nullable;

/// `system.*`: built from the BE's state at the moment a query plans.
#[derive(Debug)]
pub struct SystemSchema {
    pub be: Arc<dyn BeService>,
}

const SYSTEM_TABLES: [&str; 7] = [
    "tables",
    "segments",
    "sources",
    "rejected",
    "rollups",
    "alerts",
    "alert_rules",
];

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

impl SystemSchema {
    fn sources_batch(&self) -> Result<RecordBatch> {
        let s = self.be.sources();
        let schema = Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("connector", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("topic", DataType::Utf8, true),
            Field::new("partition", DataType::Int32, true),
            Field::new("committed_offset", DataType::Int64, true),
            Field::new("consumed_offset", DataType::Int64, true),
            Field::new("high_watermark", DataType::Int64, true),
            Field::new("lag", DataType::Int64, true),
            Field::new("rows", DataType::UInt64, false),
            Field::new("rows_per_second", DataType::Float64, false),
            Field::new("rejected", DataType::UInt64, false),
            Field::new("freshness_ms", DataType::Int64, true),
            Field::new("last_error", DataType::Utf8, true),
        ]));
        let text = |f: &dyn Fn(&SourceStatus) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from_iter(s.iter().map(f)))
        };
        let int = |f: &dyn Fn(&SourceStatus) -> Option<i64>| -> ArrayRef {
            Arc::new(Int64Array::from_iter(s.iter().map(f)))
        };
        let cols: Vec<ArrayRef> = vec![
            text(&|i| Some(i.source.clone())),
            text(&|i| Some(i.table.clone())),
            text(&|i| Some(i.connector.clone())),
            text(&|i| Some(i.state.clone())),
            text(&|i| i.topic.clone()),
            Arc::new(Int32Array::from_iter(s.iter().map(|i| i.partition))),
            int(&|i| i.committed_offset),
            int(&|i| i.consumed_offset),
            int(&|i| i.high_watermark),
            int(&|i| i.lag),
            Arc::new(UInt64Array::from_iter_values(s.iter().map(|i| i.rows))),
            Arc::new(Float64Array::from_iter_values(
                s.iter().map(|i| i.rows_per_second),
            )),
            Arc::new(UInt64Array::from_iter_values(s.iter().map(|i| i.rejected))),
            int(&|i| i.freshness_ms),
            text(&|i| i.last_error.clone()),
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
            "sources" => self.sources_batch()?,
            "rollups" => crate::rollup_catalog::rollups_batch(&self.be)?,
            "alert_rules" => crate::alert_catalog::alert_rules_batch(&self.be)?,
            "alerts" => {
                // Created with the first rule; until then, an empty table of its shape.
                if let Some(t) = be_table(&self.be, ALERTS_TABLE) {
                    return Ok(Some(t));
                }
                RecordBatch::new_empty(nullable(&alerts_table_def().arrow_schema()))
            }
            "rejected" => {
                // Created with the first source; until then, an empty table of its shape.
                if let Some(t) = be_table(&self.be, REJECTED_TABLE) {
                    return Ok(Some(t));
                }
                RecordBatch::new_empty(nullable(&rejected_table_def().arrow_schema()))
            }
            _ => return Ok(None),
        };
        let t = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(t)))
    }

    fn table_exist(&self, name: &str) -> bool {
        SYSTEM_TABLES.contains(&name)
    }
}
