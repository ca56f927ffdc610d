//! What the local API's writes need of the caller's token, as Consul's agent decides it:
//! registering a service needs `service:write` on every service the definition registers
//! (its sidecar too), on a proxy's destination, and on the service it replaces; a check
//! needs `service:write` on its service, or `node:write` on this node for a node check.

use crate::acl::{Caller, Refused};
use crate::definition::{ServiceDefinition, SIDECAR_PORT_BASE};
use crate::state::Agent;

/// The services registering `def` writes, sorted and without repeats; an invalid
/// definition is the error its registration would give.
pub fn written_by(a: &Agent, def: &ServiceDefinition) -> anyhow::Result<Vec<String>> {
    let expanded = def.expand(a.cfg.advertise_addr, SIDECAR_PORT_BASE)?;
    let existing = a.local.services();
    let mut names = Vec::new();
    for s in &expanded.services {
        names.push(s.service.clone());
        if let Some(p) = s.proxy.as_ref().filter(|_| s.kind == "connect-proxy") {
            names.push(p.destination_service_name.clone());
        }
        let replaced = existing.iter().filter(|old| old.id == s.id);
        names.extend(replaced.map(|old| old.service.clone()));
    }
    names.extend(expanded.proxies.iter().map(|p| p.service.clone()));
    names.retain(|n| !n.is_empty());
    names.sort();
    names.dedup();
    Ok(names)
}

/// The name of local service `id`, if this agent has it.
pub fn service_name(a: &Agent, id: &str) -> Option<String> {
    let services = a.local.services();
    services.into_iter().find(|s| s.id == id).map(|s| s.service)
}

/// `service:write` on each of `services`.
pub fn write_services(caller: &Caller, services: &[String]) -> Result<(), Refused> {
    services
        .iter()
        .try_for_each(|s| caller.check(|z| z.service_write(s)))
}

/// What writing a check of service `service_name` (empty: of the node) needs.
pub fn write_check(a: &Agent, caller: &Caller, service_name: &str) -> Result<(), Refused> {
    match service_name {
        "" => caller.check(|z| z.node_write(&a.cfg.node_name)),
        name => caller.check(|z| z.service_write(name)),
    }
}

/// What changing local check `check_id` needs (nothing to check for an unknown check: the
/// handler answers 404).
pub fn write_existing_check(a: &Agent, caller: &Caller, check_id: &str) -> Result<(), Refused> {
    let specs = a.local.check_specs();
    match specs.iter().find(|c| c.check_id == check_id) {
        Some(c) => write_check(a, caller, &c.service_name),
        None => Ok(()),
    }
}

/// Whether the caller may see a check of service `service_name` (empty: of `node`).
pub fn read_check(caller: &Caller, node: &str, service_name: &str) -> bool {
    match service_name {
        "" => caller.may(|z| z.node_read(node)),
        name => caller.may(|z| z.service_read(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::{LocalState, Source};
    use std::sync::Arc;

    fn agent(dir: &std::path::Path) -> Agent {
        let cfg = crate::config::AgentConfig::parse(&format!(
            "datacenter = \"dc1\"\nnode_name = \"n1\"\ndata_dir = {:?}\n\
             advertise_addr = \"127.0.0.1\"\nhttp_addr = \"127.0.0.1:8500\"\n\
             servers = [\"127.0.0.1:8300\"]\njoin_token = \"0123456789abcdef0\"\n",
            dir.display()
        ))
        .unwrap();
        let local = Arc::new(LocalState::new("n1", cfg.advertise_addr, &cfg.data_dir));
        Agent::new(cfg, local)
    }

    fn def(json: &str) -> ServiceDefinition {
        crate::decode::json(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_registration_writes_its_services_a_proxys_destination_and_what_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let a = agent(dir.path());
        let web = def(r#"{"Name":"web","Port":80,"Connect":{"SidecarService":{}}}"#);
        assert_eq!(written_by(&a, &web).unwrap(), ["web", "web-sidecar-proxy"]);
        let proxy = def(r#"{"Name":"db-proxy","Kind":"connect-proxy","Port":21000,
                "Proxy":{"DestinationServiceName":"db"}}"#);
        assert_eq!(written_by(&a, &proxy).unwrap(), ["db", "db-proxy"]);
        a.local
            .insert(def(r#"{"ID":"x","Name":"api"}"#), Source::Api)
            .unwrap();
        let renamed = def(r#"{"ID":"x","Name":"web"}"#);
        assert_eq!(written_by(&a, &renamed).unwrap(), ["api", "web"]);
        let e = written_by(&a, &def(r#"{"Name":"bad name!"}"#)).unwrap_err();
        assert!(format!("{e:#}").contains("Name"), "{e:#}");
    }
}
