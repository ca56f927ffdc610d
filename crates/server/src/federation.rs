//! WAN federation through mesh gateways.
//!
//! A new secondary has only the primary's gateway addresses and the federation token. It
//! creates an intermediate CA key, sends a CSR to the primary's servers through those gateways
//! and gets back the signed intermediate, the root and the trust domain; the exchange is
//! authenticated both ways by an HMAC under the federation token, which never crosses the
//! wire. Afterwards every DC publishes its federation state (its gateways' WAN addresses) to
//! the primary, which replicates the full list to all DCs through blocking queries.

use crate::ca::CaState;
use crate::forward::{self, BOOTSTRAP_TRUST_DOMAIN};
use crate::state::Server;
use anyhow::{bail, Context, Result};
use http::Method;
use std::sync::Arc;
use std::time::Duration;
use strait_catalog::FederationState;
use strait_identity::{bootstrap, ca, spiffe, tls};
use strait_proto::{FederationJoinRequest, FederationJoinResponse};
use strait_snapshot::InstanceKind;
use strait_systemd::lifecycle::Role;
use tokio_util::sync::CancellationToken;

/// Loads the DC's CA, creating it (primary) or joining the federation (new secondary).
pub async fn bring_up_ca(server: &Server) -> Result<CaState> {
    let cfg = &server.cfg;
    if cfg.is_primary() {
        return CaState::load_or_init_primary(&cfg.data_dir, &cfg.datacenter);
    }
    if let Some(ca) = CaState::load_secondary(&cfg.data_dir, &cfg.datacenter)? {
        return Ok(ca);
    }
    let mut backoff = Duration::from_millis(200);
    loop {
        server.set_waiting_for(format!(
            "joining the federation: asking the primary DC {} through gateways {:?} to sign this DC's intermediate CA",
            cfg.primary_datacenter, cfg.primary_gateways
        ));
        match join_once(server).await {
            Ok(ca) => return Ok(ca),
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::warn!(error = %msg, "federation join failed; retrying");
                server.set_waiting_for(format!("federation join failed (retrying): {msg}"));
                // A refused token will not fix itself by retrying fast.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn join_once(server: &Server) -> Result<CaState> {
    let cfg = &server.cfg;
    let (key_pem, csr_pem) =
        ca::generate_intermediate_csr(BOOTSTRAP_TRUST_DOMAIN, &cfg.datacenter)?;
    let nonce = bootstrap::nonce();
    let token = &cfg.federation_token;
    let req = FederationJoinRequest {
        datacenter: cfg.datacenter.clone(),
        mac: bootstrap::mac(
            token,
            &[
                b"federation-join",
                cfg.datacenter.as_bytes(),
                csr_pem.as_bytes(),
                nonce.as_bytes(),
            ],
        ),
        csr_pem,
        nonce: nonce.clone(),
    };
    let sni = spiffe::server_sni(&cfg.primary_datacenter, BOOTSTRAP_TRUST_DOMAIN);
    let path = "/v1/internal/federation/join";
    let resp = strait_rpc::mesh::request_any(
        tls::dangerous_unverified_client_config(),
        &cfg.primary_gateways,
        &sni,
        Method::POST,
        path,
        Some(serde_json::to_vec(&req)?),
        Duration::from_secs(10),
    )
    .await?;
    let ans: FederationJoinResponse = resp.json()?;
    let parts: [&[u8]; 5] = [
        b"federation-joined",
        nonce.as_bytes(),
        ans.trust_domain.as_bytes(),
        ans.root_pem.as_bytes(),
        ans.intermediate_pem.as_bytes(),
    ];
    if !bootstrap::verify_mac(token, &parts, &ans.mac) {
        bail!("the primary's answer is not authenticated by our federation_token (wrong token, or someone in the middle)");
    }
    let info =
        ca::cert_info(&ans.intermediate_pem).context("the signed intermediate does not parse")?;
    if !info.is_ca {
        bail!("the primary returned a certificate that is not a CA");
    }
    tracing::info!(trust_domain = %ans.trust_domain, serial = %info.serial_hex, "intermediate CA signed by the primary DC");
    CaState::save_secondary(
        &cfg.data_dir,
        &cfg.datacenter,
        &ans.trust_domain,
        &ans.root_pem,
        &ans.intermediate_pem,
        &key_pem,
    )
}

/// This DC's federation state as the catalog shows it now.
pub fn local_state(server: &Server) -> FederationState {
    let mut gws: Vec<String> = server
        .catalog
        .mesh_instances()
        .into_iter()
        .filter(|i| i.kind == InstanceKind::MeshGateway && i.healthy)
        .filter_map(|i| i.wan.or(Some(i.addr)))
        .map(|a| a.to_string())
        .collect();
    gws.sort();
    gws.dedup();
    FederationState {
        datacenter: server.cfg.datacenter.clone(),
        mesh_gateways: gws,
        ..Default::default()
    }
}

/// Stores `state` unless the catalog already holds the same gateways for that DC.
pub async fn store_if_changed(server: &Server, state: FederationState) -> Result<bool> {
    let same = server
        .catalog
        .federation_states()
        .iter()
        .any(|s| s.datacenter == state.datacenter && s.mesh_gateways == state.mesh_gateways);
    if same {
        return Ok(false);
    }
    server
        .write(crate::replicated::Command::SetFederationState(state))
        .await?;
    Ok(true)
}

/// Starts the federation loops: publishing our state (to ourselves in the primary, to the
/// primary from a secondary) and, in a secondary, replicating everyone's from the primary.
pub fn spawn(server: Arc<Server>, role: &Role) {
    let s = server.clone();
    let sd = role.shutdown().clone();
    role.spawn_cancellable("federation-publish", async move {
        let mut pushed: Option<Vec<String>> = None;
        let mut index = 0;
        while !sd.is_cancelled() {
            let state = local_state(&s);
            if let Err(e) = store_if_changed(&s, state.clone()).await {
                tracing::warn!(error = %format!("{e:#}"), "storing the local federation state failed");
            }
            if !s.cfg.is_primary() && pushed.as_ref() != Some(&state.mesh_gateways) {
                match push_state(&s, &state).await {
                    Ok(()) => pushed = Some(state.mesh_gateways.clone()),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "publishing the federation state to the primary failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let before = index;
            tokio::select! {
                _ = sd.cancelled() => break,
                i = s.catalog.wait_for_change(index, Duration::from_secs(30)) => index = i,
            }
            // Re-publish after a quiet period even without change, so a primary that lost
            // its state (restored from an old disk) learns it again.
            if index == before {
                pushed = None;
            }
        }
    });
    if !server.cfg.is_primary() {
        let shutdown = role.shutdown().clone();
        role.spawn_cancellable("federation-replicate", replicate(server, shutdown));
    }
}

async fn push_state(server: &Server, state: &FederationState) -> Result<()> {
    let primary = server.cfg.primary_datacenter.clone();
    let path = "/v1/internal/federation/state";
    let resp = forward::call(
        server,
        &primary,
        Method::PUT,
        path,
        Some(serde_json::to_vec(state)?),
        Duration::from_secs(10),
    )
    .await?;
    resp.ok()?;
    Ok(())
}

/// Secondary: follows the primary's list of federation states with blocking queries.
async fn replicate(server: Arc<Server>, shutdown: CancellationToken) {
    let primary = server.cfg.primary_datacenter.clone();
    let mut index = 0u64;
    while !shutdown.is_cancelled() {
        let path = format!("/v1/internal/federation/states?index={index}&wait=30s");
        let call = forward::call(
            &server,
            &primary,
            Method::GET,
            &path,
            None,
            Duration::from_secs(40),
        );
        let resp = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = call => r,
        };
        let states: Result<Vec<FederationState>> = resp.and_then(|r| {
            index = r.index();
            Ok(r.json()?)
        });
        match states {
            Ok(states) => {
                for st in states
                    .into_iter()
                    .filter(|s| s.datacenter != server.cfg.datacenter)
                {
                    if let Err(e) = store_if_changed(&server, st).await {
                        tracing::warn!(error = %format!("{e:#}"), "storing a replicated federation state failed");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "replicating federation states from the primary failed; retrying");
                index = 0;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
