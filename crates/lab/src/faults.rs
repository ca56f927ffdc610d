//! Faults on demand.
//!
//! Network faults (netns driver only; recorded in `DIR/network.json` before they are applied,
//! shown by `lab status`):
//! - `partition <dcA> <dcB>` / `heal [<dcA> <dcB>]`: in every gateway VM of each DC, policy
//!   rules (`ip rule add to <prefix> blackhole`) drop what goes to the other DC: its gateways'
//!   WAN addresses and its LAN (the routed federation path of [`crate::netns::setup`]). Rules
//!   sit in front of every route, so no route is changed and `heal` deletes exactly what
//!   `partition` added; no process is restarted.
//! - `isolate <vm>` / `rejoin <vm>`: the host ends of the VM's veths go down / up: the VM
//!   keeps its addresses and processes but loses every network except its loopback.
//!
//! Process faults (both drivers): `kill <vm>` (SIGKILL every process of the VM; `lab start`
//! restarts apps, gateways and sidecars), `pause <vm>` / `resume <vm>` (SIGSTOP / SIGCONT).

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::netns::setup::{ip, Network};
use crate::netns::{Driver, Layout, VmNet, SEGMENT_PREFIX};
use crate::paths::LabPaths;
use crate::signal::{self, Signal};
use crate::state::LabState;

/// A network fault in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// WAN traffic between the gateways of two DCs is dropped (names in sorted order).
    Partition(String, String),
    /// The VM is off every network.
    Isolate(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Partition(a, b) => write!(f, "partition {a} {b}"),
            Fault::Isolate(vm) => write!(f, "isolate {vm}"),
        }
    }
}

/// The lab's network, which must be the netns driver's for network faults.
fn netns_network(paths: &LabPaths, verb: &str) -> anyhow::Result<Network> {
    let Some(network) = Network::load(paths)? else {
        bail!(
            "no lab in {}; start one with `strait lab up --driver netns`",
            paths.root().display()
        );
    };
    if network.layout.driver != Driver::Netns {
        bail!(
            "`strait lab {verb}` needs a lab started with `--driver netns` (this lab runs the {} driver, where every VM shares the loopback)",
            network.layout.driver.as_str()
        );
    }
    Ok(network)
}

fn require_dc(layout: &Layout, dc: &str) -> anyhow::Result<()> {
    if layout.lans.iter().any(|l| l.dc == dc) {
        return Ok(());
    }
    let names: Vec<&str> = layout.lans.iter().map(|l| l.dc.as_str()).collect();
    bail!(
        "no datacenter {dc:?} in the lab (datacenters: {})",
        names.join(", ")
    )
}

fn require_vm<'a>(layout: &'a Layout, vm: &str) -> anyhow::Result<&'a VmNet> {
    layout.vm(vm).with_context(|| {
        let names: Vec<&str> = layout.vms.iter().map(|v| v.vm.as_str()).collect();
        format!("no VM {vm:?} in the lab (VMs: {})", names.join(", "))
    })
}

/// Per gateway namespace of `from`, the prefixes of `to` it must drop.
fn partition_rules(layout: &Layout, from: &str, to: &str) -> Vec<(String, String)> {
    let mut prefixes: Vec<String> = layout
        .vms
        .iter()
        .filter(|v| v.dc == to)
        .filter_map(|v| v.wan)
        .map(|wan| format!("{wan}/32"))
        .collect();
    prefixes.extend(
        layout
            .lans
            .iter()
            .filter(|l| l.dc == to)
            .map(|l| format!("{}/{SEGMENT_PREFIX}", l.network)),
    );
    layout
        .vms
        .iter()
        .filter(|v| v.dc == from && v.wan.is_some())
        .filter_map(|v| v.netns.clone())
        .flat_map(|ns| prefixes.iter().map(move |p| (ns.clone(), p.clone())))
        .collect()
}

fn both_ways(layout: &Layout, a: &str, b: &str) -> Vec<(String, String)> {
    let mut rules = partition_rules(layout, a, b);
    rules.extend(partition_rules(layout, b, a));
    rules
}

fn pair(a: &str, b: &str) -> Fault {
    if a <= b {
        Fault::Partition(a.to_owned(), b.to_owned())
    } else {
        Fault::Partition(b.to_owned(), a.to_owned())
    }
}

pub fn partition(paths: &LabPaths, a: &str, b: &str) -> anyhow::Result<()> {
    let mut network = netns_network(paths, "partition")?;
    require_dc(&network.layout, a)?;
    require_dc(&network.layout, b)?;
    if a == b {
        bail!("cannot partition {a} from itself");
    }
    let fault = pair(a, b);
    if network.faults.contains(&fault) {
        println!("{a} and {b} are already partitioned");
        return Ok(());
    }
    network.faults.push(fault);
    network.save(paths)?;
    for (ns, prefix) in both_ways(&network.layout, a, b) {
        ip(&["-n", &ns, "rule", "add", "to", &prefix, "blackhole"])?;
    }
    println!("partitioned {a} and {b}: WAN traffic between their gateways is dropped (`strait lab heal {a} {b}` restores it)");
    Ok(())
}

/// Heals the partition between `a` and `b`, or every partition.
pub fn heal(paths: &LabPaths, dcs: Option<(&str, &str)>) -> anyhow::Result<()> {
    let mut network = netns_network(paths, "heal")?;
    let healing: Vec<Fault> = match dcs {
        Some((a, b)) => {
            require_dc(&network.layout, a)?;
            require_dc(&network.layout, b)?;
            let fault = pair(a, b);
            if !network.faults.contains(&fault) {
                println!("{a} and {b} are not partitioned");
                return Ok(());
            }
            vec![fault]
        }
        None => network
            .faults
            .iter()
            .filter(|f| matches!(f, Fault::Partition(..)))
            .cloned()
            .collect(),
    };
    for fault in &healing {
        let Fault::Partition(a, b) = fault else {
            continue;
        };
        for (ns, prefix) in both_ways(&network.layout, a, b) {
            ip(&["-n", &ns, "rule", "del", "to", &prefix, "blackhole"])?;
        }
        network.faults.retain(|f| f != fault);
        network.save(paths)?;
        println!("healed {a} and {b}");
    }
    if healing.is_empty() {
        println!("no partition in force");
    }
    Ok(())
}

fn set_links(vm: &VmNet, state: &str) -> anyhow::Result<()> {
    for link in vm.lan_link.iter().chain(&vm.wan_link) {
        ip(&["link", "set", link, state])?;
    }
    Ok(())
}

pub fn isolate(paths: &LabPaths, vm: &str) -> anyhow::Result<()> {
    let mut network = netns_network(paths, "isolate")?;
    let net = require_vm(&network.layout, vm)?.clone();
    let fault = Fault::Isolate(vm.to_owned());
    if !network.faults.contains(&fault) {
        network.faults.push(fault);
        network.save(paths)?;
    }
    set_links(&net, "down")?;
    println!("isolated {vm}: it has no network but its loopback (`strait lab rejoin {vm}`)");
    Ok(())
}

pub fn rejoin(paths: &LabPaths, vm: &str) -> anyhow::Result<()> {
    let mut network = netns_network(paths, "rejoin")?;
    let net = require_vm(&network.layout, vm)?.clone();
    set_links(&net, "up")?;
    network
        .faults
        .retain(|f| f != &Fault::Isolate(vm.to_owned()));
    network.save(paths)?;
    println!("{vm} rejoined its network");
    Ok(())
}

/// What `kill`, `pause` and `resume` do to a VM's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessFault {
    Kill,
    Pause,
    Resume,
}

impl ProcessFault {
    fn signal(self) -> Signal {
        match self {
            ProcessFault::Kill => Signal::Kill,
            ProcessFault::Pause => Signal::Stop,
            ProcessFault::Resume => Signal::Cont,
        }
    }

    fn done(self) -> &'static str {
        match self {
            ProcessFault::Kill => "killed (SIGKILL)",
            ProcessFault::Pause => "paused (SIGSTOP)",
            ProcessFault::Resume => "resumed (SIGCONT)",
        }
    }
}

/// Signals every live process group of `vm`.
pub fn signal_vm(paths: &LabPaths, vm: &str, fault: ProcessFault) -> anyhow::Result<()> {
    let mut state = LabState::require(paths)?;
    if !state.processes.iter().any(|p| p.spec.vm == vm) {
        let mut names: Vec<&str> = state.processes.iter().map(|p| p.spec.vm.as_str()).collect();
        names.dedup();
        bail!("no VM {vm:?} in the lab (VMs: {})", names.join(", "));
    }
    let mut names = Vec::new();
    for record in state.processes.iter_mut().filter(|p| p.spec.vm == vm) {
        let Some(group) = record.group().filter(|_| record.is_alive()) else {
            continue;
        };
        signal::signal_group(group, fault.signal()).with_context(|| {
            format!("cannot signal {} on {vm} (group {group})", record.spec.name)
        })?;
        names.push(record.spec.name.clone());
    }
    if fault == ProcessFault::Kill {
        // Groups die asynchronously; wait so that `lab status` right after shows them gone.
        let groups: Vec<u32> = state
            .processes
            .iter()
            .filter(|p| p.spec.vm == vm)
            .filter_map(|p| p.group())
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while groups
            .iter()
            .any(|&g| !crate::procfs::group_members(g).is_empty())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        state.save(paths)?;
    }
    if names.is_empty() {
        println!("no process of {vm} is running");
    } else {
        println!("{} on {vm}: {}", fault.done(), names.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::setup;
    use crate::topology::Topology;

    #[test]
    fn partition_rules_drop_the_other_dcs_wan_and_lan_in_each_gateway() {
        let topology = Topology::builtin().expect("default");
        let layout = Layout::netns(&topology).expect("fits");
        assert_eq!(
            both_ways(&layout, "dc1", "dc2"),
            [
                ("strait-primary-gateway".into(), "10.213.0.11/32".into()),
                ("strait-primary-gateway".into(), "10.213.2.0/24".into()),
                ("strait-secondary-gateway".into(), "10.213.0.10/32".into()),
                ("strait-secondary-gateway".into(), "10.213.1.0/24".into()),
            ]
        );
        assert_eq!(pair("dc2", "dc1"), pair("dc1", "dc2"));
        assert_eq!(pair("dc2", "dc1").to_string(), "partition dc1 dc2");
    }

    #[test]
    fn network_verbs_need_the_netns_driver() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = LabPaths::new(dir.path()).expect("paths");
        let topology = Topology::builtin().expect("default");
        setup::create(&paths, &Layout::local(&topology), &topology).expect("local");
        for err in [
            partition(&paths, "dc1", "dc2").expect_err("local"),
            isolate(&paths, "primary-server").expect_err("local"),
        ] {
            assert!(err.to_string().contains("--driver netns"), "{err}");
        }
    }
}
