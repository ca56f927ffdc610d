//! strait-rpc: HTTP between strait processes.
//!
//! Servers, agents, the CLI and proxies all speak HTTP/1.1 with JSON bodies. Between hosts it
//! always runs over mutual TLS ([`mesh`]); on loopback (an agent's local API, a server's local
//! listener, proxy admin pages) it is plain ([`http`], the one client both use). [`serve`] runs
//! an axum router on either, handing handlers the caller's verified SPIFFE ID. [`metrics`] is
//! the Prometheus text that servers and agents serve; [`unsupported`] what they answer
//! for a path no route takes.
//!
//! This is the transport only: the bodies of strait's internal API are `strait-proto`'s.
#![forbid(unsafe_code)]

pub mod config;
pub mod duration;
mod error;
pub mod http;
pub mod mesh;
pub mod metrics;
pub mod serve;
pub mod token;
pub mod unsupported;

pub use error::RpcError;
pub use http::Response;
