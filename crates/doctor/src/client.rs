//! Plain HTTP to loopback APIs (the agent, a proxy's admin endpoint), through strait-rpc's one
//! client, and TCP probes.

use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::time::Duration;
use strait_rpc::http::Response;
use strait_rpc::RpcError;
use tokio::net::TcpStream;

use crate::sidecar::list;

/// One loopback HTTP API through strait-rpc's client (every error names the address and the
/// path); the agent's carries the ACL token the doctor was given, a proxy's admin none.
#[derive(Clone)]
pub(crate) struct Http {
    pub addr: SocketAddr,
    pub timeout: Duration,
    token: Option<std::sync::Arc<str>>,
}

impl Http {
    pub(crate) fn new(addr: SocketAddr, timeout: Duration) -> Http {
        Http {
            addr,
            timeout,
            token: None,
        }
    }

    /// Sends `token` (a SecretID) as `X-Consul-Token` with every request.
    pub(crate) fn with_token(mut self, token: Option<&str>) -> Http {
        self.token = token.map(Into::into);
        self
    }

    /// GET `path`; any status is returned.
    pub(crate) async fn get(&self, path: &str) -> Result<Response, RpcError> {
        let headers: Vec<(&str, &str)> = self
            .token
            .iter()
            .map(|t| ("x-consul-token", &**t))
            .collect();
        strait_rpc::http::Client::new(self.addr, self.timeout)
            .request_with(http::Method::GET, path, None, &headers)
            .await
    }

    /// GET `path` and decode a 2xx JSON body; other statuses are errors carrying the body.
    pub(crate) async fn json<T: DeserializeOwned>(&self, path: &str) -> Result<T, RpcError> {
        self.get(path).await?.json()
    }
}

/// Why a TCP probe did not connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unreached {
    /// This VM has no route to the address (ENETUNREACH): it is not on that network, as a
    /// services VM is not on the WAN its gateways share. Says nothing about the target.
    NoRoute,
    /// Refused, silent or another error (the text names the address).
    Failed(String),
}

/// Whether `addr` accepts a TCP connection within `timeout`.
pub(crate) async fn tcp_probe(addr: SocketAddr, timeout: Duration) -> Result<(), Unreached> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NetworkUnreachable => Err(Unreached::NoRoute),
        Ok(Err(e)) => Err(Unreached::Failed(format!("{addr}: {e}"))),
        Err(_) => Err(Unreached::Failed(format!(
            "{addr}: no answer in {}s",
            timeout.as_secs()
        ))),
    }
}

/// What probing some addresses from this VM found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probe {
    pub accepting: Vec<SocketAddr>,
    /// Not routable from this VM (see [`Unreached::NoRoute`]).
    pub no_route: Vec<SocketAddr>,
    /// Refused or silent, each naming its address.
    pub failed: Vec<String>,
}

impl Probe {
    /// Probes every address.
    pub(crate) async fn all(addrs: &[SocketAddr], timeout: Duration) -> Probe {
        let mut probe = Probe::default();
        for addr in addrs {
            match tcp_probe(*addr, timeout).await {
                Ok(()) => probe.accepting.push(*addr),
                Err(Unreached::NoRoute) => probe.no_route.push(*addr),
                Err(Unreached::Failed(e)) => probe.failed.push(e),
            }
        }
        probe
    }

    /// Ok lists the accepting addresses, Err names those that failed or have no route.
    pub(crate) fn verdict(&self) -> Result<String, String> {
        if self.failed.is_empty() && self.no_route.is_empty() {
            Ok(format!(
                "{} accept(s) TCP connections",
                list(&self.accepting)
            ))
        } else {
            let no_route = self
                .no_route
                .iter()
                .map(|a| format!("{a}: no route from this VM"));
            Err(self
                .failed
                .iter()
                .cloned()
                .chain(no_route)
                .collect::<Vec<_>>()
                .join("; "))
        }
    }
}

/// Probes every address; Ok lists them all, Err names those that failed.
pub(crate) async fn tcp_probe_all(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<String, String> {
    Probe::all(addrs, timeout).await.verdict()
}
