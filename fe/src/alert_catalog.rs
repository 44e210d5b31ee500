//! `system.alert_rules`: one row per alert rule, with its counters. The alerts themselves
//! are the table `system.alerts`, kept by the BE.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use eddy_proto::{AlertDef, AlertRuleInfo, BeService, Emit};

pub fn alert_rules_batch(be: &Arc<dyn BeService>) -> Result<RecordBatch> {
    let mut rules = be.alert_rules();
    rules.retain(|r| r.def.is_some());
    rules.sort_by(|a, b| {
        a.def
            .as_ref()
            .map(|d| &d.name)
            .cmp(&b.def.as_ref().map(|d| &d.name))
    });
    let schema = Arc::new(Schema::new(vec![
        Field::new("rule", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("root_table", DataType::Utf8, false),
        Field::new("condition", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("emit", DataType::Utf8, false),
        Field::new("sink_brokers", DataType::Utf8, true),
        Field::new("sink_topic", DataType::Utf8, true),
        Field::new("fired", DataType::UInt64, false),
        Field::new("delivered", DataType::UInt64, false),
        Field::new("queued", DataType::UInt64, false),
        Field::new("last_error", DataType::Utf8, true),
        Field::new(
            "created",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]));
    let def = |r: &AlertRuleInfo| -> AlertDef { r.def.clone().expect("retained") };
    let text = |f: &dyn Fn(&AlertRuleInfo) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rules.iter().map(f)))
    };
    let count = |f: &dyn Fn(&AlertRuleInfo) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(rules.iter().map(f)))
    };
    let cols: Vec<ArrayRef> = vec![
        text(&|r| Some(def(r).name)),
        text(&|r| Some(def(r).source)),
        text(&|r| Some(r.root_table.clone())),
        text(&|r| Some(def(r).condition)),
        text(&|r| Some(def(r).severity)),
        text(&|r| {
            Some(match def(r).emit {
                Emit::OnUpdate => "on update".into(),
                Emit::OnClose => "on close".into(),
            })
        }),
        text(&|r| def(r).sink.map(|s| s.brokers)),
        text(&|r| def(r).sink.map(|s| s.topic)),
        count(&|r| r.fired),
        count(&|r| r.delivered),
        count(&|r| r.queued),
        text(&|r| r.last_error.clone()),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                rules.iter().map(|r| def(r).created_micros),
            )
            .with_timezone("UTC"),
        ),
    ];
    Ok(RecordBatch::try_new(schema, cols)?)
}
