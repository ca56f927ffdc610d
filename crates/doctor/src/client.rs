//! Plain HTTP to loopback APIs (the agent, a proxy's admin endpoint), through strait-rpc's one
//! client, and TCP probes.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// One loopback HTTP API: strait-rpc's client (every error names the address and the path).
pub(crate) use strait_rpc::http::Client as Http;

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
