//! HTTP over mutual TLS to another strait process: agent -> server, server -> server (through
//! mesh gateways, where the SNI `server.<dc>.<td>` is the routing key), CLI -> server.
//!
//! The TLS client configuration (which identity we present, which peer we accept) is built by
//! `strait-identity`; this module only dials, handshakes and exchanges, over the one client
//! of [`crate::http`].

use crate::http::{connect, exchange, within, Response};
use crate::RpcError;
use http::Method;
use rustls_pki_types::ServerName;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;

/// One request over mTLS to `addr`, presenting `sni` in the ClientHello.
pub async fn request(
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Response, RpcError> {
    let deadlines = Deadlines {
        connect: timeout,
        total: timeout,
    };
    request_within(tls, addr, sni, method, path_and_query, body, deadlines).await
}

/// The deadlines of one attempt: a dead or hung peer is given up on after `connect` even when
/// the exchange itself may take much longer (a blocking query waits up to `total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// TCP connect and TLS handshake.
    pub connect: Duration,
    /// The whole attempt, handshake included.
    pub total: Duration,
}

/// [`request`] with separate deadlines for the handshake and the whole exchange.
pub async fn request_within(
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
    deadlines: Deadlines,
) -> Result<Response, RpcError> {
    let req = Outgoing {
        method,
        path_and_query,
        body,
        headers: &[],
    };
    send(tls, addr, sni, req, deadlines).await
}

/// One request: what [`send`] sends. `headers` are extra request headers (the ACL token a
/// request carries on behalf of its caller: `X-Consul-Token`).
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub method: Method,
    pub path_and_query: &'a str,
    pub body: Option<Vec<u8>>,
    pub headers: &'a [(&'a str, &'a str)],
}

/// [`request_within`] for a request with extra headers.
pub async fn send(
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    req: Outgoing<'_>,
    deadlines: Deadlines,
) -> Result<Response, RpcError> {
    let Outgoing {
        method,
        path_and_query,
        body,
        headers,
    } = req;
    let server_name = ServerName::try_from(sni.to_string()).map_err(|_| RpcError::BadSni {
        sni: sni.to_string(),
    })?;
    within(addr, path_and_query, deadlines.total, async {
        let handshake = async {
            let tcp = connect(addr).await?;
            TlsConnector::from(tls)
                .connect(server_name, tcp)
                .await
                .map_err(|error| RpcError::Handshake {
                    addr,
                    sni: sni.to_string(),
                    error,
                })
        };
        let stream = tokio::time::timeout(deadlines.connect, handshake)
            .await
            .map_err(|_| RpcError::Timeout {
                addr,
                path: path_and_query.to_owned(),
                timeout: deadlines.connect,
            })??;
        exchange(stream, addr, sni, method, path_and_query, body, headers).await
    })
    .await
}

/// Tries each address in turn until one answers (with any status: a 4xx or 5xx is an answer,
/// not a reason to ask the next server). The answer's [`Response::peer`] says which one did;
/// if none does, [`RpcError::AllFailed`] lists every address with its own error.
pub async fn request_any(
    tls: Arc<rustls::ClientConfig>,
    addrs: &[SocketAddr],
    sni: &str,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Response, RpcError> {
    let req = Outgoing {
        method,
        path_and_query,
        body,
        headers: &[],
    };
    send_any(tls, addrs, sni, req, timeout).await
}

/// [`request_any`] for a request with extra headers.
pub async fn send_any(
    tls: Arc<rustls::ClientConfig>,
    addrs: &[SocketAddr],
    sni: &str,
    req: Outgoing<'_>,
    timeout: Duration,
) -> Result<Response, RpcError> {
    let deadlines = Deadlines {
        connect: timeout,
        total: timeout,
    };
    first_answer(addrs, sni, |addr| {
        send(tls.clone(), addr, sni, req.clone(), deadlines)
    })
    .await
}

/// `attempt` on each address in turn; the first `Ok` wins. `what` names the destination in
/// errors (the SNI of a DC's servers).
pub async fn first_answer<F, Fut>(
    addrs: &[SocketAddr],
    what: &str,
    mut attempt: F,
) -> Result<Response, RpcError>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = Result<Response, RpcError>>,
{
    let mut failures = Vec::new();
    for &addr in addrs {
        match attempt(addr).await {
            Ok(resp) => return Ok(resp),
            Err(e) => {
                tracing::debug!(%addr, what, error = %e, "request failed, trying the next address");
                failures.push(e);
            }
        }
    }
    match failures.len() {
        0 => Err(RpcError::NoAddress {
            sni: what.to_owned(),
        }),
        1 => Err(failures.remove(0)),
        _ => Err(RpcError::AllFailed {
            sni: what.to_owned(),
            failures,
        }),
    }
}
