//! `pg_stat_activity`: one row per open PostgreSQL-wire session, as the pgwire front end
//! reports them (Superset's SQL Lab finds the backend to terminate here): who is
//! connected from where, and what each session is doing (`state`, the current or last
//! `query`, when the transaction, the statement and the state started).
//!
//! `pg_roles` (psql's `\du`): the users of `[fe.users]`, and the names sessions are
//! connected as (without users, loopback clients are trusted under any name). Every eddy
//! user may do everything, so each is a superuser that can log in.

use std::sync::Arc;

use arrow::array::new_null_array;
use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::error::Result;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};
use parking_lot::RwLock;

/// One session, as the front end that owns it describes it.
#[derive(Debug, Clone)]
pub struct Backend {
    pub pid: i32,
    pub user: String,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub client_port: Option<i32>,
    pub backend_start_micros: i64,
    /// `active`, `idle`, `idle in transaction` ...
    pub state: String,
    /// The statement running now, or the last one.
    pub query: String,
    pub xact_start_micros: Option<i64>,
    pub query_start_micros: Option<i64>,
    pub state_change_micros: i64,
}

/// Lists the open sessions (implemented by the pgwire front end's session registry).
pub trait ListBackends: Send + Sync + std::fmt::Debug {
    fn backends(&self) -> Vec<Backend>;
}

pub type BackendLister = Arc<dyn ListBackends>;

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
}

pub(super) fn schema() -> SchemaRef {
    let n = |name: &str, t: DataType| Field::new(name, t, true);
    Arc::new(Schema::new(vec![
        n("datid", DataType::Int32),
        n("datname", DataType::Utf8),
        Field::new("pid", DataType::Int32, false),
        n("leader_pid", DataType::Int32),
        n("usesysid", DataType::Int32),
        n("usename", DataType::Utf8),
        n("application_name", DataType::Utf8),
        n("client_addr", DataType::Utf8),
        n("client_hostname", DataType::Utf8),
        n("client_port", DataType::Int32),
        n("backend_start", ts()),
        n("xact_start", ts()),
        n("query_start", ts()),
        n("state_change", ts()),
        n("wait_event_type", DataType::Utf8),
        n("wait_event", DataType::Utf8),
        n("state", DataType::Utf8),
        n("backend_xid", DataType::Utf8),
        n("backend_xmin", DataType::Utf8),
        n("query_id", DataType::Int64),
        n("query", DataType::Utf8),
        n("backend_type", DataType::Utf8),
    ]))
}

pub(super) fn batch(backends: &[Backend], database_oid: Option<i32>) -> Result<RecordBatch> {
    let schema = schema();
    let rows = backends.len();
    let text = |f: &dyn Fn(&Backend) -> Option<String>| -> ArrayRef {
        Arc::new(backends.iter().map(f).collect::<StringArray>())
    };
    let times = |f: &dyn Fn(&Backend) -> Option<i64>| -> ArrayRef {
        Arc::new(
            backends
                .iter()
                .map(f)
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        columns.push(match field.name().as_str() {
            "datid" => Arc::new(Int32Array::from(vec![database_oid; rows])),
            "datname" => text(&|_| Some("eddy".to_string())),
            "pid" => Arc::new(Int32Array::from_iter_values(backends.iter().map(|b| b.pid))),
            "usename" => text(&|b| Some(b.user.clone())),
            "application_name" => text(&|b| Some(b.application_name.clone())),
            "client_addr" => text(&|b| b.client_addr.clone()),
            "client_port" => Arc::new(Int32Array::from_iter(
                backends.iter().map(|b| b.client_port),
            )),
            "backend_start" => times(&|b| Some(b.backend_start_micros)),
            "xact_start" => times(&|b| b.xact_start_micros),
            "query_start" => times(&|b| b.query_start_micros),
            "state_change" => times(&|b| Some(b.state_change_micros)),
            "state" => text(&|b| Some(b.state.clone())),
            "query" => text(&|b| Some(b.query.clone())),
            "backend_type" => text(&|_| Some("client backend".to_string())),
            _ => new_null_array(field.data_type(), rows),
        });
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The roles pg_catalog lists (see the module documentation).
#[derive(Debug, Clone, Default)]
pub(super) struct Roles {
    pub(super) users: Arc<RwLock<Vec<String>>>,
    pub(super) backends: Arc<RwLock<Option<BackendLister>>>,
}

#[async_trait]
impl PgCatalogContextProvider for Roles {
    async fn roles(&self) -> Vec<String> {
        let mut names = self.users.read().clone();
        let lister = self.backends.read().clone();
        if let Some(l) = lister {
            names.extend(l.backends().into_iter().map(|b| b.user));
        }
        names.sort();
        names.dedup();
        names
    }

    /// Always a role, even for a name whose session has just closed: the crate asks for
    /// each name `roles` gave and expects an answer.
    async fn role(&self, name: &str) -> Option<Role> {
        Some(Role {
            name: name.to_string(),
            is_superuser: true,
            can_login: true,
            can_create_db: true,
            can_create_role: true,
            can_create_user: true,
            can_replication: false,
            grants: vec![],
            inherited_roles: vec![],
        })
    }
}
