//! Every example config loads, and flags override it.

use crate::harness::{scalar, tempdir, Server};

#[tokio::test(flavor = "multi_thread")]
async fn example_configs_load() {
    let dir = tempdir();
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/eddy.toml");
    let s = Server::start_with_args(dir.path(), &[], &["--config", cfg]);
    let c = s.client().await;
    assert_eq!(scalar(&c, "SELECT 1").await, "1");
    assert!(
        dir.path().join("wal").exists(),
        "--data-dir overrides be.data_dir"
    );
}
