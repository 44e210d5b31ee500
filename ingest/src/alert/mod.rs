//! Alert rules evaluated as data arrives.
//!
//! A rule on a table fires per ingested row ([`RowRule`]); a rule on a materialized view
//! fires once per key and bucket ([`view::ViewWatch`]), as soon as its condition holds or,
//! with `EMIT ON CLOSE`, when the bucket closes. Every firing has a deterministic id: a
//! hash of the rule (name and creation time) and what identifies the firing, the whole row
//! for a row rule and the key and bucket for a view rule. Replaying the same rows after a
//! crash therefore fires the same ids, which is what makes recording them (`system.alerts`,
//! keyed by id) and publishing them ([`sink`]) exactly once.

pub mod compile;
pub mod sink;
pub mod tail;
pub mod view;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use eddy_proto::{alerts_table_def, AlertDef, Error, ErrorCode, Result, TableDef};

pub use compile::{compile_rule, CompiledRule, Lookback, LookbackKind};

fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Internal, format!("alert {what}: {e}"))
}

/// One alert, before it is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub id: String,
    pub rule: String,
    pub severity: Option<String>,
    pub source: String,
    /// JSON object of the key columns.
    pub key: String,
    /// Start of the bucket (view rules), µs.
    pub bucket_micros: Option<i64>,
    /// The row's time column (row rules), µs.
    pub event_micros: Option<i64>,
    /// JSON object of what the rule read.
    pub values: String,
}

/// A deterministic alert id: 32 hex digits of a BLAKE3 hash of the rule and `parts`.
pub fn alert_id(def: &AlertDef, parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(def.name.as_bytes());
    h.update(&[0]);
    h.update(&def.created_micros.to_le_bytes());
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    d.as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Each row of `batch` as a JSON object (NULLs kept as `null`).
pub fn json_rows(batch: &RecordBatch) -> Result<Vec<String>> {
    if batch.num_columns() == 0 {
        return Ok(vec!["{}".to_string(); batch.num_rows()]);
    }
    let mut buf = Vec::new();
    {
        let mut w = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::LineDelimited>(&mut buf);
        w.write(batch).map_err(|e| internal("json", e))?;
        w.finish().map_err(|e| internal("json", e))?;
    }
    let text = String::from_utf8(buf).map_err(|e| internal("json", e))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// The columns `names` of `batch`, in that order.
pub fn project(batch: &RecordBatch, names: &[String]) -> Result<RecordBatch> {
    let idx = names
        .iter()
        .map(|n| {
            batch
                .schema()
                .index_of(n)
                .map_err(|e| internal("project", e))
        })
        .collect::<Result<Vec<_>>>()?;
    batch.project(&idx).map_err(|e| internal("project", e))
}

/// A time column as µs since the epoch.
pub fn micros_of(a: &ArrayRef) -> Result<TimestampMicrosecondArray> {
    let c = cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))
        .map_err(|e| internal("time", e))?;
    Ok(c.as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .cloned()
        .expect("cast to timestamp"))
}

/// A rule on a table: fires for every ingested row its condition holds for.
#[derive(Debug)]
pub struct RowRule {
    pub rule: CompiledRule,
    /// The table's primary key: an alert's `key`.
    key: Vec<String>,
    time_column: Option<String>,
}

impl RowRule {
    pub fn new(def: &AlertDef, table: &TableDef) -> Result<Self> {
        let rule = compile_rule(def, &table.arrow_schema(), false)?;
        Ok(Self {
            rule,
            key: table.primary_key.clone(),
            time_column: table.time_column.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.rule.def.name
    }

    /// The alerts `batch` (rows as written, in the table's schema) fires.
    pub fn fire(&self, batch: &RecordBatch, out: &mut Vec<Firing>) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let input = RecordBatch::try_new(
            Arc::clone(&self.rule.input_schema),
            batch.columns().to_vec(),
        )
        .map_err(|e| internal("input", e))?;
        let m = self.rule.matches(&input)?;
        if m.true_count() == 0 {
            return Ok(());
        }
        let rows = filter_record_batch(&input, &m).map_err(|e| internal("filter", e))?;
        let severity = self.rule.severities(&rows)?;
        let whole = json_rows(&rows)?;
        let keys = json_rows(&project(&rows, &self.key)?)?;
        let values = json_rows(&project(&rows, &self.rule.reads)?)?;
        let times = match &self.time_column {
            Some(t) => Some(micros_of(rows.column_by_name(t).expect("table column"))?),
            None => None,
        };
        for i in 0..rows.num_rows() {
            out.push(Firing {
                id: alert_id(&self.rule.def, &[whole[i].as_bytes()]),
                rule: self.rule.def.name.clone(),
                severity: severity.is_valid(i).then(|| severity.value(i).to_string()),
                source: self.rule.def.source.clone(),
                key: keys[i].clone(),
                bucket_micros: None,
                event_micros: times
                    .as_ref()
                    .and_then(|t| t.is_valid(i).then(|| t.value(i))),
                values: values[i].clone(),
            });
        }
        Ok(())
    }
}

/// `system.alerts` rows for `firings`, detected at `detected` (µs, one per firing).
pub fn alerts_batch(firings: &[Firing], detected: &[i64]) -> Result<RecordBatch> {
    let schema: SchemaRef = alerts_table_def().arrow_schema();
    let text = |f: &dyn Fn(&Firing) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(firings.iter().map(f)))
    };
    let time = |v: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
    };
    let cols = vec![
        text(&|f| Some(&f.id)),
        text(&|f| Some(&f.rule)),
        text(&|f| f.severity.as_deref()),
        text(&|f| Some(&f.source)),
        text(&|f| Some(&f.key)),
        time(firings.iter().map(|f| f.bucket_micros).collect()),
        time(firings.iter().map(|f| f.event_micros).collect()),
        text(&|f| Some(&f.values)),
        time(detected.iter().map(|d| Some(*d)).collect()),
    ];
    RecordBatch::try_new(schema, cols).map_err(|e| internal("rows", e))
}

/// RFC 3339 UTC text of a µs timestamp, as alert messages carry times.
pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// The JSON message published for one alert (documented in the README).
pub fn message_json(f: &Firing, detected_micros: i64) -> String {
    let raw =
        |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
    let mut m = serde_json::Map::new();
    m.insert("alert_id".into(), f.id.clone().into());
    m.insert("rule".into(), f.rule.clone().into());
    m.insert(
        "severity".into(),
        f.severity
            .clone()
            .map_or(serde_json::Value::Null, Into::into),
    );
    m.insert("source".into(), f.source.clone().into());
    m.insert("key".into(), raw(&f.key));
    if let Some(b) = f.bucket_micros {
        m.insert("bucket".into(), rfc3339(b).into());
    }
    if let Some(t) = f.event_micros {
        m.insert("event_time".into(), rfc3339(t).into());
    }
    m.insert("values".into(), raw(&f.values));
    m.insert("detected_at".into(), rfc3339(detected_micros).into());
    serde_json::Value::Object(m).to_string()
}

/// Reads firings back from `system.alerts` rows (the sink's recovery path).
pub fn firings_of(batch: &RecordBatch) -> Result<Vec<(Firing, i64)>> {
    let s = |name: &str| -> Result<StringArray> {
        let c = batch
            .column_by_name(name)
            .ok_or_else(|| internal("rows", format!("no column {name}")))?;
        let c = cast(c, &DataType::Utf8).map_err(|e| internal("rows", e))?;
        Ok(c.as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .expect("utf8"))
    };
    let t = |name: &str| -> Result<TimestampMicrosecondArray> {
        micros_of(
            batch
                .column_by_name(name)
                .ok_or_else(|| internal("rows", format!("no column {name}")))?,
        )
    };
    let (id, rule, sev, src, key, values) = (
        s("alert_id")?,
        s("rule")?,
        s("severity")?,
        s("source")?,
        s("key")?,
        s("values")?,
    );
    let (bucket, event, detected) = (t("bucket")?, t("event_time")?, t("detected_at")?);
    let opt_t = |a: &TimestampMicrosecondArray, i: usize| a.is_valid(i).then(|| a.value(i));
    Ok((0..batch.num_rows())
        .map(|i| {
            (
                Firing {
                    id: id.value(i).to_string(),
                    rule: rule.value(i).to_string(),
                    severity: sev.is_valid(i).then(|| sev.value(i).to_string()),
                    source: src.value(i).to_string(),
                    key: key.value(i).to_string(),
                    bucket_micros: opt_t(&bucket, i),
                    event_micros: opt_t(&event, i),
                    values: values.value(i).to_string(),
                },
                detected.value(i),
            )
        })
        .collect())
}
