//! strait-envoy: the Envoy data plane, driven from the same per-proxy snapshot as the
//! built-in proxy.
//!
//! snapshot -> [`render`] (pure: Envoy v3 listeners, clusters, endpoints, secrets) ->
//! [`stream`] (pure: one ADS stream's state of the world) -> [`ads`] (the gRPC service the
//! agent serves on its `grpc_addr`). [`bootstrap`] writes the static Envoy config that points
//! an Envoy at that service.
#![forbid(unsafe_code)]

pub mod ads;
pub mod bootstrap;
pub mod render;
pub mod stream;

pub use ads::{serve, Authorizing, SnapshotSource};
pub use render::{render, Resources};
