//! Opens the object store segments live in: the local filesystem by default, or S3.

use std::sync::Arc;

use eddy_proto::{Error, ErrorCode, Result};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

use crate::config::BeConfig;

pub fn open_store(config: &BeConfig) -> Result<Arc<dyn ObjectStore>> {
    let err = |e: String| Error::new(ErrorCode::StorageIo, format!("open object store: {e}"));
    match config.object_store_url.as_deref() {
        None => local(&config.data_dir.join("store")),
        Some(u) if u.starts_with("file://") => local(std::path::Path::new(&u["file://".len()..])),
        Some(u) if u.starts_with("s3://") => {
            let url = url::Url::parse(u).map_err(|e| err(e.to_string()))?;
            let bucket = url
                .host_str()
                .ok_or_else(|| err(format!("no bucket in {u}")))?;
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(ep) = &config.s3_endpoint {
                b = b.with_endpoint(ep);
            }
            if let Some(r) = &config.s3_region {
                b = b.with_region(r);
            }
            if config.s3_allow_http {
                b = b.with_allow_http(true);
            }
            let s3 = b.build().map_err(|e| err(e.to_string()))?;
            let prefix = url.path().trim_matches('/');
            if prefix.is_empty() {
                Ok(Arc::new(s3))
            } else {
                Ok(Arc::new(PrefixStore::new(s3, prefix)))
            }
        }
        Some(other) => Err(err(format!(
            "unsupported URL {other}: use file:// or s3://"
        ))),
    }
}

fn local(dir: &std::path::Path) -> Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::new(
            ErrorCode::StorageIo,
            format!("create {}: {e}", dir.display()),
        )
    })?;
    LocalFileSystem::new_with_prefix(dir)
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| Error::new(ErrorCode::StorageIo, format!("open {}: {e}", dir.display())))
}
