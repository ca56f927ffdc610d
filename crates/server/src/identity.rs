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

/// Issues the first certificate, installs the client config, and keeps both fresh.
pub fn start(
    server: &Arc<Server>,
    role: &Role,
) -> Result<watch::Receiver<Arc<rustls::ServerConfig>>> {
    let (server_tls, not_after) = issue(server)?;
    let (tx, rx) = watch::channel(server_tls);
    role.spawn_cancellable("server-certificate", renew(server.clone(), tx, not_after));
    Ok(rx)
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
    server.set_client_identity(identity, roots);
    Ok((server_tls, signed.issued.not_after_unix))
}
