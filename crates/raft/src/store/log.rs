//! openraft's log storage over redb: entries, vote, committed and last purged log ids.

use super::{get_json, storage, DbError, LOG, META};
use crate::TypeConfig;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use redb::{Database, ReadableTable};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

/// The log half of a server's Raft file. Cheap to clone: replication tasks read through
/// clones while the core appends.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Database>) -> LogStore {
        LogStore { db }
    }

    /// Writes the JSON `value` under `key` of the meta table, durably.
    async fn put_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError<u64>> {
        let db = self.db.clone();
        let bytes = serde_json::to_vec(value);
        storage(subject, ErrorVerb::Write, move || {
            let bytes = bytes?;
            let tx = db.begin_write()?;
            tx.open_table(META)?.insert(key, bytes.as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_meta<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
        subject: ErrorSubject<u64>,
    ) -> Result<Option<T>, StorageError<u64>> {
        let db = self.db.clone();
        storage(subject, ErrorVerb::Read, move || {
            let tx = db.begin_read()?;
            get_json(&tx.open_table(META)?, key)
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let db = self.db.clone();
        let range: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        storage(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let tx = db.begin_read()?;
            let table = tx.open_table(LOG)?;
            let mut entries = Vec::new();
            for row in table.range(range)? {
                let (_, v) = row?;
                entries.push(serde_json::from_slice(v.value())?);
            }
            Ok(entries)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let db = self.db.clone();
        storage(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let tx = db.begin_read()?;
            let last_purged_log_id: Option<LogId<u64>> =
                get_json(&tx.open_table(META)?, "last_purged")?;
            let last = match tx.open_table(LOG)?.last()? {
                Some((_, v)) => {
                    let entry: Entry<TypeConfig> = serde_json::from_slice(v.value())?;
                    Some(entry.log_id)
                }
                None => last_purged_log_id,
            };
            Ok(LogState {
                last_purged_log_id,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.put_meta("vote", vote, ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.get_meta("vote", ErrorSubject::Vote).await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        self.put_meta("committed", &committed, ErrorSubject::Store)
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self
            .get_meta::<Option<LogId<u64>>>("committed", ErrorSubject::Store)
            .await?
            .flatten())
    }

    /// Returns once the entries are committed to disk, having told `callback` so: readable
    /// and durable at the same moment.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows: Result<Vec<(u64, Vec<u8>)>, serde_json::Error> = entries
            .into_iter()
            .map(|e| serde_json::to_vec(&e).map(|bytes| (e.log_id.index, bytes)))
            .collect();
        let db = self.db.clone();
        let written = super::blocking(move || {
            let rows = rows?;
            let tx = db.begin_write()?;
            {
                let mut table = tx.open_table(LOG)?;
                for (index, bytes) in &rows {
                    table.insert(index, bytes.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(openraft::StorageIOError::write_logs(openraft::AnyError::new(&e)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let db = self.db.clone();
        storage(ErrorSubject::Logs, ErrorVerb::Delete, move || {
            let tx = db.begin_write()?;
            tx.open_table(LOG)?
                .retain_in(log_id.index.., |_, _| false)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Records `log_id` as purged and removes the entries up to it, in one transaction.
    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let db = self.db.clone();
        storage(ErrorSubject::Logs, ErrorVerb::Delete, move || {
            let purged = serde_json::to_vec(&log_id)?;
            let tx = db.begin_write()?;
            tx.open_table(META)?
                .insert("last_purged", purged.as_slice())?;
            tx.open_table(LOG)?
                .retain_in(..=log_id.index, |_, _| false)?;
            tx.commit()?;
            Ok::<(), DbError>(())
        })
        .await
    }
}
