//! Config entries a topology asks for (`[[resolver]]`), written by `lab up` to each DC's
//! server once every process is ready, through the server's loopback HTTP API (from inside
//! its namespace with the netns driver), as an operator would with `curl -X PUT`.

use crate::plan::{ProcessSpec, Role};
use crate::topology::Topology;
use anyhow::{bail, Context};
use http::Method;
use std::net::SocketAddr;

/// Writes every resolver of `topology` to its DC's server (with the management token when
/// the lab has ACLs).
pub async fn write(
    plan: &[ProcessSpec],
    topology: &Topology,
    token: Option<&str>,
) -> anyhow::Result<()> {
    for r in &topology.resolvers {
        let server = plan
            .iter()
            .find(|p| p.role == Role::Server && p.dc == r.dc)
            .with_context(|| format!("datacenter {} has no server in the plan", r.dc))?;
        let body = serde_json::to_vec(&r.config_entry())?;
        let answer = call(server, Method::PUT, "/v1/config", Some(body), token)
            .await
            .with_context(|| format!("cannot write the service-resolver of {}", r.service))?;
        if answer.status != 200 {
            bail!(
                "{} {}: the service-resolver of {} was refused ({}): {}",
                server.dc,
                server.vm,
                r.service,
                answer.status,
                String::from_utf8_lossy(&answer.body).trim()
            );
        }
        println!(
            "[config] {} {}: service-resolver {} fails over to {}",
            server.dc,
            server.vm,
            r.service,
            r.failover.join(", ")
        );
    }
    Ok(())
}

/// One request to a server's loopback API (from inside its namespace with the netns driver),
/// with `token` as `X-Consul-Token`.
pub async fn call(
    server: &ProcessSpec,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> anyhow::Result<strait_rpc::Response> {
    let api = api_addr(server)?;
    let (path, token) = (path.to_owned(), token.map(str::to_owned));
    let send = move || async move {
        let header = token.as_deref().map(|t| ("x-consul-token", t));
        strait_rpc::http::Client::new(api, strait_rpc::http::DEFAULT_TIMEOUT)
            .request_with(method, &path, body, header.as_slice())
            .await
    };
    let answer = match server.netns.clone() {
        None => send().await,
        Some(netns) => {
            crate::netns::enter::run_in(&netns, move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(send()))
            })
            .await??
        }
    };
    answer.with_context(|| format!("{} {}: no answer from {api}", server.dc, server.vm))
}

/// The server's HTTP API address: the host of its readiness URL.
fn api_addr(server: &ProcessSpec) -> anyhow::Result<SocketAddr> {
    let host = server
        .ready_url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    host.parse().with_context(|| {
        format!(
            "server {} has no HTTP API address ({:?})",
            server.vm, server.ready_url
        )
    })
}
