//! SIGHUP: re-read the config file and apply what can change while serving.
//!
//! Live: `join_token` (rotate it; agents already joined keep their certificates),
//! `leaf_ttl_hours` (certificates issued from now on) and `primary_gateways` (where requests for
//! the primary DC are forwarded). Every other field names listeners, files or identities
//! fixed at start-up: a change is logged as needing a restart and the old value stays. A file
//! that does not validate changes nothing; the error names the file and the field.

use crate::config::ServerConfig;
use crate::state::Server;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use strait_systemd::lifecycle::Role;
use strait_systemd::reload::changed_fields;

/// The fields a reload may change, read by the API on every use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Live {
    join_token: String,
    leaf_ttl: Duration,
    primary_gateways: Vec<SocketAddr>,
}

impl Live {
    fn of(cfg: &ServerConfig) -> Live {
        Live {
            join_token: cfg.join_token.clone(),
            leaf_ttl: cfg.leaf_ttl,
            primary_gateways: cfg.primary_gateways.clone(),
        }
    }
}

/// The live part of the configuration (see the module docs); starts as the config file's.
#[derive(Debug)]
pub struct LiveConfig(RwLock<Live>);

impl LiveConfig {
    pub fn new(cfg: &ServerConfig) -> LiveConfig {
        LiveConfig(RwLock::new(Live::of(cfg)))
    }

    fn get(&self) -> Live {
        strait_base::sync::read(&self.0).clone()
    }

    pub fn join_token(&self) -> String {
        self.get().join_token
    }

    pub fn leaf_ttl(&self) -> Duration {
        self.get().leaf_ttl
    }

    pub fn primary_gateways(&self) -> Vec<SocketAddr> {
        self.get().primary_gateways
    }
}

/// What one reload did, for the log and `systemctl status`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub applied: Vec<&'static str>,
    pub need_restart: Vec<&'static str>,
}

/// Compares `new` with what runs: applies the live fields, lists the others that changed.
pub fn apply(server: &Server, new: &ServerConfig) -> Outcome {
    let old = &server.cfg;
    let need_restart = changed_fields([
        ("datacenter", old.datacenter != new.datacenter),
        (
            "primary_datacenter",
            old.primary_datacenter != new.primary_datacenter,
        ),
        ("node_name", old.node_name != new.node_name),
        ("data_dir", old.data_dir != new.data_dir),
        ("https_addr", old.https_addr != new.https_addr),
        ("http_addr", old.http_addr != new.http_addr),
        (
            "federation_token",
            old.federation_token != new.federation_token,
        ),
    ]);
    let live = Live::of(new);
    let mut current = strait_base::sync::write(&server.live.0);
    let applied = changed_fields([
        ("join_token", current.join_token != live.join_token),
        ("leaf_ttl_hours", current.leaf_ttl != live.leaf_ttl),
        (
            "primary_gateways",
            current.primary_gateways != live.primary_gateways,
        ),
    ]);
    *current = live;
    Outcome {
        applied,
        need_restart,
    }
}

/// Re-reads `path` and applies it; an invalid file changes nothing.
fn reload(server: &Server, path: &Path) -> anyhow::Result<Outcome> {
    let new = ServerConfig::load(path)?;
    let out = apply(server, &new);
    for field in &out.applied {
        tracing::info!(file = %path.display(), field, "reload: applied");
    }
    for field in &out.need_restart {
        tracing::warn!(file = %path.display(), field,
            "reload: field changed but needs a restart; still running with the old value");
    }
    Ok(out)
}

/// Serves SIGHUPs once the server is ready: `RELOADING=1`, reload, `READY=1` with the
/// outcome as status (the lifecycle holds a SIGHUP sent earlier until then).
pub fn spawn(server: Arc<Server>, path: PathBuf, role: &Role) {
    role.on_reload(move || {
        let out = reload(&server, &path).map(|out| {
            format!(
                "reloaded {}: applied {:?}, need a restart {:?}",
                path.display(),
                out.applied,
                out.need_restart
            )
        });
        std::future::ready(out)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
datacenter = "dc1"
node_name = "s1"
data_dir = "/tmp/x"
https_addr = "127.0.0.1:8300"
http_addr = "127.0.0.1:8500"
join_token = "0123456789abcdef0"
federation_token = "0123456789abcdef1"
"#;

    #[test]
    fn live_fields_apply_and_others_are_reported() {
        let cfg = ServerConfig::parse(BASE).unwrap();
        let server = Server::new(cfg, strait_catalog::Catalog::replicated());
        let text = BASE
            .replace("0123456789abcdef0", "fedcba9876543210x")
            .replace("127.0.0.1:8300", "127.0.0.1:8301")
            + "leaf_ttl_hours = 24\n";
        let out = apply(&server, &ServerConfig::parse(&text).unwrap());
        assert_eq!(out.applied, ["join_token", "leaf_ttl_hours"]);
        assert_eq!(out.need_restart, ["https_addr"]);
        assert_eq!(server.live.join_token(), "fedcba9876543210x");
        assert_eq!(server.live.leaf_ttl(), Duration::from_secs(24 * 3600));
        // Applying the same file again changes nothing.
        let again = apply(&server, &ServerConfig::parse(&text).unwrap());
        assert!(again.applied.is_empty());
    }
}
