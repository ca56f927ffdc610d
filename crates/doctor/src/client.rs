//! Plain HTTP to loopback APIs (the agent, a sidecar's admin endpoint) and TCP probes.

use anyhow::Context;
use http::Method;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// One loopback HTTP API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Http {
    pub addr: SocketAddr,
    pub timeout: Duration,
}

impl Http {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Http {
        Http { addr, timeout }
    }

    /// GET `path`; any status is returned (the caller decides what it means).
    pub async fn get(&self, path: &str) -> anyhow::Result<strait_rpc::Response> {
        strait_rpc::http::request_with_timeout(self.addr, Method::GET, path, None, self.timeout)
            .await
            .with_context(|| format!("GET http://{}{path}", self.addr))
    }

    /// GET `path` and decode a 2xx JSON body; other statuses are errors carrying the body.
    pub async fn json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self.get(path).await?;
        Ok(resp.json(self.addr, path)?)
    }
}

/// Whether `addr` accepts a TCP connection within `timeout`.
pub(crate) async fn tcp_probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no answer in {}s", timeout.as_secs())),
    }
}

/// Probes every address; Ok lists them all, Err names those that failed.
pub(crate) async fn tcp_probe_all(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<String, String> {
    let mut failed = Vec::new();
    for addr in addrs {
        if let Err(e) = tcp_probe(*addr, timeout).await {
            failed.push(e);
        }
    }
    let all: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    if failed.is_empty() {
        Ok(format!("{} accept(s) TCP connections", all.join(", ")))
    } else {
        Err(failed.join("; "))
    }
}
