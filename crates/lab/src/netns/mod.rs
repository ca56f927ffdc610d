//! The `netns` driver: every VM its own network namespace, every DC a bridge (its LAN), the
//! gateway VMs also on a WAN bridge, the host on the primary DC's LAN through a veth. This
//! module is the address plan (pure, derived from the topology, so the same topology files
//! work with both drivers); [`setup`] creates and removes it with iproute2; [`enter`] runs
//! the lab's own probes inside a VM's namespace.
//!
//! Address plan (docs/lab.md): WAN `10.213.0.0/24`, DC number `d` (file order, from 1) LAN
//! `10.213.d.0/24`; the `k`-th VM of a DC (from 0) is `10.213.d.(10+k)`, the `g`-th gateway VM
//! of the topology (from 0) is `10.213.0.(10+g)` on the WAN; the host is `10.213.1.1`.

pub mod enter;
pub mod setup;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::topology::Topology;

/// Every namespace and link the lab creates starts with this, so an operator sees what is
/// the lab's (`ip netns list`, `ip link`).
pub const PREFIX: &str = "strait";

/// `10.213.0.0/16`: every address of the plan is inside it.
pub const NETWORK: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 213, 0, 0), 16);

/// The host's address on the primary DC's LAN.
pub const HOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 213, 1, 1);

/// Prefix length of every LAN and of the WAN.
pub const SEGMENT_PREFIX: u8 = 24;

const FIRST_HOST: u8 = 10;

/// Which driver runs a lab.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Every VM a 127.0.0.0/8 address on the host's loopback (no root needed).
    #[default]
    Local,
    /// Every VM its own network namespace (root needed).
    Netns,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Local => "local",
            Driver::Netns => "netns",
        }
    }
}

/// One VM's place in the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNet {
    pub vm: String,
    pub dc: String,
    /// Its network namespace; `None` with the local driver.
    pub netns: Option<String>,
    /// Its address on its DC's LAN (local driver: the topology's loopback address).
    pub lan: Ipv4Addr,
    /// Gateway VMs (netns driver): the address on the WAN.
    pub wan: Option<Ipv4Addr>,
    /// The host end of the VM's LAN veth (`eth0` inside), attached to its DC's bridge.
    pub lan_link: Option<String>,
    /// The host end of a gateway VM's WAN veth (`eth1` inside), on the WAN bridge.
    pub wan_link: Option<String>,
}

/// A DC's LAN bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lan {
    pub dc: String,
    pub bridge: String,
    /// Network address (prefix [`SEGMENT_PREFIX`]).
    pub network: Ipv4Addr,
}

/// The whole network of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub driver: Driver,
    pub vms: Vec<VmNet>,
    /// Netns driver only (empty otherwise).
    pub lans: Vec<Lan>,
    pub wan_bridge: Option<String>,
    /// The host end of the veth into the primary DC's LAN (address [`HOST_ADDRESS`]).
    pub host_link: Option<String>,
}

/// The topology does not fit the address plan.
#[derive(Debug, thiserror::Error)]
#[error("the netns driver's address plan (10.213.0.0/16) has room for {limit}; the topology has {count} {what}")]
pub struct TooLarge {
    what: &'static str,
    count: usize,
    limit: &'static str,
}

/// The bridge's name (interface names have at most 15 bytes, so DCs are numbered).
pub fn lan_bridge(dc_number: usize) -> String {
    format!("{PREFIX}-lan{dc_number}")
}

/// The host end of the veth into the primary DC's LAN.
pub fn host_link() -> String {
    format!("{PREFIX}-host")
}

/// A VM's namespace.
pub fn namespace(vm: &str) -> String {
    format!("{PREFIX}-{vm}")
}

impl Layout {
    /// The local driver's "network": every VM at its topology address.
    pub fn local(topology: &Topology) -> Layout {
        Layout {
            driver: Driver::Local,
            vms: topology
                .vms
                .iter()
                .map(|vm| VmNet {
                    vm: vm.name.clone(),
                    dc: vm.dc.clone(),
                    netns: None,
                    lan: vm.address,
                    wan: None,
                    lan_link: None,
                    wan_link: None,
                })
                .collect(),
            lans: Vec::new(),
            wan_bridge: None,
            host_link: None,
        }
    }

    /// The netns driver's plan for `topology` (see the module header).
    pub fn netns(topology: &Topology) -> Result<Layout, TooLarge> {
        let too_large = |what, count, limit| TooLarge { what, count, limit };
        if topology.datacenters.len() > 254 {
            return Err(too_large(
                "datacenters",
                topology.datacenters.len(),
                "254 datacenters",
            ));
        }
        let mut lans = Vec::new();
        let mut vms = Vec::new();
        let mut gateways = 0usize;
        for (d, dc) in topology.datacenters.iter().enumerate() {
            let number = d + 1;
            let octet = u8::try_from(number).unwrap_or(u8::MAX);
            lans.push(Lan {
                dc: dc.name.clone(),
                bridge: lan_bridge(number),
                network: Ipv4Addr::new(10, 213, octet, 0),
            });
            for (k, vm) in topology.vms_in(&dc.name).enumerate() {
                let host = u8::try_from(k + usize::from(FIRST_HOST))
                    .ok()
                    .filter(|h| *h < 255)
                    .ok_or_else(|| too_large("VMs in a datacenter", k + 1, "244 VMs per DC"))?;
                let index = vms.len();
                let wan = if vm.roles.gateway {
                    let host = u8::try_from(gateways + usize::from(FIRST_HOST))
                        .ok()
                        .filter(|h| *h < 255)
                        .ok_or_else(|| too_large("gateway VMs", gateways + 1, "244 gateway VMs"))?;
                    gateways += 1;
                    Some(Ipv4Addr::new(10, 213, 0, host))
                } else {
                    None
                };
                vms.push(VmNet {
                    vm: vm.name.clone(),
                    dc: vm.dc.clone(),
                    netns: Some(namespace(&vm.name)),
                    lan: Ipv4Addr::new(10, 213, octet, host),
                    wan,
                    lan_link: Some(format!("{PREFIX}-v{index}l")),
                    wan_link: wan.map(|_| format!("{PREFIX}-v{index}w")),
                });
            }
        }
        Ok(Layout {
            driver: Driver::Netns,
            vms,
            lans,
            wan_bridge: Some(format!("{PREFIX}-wan")),
            host_link: Some(host_link()),
        })
    }

    pub fn vm(&self, name: &str) -> Option<&VmNet> {
        self.vms.iter().find(|v| v.vm == name)
    }

    /// The topology with every VM's address replaced by its LAN address, which the plan
    /// then uses for what other VMs reach (servers, gateways, sidecars' public ports).
    pub fn readdress(&self, topology: &Topology) -> Topology {
        let mut out = topology.clone();
        for vm in &mut out.vms {
            if let Some(net) = self.vm(&vm.name) {
                vm.address = net.lan;
            }
        }
        out
    }

    /// Whether the host reaches `vm` (the primary DC's LAN, through [`Layout::host_link`]).
    pub fn host_reaches(&self, vm: &str, primary_dc: &str) -> bool {
        self.driver == Driver::Local || self.vm(vm).is_some_and(|v| v.dc == primary_dc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_topology_plan() {
        let topology = Topology::builtin().expect("default");
        let layout = Layout::netns(&topology).expect("fits");
        let show: Vec<String> = layout
            .vms
            .iter()
            .map(|v| {
                format!(
                    "{} {} {} {:?} {:?} {:?}",
                    v.vm,
                    v.netns.as_deref().unwrap_or("-"),
                    v.lan,
                    v.wan,
                    v.lan_link,
                    v.wan_link
                )
            })
            .collect();
        assert_eq!(
            show,
            [
                "primary-server strait-primary-server 10.213.1.10 None Some(\"strait-v0l\") None",
                "primary-gateway strait-primary-gateway 10.213.1.11 Some(10.213.0.10) Some(\"strait-v1l\") Some(\"strait-v1w\")",
                "primary-services strait-primary-services 10.213.1.12 None Some(\"strait-v2l\") None",
                "secondary-server strait-secondary-server 10.213.2.10 None Some(\"strait-v3l\") None",
                "secondary-gateway strait-secondary-gateway 10.213.2.11 Some(10.213.0.11) Some(\"strait-v4l\") Some(\"strait-v4w\")",
                "secondary-services strait-secondary-services 10.213.2.12 None Some(\"strait-v5l\") None",
            ]
        );
        assert_eq!(
            layout
                .lans
                .iter()
                .map(|l| l.bridge.as_str())
                .collect::<Vec<_>>(),
            ["strait-lan1", "strait-lan2"]
        );
        // Interface names fit the kernel's 15 bytes.
        for name in layout
            .vms
            .iter()
            .flat_map(|v| v.lan_link.iter().chain(&v.wan_link))
            .chain(layout.lans.iter().map(|l| &l.bridge))
        {
            assert!(name.len() <= 15, "{name}");
        }
        let readdressed = layout.readdress(&topology);
        assert_eq!(readdressed.vms[5].address, Ipv4Addr::new(10, 213, 2, 12));
        assert!(layout.host_reaches("primary-services", "dc1"));
        assert!(!layout.host_reaches("secondary-services", "dc1"));
    }

    /// Every IPv4 address in `text` replaced by what `name` says it stands for (whole
    /// addresses only: 127.20.1.1 is not a prefix match of 127.20.1.10).
    fn normalise(text: &str, name: &dyn Fn(Ipv4Addr) -> Option<String>) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
            out.push_str(&rest[..start]);
            let run = &rest[start..];
            let len = run
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(run.len());
            let token = &run[..len];
            let preceded_by_word = out.ends_with(|c: char| c.is_ascii_alphanumeric());
            match token.parse::<Ipv4Addr>().ok().filter(|_| !preceded_by_word) {
                Some(ip) => out.push_str(&name(ip).unwrap_or_else(|| token.to_owned())),
                None => out.push_str(token),
            }
            rest = &run[len..];
        }
        out.push_str(rest);
        out
    }

    /// The configs and units `up` writes (path relative to the lab, contents) with every
    /// address replaced by the name of the VM it belongs to; `127.0.0.1` in a VM's own file
    /// is that VM.
    fn written_files(
        topology: &Topology,
        layout: &Layout,
        tokens: &crate::plan::Tokens,
    ) -> Vec<(String, String)> {
        let paths = crate::paths::LabPaths::new(std::path::Path::new("/lab")).expect("paths");
        let plan = crate::plan::plan_on(topology, &paths, tokens, layout);
        let units =
            crate::units::files(&plan, &paths, std::path::Path::new("/opt/strait")).expect("units");
        let owner = |ip: Ipv4Addr| {
            topology
                .vms
                .iter()
                .zip(&layout.vms)
                .find(|(vm, net)| {
                    (layout.driver == Driver::Local && vm.address == ip)
                        || (layout.driver == Driver::Netns
                            && (net.lan == ip || net.wan == Some(ip)))
                })
                .map(|(vm, _)| format!("<{}>", vm.name))
        };
        let mut files: Vec<(String, String)> = plan
            .iter()
            .flat_map(|p| &p.files)
            .chain(&units)
            .map(|f| {
                let path = f.path.strip_prefix("/lab").expect("in the lab").to_owned();
                let vm = path.iter().nth(1).and_then(|v| v.to_str()).unwrap_or("");
                let own = |ip: Ipv4Addr| {
                    if layout.driver == Driver::Netns && ip == Ipv4Addr::LOCALHOST {
                        Some(format!("<{vm}>"))
                    } else {
                        owner(ip)
                    }
                };
                (
                    path.display().to_string(),
                    normalise(&f.contents, &own).replace("localhost:", &format!("<{vm}>:")),
                )
            })
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// The issue's "the units and configs the lab writes are the same as with the local
    /// driver apart from addresses", for every built-in topology and both data planes.
    #[test]
    fn both_drivers_write_the_same_files_apart_from_addresses() {
        use crate::topology::{DataPlane, BUILTIN_TOPOLOGIES};
        for (name, text) in BUILTIN_TOPOLOGIES {
            for proxy in [DataPlane::Builtin, DataPlane::Envoy] {
                let topology = Topology::parse(text, name)
                    .expect("built-in")
                    .with_default_proxy(proxy);
                let tokens = crate::plan::Tokens::generate(&topology);
                let local = written_files(&topology, &Layout::local(&topology), &tokens);
                let netns = Layout::netns(&topology).expect("fits");
                let netns = written_files(&topology, &netns, &tokens);
                assert!(local.len() > 10, "{name}: {} files", local.len());
                let paths =
                    |f: &[(String, String)]| f.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
                assert_eq!(
                    paths(&local),
                    paths(&netns),
                    "{name} {proxy:?}: the files written"
                );
                for ((path, a), (_, b)) in local.iter().zip(&netns) {
                    assert_eq!(a, b, "{name} {proxy:?}: {path} differs beyond addresses");
                }
            }
        }
    }

    #[test]
    fn normalise_replaces_whole_addresses_only() {
        let name = |ip: Ipv4Addr| (ip == Ipv4Addr::new(127, 20, 1, 1)).then(|| "<h>".to_owned());
        assert_eq!(
            normalise("a 127.20.1.1:5 127.20.1.10 v127.20.1.1 1.2", &name),
            "a <h>:5 127.20.1.10 v127.20.1.1 1.2"
        );
    }

    #[test]
    fn local_layout_keeps_topology_addresses() {
        let topology = Topology::builtin().expect("default");
        let layout = Layout::local(&topology);
        assert_eq!(layout.vms[0].lan, topology.vms[0].address);
        assert_eq!(layout.readdress(&topology), topology);
    }
}
