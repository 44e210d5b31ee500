//! `pg_catalog` as eddy's tables really are. datafusion-pg-catalog builds pg_catalog from
//! DataFusion's catalogs, which know Arrow types only; this wraps its schema provider and
//! completes what clients read from the BE's table definitions:
//!
//! - `pg_attribute`: `attnotnull` (DataFusion plans with every column nullable),
//!   `atttypmod` for `numeric(p,s)`, and `jsonb` (stored as text) typed as jsonb;
//! - `pg_class`: `relhasindex`, and a relation of kind `i` for each primary key's index;
//! - `pg_index`, `pg_constraint` (contype `p`) and the `pg_indexes` view: one row per
//!   primary key, replacing the PostgreSQL system rows the crate ships, whose OIDs name
//!   relations that do not exist here;
//! - `pg_get_indexdef` and `pg_get_constraintdef` (`keys::definition_udfs`) that
//!   print those keys as PostgreSQL does.
//!
//! An index's OID is its table's OID plus [`keys::INDEX_OID_OFFSET`] and a constraint's
//! plus [`keys::CONSTRAINT_OID_OFFSET`], so both stay stable while the table's does.

mod activity;
mod arrays;
mod descriptions;
mod functiondef;
mod functions;
mod keys;
mod patch;
mod regprocedure;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{Int32Type, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::empty::EmptyTable;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion_pg_catalog::pg_catalog::{
    PgCatalogSchemaProvider, PgCatalogStaticTables, PgCatalogTable,
};
use eddy_proto::{BeService, TableDef};
use futures::TryStreamExt;
use parking_lot::RwLock;

pub use self::activity::{Backend, BackendLister, ListBackends};
pub(crate) use self::descriptions::catalog_oid;
pub use self::functions::session_udfs;
pub(crate) use self::functions::{display_name, REGPROC, REGPROCEDURE};
pub(crate) use self::patch::typmod;

type Inner = PgCatalogSchemaProvider<Arc<dyn CatalogProviderList>, activity::Roles>;

/// The tables this module builds or completes (with those of [`arrays`]); every other
/// pg_catalog table is the crate's own.
const OWN: [&str; 6] = [
    "pg_attribute",
    "pg_class",
    "pg_index",
    "pg_constraint",
    "pg_indexes",
    "pg_stat_activity",
];

/// What pg_catalog tables and the definition functions share.
#[derive(Debug)]
pub struct PgCatalogState {
    inner: Inner,
    be: Arc<dyn BeService>,
    /// OIDs of the tables in `public` as the last catalog scan saw them, for the
    /// definition functions (which cannot scan: they run synchronously).
    tables_by_oid: RwLock<HashMap<i32, String>>,
    /// The schema of every relation the last pg_class scan saw, for
    /// `pg_table_is_visible`.
    schemas_by_oid: RwLock<HashMap<i32, String>>,
    /// Built-in functions (the crate's pg_proc), for `pg_get_function_result` ...
    pub(crate) procs: functions::Procs,
    /// ... and `pg_get_functiondef`.
    pub(crate) function_defs: functiondef::FunctionDefs,
    /// Built-in objects' comments, for `obj_description`.
    pub(crate) descriptions: descriptions::Descriptions,
    /// The open sessions and configured users, for `pg_stat_activity` and `pg_roles`
    /// (none until a front end says how).
    roles: activity::Roles,
}

/// A user table as pg_catalog shows it.
#[derive(Debug, Clone)]
pub(crate) struct Relation {
    pub(crate) oid: i32,
    pub(crate) namespace_oid: i32,
    pub(crate) def: TableDef,
}

impl PgCatalogState {
    /// Runs one of the crate's tables to completion.
    async fn crate_table(&self, name: &str, ctx: Arc<TaskContext>) -> Result<RecordBatch> {
        let table = self
            .inner
            .build_table_by_name(name)?
            .ok_or_else(|| DataFusionError::Internal(format!("no pg_catalog.{name}")))?;
        let schema = table.schema();
        let batches: Vec<RecordBatch> = match table {
            PgCatalogTable::Dynamic(p) => p.execute(ctx).try_collect().await?,
            PgCatalogTable::Static(t) => t.data().to_vec(),
            PgCatalogTable::Empty(_) => vec![],
        };
        Ok(concat_batches(&schema, &batches)?)
    }

    /// The crate's pg_class, and the tables of `public` (where the BE's tables live)
    /// with their OIDs as it assigned them.
    async fn scan_class(&self, ctx: Arc<TaskContext>) -> Result<(RecordBatch, Vec<Relation>)> {
        let ns = self.crate_table("pg_namespace", Arc::clone(&ctx)).await?;
        let namespaces: HashMap<i32, String> = column_i32(&ns, "oid")?
            .iter()
            .zip(column_str(&ns, "nspname")?.iter())
            .filter_map(|(o, n)| Some((o?, n?.to_string())))
            .collect();
        let public = namespaces
            .iter()
            .find(|(_, n)| *n == "public")
            .map(|(o, _)| *o);
        let class = self.crate_table("pg_class", ctx).await?;
        let rels = self.relations_in(&class, public);
        let mut schemas: HashMap<i32, String> = column_i32(&class, "oid")?
            .iter()
            .zip(column_i32(&class, "relnamespace")?.iter())
            .filter_map(|(o, n)| Some((o?, namespaces.get(&n?)?.clone())))
            .collect();
        for r in rels.iter().filter(|r| r.def.has_primary_key()) {
            schemas.insert(r.oid + keys::INDEX_OID_OFFSET, "public".into());
        }
        *self.schemas_by_oid.write() = schemas;
        Ok((class, rels))
    }

    async fn relations(&self, ctx: Arc<TaskContext>) -> Result<Vec<Relation>> {
        Ok(self.scan_class(ctx).await?.1)
    }

    /// The schema of a relation, as the last pg_class scan saw it.
    pub(crate) fn schema_of_relation(&self, oid: i32) -> Option<String> {
        self.schemas_by_oid.read().get(&oid).cloned()
    }

    fn relations_in(&self, class: &RecordBatch, public: Option<i32>) -> Vec<Relation> {
        let (Ok(oids), Ok(names), Ok(nss)) = (
            column_i32(class, "oid"),
            column_str(class, "relname"),
            column_i32(class, "relnamespace"),
        ) else {
            return vec![];
        };
        let mut out = Vec::new();
        for i in 0..class.num_rows() {
            if nss.is_null(i) || Some(nss.value(i)) != public || oids.is_null(i) {
                continue;
            }
            if let Some(def) = self.be.table(names.value(i)) {
                out.push(Relation {
                    oid: oids.value(i),
                    namespace_oid: nss.value(i),
                    def,
                });
            }
        }
        *self.tables_by_oid.write() = out.iter().map(|r| (r.oid, r.def.name.clone())).collect();
        out
    }

    /// Tells `pg_stat_activity` and `pg_roles` how to list the open sessions, and
    /// `pg_roles` the configured users.
    pub fn set_backends(&self, lister: BackendLister, users: Vec<String>) {
        *self.roles.backends.write() = Some(lister);
        *self.roles.users.write() = users;
    }

    /// Each table's bytes (segments and memtable), by name.
    pub(crate) fn table_bytes(&self) -> HashMap<String, i64> {
        self.be
            .tables()
            .into_iter()
            .map(|t| (t.def.name, (t.segment_bytes + t.memtable_bytes) as i64))
            .collect()
    }

    /// Whether `oid` is a primary key's index.
    pub(crate) fn is_key_index(&self, oid: i32) -> bool {
        self.table_by_oid(oid.wrapping_sub(keys::INDEX_OID_OFFSET))
            .is_some_and(|d| d.has_primary_key())
    }

    /// The definition of the table with this OID, as the last catalog scan saw it.
    pub(crate) fn table_by_oid(&self, oid: i32) -> Option<TableDef> {
        let name = self.tables_by_oid.read().get(&oid).cloned()?;
        self.be.table(&name)
    }

    async fn build(&self, name: &str, ctx: Arc<TaskContext>) -> Result<RecordBatch> {
        match name {
            "pg_class" => {
                let (class, rels) = self.scan_class(ctx).await?;
                patch::pg_class(class, &rels)
            }
            "pg_attribute" => {
                let rels = self.relations(Arc::clone(&ctx)).await?;
                let attrs = self.crate_table("pg_attribute", ctx).await?;
                arrays::batch("pg_attribute", patch::pg_attribute(attrs, &rels)?)
            }
            "pg_index" => keys::pg_index(&self.relations(ctx).await?),
            "pg_constraint" => keys::pg_constraint(&self.relations(ctx).await?),
            "pg_indexes" => keys::pg_indexes(&self.relations(ctx).await?),
            "pg_stat_activity" => {
                let db = self.crate_table("pg_database", ctx).await?;
                let eddy = column_i32(&db, "oid")?
                    .iter()
                    .zip(column_str(&db, "datname")?.iter())
                    .find(|(_, n)| *n == Some("eddy"))
                    .and_then(|(o, _)| o);
                let lister = self.roles.backends.read().clone();
                let backends = lister.map(|l| l.backends()).unwrap_or_default();
                activity::batch(&backends, eddy)
            }
            other if arrays::tables().any(|t| t == other) => {
                arrays::batch(other, self.crate_table(other, ctx).await?)
            }
            other => Err(DataFusionError::Internal(format!(
                "pg_catalog.{other} is not built here"
            ))),
        }
    }

    fn schema_of(&self, name: &str) -> Result<SchemaRef> {
        Ok(match name {
            "pg_index" => keys::pg_index_schema(),
            "pg_constraint" => keys::pg_constraint_schema(),
            "pg_indexes" => keys::pg_indexes_schema(),
            "pg_stat_activity" => activity::schema(),
            "pg_class" => patch::pg_class_schema(&*self.crate_schema(name)?),
            other if arrays::tables().any(|t| t == other) => {
                arrays::schema(other, self.crate_schema(name)?.as_ref())
            }
            _ => self.crate_schema(name)?,
        })
    }

    /// Whether the crate ships `name` (lowercase) as a table without rows that nothing
    /// fills (`pg_policy`, `pg_inherits` ...): such a table is served as an
    /// [`EmptyTable`], which [`crate::empty_relations`] plans as no rows.
    fn is_always_empty(&self, name: &str) -> bool {
        match self.inner.build_table_by_name(name) {
            Ok(Some(PgCatalogTable::Static(t))) => t.data().iter().all(|b| b.num_rows() == 0),
            Ok(Some(PgCatalogTable::Empty(_))) => true,
            _ => false,
        }
    }

    fn crate_schema(&self, name: &str) -> Result<SchemaRef> {
        Ok(self
            .inner
            .build_table_by_name(name)?
            .ok_or_else(|| DataFusionError::Internal(format!("no pg_catalog.{name}")))?
            .schema())
    }
}

fn column_i32<'a>(
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::PrimitiveArray<Int32Type>> {
    b.column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog column {name} is not int4")))
}

fn column_str<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a arrow::array::StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog column {name} is not text")))
}

/// One of [`OWN`], computed when a query scans it (so DDL shows at once).
#[derive(Debug)]
struct OwnTable {
    name: &'static str,
    schema: SchemaRef,
    state: Arc<PgCatalogState>,
}

impl PartitionStream for OwnTable {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let state = Arc::clone(&self.state);
        let name = self.name;
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::once(async move { state.build(name, ctx).await }),
        ))
    }
}

/// The `pg_catalog` schema provider eddy registers.
#[derive(Debug)]
pub struct EddyPgCatalog {
    state: Arc<PgCatalogState>,
}

#[async_trait]
impl SchemaProvider for EddyPgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.state.inner.table_names();
        names.push("pg_indexes".into());
        names.push("pg_stat_activity".into());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let lower = name.to_ascii_lowercase();
        if !OWN.contains(&lower.as_str()) && self.state.is_always_empty(&lower) {
            let schema = self.state.schema_of(&lower)?;
            return Ok(Some(Arc::new(EmptyTable::new(schema))));
        }
        let Some(own) = OWN
            .iter()
            .copied()
            .chain(arrays::tables())
            .find(|n| *n == lower)
        else {
            return self.state.inner.table(name).await;
        };
        let schema = self.state.schema_of(own)?;
        let stream = OwnTable {
            name: own,
            schema: Arc::clone(&schema),
            state: Arc::clone(&self.state),
        };
        Ok(Some(Arc::new(StreamingTable::try_new(
            schema,
            vec![Arc::new(stream)],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("pg_indexes")
            || name.eq_ignore_ascii_case("pg_stat_activity")
            || self.state.inner.table_exist(name)
    }
}

/// Replaces the `pg_catalog` schema datafusion-pg-catalog registered in catalog `eddy`
/// with [`EddyPgCatalog`]; returns the state the definition functions need.
pub fn install(state: &SessionState, be: Arc<dyn BeService>) -> Result<Arc<PgCatalogState>> {
    let list = Arc::clone(state.catalog_list());
    let statics = PgCatalogStaticTables::try_new()?;
    let procs = functions::Procs::new(&statics)?;
    let function_defs = functiondef::FunctionDefs::new(&statics)?;
    let descriptions = descriptions::Descriptions::new(&statics)?;
    let roles = activity::Roles::default();
    let inner =
        PgCatalogSchemaProvider::try_new(Arc::clone(&list), Arc::new(statics), roles.clone())?;
    let shared = Arc::new(PgCatalogState {
        inner,
        be,
        tables_by_oid: RwLock::new(HashMap::new()),
        schemas_by_oid: RwLock::new(HashMap::new()),
        procs,
        function_defs,
        descriptions,
        roles,
    });
    let catalog = list
        .catalog("eddy")
        .ok_or_else(|| DataFusionError::Internal("no catalog eddy".into()))?;
    catalog.register_schema(
        "pg_catalog",
        Arc::new(EddyPgCatalog {
            state: Arc::clone(&shared),
        }),
    )?;
    Ok(shared)
}
