//! openraft's own storage conformance suite against the redb store.

mod common;

use common::Registers;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use std::sync::Arc;
use strait_raft::store::{self, LogStore, StateMachine};
use strait_raft::TypeConfig;

/// Each case gets a fresh file in its own directory (the guard removes it).
struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm) = store::open(
            &dir.path().join("raft.redb"),
            Arc::new(Registers::default()),
        )
        .await
        .expect("open store");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    common::init_tracing();
    Suite::test_all(RedbBuilder).expect("storage suite");
}

/// The file holds the application's secrets (a server's CA keys): only its owner reads it.
#[tokio::test]
async fn the_store_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raft.redb");
    store::open(&path, Arc::new(Registers::default()))
        .await
        .expect("open store");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "raft.redb is {:o}", mode & 0o777);
}
