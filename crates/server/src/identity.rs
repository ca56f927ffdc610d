//! The server's own certificate (`spiffe://<td>/server/dc/<dc>`), signed by its own CA and
//! renewed at half life. It is both the mTLS API's server certificate and the client
//! certificate for server -> server calls through the gateways.

use crate::state::Server;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
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
    let (server_tls, not_after) = issue(server)?;
    tls.send_replace(server_tls);
    Ok(not_after)
}

/// Installs a certificate another server of the DC signed (a joiner, before its CA arrives).
pub fn joined(server: &Server, tls: &ServerTls, joined: crate::cluster::Joined) -> Result<i64> {
    let not_after = joined.identity.not_after_unix();
    let server_tls = tls::server_config(&joined.identity, &joined.roots, ClientAuth::Optional)?;
    server.set_client_identity(&joined.trust_domain, joined.identity, joined.roots);
    tls.send_replace(server_tls);
    Ok(not_after)
}

/// Keeps the certificate fresh from this server's CA (set by then), as the task
/// `server-certificate`.
pub fn renew_from_ca(server: &Arc<Server>, role: &Role, tx: ServerTls, not_after: i64) {
    role.spawn_cancellable("server-certificate", renew(server.clone(), tx, not_after));
}

/// Re-issues the certificate at half life, for as long as the server runs.
async fn renew(
    server: Arc<Server>,
    tx: watch::Sender<Arc<rustls::ServerConfig>>,
    mut not_after: i64,
) -> Result<()> {
    loop {
        tokio::time::sleep(renew_in(not_after)).await;
        match issue(&server) {
            Ok((cfg, na)) => {
                not_after = na;
                let _ = tx.send(cfg);
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

fn issue(server: &Server) -> Result<(Arc<rustls::ServerConfig>, i64)> {
    let ca = server.ca();
    let id = SpiffeId::server(&ca.trust_domain, &server.cfg.datacenter);
    let (key_pem, csr_pem) = strait_identity::ca::generate_key_and_csr(&id)?;
    let signed = ca
        .sign(&csr_pem, &id, server.live.leaf_ttl())
        .context("signing the server certificate")?;
    let identity = Identity::from_pem(&signed.chain_pem, &key_pem)?;
    let roots = Roots::from_pems(&ca.roots_pem)?;
    let server_tls = tls::server_config(&identity, &roots, ClientAuth::Optional)?;
    server.set_client_identity(&ca.trust_domain, identity, roots);
    Ok((server_tls, signed.issued.not_after_unix))
}
