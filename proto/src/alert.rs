//! Alert rules: the definition the catalog stores, the status `system.alert_rules` shows,
//! and the table every firing lands in (`system.alerts`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::table::{ColumnDef, ColumnType, PartitionBy, TableDef};

/// Where every firing is recorded, whatever its sink.
pub const ALERTS_TABLE: &str = "system.alerts";

/// When a rule on a materialized view fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Emit {
    /// As soon as the condition holds for a key and bucket (once per key and bucket).
    #[default]
    OnUpdate,
    /// Once the bucket closes (its end plus the view's lateness has passed in event time),
    /// on the bucket's final values.
    OnClose,
}

/// A Kafka topic alerts are published to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSinkDef {
    pub brokers: String,
    pub topic: String,
    /// librdkafka properties passed through (`properties.security.protocol = 'SSL'`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// An alert rule as the catalog stores it. Conditions are kept as SQL text and compiled
/// again on every start, like view definitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDef {
    pub name: String,
    /// A table (the rule fires per ingested row) or a materialized view (once per key and
    /// bucket).
    pub source: String,
    /// The `WHEN` condition.
    pub condition: String,
    /// The `SEVERITY` expression (text); `'warning'` when the rule names none.
    pub severity: String,
    #[serde(default)]
    pub emit: Emit,
    #[serde(default)]
    pub sink: Option<KafkaSinkDef>,
    /// When the rule was created (µs since the epoch). Part of every alert id, so a rule
    /// dropped and created again under the same name never collides with its past alerts.
    pub created_micros: i64,
}

/// One row of `system.alert_rules`.
#[derive(Debug, Clone, Default)]
pub struct AlertRuleInfo {
    pub def: Option<AlertDef>,
    /// The table whose writes the rule watches (the source, or the view's root table).
    pub root_table: String,
    /// Alerts fired since the server started (deduplicated).
    pub fired: u64,
    /// Alerts the sink's broker acknowledged since the server started.
    pub delivered: u64,
    /// Alerts waiting for the sink (in memory, or only in `system.alerts` after an outage
    /// overflowed the bounded queue).
    pub queued: u64,
    /// The last sink or evaluation error, if any.
    pub last_error: Option<String>,
}

/// The definition of [`ALERTS_TABLE`]. Keyed by the alert id, so recording the same firing
/// twice keeps one row.
pub fn alerts_table_def() -> TableDef {
    let col = |name: &str, ty: ColumnType, nullable: bool| ColumnDef {
        name: name.into(),
        ty,
        nullable,
    };
    TableDef {
        name: ALERTS_TABLE.into(),
        columns: vec![
            col("alert_id", ColumnType::Text, false),
            col("rule", ColumnType::Text, false),
            col("severity", ColumnType::Text, true),
            col("source", ColumnType::Text, false),
            col("key", ColumnType::Jsonb, false),
            col("bucket", ColumnType::TimestampTz, true),
            col("event_time", ColumnType::TimestampTz, true),
            col("values", ColumnType::Jsonb, false),
            col("detected_at", ColumnType::TimestampTz, false),
        ],
        primary_key: vec!["alert_id".into()],
        time_column: Some("detected_at".into()),
        partition_by: Some(PartitionBy::Day),
        retention_secs: Some(30 * 86_400),
    }
}
