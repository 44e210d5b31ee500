//! `CREATE SOURCE ... ( key = 'value', ... )` options, checked once at creation so a bad
//! option is an error naming it, never a source that fails later.

use std::collections::BTreeMap;
use std::time::Duration;

use eddy_proto::{Error, ErrorCode, Result, SourceDef};

use crate::generator::GeneratorKind;

/// How a record's bytes become rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// One JSON object per record, keyed by column name (or mapped by `path.<column>`).
    Json,
    /// One CSV line per record, fields in table column order (or `columns` order).
    Csv { delimiter: u8 },
    /// Debezium change events, with or without the schema wrapper.
    DebeziumJson,
}

/// The unit of numeric event times (`epoch_unit`): JSON numbers in timestamp columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl EpochUnit {
    pub fn to_micros(self, v: i64) -> Option<i64> {
        match self {
            EpochUnit::Seconds => v.checked_mul(1_000_000),
            EpochUnit::Millis => v.checked_mul(1_000),
            EpochUnit::Micros => Some(v),
            EpochUnit::Nanos => Some(v / 1_000),
        }
    }
}

/// Where a Kafka source starts when the table holds no offsets for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
}

/// How records map to table rows, shared by every format.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub format: RecordFormat,
    /// Column → JSON path (dot-separated keys), for columns not named like their key.
    pub paths: BTreeMap<String, Vec<String>>,
    /// CSV: the columns a line holds, in order; empty for all table columns.
    pub csv_columns: Vec<String>,
    pub epoch_unit: EpochUnit,
    /// Records larger than this are rejected undecoded.
    pub max_record_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct KafkaOptions {
    pub brokers: String,
    pub topic: String,
    pub group_id: Option<String>,
    pub start_offset: StartOffset,
    pub decode: DecodeOptions,
    pub dead_letter_topic: Option<String>,
    pub max_batch_rows: usize,
    pub max_batch_interval: Duration,
    pub partition_discovery_interval: Duration,
    /// librdkafka properties passed through (`properties.security.protocol = 'SSL'`).
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    pub kind: GeneratorKind,
    pub rows_per_second: u64,
    pub seed: u64,
}

/// A validated source: what `CREATE SOURCE` stored, ready to run.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    Kafka(KafkaOptions),
    Generator(GeneratorOptions),
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidSourceOption, msg)
}

/// Parses `50ms`, `2s`, `1m` or a bare number of milliseconds.
pub fn parse_duration(key: &str, v: &str) -> Result<Duration> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&v[..i], v[i..].trim()),
        None => (v, "ms"),
    };
    let n: u64 = num.parse().map_err(|_| {
        bad(format!(
            "option {key}: \"{v}\" is not a duration such as '50ms' or '2s'"
        ))
    })?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "sec" | "seconds" => Duration::from_secs(n),
        "m" | "min" | "minutes" => Duration::from_secs(n * 60),
        _ => {
            return Err(bad(format!(
                "option {key}: unknown unit \"{unit}\" (use ms, s or m)"
            )))
        }
    };
    Ok(d)
}

struct Opts<'a> {
    map: &'a BTreeMap<String, String>,
    used: Vec<&'a str>,
}

impl<'a> Opts<'a> {
    fn get(&mut self, key: &'a str) -> Option<&'a str> {
        self.used.push(key);
        self.map.get(key).map(|s| s.as_str())
    }

    fn required(&mut self, key: &'a str) -> Result<&'a str> {
        self.get(key)
            .ok_or_else(|| bad(format!("option {key} is required")))
    }

    fn number<T: std::str::FromStr>(&mut self, key: &'a str, default: T) -> Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| bad(format!("option {key}: \"{v}\" is not a valid number"))),
        }
    }

    /// Fails on any key not read, so a typo is an error rather than silently ignored.
    fn finish(&self, prefixes: &[&str]) -> Result<()> {
        for k in self.map.keys() {
            let known =
                self.used.contains(&k.as_str()) || prefixes.iter().any(|p| k.starts_with(p));
            if !known {
                return Err(bad(format!("unknown option {k}")));
            }
        }
        Ok(())
    }
}

fn decode_options(o: &mut Opts<'_>) -> Result<DecodeOptions> {
    let format = match o
        .get("format")
        .unwrap_or("json")
        .to_ascii_lowercase()
        .as_str()
    {
        "json" => RecordFormat::Json,
        "csv" => {
            let d = o.get("delimiter").unwrap_or(",");
            let d = match d {
                "\\t" | "tab" => "\t",
                d => d,
            };
            if d.len() != 1 {
                return Err(bad(format!(
                    "option delimiter: \"{d}\" must be a single character"
                )));
            }
            RecordFormat::Csv {
                delimiter: d.as_bytes()[0],
            }
        }
        "debezium-json" | "debezium_json" | "debezium" => RecordFormat::DebeziumJson,
        other => {
            return Err(bad(format!(
                "option format: \"{other}\" is not json, csv or debezium-json"
            )))
        }
    };
    let paths = o
        .map
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("path.").map(|c| (c.to_string(), v)))
        .map(|(c, v)| {
            let p = v.trim().trim_start_matches("$.").trim_start_matches('$');
            let parts: Vec<String> = p.split('.').map(|s| s.to_string()).collect();
            if parts.iter().any(|s| s.is_empty()) {
                return Err(bad(format!(
                    "option path.{c}: \"{v}\" is not a path like 'data.amount'"
                )));
            }
            Ok((c, parts))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let csv_columns = o
        .get("columns")
        .map(|c| {
            c.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let epoch_unit = match o.get("epoch_unit").unwrap_or("ms") {
        "s" => EpochUnit::Seconds,
        "ms" => EpochUnit::Millis,
        "us" => EpochUnit::Micros,
        "ns" => EpochUnit::Nanos,
        other => {
            return Err(bad(format!(
                "option epoch_unit: \"{other}\" is not s, ms, us or ns"
            )))
        }
    };
    let max_record_bytes = o.number("max_record_bytes", 1024 * 1024)?;
    Ok(DecodeOptions {
        format,
        paths,
        csv_columns,
        epoch_unit,
        max_record_bytes,
    })
}

fn kafka_options(o: &mut Opts<'_>) -> Result<KafkaOptions> {
    let brokers = o.required("brokers")?.to_string();
    let topic = o.required("topic")?.to_string();
    let start_offset = match o
        .get("start_offset")
        .unwrap_or("earliest")
        .to_ascii_lowercase()
        .as_str()
    {
        "earliest" => StartOffset::Earliest,
        "latest" => StartOffset::Latest,
        other => {
            return Err(bad(format!(
                "option start_offset: \"{other}\" is not earliest or latest"
            )))
        }
    };
    let decode = decode_options(o)?;
    let max_batch_rows = o.number("max_batch_rows", 100_000usize)?;
    if max_batch_rows == 0 {
        return Err(bad("option max_batch_rows must be positive"));
    }
    let max_batch_interval = match o.get("max_batch_interval") {
        Some(v) => parse_duration("max_batch_interval", v)?,
        None => Duration::from_millis(20),
    };
    let partition_discovery_interval = match o.get("partition_discovery_interval") {
        Some(v) => parse_duration("partition_discovery_interval", v)?,
        None => Duration::from_secs(10),
    };
    let properties = o
        .map
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("properties.")
                .map(|p| (p.to_string(), v.clone()))
        })
        .collect();
    Ok(KafkaOptions {
        brokers,
        topic,
        group_id: o.get("group_id").map(|s| s.to_string()),
        start_offset,
        decode,
        dead_letter_topic: o.get("dead_letter_topic").map(|s| s.to_string()),
        max_batch_rows,
        max_batch_interval,
        partition_discovery_interval,
        properties,
    })
}

fn generator_options(o: &mut Opts<'_>) -> Result<GeneratorOptions> {
    let kind = o.required("kind")?;
    let kind = GeneratorKind::parse(kind).ok_or_else(|| {
        bad(format!(
            "option kind: \"{kind}\" is not ticks, events or orders"
        ))
    })?;
    let rows_per_second = o.number("rows_per_second", 1000u64)?;
    if rows_per_second == 0 {
        return Err(bad("option rows_per_second must be positive"));
    }
    let seed = o.number("seed", 42u64)?;
    Ok(GeneratorOptions {
        kind,
        rows_per_second,
        seed,
    })
}

impl SourceSpec {
    /// Validates a definition's connector and options.
    pub fn parse(def: &SourceDef) -> Result<SourceSpec> {
        let mut o = Opts {
            map: &def.options,
            used: Vec::new(),
        };
        let spec = match def.connector.to_ascii_lowercase().as_str() {
            "kafka" => {
                let k = kafka_options(&mut o)?;
                o.finish(&["properties.", "path."])?;
                SourceSpec::Kafka(k)
            }
            "generator" => {
                let g = generator_options(&mut o)?;
                o.finish(&[])?;
                SourceSpec::Generator(g)
            }
            other => {
                return Err(bad(format!(
                    "unknown source type {other} (expected KAFKA or GENERATOR)"
                )))
            }
        };
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(connector: &str, opts: &[(&str, &str)]) -> SourceDef {
        SourceDef {
            name: "s".into(),
            connector: connector.into(),
            options: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            table: "t".into(),
            paused: false,
        }
    }

    #[test]
    fn kafka_options_parse_and_name_bad_keys() {
        let d = def(
            "kafka",
            &[
                ("brokers", "b:9092"),
                ("topic", "t"),
                ("format", "csv"),
                ("delimiter", "|"),
                ("path.amount", "$.data.amount"),
                ("max_batch_interval", "5ms"),
                ("properties.security.protocol", "SSL"),
            ],
        );
        let SourceSpec::Kafka(k) = SourceSpec::parse(&d).unwrap() else {
            panic!("kafka expected")
        };
        assert_eq!(k.decode.format, RecordFormat::Csv { delimiter: b'|' });
        assert_eq!(k.decode.paths["amount"], vec!["data", "amount"]);
        assert_eq!(k.max_batch_interval, Duration::from_millis(5));
        assert_eq!(k.properties["security.protocol"], "SSL");

        let e = SourceSpec::parse(&def(
            "kafka",
            &[("brokers", "b"), ("topic", "t"), ("tpoic", "x")],
        ))
        .unwrap_err();
        assert!(e.message.contains("unknown option tpoic"), "{e}");
        let e = SourceSpec::parse(&def("kafka", &[("brokers", "b")])).unwrap_err();
        assert!(e.message.contains("topic is required"), "{e}");
        let e = SourceSpec::parse(&def(
            "kafka",
            &[("brokers", "b"), ("topic", "t"), ("max_batch_rows", "many")],
        ))
        .unwrap_err();
        assert!(e.message.contains("max_batch_rows"), "{e}");
    }

    #[test]
    fn generator_options_parse() {
        let SourceSpec::Generator(g) = SourceSpec::parse(&def(
            "generator",
            &[("kind", "ticks"), ("rows_per_second", "5000")],
        ))
        .unwrap() else {
            panic!("generator expected")
        };
        assert_eq!(g.rows_per_second, 5000);
        assert!(SourceSpec::parse(&def("generator", &[("kind", "nope")])).is_err());
        assert!(SourceSpec::parse(&def("s3", &[])).is_err());
    }
}
