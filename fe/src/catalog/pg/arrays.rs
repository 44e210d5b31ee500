//! pg_catalog columns that are arrays in PostgreSQL but text in the crate's tables
//! (`pg_namespace.nspacl`, `pg_event_trigger.evttags`, `pg_policy.polroles` ...).
//! psql passes them to `array_to_string`, `unnest` and `= ANY(...)`, which need arrays,
//! so these columns are served as `text[]` / `oid[]`, parsed from the crate's text
//! (`{a,b}` or `['a', 'b']`).

use std::sync::Arc;

use arrow::array::Int32Builder;
use arrow::array::{ArrayRef, AsArray, ListBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Element {
    Text,
    Oid,
}

/// (table, column, element type) of each column served as an array.
const ARRAY_COLUMNS: [(&str, &str, Element); 11] = [
    ("pg_attribute", "attacl", Element::Text),
    ("pg_default_acl", "defaclacl", Element::Text),
    ("pg_event_trigger", "evttags", Element::Text),
    ("pg_foreign_data_wrapper", "fdwacl", Element::Text),
    ("pg_foreign_server", "srvacl", Element::Text),
    ("pg_language", "lanacl", Element::Text),
    ("pg_largeobject_metadata", "lomacl", Element::Text),
    ("pg_namespace", "nspacl", Element::Text),
    ("pg_policy", "polroles", Element::Oid),
    ("pg_tablespace", "spcacl", Element::Text),
    ("pg_type", "typacl", Element::Text),
];

/// The tables with such columns (other than those built elsewhere, which call
/// [`batch`] themselves).
pub(super) fn tables() -> impl Iterator<Item = &'static str> {
    let mut names: Vec<&'static str> = ARRAY_COLUMNS.iter().map(|(t, _, _)| *t).collect();
    names.dedup();
    names.into_iter()
}

fn list_of(e: Element) -> DataType {
    let item = match e {
        Element::Text => DataType::Utf8,
        Element::Oid => DataType::Int32,
    };
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

fn array_column(table: &str, column: &str) -> Option<Element> {
    ARRAY_COLUMNS
        .iter()
        .find(|(t, c, _)| *t == table && *c == column)
        .map(|(_, _, e)| *e)
}

/// `table`'s schema with its array columns typed as arrays.
pub(super) fn schema(table: &str, inner: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        inner
            .fields()
            .iter()
            .map(|f| match array_column(table, f.name()) {
                Some(e) if f.data_type() == &DataType::Utf8 => {
                    Field::new(f.name(), list_of(e), true)
                }
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

/// The elements of an array's text: `{a,b}` (PostgreSQL's) or `['a', 'b']`.
pub(super) fn elements(s: &str) -> Vec<String> {
    let inner = s
        .trim()
        .trim_start_matches(['[', '{'])
        .trim_end_matches([']', '}']);
    if inner.trim().is_empty() {
        return vec![];
    }
    inner
        .split(',')
        .map(|p| p.trim().trim_matches(['\'', '"']).to_string())
        .collect()
}

fn parse_column(text: &arrow::array::StringArray, e: Element) -> ArrayRef {
    match e {
        Element::Text => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for v in text.iter() {
                match v {
                    None => b.append_null(),
                    Some(v) => {
                        for x in elements(v) {
                            b.values().append_value(x);
                        }
                        b.append(true);
                    }
                }
            }
            Arc::new(b.finish())
        }
        Element::Oid => {
            let mut b = ListBuilder::new(Int32Builder::new());
            for v in text.iter() {
                match v {
                    None => b.append_null(),
                    Some(v) => {
                        for x in elements(v) {
                            b.values().append_option(x.parse::<i32>().ok());
                        }
                        b.append(true);
                    }
                }
            }
            Arc::new(b.finish())
        }
    }
}

/// A batch of `table` with its array columns parsed.
pub(super) fn batch(table: &str, batch: RecordBatch) -> Result<RecordBatch> {
    let schema = schema(table, &batch.schema());
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(batch.schema().fields())
        .map(
            |(c, f)| match (array_column(table, f.name()), c.as_string_opt::<i32>()) {
                (Some(e), Some(text)) => parse_column(text, e),
                _ => Arc::clone(c),
            },
        )
        .collect();
    Ok(RecordBatch::try_new_with_options(
        schema,
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, StringArray};

    #[test]
    fn text_becomes_arrays() {
        let b = RecordBatch::try_from_iter(vec![(
            "polroles",
            Arc::new(StringArray::from(vec![Some("{0}"), None, Some("{10,20}")])) as ArrayRef,
        )])
        .unwrap();
        let out = batch("pg_policy", b).unwrap();
        let l = out.column(0).as_list::<i32>();
        assert!(l.is_null(1));
        assert_eq!(l.value(2).len(), 2);
        assert_eq!(elements("['min', 'max']"), vec!["min", "max"]);
        assert!(elements("{}").is_empty());
    }
}
