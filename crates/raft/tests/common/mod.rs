//! A tiny replicated application for the tests: named registers holding numbers.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use strait_raft::Replicated;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Set { key: String, value: u64 },
}

#[derive(Default)]
pub struct Registers {
    state: Mutex<State>,
    /// How many times `restore` replaced the state (from a stored or a received snapshot).
    pub restores: AtomicUsize,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub values: BTreeMap<String, u64>,
    pub last_index: u64,
}

impl Registers {
    pub fn state(&self) -> State {
        self.state.lock().expect("state lock").clone()
    }

    pub fn get(&self, key: &str) -> Option<u64> {
        self.state
            .lock()
            .expect("state lock")
            .values
            .get(key)
            .copied()
    }

    pub fn restores(&self) -> usize {
        self.restores.load(Ordering::SeqCst)
    }
}

impl Replicated for Registers {
    type Command = Command;
    /// The value the register held before.
    type Response = Option<u64>;

    fn apply(&self, index: u64, command: Command) -> Option<u64> {
        let mut state = self.state.lock().expect("state lock");
        assert!(
            index > state.last_index,
            "applied {index} after {}",
            state.last_index
        );
        state.last_index = index;
        match command {
            Command::Set { key, value } => state.values.insert(key, value),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&*self.state.lock().expect("state lock")).expect("encode state")
    }

    fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        let state: State = serde_json::from_slice(snapshot).map_err(|e| e.to_string())?;
        *self.state.lock().expect("state lock") = state;
        self.restores.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Test logs on stderr (shown for failing tests), `RUST_LOG` to change the level.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strait_raft::network::PlainHttp;
use strait_raft::service::PeerCheck;
use strait_raft::{Consensus, Node, NodeId};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One server of a test cluster: Raft over its redb file, its routes served on a real
/// loopback socket.
pub struct TestNode {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub path: PathBuf,
    pub consensus: Consensus<Registers>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl TestNode {
    /// Starts node `id` on `listener` with the Raft file at `path`.
    pub async fn start(
        id: NodeId,
        listener: TcpListener,
        path: &Path,
        config: openraft::Config,
        check: PeerCheck,
    ) -> TestNode {
        let addr = listener.local_addr().expect("local addr");
        let consensus =
            Consensus::start(id, path, config, Arc::new(Registers::default()), PlainHttp)
                .await
                .unwrap_or_else(|e| panic!("start node {id}: {e}"));
        let stop = CancellationToken::new();
        let server = tokio::spawn(strait_rpc::serve::serve_plain(
            listener,
            consensus.router(check),
            stop.clone(),
        ));
        TestNode {
            id,
            addr,
            path: path.to_owned(),
            consensus,
            stop,
            server,
        }
    }

    pub fn node(&self) -> Node {
        Node {
            name: format!("s{}", self.id),
            addr: self.addr.to_string(),
        }
    }

    pub fn app(&self) -> &Registers {
        self.consensus.app()
    }

    pub fn raft(&self) -> &strait_raft::Raft {
        self.consensus.raft()
    }

    /// Stops Raft and the listener, as a crashed server would (minus the disk's cache).
    pub async fn kill(self) {
        self.consensus.shutdown().await;
        self.stop.cancel();
        let _ = self.server.await;
    }
}

/// A peer check admitting anyone (plain loopback tests).
pub fn admit_all() -> PeerCheck {
    Arc::new(|_| Ok(()))
}
