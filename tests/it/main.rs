//! Integration tests: each spawns the real `eddy` binary on free loopback ports and talks
//! to it with real clients (tokio-postgres, psql, HTTP, Arrow Flight SQL, a Kafka broker).
//! One test binary keeps link time
//! down.

mod broker;
mod harness;

mod alerts;
mod bulk;
mod config;
mod durability;
mod flight;
mod http_ingest;
mod kafka;
mod key_lookup;
mod pg_catalog;
mod pg_protocol;
mod rollups;
mod s3;
mod sql;
mod statistics;
mod storage;
