//! HTTP over mutual TLS to another strait process: agent -> server, server -> server (through
//! mesh gateways, where the SNI `server.<dc>.<td>` is the routing key), CLI -> server.
//!
//! The TLS client configuration (which identity we present, which peer we accept) is built by
//! `strait-identity`; this module only dials, handshakes and exchanges.

use crate::http::{exchange, Response};
use crate::RpcError;
use http::Method;
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
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
    let server_name = ServerName::try_from(sni.to_string()).map_err(|_| RpcError::BadSni {
        sni: sni.to_string(),
    })?;
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| RpcError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let stream = TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
            .map_err(|source| RpcError::Handshake {
                addr,
                sni: sni.to_string(),
                source,
            })?;
        exchange(stream, addr, sni, method, path_and_query, body).await
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| RpcError::Timeout {
            addr,
            secs: timeout.as_secs(),
        })?
}

/// Tries each address in turn until one answers; returns the last error if none does.
pub async fn request_any(
    tls: Arc<rustls::ClientConfig>,
    addrs: &[SocketAddr],
    sni: &str,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Response, RpcError> {
    let mut last = None;
    for addr in addrs {
        match request(
            tls.clone(),
            *addr,
            sni,
            method.clone(),
            path_and_query,
            body.clone(),
            timeout,
        )
        .await
        {
            Ok(resp) => return Ok(resp),
            Err(e) => {
                tracing::debug!(%addr, sni, error = %e, "mesh request failed, trying next");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(RpcError::Http {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        message: format!("no address to reach {sni}"),
    }))
}
