//! Config entries a topology asks for (`[[resolver]]`), written by `lab up` to each DC's
//! server once every process is ready, through the server's loopback HTTP API (from inside
//! its namespace with the netns driver), as an operator would with `curl -X PUT`.

use crate::plan::{ProcessSpec, Role};
use crate::topology::Topology;
use anyhow::{bail, Context};
use http::Method;
use std::net::SocketAddr;

/// Writes every resolver of `topology` to its DC's server.
pub async fn write(plan: &[ProcessSpec], topology: &Topology) -> anyhow::Result<()> {
    for r in &topology.resolvers {
        let server = plan
            .iter()
            .find(|p| p.role == Role::Server && p.dc == r.dc)
            .with_context(|| format!("datacenter {} has no server in the plan", r.dc))?;
        let api = api_addr(server)?;
        let body = serde_json::to_vec(&r.config_entry())?;
        let put = move || async move {
            strait_rpc::http::request(api, Method::PUT, "/v1/config", Some(body)).await
        };
        let answer = match server.netns.clone() {
            None => put().await,
            Some(netns) => {
                crate::netns::enter::run_in(&netns, move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map(|rt| rt.block_on(put()))
                })
                .await??
            }
        };
        let answer = answer.with_context(|| {
            format!(
                "cannot write the service-resolver of {} to {api}",
                r.service
            )
        })?;
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
