//! The server's own certificate (`spiffe://<td>/server/dc/<dc>`), signed by its own CA and
//! renewed at half life (and re-issued when a snapshot restore replaces the CA). It is both
//! the mTLS API's server certificate and the client certificate for server -> server calls
//! (Raft, forwarded writes and reads, and through the gateways).

use crate::state::{Replaced, Server};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strait_identity::spiffe::SpiffeId;
use strait_identity::tls::{self, ClientAuth, Identity, Roots};
use strait_systemd::lifecycle::Role;
use tokio::sync::watch;

/// The mTLS listener's configuration; the renewal task replaces it.
pub type ServerTls = watch::Sender<Arc<rustls::ServerConfig>>;

/// Until it has a real certificate, the mTLS listener answers with a throwaway one: a leaf
/// of a self-signed CA of the bootstrap trust domain, made at start and trusted by nobody.
/// Servers forming a cluster can then ask each other `server/status` and `server/join`
/// (authenticated by the join token, not by TLS); everything else answers 503 until the CA
/// is up.
pub fn bootstrap(server: &Server) -> Result<ServerTls> {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    let td = strait_names::BOOTSTRAP_TRUST_DOMAIN;
    let root = strait_identity::ca::generate_root(td, DAY)?;
    let id = SpiffeId::server(td, &server.cfg.datacenter);
    let (key_pem, csr_pem) = strait_identity::ca::generate_key_and_csr(&id)?;
    let leaf = root.sign_leaf(&csr_pem, &id, DAY)?;
    let identity = Identity::from_pem(&root.leaf_chain_pem(&leaf.cert_pem)?, &key_pem)?;
    let roots = Roots::from_pems(std::slice::from_ref(&root.cert_pem))?;
    let server_tls = tls::server_config(&identity, &roots, ClientAuth::Optional)?;
    Ok(watch::channel(server_tls).0)
}

/// Issues the first certificate from this server's own CA, installs the client config and
/// serves with it from the next connection on.
pub fn first(server: &Server, tls: &ServerTls) -> Result<i64> {
    let issued = issue(server)?;
    server.set_client_identity(&issued.trust_domain, issued.identity, issued.roots);
    tls.send_replace(issued.server_tls);
    Ok(issued.not_after)
}

/// Installs a certificate another server of the DC signed (a joiner, before its CA arrives).
pub fn joined(server: &Server, tls: &ServerTls, joined: crate::cluster::Joined) -> Result<i64> {
    let not_after = joined.identity.not_after_unix();
    let server_tls = tls::server_config(&joined.identity, &joined.roots, ClientAuth::Optional)?;
    server.set_client_identity(&joined.trust_domain, joined.identity, joined.roots);
    tls.send_replace(server_tls);
    Ok(not_after)
}

/// Raft between this DC's servers: this server's certificate, only this DC's servers trusted.
pub fn mutual_tls(server: &Server) -> Result<strait_raft::network::MutualTls> {
    let td = server
        .trust_domain()
        .context("the server certificate is not issued yet")?;
    Ok(strait_raft::network::MutualTls {
        tls: server.client_tls_for(&server.cfg.datacenter)?,
        sni: strait_names::server_sni(&server.cfg.datacenter, &td),
    })
}

/// How long servers keep trusting a CA a snapshot restore replaced, between them.
const TRUST_REPLACED: Duration = Duration::from_secs(600);
/// How long a server keeps presenting its certificate of the replaced CA to the other servers
/// after it installed the new one: they apply the restore moments later (with the next
/// heartbeat), and until then trust only the old CA.
const PRESENT_OLD: Duration = Duration::from_secs(10);

/// Keeps the certificate fresh from this server's CA (set by then), and follows the CA when a
/// snapshot restore replaces it, as the task `server-certificate` ([`keep`]).
pub fn renew_from_ca(
    server: &Arc<Server>,
    role: &Role,
    tx: ServerTls,
    not_after: i64,
    peers: crate::replicated::Peers,
) {
    role.spawn_cancellable(
        "server-certificate",
        keep(server.clone(), tx, not_after, peers),
    );
}

/// Re-issues the certificate at half life, for as long as the server runs. When the
/// replicated CA changes (a snapshot restore that carried another CA), installs it
/// (`data_dir/ca`, keys 0600), signs with it from then on and serves with a certificate of it,
/// without a restart: the old CA stays trusted between servers for [`TRUST_REPLACED`], and
/// the old certificate is what this server presents to the others for [`PRESENT_OLD`], so
/// servers that apply the restore a moment later keep hearing each other. A server that was
/// down for the whole transition has to re-join without its data (see docs/operations.md).
async fn keep(
    server: Arc<Server>,
    tx: ServerTls,
    mut not_after: i64,
    peers: crate::replicated::Peers,
) -> Result<()> {
    let consensus = server.consensus.get().context("Raft is not started")?;
    let mut ca_rx = consensus.app().ca.subscribe();
    let mut installed = ca_rx.borrow_and_update().clone();
    let mut present_old: Option<(Instant, Identity)> = None;
    let mut trust_old_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let mut wake = now + renew_in(not_after);
        for at in [present_old.as_ref().map(|p| p.0), trust_old_until]
            .into_iter()
            .flatten()
        {
            wake = wake.min(at);
        }
        let replaced = tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => None,
            changed = ca_rx.changed() => {
                changed.context("Raft stopped")?;
                let files = ca_rx.borrow_and_update().clone();
                if installed.is_none() {
                    // The CA this server brought up, arriving through the log.
                    installed = files;
                    continue;
                }
                (files != installed).then_some(files).flatten()
            }
        };
        let now = Instant::now();
        if let Some(files) = replaced {
            let old_ca = server.ca();
            let old_identity = server.client_identity().map(|pair| pair.0.clone());
            let (dir, dc) = (server.cfg.data_dir.clone(), server.cfg.datacenter.clone());
            let install = files.clone();
            let ca = tokio::task::spawn_blocking(move || install.install(&dir, &dc)).await??;
            installed = Some(files);
            server.set_replaced(Some(Replaced {
                trust_domain: old_ca.trust_domain.clone(),
                roots_pem: old_ca.roots_pem.clone(),
                until: now + TRUST_REPLACED,
            }));
            trust_old_until = Some(now + TRUST_REPLACED);
            present_old = old_identity.map(|identity| (now + PRESENT_OLD, identity));
            tracing::warn!(
                old_trust_domain = %old_ca.trust_domain,
                trust_domain = %ca.trust_domain,
                "a snapshot restore replaced the DC's CA: signing with it from now on (the old one stays trusted between servers for 10 minutes)"
            );
            server.set_ca(ca);
        }
        present_old = present_old.filter(|(until, _)| *until > now);
        trust_old_until = trust_old_until.filter(|until| *until > now);
        match issue(&server) {
            Ok(issued) => {
                not_after = issued.not_after;
                let _ = tx.send(issued.server_tls);
                let presented = match &present_old {
                    Some((_, old)) => old.clone(),
                    None => issued.identity,
                };
                server.set_client_identity(&issued.trust_domain, presented, issued.roots);
                peers.set(mutual_tls(&server)?);
                tracing::info!("renewed the server certificate");
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "server certificate renewal failed, retrying in 30s");
                not_after = strait_base::unix_now() + 60;
            }
        }
    }
}

/// Time until half of the remaining life is gone (at least a second).
pub fn renew_in(not_after_unix: i64) -> Duration {
    let left = (not_after_unix - strait_base::unix_now()).max(2);
    Duration::from_secs((left / 2) as u64)
}

/// A certificate of this server from its CA, and what serves and trusts it.
struct Issued {
    server_tls: Arc<rustls::ServerConfig>,
    not_after: i64,
    identity: Identity,
    /// The roots this server trusts ([`Server::trusted_roots`]).
    roots: Roots,
    trust_domain: String,
}

fn issue(server: &Server) -> Result<Issued> {
    let ca = server.ca();
    let id = SpiffeId::server(&ca.trust_domain, &server.cfg.datacenter);
    let (key_pem, csr_pem) = strait_identity::ca::generate_key_and_csr(&id)?;
    let signed = ca
        .sign(&csr_pem, &id, server.live.leaf_ttl())
        .context("signing the server certificate")?;
    let identity = Identity::from_pem(&signed.chain_pem, &key_pem)?;
    let roots = Roots::from_pems(&server.trusted_roots())?;
    let server_tls = tls::server_config(&identity, &roots, ClientAuth::Optional)?;
    Ok(Issued {
        server_tls,
        not_after: signed.issued.not_after_unix,
        identity,
        roots,
        trust_domain: ca.trust_domain.clone(),
    })
}
