//! The seam between consensus and what is replicated: an application applies committed
//! commands, and dumps and restores its whole state for snapshots. Nothing else of openraft
//! leaks into it, so another engine could drive the same application.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// An application replicated by Raft: every server holds one, and applies the same commands
/// in the same order.
///
/// Methods take `&self` because queries are served by the application directly while the
/// state machine applies commits: use interior mutability (and wake blocking queries from
/// `apply`). `apply` runs on the async runtime between Raft's own steps: it must be quick and
/// do no blocking I/O (it works on memory; durability comes from the log and the snapshots).
pub trait Replicated: Send + Sync + 'static {
    /// A write, as the log records it (JSON).
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// What `apply` answers to the writer (JSON).
    type Response: Serialize + DeserializeOwned + Send + 'static;

    /// Applies the committed command at log `index`. Must be deterministic: every server
    /// gets the same answer and the same state from the same command.
    fn apply(&self, index: u64, command: Self::Command) -> Self::Response;

    /// The whole state, as of the last applied command, in a form `restore` reads.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with a `snapshot`'s. On error the state is left as it was.
    fn restore(&self, snapshot: &[u8]) -> Result<(), String>;
}

/// [`Replicated`] without its associated types, as the state machine holds it.
pub(crate) trait Erased: Send + Sync + 'static {
    fn apply(&self, index: u64, command: serde_json::Value) -> Result<serde_json::Value, String>;
    fn snapshot(&self) -> Vec<u8>;
    fn restore(&self, snapshot: &[u8]) -> Result<(), String>;
}

impl<A: Replicated> Erased for A {
    fn apply(&self, index: u64, command: serde_json::Value) -> Result<serde_json::Value, String> {
        // A command this build cannot read means the log holds something it does not
        // understand (a newer server wrote it): applying anything else would diverge.
        let command: A::Command = serde_json::from_value(command)
            .map_err(|e| format!("log entry {index} is not a command this server knows: {e}"))?;
        let response = Replicated::apply(self, index, command);
        serde_json::to_value(response)
            .map_err(|e| format!("cannot encode the response to log entry {index}: {e}"))
    }

    fn snapshot(&self) -> Vec<u8> {
        Replicated::snapshot(self)
    }

    fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        Replicated::restore(self, snapshot)
    }
}
