//! The [`Catalog`]: one DC's state in memory, with a watch on its index for blocking queries.
//! Its durability is the server's Raft log and snapshots ([`Catalog::snapshot`],
//! [`Catalog::restore`]): a write reaches the catalog only once Raft committed it.
//!
//! Writers are serialised by a mutex; readers (HTTP API, snapshot builders) only ever wait for
//! an in-memory swap.

use crate::error::{CatalogError, Result};
use crate::store::{Edit, NodeRecord, State};
use crate::types::{ConfigEntry, FederationState};
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;
use tokio::sync::watch;

/// A DC's catalog: nodes, services, checks, config entries, federation states.
pub struct Catalog {
    /// Everything, for reads without disk access.
    state: RwLock<State>,
    /// Serialises writers so each computes its change from the latest state.
    writer: Mutex<()>,
    /// Current index, for watchers and blocking queries.
    index_tx: watch::Sender<u64>,
}

/// The catalog as one value: what [`Catalog::snapshot`] writes and [`Catalog::restore`] reads.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    index: u64,
    nodes: Vec<NodeRecord>,
    config_entries: Vec<ConfigEntry>,
    federation_states: Vec<FederationState>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("index", &self.index())
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// An empty catalog whose durability is someone else's: the server's Raft log and
    /// snapshots ([`Catalog::snapshot`], [`Catalog::restore`]). Writes only change memory.
    pub fn replicated() -> Catalog {
        let state = State::default();
        let (index_tx, _) = watch::channel(state.index);
        Catalog {
            state: RwLock::new(state),
            writer: Mutex::new(()),
            index_tx,
        }
    }

    /// The index of the last write (0 for a catalog never written).
    pub fn index(&self) -> u64 {
        self.read_state().index
    }

    /// A receiver of the current index, updated after every write.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.index_tx.subscribe()
    }

    /// Blocking-query wait: returns the current index as soon as it differs from `after`, or at
    /// `timeout`. As in Consul, `after == 0` and an `after` ahead of the catalog (a client
    /// that talked to another server) return at once.
    pub async fn wait_for_change(&self, after: u64, timeout: Duration) -> u64 {
        let mut rx = self.index_tx.subscribe();
        let current = *rx.borrow_and_update();
        if after == 0 || current != after {
            return current;
        }
        let wait = async {
            loop {
                if rx.changed().await.is_err() {
                    return *rx.borrow();
                }
                // Any move wakes: a restored snapshot moves the index back.
                let current = *rx.borrow_and_update();
                if current != after {
                    return current;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| self.index())
    }

    /// The whole state as one value (JSON), for a Raft snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        let state = self.read_state();
        let image = Image {
            index: state.index,
            nodes: state.nodes.values().cloned().collect(),
            config_entries: state.config.values().cloned().collect(),
            federation_states: state.federation.values().cloned().collect(),
        };
        serde_json::to_vec(&image).unwrap_or_default()
    }

    /// Replaces the whole state with a [`Catalog::snapshot`]; an invalid one changes
    /// nothing. Blocking queries wake if the index moved.
    pub fn restore(&self, snapshot: &[u8]) -> Result<()> {
        let image: Image = serde_json::from_slice(snapshot)
            .map_err(|e| CatalogError::BadSnapshot(e.to_string()))?;
        let mut state = State {
            index: image.index,
            ..State::default()
        };
        for record in image.nodes {
            state.nodes.insert(record.node.node.clone(), record);
        }
        for entry in image.config_entries {
            state
                .config
                .insert((entry.kind.clone(), entry.name.clone()), entry);
        }
        for fed in image.federation_states {
            state.federation.insert(fed.datacenter.clone(), fed);
        }
        let _writer = self.lock_writer();
        let index = state.index;
        *strait_base::sync::write(&self.state) = state;
        self.index_tx.send_replace(index);
        Ok(())
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-written: it is only
        // mutated by `State::apply`, which does not panic. So a poisoned lock is usable.
        strait_base::sync::read(&self.state)
    }

    /// Held for the whole of a write operation: read current state, compute, commit.
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, ()> {
        strait_base::sync::lock(&self.writer)
    }

    /// Applies `edit` at the next index, then publishes it. The caller holds the writer lock
    /// and has checked that `edit` changes something.
    pub(crate) fn commit(&self, _writer: &MutexGuard<'_, ()>, edit: Edit) -> Result<u64> {
        let index = self.index() + 1;
        strait_base::sync::write(&self.state).apply(index, edit);
        self.index_tx.send_replace(index);
        tracing::trace!(index, "catalog write");
        Ok(index)
    }

    /// The index the next write will get, for stamping ModifyIndex.
    pub(crate) fn next_index(&self) -> u64 {
        self.index() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Node;
    use std::sync::Arc;

    fn node(name: &str) -> Node {
        Node {
            node: name.into(),
            address: "10.0.0.1".into(),
            ..Node::default()
        }
    }

    #[tokio::test]
    async fn wait_returns_at_once_for_zero_or_stale_index() {
        let cat = Catalog::replicated();
        assert_eq!(cat.wait_for_change(0, Duration::from_secs(30)).await, 0);
        cat.register(node("n1"), vec![], vec![]).expect("register");
        assert_eq!(cat.wait_for_change(0, Duration::from_secs(30)).await, 1);
        assert_eq!(cat.wait_for_change(99, Duration::from_secs(30)).await, 1);
    }

    #[tokio::test]
    async fn wait_times_out_with_current_index() {
        let cat = Catalog::replicated();
        cat.register(node("n1"), vec![], vec![]).expect("register");
        let start = std::time::Instant::now();
        let idx = cat.wait_for_change(1, Duration::from_millis(100)).await;
        assert_eq!(idx, 1);
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn wait_wakes_on_change() {
        let cat = Arc::new(Catalog::replicated());
        cat.register(node("n1"), vec![], vec![]).expect("register");
        let waiter = tokio::spawn({
            let cat = cat.clone();
            async move { cat.wait_for_change(1, Duration::from_secs(30)).await }
        });
        // Let the waiter subscribe first; the result is the same either way.
        tokio::task::yield_now().await;
        cat.register(node("n2"), vec![], vec![]).expect("register");
        let idx = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woke before timeout")
            .expect("join");
        assert_eq!(idx, 2);
    }

    /// `strait snapshot restore` of an older snapshot moves the index back: waiters wake.
    #[tokio::test]
    async fn wait_wakes_when_a_restore_moves_the_index_back() {
        let cat = Arc::new(Catalog::replicated());
        cat.register(node("n1"), vec![], vec![]).expect("register");
        let image = cat.snapshot();
        cat.register(node("n2"), vec![], vec![]).expect("register");
        let waiter = tokio::spawn({
            let cat = cat.clone();
            async move { cat.wait_for_change(2, Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        cat.restore(&image).expect("restore");
        let idx = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woke before timeout")
            .expect("join");
        assert_eq!(idx, 1);
    }

    #[test]
    fn a_snapshot_restores_everything_and_a_bad_one_changes_nothing() {
        let source = Catalog::replicated();
        source
            .register(node("n1"), vec![], vec![])
            .expect("register");
        source
            .register(node("n2"), vec![], vec![])
            .expect("register");
        let image = source.snapshot();

        let replica = Catalog::replicated();
        let rx = replica.subscribe();
        replica.restore(&image).expect("restore");
        assert_eq!(replica.index(), source.index());
        assert_eq!(replica.nodes(), source.nodes());
        assert!(rx.has_changed().expect("open"), "watchers are woken");
        assert!(replica.restore(b"{not json").is_err());
        assert!(replica.restore(br#"{"index": 1}"#).is_err());
        assert_eq!(
            replica.nodes(),
            source.nodes(),
            "a bad snapshot changes nothing"
        );
    }

    #[tokio::test]
    async fn subscribe_sees_new_index() {
        let cat = Catalog::replicated();
        let mut rx = cat.subscribe();
        assert_eq!(*rx.borrow_and_update(), 0);
        cat.register(node("n1"), vec![], vec![]).expect("register");
        rx.changed().await.expect("changed");
        assert_eq!(*rx.borrow(), 1);
    }
}
