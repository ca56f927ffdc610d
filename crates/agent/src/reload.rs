//! SIGHUP: re-read the config file and the service definitions of its `config_dir`, and
//! register / deregister the difference (what `consul reload` does for service files).
//!
//! Live: the service definitions (and `config_dir`, read from the reloaded file). Every other
//! field names the node, its identity or its listeners: a change is logged as needing a
//! restart and the old value stays. An invalid config file or definition changes nothing;
//! the error names the file and the field.

use crate::config::AgentConfig;
use crate::local::{read_config_dir, FileChanges};
use crate::state::Agent;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use strait_systemd::lifecycle::Role;

/// Fields of `new` that differ from the running config and need a restart.
pub fn needs_restart(old: &AgentConfig, new: &AgentConfig) -> Vec<&'static str> {
    strait_systemd::reload::changed_fields([
        ("datacenter", old.datacenter != new.datacenter),
        ("node_name", old.node_name != new.node_name),
        ("data_dir", old.data_dir != new.data_dir),
        ("advertise_addr", old.advertise_addr != new.advertise_addr),
        ("http_addr", old.http_addr != new.http_addr),
        ("servers", old.servers != new.servers),
        ("join_token", old.join_token != new.join_token),
        ("acl", old.acl != new.acl),
    ])
}

/// Re-reads `path` and the definitions of its `config_dir`, and applies them.
fn reload(agent: &Agent, path: &Path) -> anyhow::Result<FileChanges> {
    let new = AgentConfig::load(path)?;
    let defs = read_config_dir(new.config_dir.as_deref())?;
    let changes = agent.local.replace_file_definitions(defs)?;
    for field in needs_restart(&agent.cfg, &new) {
        tracing::warn!(file = %path.display(), field,
            "reload: field changed but needs a restart; still running with the old value");
    }
    tracing::info!(file = %path.display(), added = ?changes.added, changed = ?changes.changed,
        removed = ?changes.removed, "reload: service definitions applied");
    Ok(changes)
}

/// Waits until the agent is ready (joined, first sync done, mesh view received), tells
/// systemd `READY=1`, and from then on serves SIGHUPs: `RELOADING=1`, reload, `READY=1` with
/// the outcome (the lifecycle holds a SIGHUP sent earlier until then). `false` when the role
/// stopped first.
pub async fn when_ready(agent: Arc<Agent>, path: PathBuf, role: &Role) -> bool {
    // Readiness is three flags set by three loops; a short poll until the first time.
    while agent.readiness().is_err() {
        tokio::select! {
            _ = role.shutdown().cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    role.ready(&format!(
        "ready: node {} in dc {}",
        agent.cfg.node_name, agent.cfg.datacenter
    ));
    role.on_reload(move || {
        let out = reload(&agent, &path).map(|c| {
            format!(
                "reloaded {}: added {:?}, changed {:?}, removed {:?}",
                path.display(),
                c.added,
                c.changed,
                c.removed
            )
        });
        std::future::ready(out)
    });
    true
}

#[cfg(test)]
mod tests {
    use crate::definition::ServiceDefinition;
    use crate::local::{LocalState, Source};

    fn def(json: &str) -> ServiceDefinition {
        serde_json::from_str(json).unwrap()
    }

    fn port(local: &LocalState, id: &str) -> Option<u16> {
        local
            .services()
            .into_iter()
            .find(|s| s.id == id)
            .map(|s| s.port)
    }

    #[test]
    fn file_definitions_change_by_difference_and_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalState::new("n1", "127.0.0.1".parse().unwrap(), dir.path());
        local
            .insert(
                def(r#"{"ID": "api", "Name": "api", "Port": 1}"#),
                Source::Api,
            )
            .unwrap();
        let file = |json: &str, name: &str| (def(json), name.to_owned());
        let web = |p: u16| file(&format!(r#"{{"Name": "web", "Port": {p}}}"#), "web.json");

        let c = local
            .replace_file_definitions(vec![
                web(9100),
                file(r#"{"Name": "db", "Port": 5432}"#, "db.json"),
            ])
            .unwrap();
        assert_eq!(
            (c.added, c.changed, c.removed),
            (vec!["db".to_owned(), "web".to_owned()], vec![], vec![])
        );

        let c = local.replace_file_definitions(vec![web(9200)]).unwrap();
        assert_eq!(
            (c.added, c.changed, c.removed),
            (vec![], vec!["web".to_owned()], vec!["db".to_owned()])
        );
        assert_eq!(port(&local, "web"), Some(9200));

        // One invalid definition: refused with its file named, nothing changes.
        let err = local
            .replace_file_definitions(vec![
                web(9300),
                file(r#"{"ID": "a/b", "Name": "x"}"#, "bad.json"),
            ])
            .unwrap_err();
        assert!(format!("{err:#}").contains("bad.json"), "{err:#}");
        assert_eq!(port(&local, "web"), Some(9200));

        // A service registered through the API wins over a file with its ID, as at start-up.
        let c = local
            .replace_file_definitions(vec![file(r#"{"Name": "api", "Port": 2}"#, "api.json")])
            .unwrap();
        assert!(c.added.is_empty() && c.removed == ["web"], "{c:?}");
        assert_eq!(port(&local, "api"), Some(1));
    }
}
