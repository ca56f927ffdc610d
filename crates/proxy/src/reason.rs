//! Why a proxy closed a connection: the reasons it counts. Code matches on the variants;
//! the only strings are the metric labels (`reason="..."` of `handshake_failures_total` and
//! `hello_rejected_total`), which docs/troubleshooting.md and dashboards rely on.

use crate::gateway::hello::HelloError;
use crate::metrics::Reason;
use std::io;
use strait_identity::tls::{self, TlsFailure};
use strait_snapshot::RouteError;

/// Why a sidecar's TLS handshake (inbound or outbound) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// rustls refused the peer (or the peer refused us, as its alert says).
    Tls(TlsFailure),
    /// The peer closed before completing the handshake (TCP health checks and port probes).
    Eof,
    /// Any other I/O error.
    Io,
    /// No complete handshake within `--handshake-timeout`.
    Timeout,
}

impl HandshakeFailure {
    /// Classifies the error a `tokio-rustls` handshake ended with.
    pub fn of(err: &io::Error) -> HandshakeFailure {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            return HandshakeFailure::Eof;
        }
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map_or(HandshakeFailure::Io, |e| {
                HandshakeFailure::Tls(tls::failure_reason(e))
            })
    }
}

impl Reason for HandshakeFailure {
    fn label(&self) -> &'static str {
        match self {
            HandshakeFailure::Tls(failure) => failure.as_str(),
            HandshakeFailure::Eof => "eof",
            HandshakeFailure::Io => "io",
            HandshakeFailure::Timeout => "timeout",
        }
    }
}

/// Why a gateway closed a connection without forwarding it.
#[derive(Debug)]
pub enum Refusal {
    /// No complete ClientHello within `--handshake-timeout`.
    Timeout,
    /// The ClientHello could not be read or names no server.
    Hello(HelloError),
    /// No snapshot applied yet.
    NotReady,
    /// The SNI routes nowhere.
    Route(RouteError),
    /// Every endpoint of the route refused the TCP connection.
    UpstreamUnreachable,
    /// No gateway of the target DC could be dialled (closed at once so that the caller's
    /// sidecar fails over).
    RemoteGatewaysUnreachable,
}

impl Reason for Refusal {
    fn label(&self) -> &'static str {
        match self {
            Refusal::Timeout => "timeout",
            Refusal::Hello(err) => err.as_str(),
            Refusal::NotReady => "not_ready",
            Refusal::Route(err) => err.reason(),
            Refusal::UpstreamUnreachable => "upstream_unreachable",
            Refusal::RemoteGatewaysUnreachable => "remote_gateways_unreachable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::hello::NotHello;

    #[test]
    fn handshake_failures_are_classified() {
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(HandshakeFailure::of(&eof), HandshakeFailure::Eof);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(HandshakeFailure::of(&reset), HandshakeFailure::Io);
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert_eq!(
            HandshakeFailure::of(&tls),
            HandshakeFailure::Tls(TlsFailure::NoCertificate)
        );
    }

    #[test]
    fn labels_are_stable() {
        let handshake = [
            (HandshakeFailure::Tls(TlsFailure::UnknownCa), "unknown_ca"),
            (HandshakeFailure::Eof, "eof"),
            (HandshakeFailure::Io, "io"),
            (HandshakeFailure::Timeout, "timeout"),
        ];
        for (reason, label) in handshake {
            assert_eq!(reason.label(), label);
        }
        let refusals = [
            (Refusal::Timeout, "timeout"),
            (Refusal::Hello(HelloError::NoSni), "no_sni"),
            (Refusal::Hello(HelloError::TooLarge), "too_large"),
            (Refusal::Hello(HelloError::Eof), "eof"),
            (
                Refusal::Hello(HelloError::NotHello(NotHello::Malformed)),
                "tls_malformed",
            ),
            (Refusal::NotReady, "not_ready"),
            (
                Refusal::Route(RouteError::UnknownDatacenter { dc: "dc9".into() }),
                "unknown_datacenter",
            ),
            (Refusal::UpstreamUnreachable, "upstream_unreachable"),
        ];
        for (reason, label) in refusals {
            assert_eq!(reason.label(), label);
        }
    }
}
