//! The one HTTP/1.1 client of strait-to-strait calls, over any byte stream: plain TCP for
//! loopback APIs (agents, servers, proxy admin pages, the demo services), or a TLS stream
//! handed in by [`crate::mesh`]. One request per connection keeps it simple and correct (a dead
//! peer never poisons the next try); the control-plane request rate is low (blocking queries
//! hold a connection open instead).
//!
//! Every exchange runs under a deadline, and every error names the peer and the path.

use crate::RpcError;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A complete response: status, headers, the whole body, and who answered what.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The address that answered: with several servers tried in turn
    /// ([`crate::mesh::request_any`]), the one this came from, so errors name it.
    pub peer: SocketAddr,
    /// The path and query asked for.
    pub path: String,
}

/// Relaying a response another strait process gave (`?dc=` forwarding, the agent's reads):
/// status, body, and the headers a Consul client reads (`X-Consul-Index`, the read's
/// `X-Consul-KnownLeader` and `X-Consul-LastContact`, `Content-Type`).
impl axum::response::IntoResponse for Response {
    fn into_response(self) -> axum::response::Response {
        let mut resp = (self.status, self.body).into_response();
        for name in [
            "x-consul-index",
            "x-consul-knownleader",
            "x-consul-lastcontact",
            "content-type",
        ] {
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

    /// The body as JSON if the status is 2xx; else [`RpcError::Status`] with the body text, or
    /// [`RpcError::Decode`]; both name the peer and the path.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, RpcError> {
        self.ok()?;
        serde_json::from_slice(&self.body).map_err(|error| RpcError::Decode {
            addr: self.peer,
            path: self.path.clone(),
            error,
        })
    }

    /// Ok if the status is 2xx, else [`RpcError::Status`] with the body text.
    pub fn ok(&self) -> Result<(), RpcError> {
        if self.status.is_success() {
            Ok(())
        } else {
            Err(RpcError::Status {
                addr: self.peer,
                path: self.path.clone(),
                status: self.status.as_u16(),
                body: String::from_utf8_lossy(&self.body).trim().to_string(),
            })
        }
    }
}

/// Default deadline for one exchange; blocking queries pass their own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A plain-HTTP API at one address (an agent's or server's loopback API, a proxy's admin
/// endpoint, a demo service) and the deadline of each exchange with it.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
    pub timeout: Duration,
}

impl Client {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Client {
        Client { addr, timeout }
    }

    /// One exchange; any status is returned (the caller decides what it means).
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, RpcError> {
        self.request_with(method, path_and_query, body, &[]).await
    }

    /// [`Client::request`] with extra request headers (an ACL token: `X-Consul-Token`).
    pub async fn request_with(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Response, RpcError> {
        let addr = self.addr;
        within(addr, path_and_query, self.timeout, async {
            let tcp = connect(addr).await?;
            exchange(
                tcp,
                addr,
                "localhost",
                method,
                path_and_query,
                body,
                headers,
            )
            .await
        })
        .await
    }

    /// GET `path`; any status is returned.
    pub async fn get(&self, path: &str) -> Result<Response, RpcError> {
        self.request(Method::GET, path, None).await
    }

    /// GET `path` and decode a 2xx JSON body; other statuses are errors carrying the body.
    pub async fn json<T: DeserializeOwned>(&self, path: &str) -> Result<T, RpcError> {
        self.get(path).await?.json()
    }
}

/// Plain HTTP request to a loopback API at `addr`, within [`DEFAULT_TIMEOUT`].
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> Result<Response, RpcError> {
    Client::new(addr, DEFAULT_TIMEOUT)
        .request(method, path_and_query, body)
        .await
}

/// Plain HTTP request with an explicit deadline (for blocking queries).
pub async fn request_with_timeout(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Response, RpcError> {
    Client::new(addr, timeout)
        .request(method, path_and_query, body)
        .await
}

/// GETs `url` (`http://host[:port]/path`, the host a name or an address): readiness URLs of
/// lab processes and the demo dashboard's `COUNTING_SERVICE_URL`. The whole exchange, name
/// resolution included, must finish within `timeout`.
pub async fn get_url(url: &str, timeout: Duration) -> Result<Response, RpcError> {
    let bad = |reason: &str| RpcError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = url.parse().map_err(|_| bad("cannot parse"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// is supported"));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let resolve = async {
        tokio::net::lookup_host((authority.host(), port))
            .await
            .and_then(|mut addrs| {
                addrs
                    .next()
                    .ok_or_else(|| std::io::Error::other("no address"))
            })
            .map_err(|error| RpcError::Resolve {
                authority: authority.to_string(),
                error,
            })
    };
    let started = tokio::time::Instant::now();
    let addr = tokio::time::timeout(timeout, resolve)
        .await
        .map_err(|_| RpcError::Resolve {
            authority: authority.to_string(),
            error: std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
        })??;
    let left = timeout.saturating_sub(started.elapsed());
    within(addr, &path, left, async {
        let tcp = connect(addr).await?;
        exchange(tcp, addr, authority.as_str(), Method::GET, &path, None, &[]).await
    })
    .await
}

/// Connects to `addr` with Nagle off (requests are small and latency-bound).
pub(crate) async fn connect(addr: SocketAddr) -> Result<TcpStream, RpcError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|error| RpcError::Connect { addr, error })?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// `work` (connect, handshake, exchange with `addr`) unless `timeout` passes first.
pub(crate) async fn within(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    work: impl Future<Output = Result<Response, RpcError>>,
) -> Result<Response, RpcError> {
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| RpcError::Timeout {
            addr,
            path: path.to_owned(),
            timeout,
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
    headers: &[(&str, &str)],
) -> Result<Response, RpcError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let path = || path_and_query.to_owned();
    let http_err = |message: String| RpcError::Http {
        addr,
        path: path(),
        message,
    };
    // A peer that accepts and then closes without a word (a proxy with no healthy upstream, a
    // process going down) is told apart from other HTTP failures.
    let hyper_err = |e: hyper::Error| {
        if e.is_incomplete_message() || e.is_closed() {
            RpcError::Closed { addr, path: path() }
        } else {
            http_err(e.to_string())
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(hyper_err)?;
    // Drives the connection while this exchange runs, and is aborted with it (also when a
    // deadline cancels the exchange, so a silent peer does not keep a task alive).
    let _driver = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(conn));
    let mut req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(http::header::HOST, host);
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| http_err(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(hyper_err)?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(hyper_err)?.to_bytes();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
        peer: addr,
        path: path(),
    })
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
