//! Durable Raft state in one redb file per server (`raft.redb`, mode 0600).
//!
//! Layout (three tables):
//!
//! | table           | key                                  | value                           |
//! |-----------------|--------------------------------------|---------------------------------|
//! | `raft_log`      | log index (u64)                      | the entry, JSON                 |
//! | `raft_meta`     | `vote`, `committed`, `last_purged`   | the log id / vote, JSON         |
//! | `raft_snapshot` | `meta`, `data`                       | snapshot meta (JSON), app bytes |
//!
//! The state machine itself lives in memory (the application); the snapshot is its durable
//! form. A restarted server restores the application from the snapshot, and openraft re-applies
//! the committed entries after it (the committed log id is saved for that). Log entries covered
//! by a snapshot are purged, so the file stays bounded by the snapshot policy.
//!
//! redb calls block (a commit fsyncs): every one runs on tokio's blocking pool.

mod log;
mod state_machine;

pub use log::LogStore;
pub use state_machine::{SnapshotBuilder, StateMachine};

use crate::app::Erased;
use crate::Replicated;
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use redb::{Database, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_meta");
pub(crate) const SNAPSHOT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_snapshot");

/// Opening a server's Raft file failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the Raft store {path}: {error}")]
    Db { path: PathBuf, error: DbError },
    #[error("cannot restore the state machine from the snapshot in {path}: {reason}")]
    Restore { path: PathBuf, reason: String },
}

/// A redb or encoding failure inside one storage operation.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Redb(Box<redb::Error>),
    #[error("undecodable record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("storage task failed: {0}")]
    Join(String),
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError::Redb(Box::new(e.into()))
            }
        }
    )*};
}
redb_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Opens (or creates) the Raft file at `path` and builds the two halves openraft drives: the
/// log store and the state machine over `app`, restored from the file's snapshot if it has one.
pub async fn open<A: Replicated>(
    path: &Path,
    app: Arc<A>,
) -> Result<(LogStore, StateMachine), OpenError> {
    let db_err = |error| OpenError::Db {
        path: path.to_owned(),
        error,
    };
    let file = path.to_owned();
    let db = blocking(move || {
        let db = Database::create(&file)?;
        // The log and snapshots carry the application's secrets (the server's CA keys).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| DbError::Redb(Box::new(redb::Error::Io(e))))?;
        // Create the tables up front so readers never meet a missing one.
        let tx = db.begin_write()?;
        tx.open_table(LOG)?;
        tx.open_table(META)?;
        tx.open_table(SNAPSHOT)?;
        tx.commit()?;
        Ok(Arc::new(db))
    })
    .await
    .map_err(db_err)?;
    let app: Arc<dyn Erased> = app;
    let sm = StateMachine::open(db.clone(), app)
        .await
        .map_err(|e| match e {
            state_machine::OpenSmError::Db(error) => db_err(error),
            state_machine::OpenSmError::Restore(reason) => OpenError::Restore {
                path: path.to_owned(),
                reason,
            },
        })?;
    Ok((LogStore::new(db), sm))
}

/// Runs `work` on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DbError::Join(e.to_string()))?
}

/// [`blocking`], with failures reported to openraft as what was being done to what.
pub(crate) async fn storage<T: Send + 'static>(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    work: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, StorageError<u64>> {
    blocking(work)
        .await
        .map_err(|e| StorageIOError::new(subject, verb, AnyError::new(&e)).into())
}

/// Reads the JSON record `key` of `table`, if present.
pub(crate) fn get_json<T: serde::de::DeserializeOwned>(
    table: &impl redb::ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, DbError> {
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}
