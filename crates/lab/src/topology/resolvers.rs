//! `[[resolver]]` tables -> [`Resolver`]s: the service and DCs must be valid names, the DCs
//! the topology's own (a lab fails over only between the DCs it runs).

use super::raw::RawTopology;
use super::validate::Source;
use super::{Datacenter, Resolver, TopologyError};

pub(super) fn resolvers(
    src: &Source<'_>,
    raw: &RawTopology,
    dcs: &[Datacenter],
) -> Result<Vec<Resolver>, TopologyError> {
    let known = || {
        dcs.iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out: Vec<Resolver> = Vec::with_capacity(raw.resolver.len());
    for (i, r) in raw.resolver.iter().enumerate() {
        let path = format!("resolver[{i}]");
        let dc = r.dc.get_ref();
        if !dcs.iter().any(|d| &d.name == dc) {
            return Err(src.err(
                r.dc.span(),
                format!("{path}.dc"),
                format!("unknown datacenter {dc:?} (defined: {})", known()),
            ));
        }
        let service = r.service.get_ref();
        strait_identity::spiffe::validate_name("service", service)
            .map_err(|e| src.err(r.service.span(), format!("{path}.service"), e.to_string()))?;
        if out.iter().any(|o| &o.dc == dc && &o.service == service) {
            return Err(src.err(
                r.service.span(),
                format!("{path}.service"),
                format!("a resolver for {service:?} in {dc} is already defined"),
            ));
        }
        let failover = r.failover.get_ref();
        if failover.is_empty() {
            return Err(src.err(
                r.failover.span(),
                format!("{path}.failover"),
                "name at least one datacenter to fail over to",
            ));
        }
        if let Some(unknown) = failover.iter().find(|f| !dcs.iter().any(|d| &d.name == *f)) {
            return Err(src.err(
                r.failover.span(),
                format!("{path}.failover"),
                format!("unknown datacenter {unknown:?} (defined: {})", known()),
            ));
        }
        out.push(Resolver {
            dc: dc.clone(),
            service: service.clone(),
            failover: failover.clone(),
            connect_timeout: r.connect_timeout.as_ref().map(|t| t.get_ref().clone()),
        });
    }
    Ok(out)
}

impl Resolver {
    /// The `service-resolver` config entry, as `PUT /v1/config` takes it.
    pub fn config_entry(&self) -> serde_json::Value {
        let mut entry = serde_json::json!({
            "Kind": "service-resolver",
            "Name": self.service,
            "Failover": {"*": {"Datacenters": self.failover}},
        });
        if let Some(t) = &self.connect_timeout {
            entry["ConnectTimeout"] = serde_json::json!(t);
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use crate::topology::{Topology, FAILOVER_TOPOLOGY};

    #[test]
    fn the_failover_topology_writes_a_resolver_in_dc1() {
        let t = Topology::parse(FAILOVER_TOPOLOGY, "failover").expect("valid");
        assert_eq!(t.datacenters.len(), 3);
        assert_eq!(t.resolvers.len(), 1);
        let entry = t.resolvers[0].config_entry();
        assert_eq!(
            entry,
            serde_json::json!({"Kind": "service-resolver", "Name": "counting",
                "ConnectTimeout": "3s", "Failover": {"*": {"Datacenters": ["dc3"]}}})
        );
        assert_eq!(t.vms_in("dc2").filter(|vm| vm.roles.gateway).count(), 2);
        assert_eq!(Topology::builtin_text("failover"), Some(FAILOVER_TOPOLOGY));
        assert_eq!(Topology::builtin_text("nope"), None);
    }

    #[test]
    fn a_resolver_names_the_topologys_datacenters_with_the_line() {
        let base = FAILOVER_TOPOLOGY.replace("failover = [\"dc3\"]", "failover = [\"dc9\"]");
        let err = Topology::parse(&base, "t.toml")
            .expect_err("dc9")
            .to_string();
        assert!(
            err.starts_with("t.toml:18: field `resolver[0].failover`: unknown datacenter \"dc9\""),
            "{err}"
        );
        let base = FAILOVER_TOPOLOGY.replace("failover = [\"dc3\"]", "failover = []");
        let err = Topology::parse(&base, "t.toml")
            .expect_err("empty")
            .to_string();
        assert!(err.contains("name at least one datacenter"), "{err}");
        let base = FAILOVER_TOPOLOGY.replace("dc = \"dc1\"\nservice", "dc = \"dc7\"\nservice");
        let err = Topology::parse(&base, "t.toml")
            .expect_err("dc7")
            .to_string();
        assert!(
            err.contains("resolver[0].dc") && err.contains("dc7"),
            "{err}"
        );
        let base = FAILOVER_TOPOLOGY.replace("connect_timeout = \"3s\"", "timeout = \"3s\"");
        assert!(Topology::parse(&base, "t.toml").is_err(), "unknown field");
    }
}
