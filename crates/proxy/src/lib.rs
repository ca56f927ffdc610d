//! strait-proxy: the built-in data plane, last stop of the flow.
//!
//! snapshot (file or agent blocking query, [`snapshot_source`]) -> built once per version
//! into rustls configs and routing tables -> connections:
//! - [`sidecar`]: app -> outbound listener -> mTLS -> upstream; caller -> inbound mTLS ->
//!   app;
//! - [`gateway`]: ClientHello SNI -> route -> splice(2) pass-through, never decrypting;
//! - [`admin`]-endpoint pages and Prometheus [`metrics`] on loopback, connections closed
//!   counted by [`reason`].
//!
//! Per-connection work only clones `Arc`s out of the current state; per-byte work only
//! touches atomics. Shutdown stops accepting and drains under a grace period.

mod admin;
pub mod cli;
mod copy;
mod drain;
pub mod gateway;
mod heap;
mod listener;
pub mod metrics;
pub mod reason;
mod rlimit;
mod run;
mod runtime;
pub mod sidecar;
pub mod snapshot_source;

pub use cli::{GatewayArgs, Options, SidecarArgs};
pub use gateway::hello::{parse_hello, HelloOutcome, HelloReader, NotHello};
pub use gateway::{start_gateway, GatewayHandle};
pub use metrics::{Metrics, TargetMetrics};
pub use run::{run_gateway, run_sidecar, STOP_MARGIN};
pub use sidecar::{start_sidecar, Bound, SidecarHandle};
pub use snapshot_source::{SnapshotRx, SnapshotSource, SnapshotTx};
