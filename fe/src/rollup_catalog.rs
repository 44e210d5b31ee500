//! Materialized views as relations (`SELECT * FROM bars_1m`) and as `system.rollups`.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::TableProvider;
use datafusion::error::Result;
use eddy_proto::{BeService, RollupInfo};

use crate::catalog::nullable;
use crate::provider::EddyTable;

/// A view's user-facing relation.
pub fn view_table(be: &Arc<dyn BeService>, name: &str) -> Option<Arc<dyn TableProvider>> {
    be.rollup(name).map(|info| {
        Arc::new(EddyTable {
            be: Arc::clone(be),
            name: info.def.name.clone(),
            schema: nullable(&info.schema),
            view: true,
            key: vec![],
        }) as Arc<dyn TableProvider>
    })
}

/// A view's internal columns (keys and aggregate results), which query rewrite reads.
pub fn view_internal_table(be: &Arc<dyn BeService>, info: &RollupInfo) -> Arc<EddyTable> {
    Arc::new(EddyTable {
        be: Arc::clone(be),
        name: info.def.name.clone(),
        schema: nullable(&info.internal_schema),
        view: true,
        key: vec![],
    })
}

/// `system.rollups`: one row per materialized view.
pub fn rollups_batch(be: &Arc<dyn BeService>) -> Result<RecordBatch> {
    let r = be.rollups();
    let schema = Arc::new(Schema::new(vec![
        Field::new("view_name", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("root_table", DataType::Utf8, false),
        Field::new("lateness_seconds", DataType::UInt64, true),
        Field::new("rows", DataType::UInt64, false),
        Field::new("open_buckets", DataType::UInt64, false),
        Field::new("late_rows_accepted", DataType::UInt64, false),
        Field::new("late_rows_dropped", DataType::UInt64, false),
        Field::new("state_bytes", DataType::UInt64, false),
        Field::new("backfill_rows_done", DataType::UInt64, false),
        Field::new("backfill_rows_total", DataType::UInt64, false),
        Field::new("lag_rows", DataType::UInt64, false),
        Field::new(
            "max_event_time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("definition", DataType::Utf8, false),
    ]));
    let text = |f: &dyn Fn(&RollupInfo) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(r.iter().map(f)))
    };
    let num = |f: &dyn Fn(&RollupInfo) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(r.iter().map(f)))
    };
    let cols: Vec<ArrayRef> = vec![
        text(&|i| Some(i.def.name.clone())),
        text(&|i| Some(i.source.clone())),
        text(&|i| Some(i.root_table.clone())),
        Arc::new(UInt64Array::from_iter(
            r.iter().map(|i| i.def.lateness_secs),
        )),
        num(&|i| i.rows),
        num(&|i| i.open_buckets),
        num(&|i| i.late_rows_accepted),
        num(&|i| i.late_rows_dropped),
        num(&|i| i.state_bytes),
        num(&|i| i.backfill_rows_done),
        num(&|i| i.backfill_rows_total),
        num(&|i| i.lag_rows()),
        Arc::new(TimestampMicrosecondArray::from_iter(
            r.iter().map(|i| i.max_event_time_micros),
        )),
        text(&|i| i.last_error.clone()),
        text(&|i| Some(i.def.sql.clone())),
    ];
    Ok(RecordBatch::try_new(schema, cols)?)
}
