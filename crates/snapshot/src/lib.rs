//! strait-snapshot: the seam between control plane and data plane.
//!
//! catalog state (as seen by an agent) + proxy registration -> [`Snapshot`], the immutable,
//! versioned value one proxy needs: common fields plus a [`ProxyRole`], sidecar or gateway.
//! [`build`] is a pure function: no I/O, no clock, no randomness, so it is unit-tested on its
//! own. Both the built-in proxy (`strait-proxy`) and the xDS renderer (`strait-envoy`, whose
//! resources the agent serves to Envoy over ADS) consume the same value, so they cannot
//! drift.

#![forbid(unsafe_code)]

mod build;
mod chain;
mod route;
mod types;
mod wire;

pub use build::{
    build, effective_mode, redacted, remote_targets, resolve_intentions, service_sni,
    service_spiffe_id, BuildError, NAMESPACE,
};
pub use chain::{find_redirect_cycle, follow_redirects, Chain, RedirectCycle};
pub use route::{GatewayRoute, RouteError, BOOTSTRAP_TRUST_DOMAIN};
pub use types::*;
pub use wire::WireError;
