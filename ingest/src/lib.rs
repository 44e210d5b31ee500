//! eddy-ingest: turns bytes and generated events into validated Arrow batches.
//!
//! Data flow: a source (HTTP body, COPY stream, a Kafka topic or the built-in generator,
//! see [`source`]) → a decoder ([`decode`]) that produces Arrow batches in the table's schema →
//! [`validate::conform_batch`], which names the row and column of any bad value → the BE's
//! write path (memtable + WAL). Nothing here touches storage: the BE calls the decoders, and
//! the generator writes through [`eddy_proto::BeService`]. [`alert`] evaluates alert rules on
//! the rows and views the BE applies, and publishes alerts to Kafka.

pub mod alert;
pub mod decode;
pub mod decode_stream;
mod flat_json;
pub mod generator;
pub mod rollup;
pub mod source;
pub mod timestamps;
pub mod validate;
