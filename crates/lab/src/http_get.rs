//! A minimal plain-HTTP/1.1 GET client (hyper), used for readiness polling,
//! `strait lab status` health, and the dashboard's call to counting. No pooling:
//! each call is one short connection, so a dead peer never poisons the next try.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Why a GET produced no response.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("{authority} closed the connection without answering")]
    Closed { authority: String },
    #[error("HTTP exchange with {authority} failed: {source}")]
    Http {
        authority: String,
        source: hyper::Error,
    },
    #[error("no response from {authority} within {timeout:?}")]
    Timeout {
        authority: String,
        timeout: Duration,
    },
}

/// A response: status and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: http::StatusCode,
    pub body: Bytes,
}

/// GETs `url` (`http://host:port/path`); the whole exchange must finish within `timeout`.
pub async fn get(url: &str, timeout: Duration) -> Result<Response, GetError> {
    let bad = |reason: &str| GetError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = url.parse().map_err(|_| bad("cannot parse"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// is supported"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| bad("no host"))?
        .as_str()
        .to_owned();
    let connect_to = if uri.port().is_some() {
        authority.clone()
    } else {
        format!("{authority}:80")
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&connect_to)
            .await
            .map_err(|source| GetError::Connect {
                authority: authority.clone(),
                source,
            })?;
        // A proxy that accepts and then finds no healthy upstream closes without a word.
        let http_err = |source: hyper::Error| {
            if source.is_incomplete_message() || source.is_closed() {
                GetError::Closed {
                    authority: authority.clone(),
                }
            } else {
                GetError::Http {
                    authority: authority.clone(),
                    source,
                }
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_err)?;
        let driver = tokio::spawn(conn);
        let request = http::Request::get(path)
            .header(http::header::HOST, &authority)
            .body(Empty::<Bytes>::new())
            .map_err(|_| bad("invalid request"))?;
        let response = sender.send_request(request).await.map_err(http_err)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(http_err)?
            .to_bytes();
        driver.abort();
        Ok(Response { status, body })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| GetError::Timeout {
            authority: authority.clone(),
            timeout,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rejects_non_http_urls() {
        let err = get("https://127.0.0.1:1/", Duration::from_secs(1))
            .await
            .expect_err("https is not supported");
        assert!(matches!(err, GetError::Url { .. }), "{err}");
    }

    #[tokio::test]
    async fn connection_refused_names_the_peer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let err = get(&format!("http://{addr}/x"), Duration::from_secs(1))
            .await
            .expect_err("nothing listens");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[tokio::test]
    async fn silent_peer_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let err = get(&format!("http://{addr}/"), Duration::from_millis(200))
            .await
            .expect_err("peer never answers");
        assert!(matches!(err, GetError::Timeout { .. }), "{err}");
        drop(listener);
    }
}
