//! Catalog functions whose answer depends on pg_catalog's contents or the session:
//! `pg_table_is_visible` (a relation is visible when its schema is on the session's
//! `search_path`, or is `pg_catalog`), and `pg_get_function_result` /
//! `pg_get_function_arguments` / `pg_get_function_identity_arguments` for the built-in
//! functions in the crate's pg_proc, and `pg_get_functiondef`; table and database
//! sizes; `col_description` and `obj_description`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables;

use super::functiondef::NoDefinition;
use super::regprocedure::Signatures;
use super::PgCatalogState;

/// The function `'signature'::regprocedure` becomes (see [`super::regprocedure`]).
pub(crate) const REGPROCEDURE: &str = "eddy_regprocedure";
/// The function `'name'::regproc` becomes.
pub(crate) const REGPROC: &str = "eddy_regproc";

/// A built-in function's result and argument types.
#[derive(Debug)]
struct Proc {
    result: i32,
    returns_set: bool,
    args: Vec<i32>,
}

/// pg_proc and pg_type as the crate ships them, indexed for the functions below.
#[derive(Debug)]
pub(crate) struct Procs {
    procs: HashMap<i32, Proc>,
    type_names: HashMap<i32, String>,
    /// For `'name(argtypes)'::regprocedure`.
    signatures: Signatures,
}

fn batches_column<'a, T>(
    batches: &'a [RecordBatch],
    name: &str,
    f: impl Fn(&'a dyn Array) -> Option<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for b in batches {
        let c = b
            .column_by_name(name)
            .ok_or_else(|| DataFusionError::Internal(format!("no column {name}")))?;
        out.push(f(c.as_ref()).ok_or_else(|| {
            DataFusionError::Internal(format!("column {name} has an unexpected type"))
        })?);
    }
    Ok(out)
}

/// The name `format_type` gives a type: SQL spellings for the common ones, `x[]` for
/// arrays.
pub(crate) fn display_name(typname: &str) -> String {
    if let Some(element) = typname.strip_prefix('_') {
        return format!("{}[]", display_name(element));
    }
    match typname {
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "varchar" => "character varying",
        "bpchar" => "character",
        "timestamp" => "timestamp without time zone",
        "timestamptz" => "timestamp with time zone",
        "time" => "time without time zone",
        "timetz" => "time with time zone",
        "varbit" => "bit varying",
        other => other,
    }
    .to_string()
}

impl Procs {
    pub(crate) fn new(statics: &PgCatalogStaticTables) -> Result<Self> {
        let mut type_names = HashMap::new();
        let mut typnames = Vec::new();
        let types = statics.pg_type.data();
        let oids = batches_column(types, "oid", |a| a.as_primitive_opt::<Int32Type>().cloned())?;
        let names = batches_column(types, "typname", |a| a.as_string_opt::<i32>().cloned())?;
        for (o, n) in oids.iter().zip(names.iter()) {
            for (o, n) in o.iter().zip(n.iter()) {
                if let (Some(o), Some(n)) = (o, n) {
                    type_names.insert(o, display_name(n));
                    typnames.push((o, n.to_string()));
                }
            }
        }
        let mut procs = HashMap::new();
        let p = statics.pg_proc.data();
        let oids = batches_column(p, "oid", |a| a.as_primitive_opt::<Int32Type>().cloned())?;
        let rets = batches_column(p, "prorettype", |a| {
            a.as_primitive_opt::<Int32Type>().cloned()
        })?;
        let sets = batches_column(p, "proretset", |a| a.as_boolean_opt().cloned())?;
        let args = batches_column(p, "proargtypes", |a| a.as_string_opt::<i32>().cloned())?;
        let pronames = batches_column(p, "proname", |a| a.as_string_opt::<i32>().cloned())?;
        let namespaces = batches_column(p, "pronamespace", |a| {
            a.as_primitive_opt::<Int32Type>().cloned()
        })?;
        let mut named = Vec::new();
        for b in 0..oids.len() {
            for i in 0..oids[b].len() {
                if oids[b].is_null(i) {
                    continue;
                }
                let proc = Proc {
                    result: rets[b].value(i),
                    returns_set: sets[b].value(i),
                    args: args[b]
                        .value(i)
                        .split_whitespace()
                        .filter_map(|t| t.parse().ok())
                        .collect(),
                };
                if !pronames[b].is_null(i) {
                    named.push((
                        oids[b].value(i),
                        pronames[b].value(i).to_string(),
                        namespaces[b].value(i),
                        proc.args.clone(),
                    ));
                }
                procs.insert(oids[b].value(i), proc);
            }
        }
        Ok(Self {
            procs,
            type_names,
            signatures: Signatures::new(named, typnames),
        })
    }

    fn type_name(&self, oid: i32) -> String {
        self.type_names
            .get(&oid)
            .cloned()
            .unwrap_or_else(|| "???".to_string())
    }

    fn result(&self, oid: i32) -> Option<String> {
        let p = self.procs.get(&oid)?;
        let t = self.type_name(p.result);
        Some(if p.returns_set {
            format!("SETOF {t}")
        } else {
            t
        })
    }

    fn argument_types(&self, oid: i32) -> Option<Vec<String>> {
        let p = self.procs.get(&oid)?;
        Some(p.args.iter().map(|t| self.type_name(*t)).collect())
    }

    fn arguments(&self, oid: i32) -> Option<String> {
        Some(self.argument_types(oid)?.join(", "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Result,
    Arguments,
    IdentityArguments,
    TableVisible,
    /// `pg_table_size(oid)`, `pg_relation_size(oid)`, `pg_total_relation_size(oid)`: the
    /// bytes of a table's segments plus its memtable (the BE's own figures, as
    /// `system.tables` shows them); 0 for a primary key's index, which is not stored
    /// apart from the table; NULL for an OID that names no eddy table.
    TableSize,
    RelationSize,
    TotalRelationSize,
    /// `pg_database_size(name or oid)`: every table's bytes for `eddy` (or any OID: the
    /// catalog's OIDs for databases are not kept here), 0 for other names.
    DatabaseSize,
    /// `col_description(oid, attnum)`: eddy has no `COMMENT ON`, so no column has a
    /// description and the answer is NULL, as PostgreSQL's is for a column without one.
    ColumnDescription,
    /// `obj_description(oid [, catalog])`: the built-in objects' comments
    /// (PostgreSQL's, from the crate's pg_description); NULL for eddy's tables.
    ObjectDescription,
    /// `pg_get_functiondef(oid)` of a built-in function.
    FunctionDef,
    /// `shobj_description(oid, catalog)` (databases, roles): NULL for the same reason.
    SharedObjectDescription,
    /// `eddy_regprocedure(text)`: what `'name(argtypes)'::regprocedure` is rewritten to
    /// (the OID of that built-in function, see [`super::regprocedure`]).
    RegProcedure,
    /// `eddy_regproc(text)`: what `'name'::regproc` is rewritten to.
    RegProc,
}

/// One of the functions of this module, bound to pg_catalog's state and (for
/// visibility) the session's `search_path`.
#[derive(Debug)]
struct CatalogFn {
    kind: Kind,
    signature: Signature,
    state: Arc<PgCatalogState>,
    search_path: Vec<String>,
}

impl PartialEq for CatalogFn {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.search_path == other.search_path
            && Arc::ptr_eq(&self.state, &other.state)
    }
}

impl Eq for CatalogFn {}

impl Hash for CatalogFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.search_path.hash(state);
    }
}

impl ScalarUDFImpl for CatalogFn {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Result => "pg_get_function_result",
            Kind::Arguments => "pg_get_function_arguments",
            Kind::IdentityArguments => "pg_get_function_identity_arguments",
            Kind::TableVisible => "pg_table_is_visible",
            Kind::TableSize => "pg_table_size",
            Kind::RelationSize => "pg_relation_size",
            Kind::TotalRelationSize => "pg_total_relation_size",
            Kind::DatabaseSize => "pg_database_size",
            Kind::ColumnDescription => "col_description",
            Kind::ObjectDescription => "obj_description",
            Kind::FunctionDef => "pg_get_functiondef",
            Kind::SharedObjectDescription => "shobj_description",
            Kind::RegProcedure => REGPROCEDURE,
            Kind::RegProc => REGPROC,
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::TableVisible => DataType::Boolean,
            Kind::TableSize | Kind::RelationSize | Kind::TotalRelationSize | Kind::DatabaseSize => {
                DataType::Int64
            }
            Kind::RegProcedure | Kind::RegProc => DataType::Int32,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        if self.kind == Kind::DatabaseSize {
            // By name or OID; eddy serves one database.
            let total: i64 = self
                .state
                .be
                .tables()
                .iter()
                .map(|t| (t.segment_bytes + t.memtable_bytes) as i64)
                .sum();
            // By name, only `eddy` has a size; the `postgres` database pg_database also
            // lists holds nothing.
            let sizes: Int64Array = match arrays[0].as_string_opt::<i32>() {
                Some(names) => names
                    .iter()
                    .map(|n| n.map(|n| if n == "eddy" { total } else { 0 }))
                    .collect(),
                None => Int64Array::from(vec![total; arrays[0].len()]),
            };
            return Ok(ColumnarValue::Array(Arc::new(sizes)));
        }
        if self.kind == Kind::ObjectDescription {
            return self.object_descriptions(&arrays).map(ColumnarValue::Array);
        }
        if matches!(self.kind, Kind::RegProcedure | Kind::RegProc) {
            let signatures = &self.state.procs.signatures;
            let texts = cast(&arrays[0], &DataType::Utf8)?;
            let oids = texts
                .as_string::<i32>()
                .iter()
                .map(|t| {
                    t.map(|t| match self.kind {
                        Kind::RegProc => signatures.resolve_name(t),
                        _ => signatures.resolve(t),
                    })
                    .transpose()
                })
                .collect::<std::result::Result<Int32Array, _>>()
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            return Ok(ColumnarValue::Array(Arc::new(oids)));
        }
        let oids = cast(&arrays[0], &DataType::Int64)?;
        let oids = oids.as_primitive::<Int64Type>();
        let oid = |i: usize| (!oids.is_null(i)).then(|| oids.value(i) as i32);
        let n = oids.len();
        Ok(ColumnarValue::Array(match self.kind {
            Kind::TableVisible => Arc::new(
                (0..n)
                    .map(|i| {
                        let schema = self.state.schema_of_relation(oid(i)?)?;
                        Some(schema == "pg_catalog" || self.search_path.contains(&schema))
                    })
                    .collect::<BooleanArray>(),
            ),
            Kind::Result => Arc::new(
                (0..n)
                    .map(|i| self.state.procs.result(oid(i)?))
                    .collect::<StringArray>(),
            ),
            Kind::Arguments | Kind::IdentityArguments => Arc::new(
                (0..n)
                    .map(|i| self.state.procs.arguments(oid(i)?))
                    .collect::<StringArray>(),
            ),
            Kind::TableSize | Kind::RelationSize | Kind::TotalRelationSize => {
                let sizes = self.state.table_bytes();
                Arc::new(
                    (0..n)
                        .map(|i| {
                            let oid = oid(i)?;
                            if self.state.is_key_index(oid) {
                                return Some(0);
                            }
                            sizes.get(&self.state.table_by_oid(oid)?.name).copied()
                        })
                        .collect::<Int64Array>(),
                )
            }
            Kind::DatabaseSize => unreachable!("answered above"),
            Kind::FunctionDef => {
                let mut out = arrow::array::StringBuilder::new();
                for i in 0..n {
                    let def = oid(i).and_then(|o| {
                        let args = self.state.procs.argument_types(o)?;
                        let result = self.state.procs.result(o)?;
                        self.state.function_defs.definition(o, &args, &result)
                    });
                    match def {
                        None => out.append_null(),
                        Some(Ok(d)) => out.append_value(d),
                        Some(Err(NoDefinition::Aggregate(name))) => {
                            return Err(DataFusionError::External(Box::new(
                                eddy_proto::Error::new(
                                    eddy_proto::ErrorCode::WrongObjectType,
                                    format!("\"{name}\" is an aggregate function"),
                                ),
                            )))
                        }
                    }
                }
                Arc::new(out.finish())
            }
            Kind::ObjectDescription | Kind::RegProcedure | Kind::RegProc => {
                unreachable!("answered above")
            }
            Kind::ColumnDescription | Kind::SharedObjectDescription => {
                Arc::new(StringArray::new_null(n))
            }
        }))
    }
}

impl CatalogFn {
    /// `obj_description(oid [, catalog])`. The object may be given by name, as
    /// `pg_operator.oprcode` (a `regproc`) gives a function.
    fn object_descriptions(
        &self,
        arrays: &[arrow::array::ArrayRef],
    ) -> Result<arrow::array::ArrayRef> {
        let n = arrays[0].len();
        let oids: Vec<Option<i32>> = match arrays[0].as_string_opt::<i32>() {
            Some(names) => names
                .iter()
                .map(|v| {
                    let v = v?;
                    v.parse()
                        .ok()
                        .or_else(|| self.state.descriptions.proc_named(v))
                })
                .collect(),
            None => {
                let o = cast(&arrays[0], &DataType::Int64)?;
                o.as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.map(|v| v as i32))
                    .collect()
            }
        };
        let catalogs = match arrays.get(1) {
            Some(c) => Some(cast(c, &DataType::Utf8)?),
            None => None,
        };
        let catalogs = catalogs.as_ref().map(|c| c.as_string::<i32>());
        Ok(Arc::new(
            (0..n)
                .map(|i| {
                    let oid = oids[i]?;
                    let catalog = match catalogs {
                        Some(c) if c.is_null(i) => return None,
                        Some(c) => Some(c.value(i)),
                        None => None,
                    };
                    self.state
                        .descriptions
                        .object(oid, catalog)
                        .map(str::to_string)
                })
                .collect::<StringArray>(),
        ))
    }
}

/// The catalog functions of one statement, for a session with this `search_path`
/// (schema names, `"$user"` left out). They replace the crate's, which answer without
/// looking at the catalog.
pub fn session_udfs(state: &Arc<PgCatalogState>, search_path: &[String]) -> Vec<Arc<ScalarUDF>> {
    let mut out = super::keys::definition_udfs(state);
    for kind in [
        Kind::Result,
        Kind::Arguments,
        Kind::IdentityArguments,
        Kind::TableVisible,
        Kind::TableSize,
        Kind::RelationSize,
        Kind::TotalRelationSize,
        Kind::DatabaseSize,
        Kind::ColumnDescription,
        Kind::ObjectDescription,
        Kind::SharedObjectDescription,
        Kind::FunctionDef,
        Kind::RegProcedure,
        Kind::RegProc,
    ] {
        let signature = match kind {
            Kind::ColumnDescription | Kind::SharedObjectDescription => {
                Signature::any(2, Volatility::Stable)
            }
            Kind::ObjectDescription | Kind::RelationSize => {
                Signature::variadic_any(Volatility::Stable)
            }
            _ => Signature::any(1, Volatility::Stable),
        };
        out.push(Arc::new(ScalarUDF::new_from_impl(CatalogFn {
            kind,
            signature,
            state: Arc::clone(state),
            search_path: search_path.to_vec(),
        })));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_function_signatures() {
        let statics = PgCatalogStaticTables::try_new().unwrap();
        let procs = Procs::new(&statics).unwrap();
        // length(text) -> integer, oid 1317 in every PostgreSQL.
        assert_eq!(procs.result(1317).as_deref(), Some("integer"));
        assert_eq!(procs.arguments(1317).as_deref(), Some("text"));
        assert_eq!(procs.result(-5), None);
        assert_eq!(display_name("_int4"), "integer[]");
    }
}
