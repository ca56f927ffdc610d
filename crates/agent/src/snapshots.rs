//! Per-proxy snapshots: the agent follows its server's mesh view (blocking query), keeps a leaf
//! certificate per local proxied service (renewed at half life), follows the health of every
//! upstream target in another DC (blocking queries through the gateways), and rebuilds each
//! local proxy's snapshot with the pure `strait_snapshot::build` whenever an input changes.
//! Proxies follow their snapshot with blocking queries on its version.

use crate::state::{Agent, LeafEntry};
use anyhow::Result;
use http::Method;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use strait_identity::spiffe::SpiffeId;
use strait_proto::{MeshViewResponse, SignRequest, SignResponse};
use strait_snapshot::{Leaf, MeshView, ProxyRegistration, TargetName};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Follows `/v1/internal/mesh-view` and publishes each new view; the servers it shows join
/// the agent's list of servers. When the view's roots change (a new CA), the leaves the agent
/// holds are dropped, so that proxies and leaf watchers get leaves of the new CA.
pub async fn follow_view(agent: Arc<Agent>, shutdown: CancellationToken) {
    let tx = &agent.view;
    let mut index = 0u64;
    while !shutdown.is_cancelled() {
        let path = format!("/v1/internal/mesh-view?index={index}&wait=30s");
        let call = agent.call(Method::GET, &path, None, Duration::from_secs(40));
        let r = tokio::select! { _ = shutdown.cancelled() => return, r = call => r };
        match r.and_then(|r| Ok(r.json::<MeshViewResponse>()?)) {
            Ok(v) => {
                agent.servers.learn(&v.view);
                if v.index != index || tx.borrow().is_none() {
                    index = v.index;
                    let rotated = tx
                        .borrow()
                        .as_ref()
                        .is_some_and(|old| old.roots_pem != v.roots_pem);
                    if rotated {
                        tracing::info!("the CA roots changed: issuing new leaf certificates");
                        agent.forget_leaves();
                    }
                    tx.send_replace(Some(Arc::new(v)));
                    agent.mark_viewed();
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "following the mesh view failed; retrying");
                index = 0;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Issues (or returns the cached, still fresh) leaf for `service`.
pub async fn leaf(agent: &Agent, service: &str) -> Result<LeafEntry> {
    let now = strait_base::unix_now();
    if let Some(l) = strait_base::sync::lock(&agent.leaves).get(service) {
        if now < l.renew_at_unix() {
            return Ok(l.clone());
        }
    }
    let conn = agent.conn().ok_or_else(|| anyhow::anyhow!("not joined"))?;
    let id = SpiffeId::service(&conn.trust_domain, &agent.cfg.datacenter, service);
    let (key_pem, csr_pem) = strait_identity::ca::generate_key_and_csr(&id)?;
    let path = "/v1/internal/sign";
    let body = serde_json::to_vec(&SignRequest {
        service: service.to_string(),
        csr_pem,
    })?;
    let r = agent
        .call(Method::POST, path, Some(body), Duration::from_secs(5))
        .await?;
    let s: SignResponse = r.json()?;
    let not_before_unix = strait_identity::ca::cert_info(&s.cert_chain_pem)
        .map(|i| i.not_before_unix)
        .unwrap_or(now);
    let mut entry = LeafEntry {
        key_pem: strait_snapshot::Secret(key_pem),
        chain_pem: s.cert_chain_pem,
        spiffe_id: s.spiffe_id,
        serial: s.serial,
        not_before_unix,
        not_after_unix: s.not_after_unix,
        issued_unix: now,
        index: 0,
    };
    tracing::info!(service, serial = %entry.serial, "issued leaf certificate");
    // Under the lock: a blocking leaf query woken by the new index finds the new leaf.
    let mut leaves = strait_base::sync::lock(&agent.leaves);
    agent.leaf_index.send_modify(|i| {
        *i += 1;
        entry.index = *i;
    });
    leaves.insert(service.to_string(), entry.clone());
    Ok(entry)
}

/// What the DCs of remote upstream targets report: (service, DC) -> healthy sidecars. A
/// target missing from the map is unknown (not fetched yet, or its DC unreachable).
type RemoteHealth = BTreeMap<TargetName, Vec<SocketAddr>>;

/// Follows the health of one remote target with blocking queries through the gateways
/// (`/v1/health/connect/:service?dc=..&passing`), until aborted.
async fn watch_remote(agent: Arc<Agent>, target: TargetName, tx: Arc<watch::Sender<RemoteHealth>>) {
    let mut index = 0u64;
    loop {
        let path = format!(
            "/v1/health/connect/{}?dc={}&passing&index={index}&wait=30s",
            target.service, target.datacenter
        );
        let r = agent
            .call(Method::GET, &path, None, Duration::from_secs(45))
            .await
            .and_then(|r| {
                let list: Vec<strait_catalog::ServiceInstance> = r.json()?;
                Ok((r.index(), list))
            });
        match r {
            Ok((next, list)) => {
                let addrs: Vec<SocketAddr> = list
                    .iter()
                    .filter_map(|i| {
                        let host = if i.service.address.is_empty() {
                            &i.node.address
                        } else {
                            &i.service.address
                        };
                        Some(SocketAddr::new(host.parse().ok()?, i.service.port))
                    })
                    .collect();
                tx.send_if_modified(|m| {
                    let changed = m.get(&target) != Some(&addrs);
                    m.insert(target.clone(), addrs);
                    changed
                });
                // An index going backwards (the remote servers restarted): start over.
                index = if next < index { 0 } else { next };
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), service = %target.service, dc = %target.datacenter, "cannot follow a remote upstream target's health; its gateways will be dialled");
                tx.send_if_modified(|m| m.remove(&target).is_some());
                index = 0;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Starts a watcher for each remote target the local proxies need and stops the others.
fn reconcile_remote(
    agent: &Arc<Agent>,
    view: &MeshView,
    proxies: &[ProxyRegistration],
    tx: &Arc<watch::Sender<RemoteHealth>>,
    watchers: &mut BTreeMap<TargetName, tokio::task::AbortHandle>,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let needed: BTreeSet<TargetName> = proxies
        .iter()
        .flat_map(|p| strait_snapshot::remote_targets(view, p))
        .collect();
    watchers.retain(|target, task| {
        let keep = needed.contains(target);
        if !keep {
            task.abort();
            tx.send_if_modified(|m| m.remove(target).is_some());
        }
        keep
    });
    for target in needed {
        if let std::collections::btree_map::Entry::Vacant(slot) = watchers.entry(target) {
            let task = watch_remote(agent.clone(), slot.key().clone(), tx.clone());
            slot.insert(tasks.spawn(task));
        }
    }
}

/// Fills [`MeshView::remote_sidecars`] from what the watchers know.
fn apply_remote(view: &mut MeshView, remote: &RemoteHealth) {
    for (target, addrs) in remote {
        view.remote_sidecars
            .entry(target.datacenter.clone())
            .or_default()
            .insert(target.service.clone(), addrs.clone());
    }
}

/// Rebuilds every local proxy's snapshot when the view, the local registrations or a leaf
/// changes; renews leaves at half life.
pub async fn build_loop(
    agent: Arc<Agent>,
    mut view_rx: watch::Receiver<Option<Arc<MeshViewResponse>>>,
    shutdown: CancellationToken,
) {
    let mut local_rx = agent.local.subscribe();
    let (remote_tx, mut remote_rx) = watch::channel(RemoteHealth::new());
    let remote_tx = Arc::new(remote_tx);
    // Remote health watchers: owned here, aborted when this loop ends.
    let mut watchers = BTreeMap::new();
    let mut watcher_tasks = tokio::task::JoinSet::new();
    // Versions start from the clock so they keep increasing across agent restarts.
    let mut version = strait_base::unix_now_millis();
    loop {
        let mut retry = Duration::from_secs(30);
        let current = view_rx.borrow().clone();
        if let Some(v) = current {
            let proxies = agent.local.proxies();
            let mut view = v.view.clone();
            reconcile_remote(
                &agent,
                &view,
                &proxies,
                &remote_tx,
                &mut watchers,
                &mut watcher_tasks,
            );
            apply_remote(&mut view, &remote_rx.borrow_and_update());
            let mut next = BTreeMap::new();
            for p in &proxies {
                let l = match leaf(&agent, &p.service).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(proxy = %p.proxy_id, error = %format!("{e:#}"), "cannot get a leaf certificate; retrying");
                        retry = Duration::from_secs(1);
                        continue;
                    }
                };
                let leaf = Leaf {
                    cert_chain_pem: l.chain_pem.clone(),
                    key_pem: l.key_pem.clone(),
                    spiffe_id: l.spiffe_id.clone(),
                    serial: l.serial.clone(),
                    not_after_unix: l.not_after_unix,
                };
                retry = retry.min(Duration::from_secs(
                    (l.renew_at_unix() - strait_base::unix_now()).max(1) as u64,
                ));
                match strait_snapshot::build(&view, p, leaf, v.roots_pem.clone(), 0) {
                    Ok(s) => {
                        next.insert(p.proxy_id.clone(), s);
                    }
                    Err(e) => {
                        tracing::warn!(proxy = %p.proxy_id, error = %e, "cannot build snapshot")
                    }
                }
            }
            let mut changed = false;
            {
                let mut snaps = strait_base::sync::lock(&agent.snapshots);
                let before = snaps.len();
                snaps.retain(|id, _| next.contains_key(id));
                changed |= before != snaps.len();
                for (id, mut s) in next {
                    let same = snaps.get(&id).is_some_and(|old| {
                        let mut o = (**old).clone();
                        o.version = 0;
                        o == s
                    });
                    if !same {
                        version += 1;
                        s.version = version;
                        snaps.insert(id, Arc::new(s));
                        changed = true;
                    }
                }
            }
            if changed {
                agent.publish_snapshots();
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = view_rx.changed() => if r.is_err() { return },
            _ = local_rx.changed() => {}
            _ = remote_rx.changed() => {}
            Some(_) = watcher_tasks.join_next(), if !watcher_tasks.is_empty() => {}
            _ = tokio::time::sleep(retry) => {}
        }
    }
}
