//! The catalog (table definitions) and per-table manifests, stored as JSON objects next to
//! the segments. Each is replaced whole by one `put`, which object stores make atomic, so a
//! reader sees either the old or the new version, never a mix.
//!
//! A manifest names the live segments of a table, their delete bitmaps and `flushed_seq`:
//! every WAL record of the table with a sequence number up to it is reflected in the
//! segments, so recovery replays only the records after it. It also holds each Kafka
//! source's offsets as of the same seal: where the source resumes after a restart.

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_proto::{Error, ErrorCode, Result, RollupDef, SourceDef, TableDef};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const CATALOG_PATH: &str = "catalog.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub id: u64,
    pub def: TableDef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    pub next_table_id: u64,
    pub tables: Vec<CatalogEntry>,
    #[serde(default)]
    pub sources: Vec<SourceDef>,
    /// Materialized views, each after the view it cascades from.
    #[serde(default)]
    pub rollups: Vec<RollupDef>,
    /// Alert rules, in creation order.
    #[serde(default)]
    pub alerts: Vec<eddy_proto::AlertDef>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            next_table_id: 1,
            tables: Vec::new(),
            sources: Vec::new(),
            rollups: Vec::new(),
            alerts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub table_id: u64,
    pub version: u64,
    pub flushed_seq: u64,
    /// Paths of the live segments' Parquet files.
    pub segments: Vec<String>,
    /// Segment id → base64 roaring bitmap of deleted rows.
    pub deletes: BTreeMap<u64, String>,
    /// Source → partition → next offset: every record before it is in the segments.
    #[serde(default)]
    pub source_offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// View → its state as of the same seal.
    #[serde(default)]
    pub rollups: BTreeMap<String, crate::rollups::SnapshotRef>,
}

pub fn table_dir(table_id: u64) -> String {
    format!("tables/{table_id}")
}

pub fn manifest_path(table_id: u64) -> String {
    format!("{}/manifest.json", table_dir(table_id))
}

pub async fn read_json<T: DeserializeOwned>(
    store: &Arc<dyn ObjectStore>,
    path: &str,
) -> Result<Option<T>> {
    match store.get(&Path::from(path)).await {
        Ok(r) => {
            let bytes = r
                .bytes()
                .await
                .map_err(|e| Error::new(ErrorCode::StorageIo, format!("read {path}: {e}")))?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::new(ErrorCode::StorageCorrupt, format!("decode {path}: {e}")))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::new(
            ErrorCode::StorageIo,
            format!("read {path}: {e}"),
        )),
    }
}

pub async fn write_json<T: Serialize>(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    value: &T,
) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("catalog types serialize");
    store
        .put(&Path::from(path), bytes.into())
        .await
        .map(|_| ())
        .map_err(|e| Error::new(ErrorCode::StorageIo, format!("write {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_proto::ColumnType;

    /// A catalog written before `varchar(n)` / `char(n)` existed (their columns were
    /// `Text`) still reads, and the new types round-trip.
    #[test]
    fn catalogs_before_and_after_varchar_lengths() {
        let old = r#"{"next_table_id": 2, "tables": [{"id": 1, "def": {"name": "t",
            "columns": [{"name": "s", "ty": "Text", "nullable": true},
                        {"name": "n", "ty": {"Numeric": {"precision": 10, "scale": 2}},
                         "nullable": false}]}}]}"#;
        let cat: Catalog = serde_json::from_str(old).unwrap();
        let def = &cat.tables[0].def;
        assert_eq!(def.columns[0].ty, ColumnType::Text);
        assert_eq!(def.columns[1].ty.sql_name(), "numeric(10,2)");
        let mut new = cat.clone();
        new.tables[0].def.columns[0].ty = ColumnType::Varchar { length: Some(20) };
        new.tables[0].def.columns[1].ty = ColumnType::Char { length: 3 };
        let back: Catalog = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back.tables[0].def, new.tables[0].def);
        assert_eq!(
            back.tables[0].def.columns[0].ty.sql_name(),
            "character varying(20)"
        );
    }
}
