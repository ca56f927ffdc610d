//! Creates and removes the netns driver's network with iproute2 (`ip`), and keeps
//! `DIR/network.json`: the layout (driver, every VM's addresses, for `lab status` and `lab
//! exec`) and every namespace and link the lab created, each recorded *before* it is
//! created, so `lab down` removes all of them even after an `up` that failed or was killed
//! half-way.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::{Driver, Layout, VmNet, HOST_ADDRESS, NETWORK, PREFIX, SEGMENT_PREFIX};
use crate::paths::LabPaths;
use crate::state;
use crate::topology::Topology;

/// Something the lab created on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// `ip netns add`: removing it also removes the veth ends inside (and so their peers).
    Netns(String),
    /// A bridge or the host end of a veth.
    Link(String),
}

/// The contents of `DIR/network.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub layout: Layout,
    /// In creation order.
    pub created: Vec<Resource>,
    /// Network faults in force (`lab partition`, `lab isolate`).
    #[serde(default)]
    pub faults: Vec<crate::faults::Fault>,
}

impl Network {
    pub fn load(paths: &LabPaths) -> anyhow::Result<Option<Network>> {
        let path = paths.network();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("corrupt lab network state {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self, paths: &LabPaths) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self).context("cannot encode lab network state")?;
        state::write_file(&paths.network(), &json, false)
    }

    /// Records `resource` (saved before it is created), then runs `ip` with each of `steps`.
    fn create(
        &mut self,
        paths: &LabPaths,
        resource: Resource,
        steps: &[&[&str]],
    ) -> anyhow::Result<()> {
        self.created.push(resource);
        self.save(paths)?;
        steps.iter().try_for_each(|args| ip(args))
    }
}

/// Runs `ip ARGS`; the error quotes the command and what `ip` said.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    ip_output(args).map(drop)
}

/// Runs `ip ARGS` and returns what it printed.
fn ip_output(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip").args(args).output().context(
        "cannot run `ip` (iproute2): the netns driver needs it (apt-get install iproute2)",
    )?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The netns driver changes the host's network: only root may.
pub fn require_root() -> anyhow::Result<()> {
    match crate::procfs::effective_uid() {
        Some(0) => Ok(()),
        Some(uid) => bail!(
            "`strait lab up --driver netns` needs root (it creates network namespaces, bridges and veths); running as uid {uid}: use sudo, or the default `--driver local`"
        ),
        None => bail!("cannot read the effective uid from /proc/self/status"),
    }
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let mask = |len: u8| {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len.min(32)))
        }
    };
    let common = mask(a.1.min(b.1));
    u32::from(a.0) & common == u32::from(b.0) & common
}

/// The host's routes (`ip -4 route show table all`, the default routes left out) that
/// overlap the plan's 10.213.0.0/16.
pub fn colliding_routes(routes: &str) -> Vec<String> {
    routes
        .lines()
        .filter(|line| {
            let dest = line
                .split_whitespace()
                .find(|w| w.contains('.') || *w == "default");
            let Some(dest) = dest else { return false };
            if dest == "default" {
                return false;
            }
            let (addr, len) = dest.split_once('/').unwrap_or((dest, "32"));
            match (addr.parse::<Ipv4Addr>(), len.parse::<u8>()) {
                (Ok(addr), Ok(len)) if len > 0 => overlaps((addr, len), NETWORK),
                _ => false,
            }
        })
        .map(|l| l.trim().to_owned())
        .collect()
}

/// Before `up`: `ip` is there, no route of the host collides with the plan, and no
/// namespace or link of the plan exists already (another netns lab, or one whose `down`
/// did not run).
pub fn check_host(layout: &Layout) -> anyhow::Result<()> {
    let routes = ip_output(&["-4", "route", "show", "table", "all"])?;
    let ours = |l: &String| l.contains(&format!("dev {PREFIX}-"));
    let collisions: Vec<String> = colliding_routes(&routes)
        .into_iter()
        .filter(|l| !ours(l))
        .collect();
    if !collisions.is_empty() {
        bail!(
            "the netns driver's addresses ({}/{}) collide with routes of this host: {}; the lab would make those networks unreachable",
            NETWORK.0,
            NETWORK.1,
            collisions.join("; ")
        );
    }
    let namespaces = ip_output(&["netns", "list"])?;
    let links = ip_output(&["-o", "link", "show"])?;
    let link_names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    let taken: Vec<String> = layout
        .vms
        .iter()
        .filter_map(|v| v.netns.clone())
        .filter(|ns| {
            namespaces
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns))
        })
        .chain(
            planned_links(layout)
                .filter(|l| link_names.contains(&l.as_str()))
                .cloned(),
        )
        .collect();
    if !taken.is_empty() {
        bail!(
            "namespaces or links of the netns lab exist already: {}; another netns lab is running (only one at a time), or one was not stopped: `strait lab down --dir <its dir>`, or remove them with `ip netns del` / `ip link del`",
            taken.join(", ")
        );
    }
    Ok(())
}

fn planned_links(layout: &Layout) -> impl Iterator<Item = &String> {
    layout
        .lans
        .iter()
        .map(|l| &l.bridge)
        .chain(&layout.wan_bridge)
        .chain(&layout.host_link)
        .chain(
            layout
                .vms
                .iter()
                .flat_map(|v| v.lan_link.iter().chain(&v.wan_link)),
        )
}

fn cidr(addr: Ipv4Addr) -> String {
    format!("{addr}/{SEGMENT_PREFIX}")
}

/// Creates the whole network of `layout` (see [`super`]), recording each piece in
/// `DIR/network.json` first.
pub fn create(paths: &LabPaths, layout: &Layout, topology: &Topology) -> anyhow::Result<Network> {
    let primary_dc = topology.primary_dc();
    let mut net = Network {
        layout: layout.clone(),
        created: Vec::new(),
        faults: Vec::new(),
    };
    net.save(paths)?;
    if layout.driver != Driver::Netns {
        return Ok(net);
    }
    for bridge in layout
        .lans
        .iter()
        .map(|l| &l.bridge)
        .chain(&layout.wan_bridge)
    {
        net.create(
            paths,
            Resource::Link(bridge.clone()),
            &[
                &["link", "add", bridge, "type", "bridge"],
                &["link", "set", bridge, "up"],
            ],
        )?;
    }
    let lan_of = |dc: &str| {
        layout
            .lans
            .iter()
            .find(|l| l.dc == dc)
            .map(|l| l.bridge.clone())
            .with_context(|| format!("no LAN for datacenter {dc}"))
    };
    if let Some(host) = &layout.host_link {
        let peer = format!("{host}-br");
        let bridge = lan_of(primary_dc)?;
        net.create(
            paths,
            Resource::Link(host.clone()),
            &[
                &["link", "add", host, "type", "veth", "peer", "name", &peer],
                &["link", "set", &peer, "master", &bridge, "up"],
                &["addr", "add", &cidr(HOST_ADDRESS), "dev", host],
                &["link", "set", host, "up"],
            ],
        )?;
    }
    for vm in &layout.vms {
        let Some(ns) = &vm.netns else { continue };
        net.create(
            paths,
            Resource::Netns(ns.clone()),
            &[
                &["netns", "add", ns],
                &["-n", ns, "link", "set", "lo", "up"],
            ],
        )?;
        let lan = lan_of(&vm.dc)?;
        let segments = [
            (vm.lan_link.as_ref(), Some(vm.lan), "eth0", Some(&lan)),
            (
                vm.wan_link.as_ref(),
                vm.wan,
                "eth1",
                layout.wan_bridge.as_ref(),
            ),
        ];
        for (link, addr, inside, bridge) in segments {
            let (Some(link), Some(addr), Some(bridge)) = (link, addr, bridge) else {
                continue;
            };
            net.create(
                paths,
                Resource::Link(link.clone()),
                &[
                    &[
                        "link", "add", link, "type", "veth", "peer", "name", inside, "netns", ns,
                    ],
                    &["link", "set", link, "master", bridge, "up"],
                    &["-n", ns, "addr", "add", &cidr(addr), "dev", inside],
                    &["-n", ns, "link", "set", inside, "up"],
                ],
            )?;
        }
    }
    federation_routes(layout, topology)?;
    Ok(net)
}

/// The one routed path between DCs besides the gateways' WAN: a secondary DC's servers join
/// the federation by dialling the primary DC's gateways (`primary_gateways`, as Consul's
/// servers do), through their own DC's first gateway VM, which forwards IP for this; the
/// primary's gateways route the answers back through it. Nothing else leaves a LAN.
fn federation_routes(layout: &Layout, topology: &Topology) -> anyhow::Result<()> {
    let primary_dc = topology.primary_dc();
    let first_gateway = |dc: &str| layout.vms.iter().find(|v| v.dc == dc && v.wan.is_some());
    let primary_gateways: Vec<&VmNet> = layout
        .vms
        .iter()
        .filter(|v| v.dc == primary_dc && v.wan.is_some())
        .collect();
    for lan in layout.lans.iter().filter(|l| l.dc != primary_dc) {
        let Some(gateway) = first_gateway(&lan.dc) else {
            continue;
        };
        let (Some(gateway_ns), Some(gateway_wan)) = (&gateway.netns, gateway.wan) else {
            continue;
        };
        ip(&[
            "netns",
            "exec",
            gateway_ns,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ])?;
        let servers = topology
            .vms
            .iter()
            .filter(|v| v.roles.server && v.dc == lan.dc);
        for server in servers.filter_map(|s| layout.vm(&s.name)) {
            let Some(server_ns) = &server.netns else {
                continue;
            };
            for primary in &primary_gateways {
                let (Some(primary_ns), Some(primary_wan)) = (&primary.netns, primary.wan) else {
                    continue;
                };
                ip(&[
                    "-n",
                    server_ns,
                    "route",
                    "add",
                    &format!("{primary_wan}/32"),
                    "via",
                    &gateway.lan.to_string(),
                ])?;
                ip(&[
                    "-n",
                    primary_ns,
                    "route",
                    "add",
                    &format!("{}/32", server.lan),
                    "via",
                    &gateway_wan.to_string(),
                ])?;
            }
        }
    }
    Ok(())
}

/// SIGKILLs every process still inside namespace `ns` (none once `down` stopped the recorded
/// process groups; a namespace already gone has none).
fn kill_inside(ns: &str) {
    let Ok(pids) = ip_output(&["netns", "pids", ns]) else {
        return;
    };
    // The lab starts every process as the leader of its own group: kill the group.
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
    {
        tracing::warn!(
            namespace = ns,
            pid,
            "killing a process the lab had not recorded"
        );
        let _ = crate::signal::signal_group(pid, crate::signal::Signal::Kill);
    }
}

/// Removes everything `network.json` records (last created first) and the file itself; what
/// is already gone is not an error. Returns how many namespaces and links were removed.
pub fn teardown(paths: &LabPaths) -> anyhow::Result<usize> {
    let Some(net) = Network::load(paths)? else {
        return Ok(0);
    };
    // A process the lab did not get to record (its own process killed between starting one
    // and writing state.json) still runs inside a namespace: `ip netns pids` finds it.
    for resource in &net.created {
        if let Resource::Netns(ns) = resource {
            kill_inside(ns);
        }
    }
    let mut removed = 0;
    let mut errors = Vec::new();
    for resource in net.created.iter().rev() {
        let (result, exists) = match resource {
            Resource::Netns(ns) => (
                ip(&["netns", "del", ns]),
                std::path::Path::new("/run/netns").join(ns).exists(),
            ),
            Resource::Link(link) => (
                ip(&["link", "del", link]),
                std::path::Path::new("/sys/class/net").join(link).exists(),
            ),
        };
        match result {
            Ok(()) => removed += 1,
            Err(e) if exists => errors.push(format!("{e:#}")),
            Err(_) => {}
        }
    }
    if !errors.is_empty() {
        bail!(
            "cannot remove part of the lab's network (kept in {} for the next `strait lab down`): {}",
            paths.network().display(),
            errors.join("; ")
        );
    }
    std::fs::remove_file(paths.network())
        .with_context(|| format!("cannot remove {}", paths.network().display()))?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_that_collide_with_the_plan() {
        let routes = "default via 192.0.2.1 dev eth0\n\
                      192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2\n\
                      10.0.0.0/8 via 192.0.2.9 dev eth0\n\
                      10.213.5.0/24 dev wg0\n\
                      10.214.0.0/16 dev wg1\n\
                      local 10.213.9.9 dev lo table local proto kernel scope host src 10.213.9.9\n\
                      broadcast 127.255.255.255 dev lo table local\n";
        assert_eq!(
            colliding_routes(routes),
            [
                "10.0.0.0/8 via 192.0.2.9 dev eth0",
                "10.213.5.0/24 dev wg0",
                "local 10.213.9.9 dev lo table local proto kernel scope host src 10.213.9.9",
            ]
        );
    }
}
