//! A small HTTP/1.1 client over any byte stream: plain TCP for loopback APIs, or a TLS stream
//! handed in by [`crate::mesh`]. One request per connection keeps it simple and correct; the
//! control-plane request rate is low (blocking queries hold a connection open instead).

use crate::RpcError;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A complete response: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Relaying a response another strait process gave (`?dc=` forwarding, the agent's reads):
/// status, body, and the headers a Consul client reads (`X-Consul-Index`, `Content-Type`).
impl axum::response::IntoResponse for Response {
    fn into_response(self) -> axum::response::Response {
        let mut resp = (self.status, self.body).into_response();
        for name in ["x-consul-index", "content-type"] {
            if let Some(v) = self.headers.get(name) {
                resp.headers_mut().insert(name, v.clone());
            }
        }
        resp
    }
}

impl Response {
    /// The `X-Consul-Index` header (blocking-query index), 0 when absent.
    pub fn index(&self) -> u64 {
        self.headers
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The body as JSON if the status is 2xx, else an error carrying the body text.
    pub fn json<T: DeserializeOwned>(&self, addr: SocketAddr, path: &str) -> Result<T, RpcError> {
        self.ok(addr, path)?;
        serde_json::from_slice(&self.body).map_err(|source| RpcError::Decode {
            addr,
            path: path.to_string(),
            source,
        })
    }

    /// Ok if the status is 2xx, else [`RpcError::Status`] with the body text.
    pub fn ok(&self, addr: SocketAddr, path: &str) -> Result<(), RpcError> {
        if self.status.is_success() {
            Ok(())
        } else {
            Err(RpcError::Status {
                addr,
                path: path.to_string(),
                status: self.status.as_u16(),
                body: String::from_utf8_lossy(&self.body).trim().to_string(),
            })
        }
    }
}

/// Default deadline for one exchange; blocking queries pass their own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Plain HTTP request to a loopback API at `addr`.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> Result<Response, RpcError> {
    request_with_timeout(addr, method, path_and_query, body, DEFAULT_TIMEOUT).await
}

/// Plain HTTP request with an explicit deadline (for blocking queries).
pub async fn request_with_timeout(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Response, RpcError> {
    let exchange = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| RpcError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        exchange(tcp, addr, "localhost", method, path_and_query, body).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| RpcError::Timeout {
            addr,
            secs: timeout.as_secs(),
        })?
}

/// One HTTP/1.1 exchange over an established stream.
pub(crate) async fn exchange<S>(
    stream: S,
    addr: SocketAddr,
    host: &str,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> Result<Response, RpcError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_err = |e: &dyn std::fmt::Display| RpcError::Http {
        addr,
        message: e.to_string(),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http_err(&e))?;
    let driver = tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(http::header::HOST, host);
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| http_err(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| http_err(&e))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| http_err(&e))?.to_bytes();
    driver.abort();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
