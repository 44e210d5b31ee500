//! eddy-fe: the front ends and the SQL engine.
//!
//! Data flow: a client statement arrives over PostgreSQL wire ([`pg`]), Arrow Flight SQL
//! ([`flight`]) or HTTP ([`http`]), from a client [`auth`] admitted;
//! [`query::QueryEngine`] handles eddy's own statements (DDL, DELETE by key, COPY,
//! CHECKPOINT) by calling the BE, and plans everything else with DataFusion over
//! [`provider::EddyTable`], which asks the BE for pruned scan snapshots. The FE reaches the
//! BE only through [`eddy_proto::BeService`]. Errors are classified once ([`error`]) and
//! mapped to SQLSTATE codes and gRPC statuses.

pub mod alert_catalog;
pub mod alert_ddl;
pub mod auth;
pub mod catalog;
mod compat_parse;
pub mod config;
mod copy_body;
pub mod ddl;
pub mod deep_sql;
pub mod empty_relations;
pub mod error;
pub mod exists_value;
pub mod fast_plan;
pub mod first_last;
pub mod fixed_intervals;
pub mod flight;
pub mod http;
pub mod int_arithmetic;
pub mod interval_arithmetic;
pub mod key_filter;
pub mod metrics;
pub mod ordered_set;
pub mod parse_cost;
pub mod pg;
pub mod pg_literals;
pub mod plan_exprs;
pub mod point_query;
pub mod prepared;
pub mod provider;
pub mod query;
mod repeated_names;
pub mod rollup_catalog;
pub mod rollup_rewrite;
pub mod scalar_subquery;
pub mod server;
pub mod session_window;
pub mod single_row;
pub mod sorted_window;
pub mod source_ddl;

pub use config::FeConfig;
pub use server::{start, Endpoints};
