//! `acl.tokens.initial_management`, as Consul's: the leader of the primary DC bootstraps the
//! ACL system with that secret as the management token by itself (no `strait acl bootstrap`
//! needed), once; a cluster already bootstrapped is left alone. Secondaries receive it with
//! the other global tokens (ACL replication).

use crate::replicated::{Command, WriteFailure};
use crate::state::Server;
use std::sync::Arc;
use std::time::Duration;
use strait_systemd::lifecycle::Role;
use time::OffsetDateTime;

/// Starts the task `acl-bootstrap` on a primary server with ACLs on and an
/// `initial_management` token.
pub fn spawn(server: &Arc<Server>, role: &Role) {
    let acl = &server.cfg.acl;
    if acl.enabled && acl.tokens.initial_management.is_some() && server.cfg.is_primary() {
        role.spawn_cancellable("acl-bootstrap", run(server.clone()));
    }
}

/// Bootstraps once, then idles until the role stops (a role's tasks run until it does).
async fn run(server: Arc<Server>) {
    bootstrap(&server).await;
    std::future::pending::<()>().await;
}

async fn bootstrap(server: &Server) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let Some((consensus, _)) = server.leading() else {
            continue;
        };
        if strait_base::sync::read(&consensus.app().acl).is_bootstrapped() {
            return;
        }
        let initial = server.cfg.acl.tokens.initial_management.clone();
        let (command, _secret) = strait_acl::prepare_bootstrap(initial, OffsetDateTime::now_utc());
        match server.write(Command::Acl(command)).await {
            Ok(_) => {
                tracing::info!("ACLs bootstrapped with acl.tokens.initial_management");
                return;
            }
            // Bootstrapped in between (by `strait acl bootstrap` on another server).
            Err(WriteFailure::Refused(why)) => {
                tracing::info!(reason = %why, "ACLs already bootstrapped");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "cannot bootstrap ACLs yet"),
        }
    }
}
