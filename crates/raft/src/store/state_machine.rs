//! openraft's state machine over a [`Replicated`](crate::Replicated) application, with the
//! current snapshot kept in the Raft file.

use super::{get_json, storage, DbError, SNAPSHOT};
use crate::app::Erased;
use crate::{Node, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use redb::Database;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

type Meta = SnapshotMeta<u64, Node>;

/// Applies committed entries to the application; builds, keeps and installs snapshots.
pub struct StateMachine {
    db: Arc<Database>,
    app: Arc<dyn Erased>,
    /// The last entry applied to `app` (blank and membership entries included).
    last_applied: Option<LogId<u64>>,
    /// The last membership applied, for openraft's restart and for snapshots.
    last_membership: StoredMembership<u64, Node>,
}

pub(crate) enum OpenSmError {
    Db(DbError),
    Restore(String),
}

impl StateMachine {
    /// The state machine of the file `db`: the application restored from the stored snapshot,
    /// if there is one, else left as given (empty).
    pub(crate) async fn open(
        db: Arc<Database>,
        app: Arc<dyn Erased>,
    ) -> Result<StateMachine, OpenSmError> {
        let stored = read_snapshot(db.clone()).await.map_err(OpenSmError::Db)?;
        let mut sm = StateMachine {
            db,
            app,
            last_applied: None,
            last_membership: StoredMembership::default(),
        };
        if let Some((meta, data)) = stored {
            sm.app.restore(&data).map_err(OpenSmError::Restore)?;
            tracing::info!(snapshot = %meta, "state machine restored from the stored snapshot");
            sm.last_applied = meta.last_log_id;
            sm.last_membership = meta.last_membership;
        }
        Ok(sm)
    }
}

/// The stored snapshot, if any: its meta and the application's bytes.
async fn read_snapshot(db: Arc<Database>) -> Result<Option<(Meta, Vec<u8>)>, DbError> {
    super::blocking(move || {
        let tx = db.begin_read()?;
        let table = tx.open_table(SNAPSHOT)?;
        let Some(meta) = get_json::<Meta>(&table, "meta")? else {
            return Ok(None);
        };
        let data = redb::ReadableTable::get(&table, "data")?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        Ok(Some((meta, data)))
    })
    .await
}

/// Stores `meta` and `data` as the current snapshot, unless the stored one is newer (a build
/// that finished after an install of a later snapshot).
async fn write_snapshot(
    db: Arc<Database>,
    meta: &Meta,
    data: Vec<u8>,
) -> Result<(), StorageError<u64>> {
    let meta = meta.clone();
    let signature = meta.signature();
    storage(ErrorSubject::Snapshot(Some(signature)), ErrorVerb::Write, move || {
        let encoded = serde_json::to_vec(&meta)?;
        let tx = db.begin_write()?;
        {
            let mut table = tx.open_table(SNAPSHOT)?;
            let stored: Option<Meta> = get_json(&table, "meta")?;
            if stored.is_some_and(|s| s.last_log_id > meta.last_log_id) {
                tracing::info!(snapshot = %meta, "a newer snapshot is stored; not replacing it");
                return Ok(());
            }
            table.insert("meta", encoded.as_slice())?;
            table.insert("data", data.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    })
    .await
}

/// Makes snapshot ids unique within a process; with the log id, unique enough for openraft
/// (which only compares them to tell two transfers apart).
static SNAPSHOTS_BUILT: AtomicU64 = AtomicU64::new(0);

/// A snapshot taken by [`StateMachine::get_snapshot_builder`]: the application's bytes as of
/// `last_applied`, captured between two applies, written to the file by `build_snapshot`.
pub struct SnapshotBuilder {
    db: Arc<Database>,
    meta: Meta,
    data: Vec<u8>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        write_snapshot(self.db.clone(), &self.meta, self.data.clone()).await?;
        tracing::info!(snapshot = %self.meta, bytes = self.data.len(), "snapshot built");
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(std::mem::take(&mut self.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, Node>), StorageError<u64>> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<serde_json::Value>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let reply = match entry.payload {
                EntryPayload::Blank => serde_json::Value::Null,
                EntryPayload::Normal(command) => self
                    .app
                    .apply(log_id.index, command)
                    .map_err(|e| StorageIOError::apply(log_id, openraft::AnyError::error(e)))?,
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(log_id), membership);
                    serde_json::Value::Null
                }
            };
            self.last_applied = Some(log_id);
            replies.push(reply);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let n = SNAPSHOTS_BUILT.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match self.last_applied {
            Some(l) => format!(
                "{}-{}-{}-{n}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("none-{n}"),
        };
        SnapshotBuilder {
            db: self.db.clone(),
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.last_membership.clone(),
                snapshot_id,
            },
            data: self.app.snapshot(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Vec<u8>>, StorageError<u64>> {
        Ok(Box::default())
    }

    /// Replaces the application's state with the leader's snapshot, then stores it as the
    /// current one. If the application refuses the bytes its state is untouched and the error
    /// stops this server's Raft (it cannot follow a log it cannot apply).
    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Vec<u8>>,
    ) -> Result<(), StorageError<u64>> {
        self.app.restore(&snapshot).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), openraft::AnyError::error(e))
        })?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        write_snapshot(self.db.clone(), meta, *snapshot).await?;
        tracing::info!(snapshot = %meta, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let stored = read_snapshot(self.db.clone())
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, openraft::AnyError::new(&e)))?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(data),
        }))
    }
}
