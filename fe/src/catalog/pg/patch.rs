//! Completes the crate's `pg_class` and `pg_attribute` rows for eddy's tables from their
//! definitions (NOT NULL, typmods, and the types Arrow cannot tell apart from text:
//! jsonb, varchar, bpchar).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::new_null_array;
use arrow::array::{
    Array, ArrayRef, BooleanArray, Int16Array, Int32Array, RecordBatch, StringArray, UInt32Array,
};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result;
use eddy_proto::ColumnType;

use super::keys::{index_name, INDEX_OID_OFFSET};
use super::{column_i32, column_str, Relation};

/// The OID of the btree access method (`pg_am`).
const BTREE_AM_OID: i32 = 403;
const JSONB_OID: i32 = 3802;
const BPCHAR_OID: i32 = 1042;
const VARCHAR_OID: i32 = 1043;

/// The PostgreSQL type OID of a column whose Arrow type does not say it (the crate's
/// pg_attribute types every Utf8 column as text).
pub(crate) fn type_oid(t: ColumnType) -> Option<i32> {
    match t {
        ColumnType::Jsonb => Some(JSONB_OID),
        ColumnType::Varchar { .. } => Some(VARCHAR_OID),
        ColumnType::Char { .. } => Some(BPCHAR_OID),
        _ => None,
    }
}

/// A batch with some columns, found by name, replaced.
fn with_columns(batch: &RecordBatch, replace: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    for (name, array) in replace {
        let i = schema.index_of(name)?;
        columns[i] = array;
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Columns of PostgreSQL's pg_class the crate's lacks, all NULL here (no storage
/// options, default privileges); SQLAlchemy and psql select them.
const EXTRA_CLASS_COLUMNS: [&str; 2] = ["reloptions", "relacl"];

fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

/// The crate's pg_class schema with [`EXTRA_CLASS_COLUMNS`].
pub(super) fn pg_class_schema(inner: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = inner.fields().iter().map(|f| f.as_ref().clone()).collect();
    for name in EXTRA_CLASS_COLUMNS {
        if inner.index_of(name).is_err() {
            fields.push(Field::new(name, text_list(), true));
        }
    }
    Arc::new(Schema::new(fields))
}

fn with_extra_columns(class: RecordBatch) -> Result<RecordBatch> {
    let schema = pg_class_schema(&class.schema());
    let mut columns = class.columns().to_vec();
    for f in schema.fields().iter().skip(columns.len()) {
        columns.push(new_null_array(f.data_type(), class.num_rows()));
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// `relhasindex` for tables with a primary key, and one relation of kind `i` (the
/// primary key's index) for each of them.
pub(super) fn pg_class(class: RecordBatch, rels: &[Relation]) -> Result<RecordBatch> {
    let class = with_extra_columns(class)?;
    let keyed: HashMap<i32, &Relation> = rels
        .iter()
        .filter(|r| r.def.has_primary_key())
        .map(|r| (r.oid, r))
        .collect();
    if keyed.is_empty() {
        return Ok(class);
    }
    let oids = column_i32(&class, "oid")?;
    let had = class
        .column_by_name("relhasindex")
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
        .cloned()
        .unwrap_or_else(|| BooleanArray::from(vec![false; oids.len()]));
    let has_index: BooleanArray = oids
        .iter()
        .zip(had.iter())
        .map(|(oid, had)| Some(oid.is_some_and(|o| keyed.contains_key(&o)) || had.unwrap_or(false)))
        .collect();
    let patched = with_columns(&class, vec![("relhasindex", Arc::new(has_index))])?;

    // Each index row starts as a copy of its table's row.
    let mut rows: Vec<u32> = Vec::new();
    let mut index_rels: Vec<&Relation> = Vec::new();
    for (i, oid) in oids.iter().enumerate() {
        if let Some(r) = oid.and_then(|o| keyed.get(&o)) {
            rows.push(i as u32);
            index_rels.push(r);
        }
    }
    let copies = take_record_batch(&patched, &UInt32Array::from(rows))?;
    let n = index_rels.len();
    let indexes = with_columns(
        &copies,
        vec![
            (
                "oid",
                Arc::new(Int32Array::from_iter_values(
                    index_rels.iter().map(|r| r.oid + INDEX_OID_OFFSET),
                )),
            ),
            (
                "relname",
                Arc::new(StringArray::from_iter_values(
                    index_rels.iter().map(|r| index_name(&r.def)),
                )),
            ),
            ("reltype", Arc::new(Int32Array::from(vec![0; n]))),
            ("relam", Arc::new(Int32Array::from(vec![BTREE_AM_OID; n]))),
            ("relhasindex", Arc::new(BooleanArray::from(vec![false; n]))),
            ("relkind", Arc::new(StringArray::from(vec!["i"; n]))),
            (
                "relnatts",
                Arc::new(Int16Array::from_iter_values(
                    index_rels.iter().map(|r| r.def.primary_key.len() as i16),
                )),
            ),
        ],
    )?;
    Ok(concat_batches(&patched.schema(), &[patched, indexes])?)
}

/// A column's `atttypmod` as PostgreSQL stores it: `((p << 16) | s) + 4` for
/// `numeric(p,s)`, `n + 4` for `varchar(n)` and `char(n)`, -1 for everything else.
pub(crate) fn typmod(t: ColumnType) -> i32 {
    match t {
        ColumnType::Numeric { precision, scale } => {
            (((precision as i32) << 16) | (scale as i32 & 0xffff)) + 4
        }
        ColumnType::Varchar { length: Some(n) } | ColumnType::Char { length: n } => n as i32 + 4,
        _ => -1,
    }
}

/// `attnotnull`, `atttypmod` and the jsonb type of eddy's columns.
pub(super) fn pg_attribute(attrs: RecordBatch, rels: &[Relation]) -> Result<RecordBatch> {
    let by_oid: HashMap<i32, &Relation> = rels.iter().map(|r| (r.oid, r)).collect();
    let relids = column_i32(&attrs, "attrelid")?;
    let names = column_str(&attrs, "attname")?;
    let types = column_i32(&attrs, "atttypid")?;
    let typmods = column_i32(&attrs, "atttypmod")?;
    let notnull = attrs
        .column_by_name("attnotnull")
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
        .cloned()
        .unwrap_or_else(|| BooleanArray::from(vec![false; attrs.num_rows()]));
    let mut new_types = Vec::with_capacity(attrs.num_rows());
    let mut new_typmods = Vec::with_capacity(attrs.num_rows());
    let mut new_notnull = Vec::with_capacity(attrs.num_rows());
    for i in 0..attrs.num_rows() {
        let column = (!relids.is_null(i))
            .then(|| relids.value(i))
            .and_then(|o| by_oid.get(&o))
            .and_then(|r| r.def.column(names.value(i)));
        match column {
            Some(c) => {
                new_types.push(type_oid(c.ty).unwrap_or(types.value(i)));
                new_typmods.push(typmod(c.ty));
                new_notnull.push(!c.nullable);
            }
            None => {
                new_types.push(types.value(i));
                new_typmods.push(typmods.value(i));
                new_notnull.push(notnull.value(i));
            }
        }
    }
    with_columns(
        &attrs,
        vec![
            ("atttypid", Arc::new(Int32Array::from(new_types))),
            ("atttypmod", Arc::new(Int32Array::from(new_typmods))),
            ("attnotnull", Arc::new(BooleanArray::from(new_notnull))),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_typmod_is_postgres_encoding() {
        // PostgreSQL: numeric(10,2) has atttypmod 655366.
        assert_eq!(
            typmod(ColumnType::Numeric {
                precision: 10,
                scale: 2
            }),
            655366
        );
        assert_eq!(typmod(ColumnType::Text), -1);
        // PostgreSQL: varchar(20) and char(20) have atttypmod 24; varchar none.
        assert_eq!(typmod(ColumnType::Varchar { length: Some(20) }), 24);
        assert_eq!(typmod(ColumnType::Char { length: 20 }), 24);
        assert_eq!(typmod(ColumnType::Varchar { length: None }), -1);
    }
}
