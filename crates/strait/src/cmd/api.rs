//! The one way the CLI's commands call an agent's or a server's HTTP API: every request
//! carries the ACL token of [`super::token`] (`X-Consul-Token`), and an answer that is not
//! 2xx is an error with the server's message.

use super::locate::Located;
use super::token::{Token, TokenArgs};
use anyhow::{bail, Context, Result};
use http::Method;
use std::time::Duration;

/// Which API: what to say when it does not answer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Agent,
    Server,
}

/// An API found by `locate.rs`, and the token to send it.
pub(crate) struct Api {
    at: Located,
    kind: Kind,
    token: Option<Token>,
}

impl Api {
    pub(crate) fn new(at: Located, kind: Kind, token: &TokenArgs) -> Result<Api> {
        let token = token.resolve_with(at.lab_token.as_deref())?;
        Ok(Api { at, kind, token })
    }

    /// One exchange within `timeout`; a non-2xx answer is an error carrying the answer.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<strait_rpc::http::Response> {
        let headers: Vec<(&str, &str)> = self
            .token
            .iter()
            .map(|t| ("x-consul-token", t.expose()))
            .collect();
        let resp = strait_rpc::http::Client::new(self.at.addr, timeout)
            .request_with(method, path, body, &headers)
            .await
            .with_context(|| match self.kind {
                Kind::Server => format!(
                    "cannot reach the server's HTTP API at {} (run this on a server VM, or set \
                     --http-addr / {} to the server's http_addr)",
                    self.at,
                    super::intention::SERVER_ENV
                ),
                Kind::Agent => format!(
                    "cannot reach the agent at {}; is `strait agent` running there?",
                    self.at
                ),
            })?;
        if !resp.status.is_success() {
            let sent = match &self.token {
                Some(t) if resp.status == http::StatusCode::FORBIDDEN => format!(" (sent {t})"),
                _ => String::new(),
            };
            bail!(
                "{path} on {}: HTTP {}: {}{sent}",
                self.at.addr,
                resp.status,
                String::from_utf8_lossy(&resp.body).trim()
            );
        }
        Ok(resp)
    }

    /// GET `path` within the default deadline, decoded from JSON.
    pub(crate) async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let timeout = strait_rpc::http::DEFAULT_TIMEOUT;
        Ok(self.call(Method::GET, path, None, timeout).await?.json()?)
    }
}
