//! The one error type of this crate: every variant names the peer it concerns.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} (SNI {sni}) failed")]
    Handshake {
        addr: SocketAddr,
        sni: String,
        source: std::io::Error,
    },
    #[error("invalid SNI {sni:?}")]
    BadSni { sni: String },
    #[error("HTTP exchange with {addr} failed: {message}")]
    Http { addr: SocketAddr, message: String },
    #[error("{addr} did not answer within {secs}s")]
    Timeout { addr: SocketAddr, secs: u64 },
    #[error("{addr} answered {status} to {path}: {body}")]
    Status {
        addr: SocketAddr,
        path: String,
        status: u16,
        body: String,
    },
    #[error("{addr} answered {path} with a body that is not the expected JSON")]
    Decode {
        addr: SocketAddr,
        path: String,
        source: serde_json::Error,
    },
}
