//! Primary keys as PostgreSQL's catalogs show them: the index that backs each
//! (`pg_index`, `pg_indexes`), its constraint (`pg_constraint`, contype `p`), and the
//! functions that print their definitions. eddy has no other indexes or constraints (no
//! unique, foreign key or check constraints), so these tables hold primary keys only.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::array::{
    Array, ArrayRef, BooleanArray, Int16Array, Int16Builder, Int32Array, Int32Builder, ListBuilder,
    RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use eddy_proto::TableDef;

use super::{PgCatalogState, Relation};
use crate::pg::quote_ident;

/// A primary key index's OID is its table's plus this.
pub(crate) const INDEX_OID_OFFSET: i32 = 1_000_000_000;
/// A primary key constraint's OID is its table's plus this.
pub(crate) const CONSTRAINT_OID_OFFSET: i32 = 1_500_000_000;

/// PostgreSQL's name for a table's primary key (and its index).
pub(crate) fn index_name(def: &TableDef) -> String {
    format!("{}_pkey", def.name)
}

fn key_columns(def: &TableDef) -> String {
    def.primary_key
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `pg_get_indexdef(oid)` of a primary key's index.
fn index_def(def: &TableDef) -> String {
    format!(
        "CREATE UNIQUE INDEX {} ON public.{} USING btree ({})",
        quote_ident(&index_name(def)),
        quote_ident(&def.name),
        key_columns(def)
    )
}

/// `pg_get_constraintdef(oid)` of a primary key.
fn constraint_def(def: &TableDef) -> String {
    format!("PRIMARY KEY ({})", key_columns(def))
}

/// The 1-based column numbers of a table's key columns.
fn key_attnums(def: &TableDef) -> Vec<i16> {
    def.primary_key
        .iter()
        .filter_map(|k| def.columns.iter().position(|c| &c.name == k))
        .map(|p| p as i16 + 1)
        .collect()
}

fn oid_field(name: &str) -> Field {
    Field::new(name, DataType::Int32, false).with_metadata(
        [(
            arrow_pg::datatypes::PG_OID_ALIAS_KEY.to_string(),
            "oid".to_string(),
        )]
        .into(),
    )
}

fn list_of(name: &str, t: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new_list_field(t, true))),
        true,
    )
}

pub(super) fn pg_index_schema() -> SchemaRef {
    let b = |n: &str| Field::new(n, DataType::Boolean, false);
    Arc::new(Schema::new(vec![
        oid_field("indexrelid"),
        oid_field("indrelid"),
        Field::new("indnatts", DataType::Int16, false),
        Field::new("indnkeyatts", DataType::Int16, false),
        b("indisunique"),
        b("indnullsnotdistinct"),
        b("indisprimary"),
        b("indisexclusion"),
        b("indimmediate"),
        b("indisclustered"),
        b("indisvalid"),
        b("indcheckxmin"),
        b("indisready"),
        b("indislive"),
        b("indisreplident"),
        list_of("indkey", DataType::Int16),
        list_of("indcollation", DataType::Int32),
        list_of("indclass", DataType::Int32),
        list_of("indoption", DataType::Int16),
        Field::new("indexprs", DataType::Utf8, true),
        Field::new("indpred", DataType::Utf8, true),
    ]))
}

fn keyed(rels: &[Relation]) -> Vec<&Relation> {
    rels.iter().filter(|r| r.def.has_primary_key()).collect()
}

fn int16_lists<'a>(rows: impl Iterator<Item = Vec<i16>> + 'a) -> ArrayRef {
    let mut b = ListBuilder::new(Int16Builder::new());
    for r in rows {
        b.values().append_slice(&r);
        b.append(true);
    }
    Arc::new(b.finish())
}

fn int32_lists<'a>(rows: impl Iterator<Item = Vec<i32>> + 'a) -> ArrayRef {
    let mut b = ListBuilder::new(Int32Builder::new());
    for r in rows {
        b.values().append_slice(&r);
        b.append(true);
    }
    Arc::new(b.finish())
}

/// The operator class a btree index column uses by default: `text_ops`, `int8_ops` ...
/// (their OIDs in PostgreSQL's pg_opclass, which the crate ships).
fn default_opclass(t: eddy_proto::ColumnType) -> i32 {
    use eddy_proto::ColumnType as T;
    match t {
        T::Text | T::Jsonb | T::Varchar { .. } => 3126,
        T::Char { .. } => 426,
        T::Bool => 424,
        T::Int16 => 1979,
        T::Int32 => 1978,
        T::Int64 => 3124,
        T::Float32 => 1970,
        T::Float64 => 1971,
        T::Numeric { .. } => 3125,
        T::Date => 3122,
        T::Timestamp => 3128,
        T::TimestampTz => 3127,
    }
}

pub(super) fn pg_index(rels: &[Relation]) -> Result<RecordBatch> {
    let k = keyed(rels);
    let n = k.len();
    let i16s = |f: &dyn Fn(&Relation) -> i16| -> ArrayRef {
        Arc::new(Int16Array::from_iter_values(k.iter().map(|r| f(r))))
    };
    let bools = |v: bool| -> ArrayRef { Arc::new(BooleanArray::from(vec![v; n])) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(
            k.iter().map(|r| r.oid + INDEX_OID_OFFSET),
        )),
        Arc::new(Int32Array::from_iter_values(k.iter().map(|r| r.oid))),
        i16s(&|r| r.def.primary_key.len() as i16),
        i16s(&|r| r.def.primary_key.len() as i16),
        bools(true),  // indisunique
        bools(false), // indnullsnotdistinct
        bools(true),  // indisprimary
        bools(false), // indisexclusion
        bools(true),  // indimmediate
        bools(false), // indisclustered
        bools(true),  // indisvalid
        bools(false), // indcheckxmin
        bools(true),  // indisready
        bools(true),  // indislive
        bools(false), // indisreplident
        int16_lists(k.iter().map(|r| key_attnums(&r.def))),
        int32_lists(k.iter().map(|r| {
            r.def
                .primary_key
                .iter()
                .map(|c| match r.def.column(c).map(|c| c.ty) {
                    // The default collation for text, none for other types.
                    Some(
                        eddy_proto::ColumnType::Text
                        | eddy_proto::ColumnType::Varchar { .. }
                        | eddy_proto::ColumnType::Char { .. },
                    ) => 100,
                    _ => 0,
                })
                .collect()
        })),
        int32_lists(k.iter().map(|r| {
            r.def
                .primary_key
                .iter()
                .filter_map(|c| r.def.column(c).map(|c| default_opclass(c.ty)))
                .collect()
        })),
        int16_lists(k.iter().map(|r| vec![0; r.def.primary_key.len()])),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
    ];
    Ok(RecordBatch::try_new(pg_index_schema(), columns)?)
}

pub(super) fn pg_constraint_schema() -> SchemaRef {
    let b = |n: &str| Field::new(n, DataType::Boolean, false);
    let t = |n: &str| Field::new(n, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        oid_field("oid"),
        t("conname"),
        oid_field("connamespace"),
        t("contype"),
        b("condeferrable"),
        b("condeferred"),
        b("convalidated"),
        oid_field("conrelid"),
        oid_field("contypid"),
        oid_field("conindid"),
        oid_field("conparentid"),
        oid_field("confrelid"),
        t("confupdtype"),
        t("confdeltype"),
        t("confmatchtype"),
        b("conislocal"),
        Field::new("coninhcount", DataType::Int16, false),
        b("connoinherit"),
        list_of("conkey", DataType::Int16),
        list_of("confkey", DataType::Int16),
        list_of("conpfeqop", DataType::Int32),
        list_of("conppeqop", DataType::Int32),
        list_of("conffeqop", DataType::Int32),
        list_of("confdelsetcols", DataType::Int16),
        list_of("conexclop", DataType::Int32),
        Field::new("conbin", DataType::Utf8, true),
    ]))
}

pub(super) fn pg_constraint(rels: &[Relation]) -> Result<RecordBatch> {
    let k = keyed(rels);
    let n = k.len();
    let oids = |f: &dyn Fn(&Relation) -> i32| -> ArrayRef {
        Arc::new(Int32Array::from_iter_values(k.iter().map(|r| f(r))))
    };
    let bools = |v: bool| -> ArrayRef { Arc::new(BooleanArray::from(vec![v; n])) };
    let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
    let null_i16s = || -> ArrayRef {
        let mut b = ListBuilder::new(Int16Builder::new());
        for _ in 0..n {
            b.append_null();
        }
        Arc::new(b.finish())
    };
    let null_i32s = || -> ArrayRef {
        let mut b = ListBuilder::new(Int32Builder::new());
        for _ in 0..n {
            b.append_null();
        }
        Arc::new(b.finish())
    };
    let columns: Vec<ArrayRef> = vec![
        oids(&|r| r.oid + CONSTRAINT_OID_OFFSET),
        Arc::new(StringArray::from_iter_values(
            k.iter().map(|r| index_name(&r.def)),
        )),
        oids(&|r| r.namespace_oid),
        text("p"),
        bools(false),
        bools(false),
        bools(true),
        oids(&|r| r.oid),
        oids(&|_| 0),
        oids(&|r| r.oid + INDEX_OID_OFFSET),
        oids(&|_| 0),
        oids(&|_| 0),
        text(" "),
        text(" "),
        text(" "),
        bools(true),
        Arc::new(Int16Array::from(vec![0; n])),
        bools(true),
        int16_lists(k.iter().map(|r| key_attnums(&r.def))),
        null_i16s(),
        null_i32s(),
        null_i32s(),
        null_i32s(),
        null_i16s(),
        null_i32s(),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
    ];
    Ok(RecordBatch::try_new(pg_constraint_schema(), columns)?)
}

pub(super) fn pg_indexes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("schemaname", DataType::Utf8, false),
        Field::new("tablename", DataType::Utf8, false),
        Field::new("indexname", DataType::Utf8, false),
        Field::new("tablespace", DataType::Utf8, true),
        Field::new("indexdef", DataType::Utf8, false),
    ]))
}

pub(super) fn pg_indexes(rels: &[Relation]) -> Result<RecordBatch> {
    let k = keyed(rels);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["public"; k.len()])),
        Arc::new(StringArray::from_iter_values(
            k.iter().map(|r| r.def.name.clone()),
        )),
        Arc::new(StringArray::from_iter_values(
            k.iter().map(|r| index_name(&r.def)),
        )),
        Arc::new(StringArray::from(vec![None::<&str>; k.len()])),
        Arc::new(StringArray::from_iter_values(
            k.iter().map(|r| index_def(&r.def)),
        )),
    ];
    Ok(RecordBatch::try_new(pg_indexes_schema(), columns)?)
}

/// Which definition a [`DefinitionFn`] prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Definition {
    Index,
    Constraint,
}

/// `pg_get_indexdef(oid [, column, pretty])` and `pg_get_constraintdef(oid [, pretty])`:
/// NULL for an OID that names no primary key, as PostgreSQL answers for unknown OIDs.
#[derive(Debug)]
struct DefinitionFn {
    what: Definition,
    signature: Signature,
    state: Arc<PgCatalogState>,
}

impl PartialEq for DefinitionFn {
    fn eq(&self, other: &Self) -> bool {
        self.what == other.what && Arc::ptr_eq(&self.state, &other.state)
    }
}

impl Eq for DefinitionFn {}

impl Hash for DefinitionFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.what.hash(state);
    }
}

impl DefinitionFn {
    fn define(&self, oid: i64, column: i64) -> Option<String> {
        let offset = match self.what {
            Definition::Index => INDEX_OID_OFFSET,
            Definition::Constraint => CONSTRAINT_OID_OFFSET,
        } as i64;
        let table = i32::try_from(oid - offset).ok()?;
        let def = self.state.table_by_oid(table)?;
        if !def.has_primary_key() {
            return None;
        }
        Some(match self.what {
            Definition::Constraint => constraint_def(&def),
            Definition::Index if column == 0 => index_def(&def),
            Definition::Index => quote_ident(def.primary_key.get(column as usize - 1)?),
        })
    }
}

impl ScalarUDFImpl for DefinitionFn {
    fn name(&self) -> &str {
        match self.what {
            Definition::Index => "pg_get_indexdef",
            Definition::Constraint => "pg_get_constraintdef",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let oids = cast(&arrays[0], &DataType::Int64)?;
        let oids = oids.as_primitive::<Int64Type>();
        // The column argument of pg_get_indexdef; pg_get_constraintdef's second is
        // `pretty`, which changes nothing here.
        let columns = match (self.what, arrays.get(1)) {
            (Definition::Index, Some(c)) => Some(cast(c, &DataType::Int64)?),
            _ => None,
        };
        let out: StringArray = (0..n)
            .map(|i| {
                if oids.is_null(i) {
                    return None;
                }
                let column = match &columns {
                    Some(c) => {
                        let c = c.as_primitive::<Int64Type>();
                        if c.is_null(i) {
                            return None;
                        }
                        c.value(i)
                    }
                    None => 0,
                };
                let oid = oids.value(i);
                self.define(oid, column)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The definition functions, to register on each statement's planning state (they
/// replace the crate's, which print nothing).
pub(super) fn definition_udfs(state: &Arc<PgCatalogState>) -> Vec<Arc<ScalarUDF>> {
    [Definition::Index, Definition::Constraint]
        .into_iter()
        .map(|what| {
            Arc::new(ScalarUDF::new_from_impl(DefinitionFn {
                what,
                signature: Signature::variadic_any(Volatility::Stable),
                state: Arc::clone(state),
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_proto::{ColumnDef, ColumnType};

    #[test]
    fn definitions_print_like_postgres() {
        let def = TableDef {
            name: "orders".into(),
            columns: vec![
                ColumnDef {
                    name: "Region".into(),
                    ty: ColumnType::Text,
                    nullable: false,
                },
                ColumnDef {
                    name: "order_id".into(),
                    ty: ColumnType::Int64,
                    nullable: false,
                },
            ],
            primary_key: vec!["Region".into(), "order_id".into()],
            time_column: None,
            partition_by: None,
            retention_secs: None,
        };
        assert_eq!(
            index_def(&def),
            "CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (\"Region\", order_id)"
        );
        assert_eq!(constraint_def(&def), "PRIMARY KEY (\"Region\", order_id)");
        assert_eq!(key_attnums(&def), vec![1, 2]);
    }
}
