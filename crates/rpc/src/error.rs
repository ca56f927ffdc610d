//! The one error type of this crate: every variant names the peer it concerns, and the path
//! once a request is under way.
//!
//! Causes (an `io::Error`, a JSON error) are shown in `Display` and not chained as a
//! `source()`: these errors are logged with `%e` and shown to users with `{:#}`, and either
//! way the cause must appear exactly once.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot resolve {authority}: {error}")]
    Resolve {
        authority: String,
        error: std::io::Error,
    },
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("TLS handshake with {addr} (SNI {sni}) failed: {error}")]
    Handshake {
        addr: SocketAddr,
        sni: String,
        error: std::io::Error,
    },
    #[error("invalid SNI {sni:?}")]
    BadSni { sni: String },
    #[error("{addr} closed the connection without answering {path}")]
    Closed { addr: SocketAddr, path: String },
    #[error("HTTP exchange with {addr} for {path} failed: {message}")]
    Http {
        addr: SocketAddr,
        path: String,
        message: String,
    },
    #[error("{addr} did not answer {path} within {timeout:?}")]
    Timeout {
        addr: SocketAddr,
        path: String,
        timeout: Duration,
    },
    #[error("{addr} answered {status} to {path}: {body}")]
    Status {
        addr: SocketAddr,
        path: String,
        status: u16,
        body: String,
    },
    #[error("{addr} answered {path} with a body that is not the expected JSON: {error}")]
    Decode {
        addr: SocketAddr,
        path: String,
        error: serde_json::Error,
    },
    /// No address was given to try (a configuration with no servers, no known gateway).
    #[error("no address to reach {sni}")]
    NoAddress { sni: String },
    /// Every address was tried and none answered; one entry per address, in order.
    #[error("no server for {sni} answered: {}", list(.failures))]
    AllFailed {
        sni: String,
        failures: Vec<RpcError>,
    },
}

fn list(failures: &[RpcError]) -> String {
    let all: Vec<String> = failures.iter().map(ToString::to_string).collect();
    all.join("; ")
}

#[cfg(test)]
mod tests {
    use super::RpcError;

    /// The cause shows once whether the error is printed alone or in an anyhow chain.
    #[test]
    fn the_cause_appears_once_in_an_alternate_chain() {
        let addr = "127.0.0.1:1".parse().expect("addr");
        let refused = || RpcError::Connect {
            addr,
            error: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by test"),
        };
        let chained = anyhow::Error::new(refused()).context("joining dc1");
        let text = format!("{chained:#}");
        assert_eq!(
            text,
            "joining dc1: cannot connect to 127.0.0.1:1: refused by test"
        );
        assert_eq!(text.matches("refused by test").count(), 1, "{text}");
        assert!(std::error::Error::source(&refused()).is_none());
    }
}
