//! Where a lab's agents and servers answer HTTP, recorded in `DIR/state.json` by `lab up`
//! (before the first process starts) so that the commands for humans (`strait members`,
//! `catalog`, `intention`, `doctor`) find the mesh from the lab directory without address
//! flags. Which agent or server a command asks is decided here, in one place:
//!
//! - a command about the mesh as a whole: the first VM of the primary DC that runs an agent
//!   (topology order; in the default lab `primary-gateway`);
//! - a command about one service (`doctor --service S`): the agent of the first VM running S,
//!   VMs of the primary DC first, else as above;
//! - `intention`: the first server of the primary DC (its writes go through it; `--dc`
//!   forwards through the gateways).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::paths::LabPaths;
use crate::state::LabState;
use crate::topology::{Topology, HTTP_API_PORT};

/// One agent or server of the lab and its plain loopback HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub vm: String,
    pub dc: String,
    pub http: SocketAddr,
    /// Agents: the services of the VM (the doctor asks the agent of the service it checks).
    #[serde(default)]
    pub services: Vec<String>,
    /// With the netns driver: the VM's network namespace, inside which `http` (its own
    /// loopback) answers; the host cannot reach it, so commands re-run themselves there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

/// The lab's agents and servers, in topology order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub primary_dc: String,
    pub agents: Vec<Endpoint>,
    pub servers: Vec<Endpoint>,
}

impl Endpoints {
    /// The HTTP APIs the plan gives the topology's agents and servers.
    pub fn of(topology: &Topology) -> Endpoints {
        let http = |ip: Ipv4Addr| SocketAddr::V4(SocketAddrV4::new(ip, HTTP_API_PORT));
        let endpoints = |agents: bool| {
            topology
                .vms
                .iter()
                .filter(|vm| {
                    if agents {
                        vm.runs_agent()
                    } else {
                        vm.roles.server
                    }
                })
                .map(|vm| Endpoint {
                    vm: vm.name.clone(),
                    dc: vm.dc.clone(),
                    http: http(vm.address),
                    services: if agents {
                        vm.services.iter().map(|s| s.name.clone()).collect()
                    } else {
                        Vec::new()
                    },
                    netns: None,
                })
                .collect()
        };
        Endpoints {
            primary_dc: topology.primary_dc().to_owned(),
            agents: endpoints(true),
            servers: endpoints(false),
        }
    }

    /// With the netns driver every API is the VM's own `127.0.0.1:8500`, inside its namespace.
    pub fn in_namespaces(mut self) -> Endpoints {
        let loopback = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, HTTP_API_PORT));
        for e in self.agents.iter_mut().chain(self.servers.iter_mut()) {
            e.netns = Some(crate::netns::namespace(&e.vm));
            e.http = loopback;
        }
        self
    }

    /// `all` with the primary DC's first, each group in topology order.
    fn primary_first<'a>(&'a self, all: &'a [Endpoint]) -> impl Iterator<Item = &'a Endpoint> {
        let primary = all.iter().filter(|e| e.dc == self.primary_dc);
        primary.chain(all.iter().filter(|e| e.dc != self.primary_dc))
    }

    /// The agent a command about the whole mesh asks.
    pub fn agent(&self) -> Option<&Endpoint> {
        self.primary_first(&self.agents).next()
    }

    /// The agent of the VM running `service`; `None` if no VM of the lab runs it.
    pub fn agent_of(&self, service: &str) -> Option<&Endpoint> {
        self.primary_first(&self.agents)
            .find(|e| e.services.iter().any(|s| s == service))
    }

    /// The server `strait intention` talks to.
    pub fn server(&self) -> Option<&Endpoint> {
        self.primary_first(&self.servers).next()
    }
}

/// What a lab directory holds, for the commands that look for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No `state.json` in the directory.
    NoLab,
    /// A lab was started here, but none of its processes is alive (`lab down`, or crashed).
    NotRunning,
    /// A lab started by a `strait` without this record: its addresses are unknown.
    NoRecord,
    /// A running lab.
    Running(Endpoints),
}

/// Reads the lab in `dir` (relative to the current directory). Errors only for a state file
/// that exists but cannot be read.
pub fn find(dir: &Path) -> anyhow::Result<(PathBuf, Found)> {
    let paths = LabPaths::new(dir)?;
    let root = paths.root().to_owned();
    let found = match LabState::load(&paths)? {
        None => Found::NoLab,
        Some(state) if !state.any_alive() => Found::NotRunning,
        Some(LabState {
            endpoints: None, ..
        }) => Found::NoRecord,
        Some(LabState {
            endpoints: Some(endpoints),
            ..
        }) => Found::Running(endpoints),
    };
    Ok((root, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lab_picks_primary_agent_service_agent_and_primary_server() {
        let e = Endpoints::of(&Topology::builtin().expect("default"));
        assert_eq!(e.primary_dc, "dc1");
        assert_eq!(
            e.agent().map(|a| (a.vm.as_str(), a.http.to_string())),
            Some(("primary-gateway", "127.20.1.11:8500".into()))
        );
        let http = |e: Option<&Endpoint>| e.map(|e| e.http.to_string());
        assert_eq!(
            http(e.agent_of("dashboard")),
            Some("127.20.1.12:8500".into())
        );
        assert_eq!(
            http(e.agent_of("counting")),
            Some("127.20.2.12:8500".into())
        );
        assert_eq!(http(e.agent_of("nope")), None);
        assert_eq!(http(e.server()), Some("127.20.1.10:8500".into()));
        assert_eq!(e.agents.len(), 4);
        assert_eq!(e.servers.len(), 2);
    }

    #[test]
    fn primary_dc_first_whatever_the_file_order() {
        let text = crate::topology::DEFAULT_TOPOLOGY
            .replace("name = \"dc1\"\nprimary = true", "name = \"dc1\"")
            .replace("name = \"dc2\"", "name = \"dc2\"\nprimary = true");
        let e = Endpoints::of(&Topology::parse(&text, "t").expect("valid"));
        assert_eq!(e.agent().map(|a| a.vm.as_str()), Some("secondary-gateway"));
        assert_eq!(e.server().map(|s| s.vm.as_str()), Some("secondary-server"));
    }

    #[test]
    fn find_tells_no_lab_from_a_stopped_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(find(dir.path()).expect("find").1, Found::NoLab);
        let paths = LabPaths::new(dir.path()).expect("paths");
        let mut state = LabState {
            endpoints: Some(Endpoints::of(&Topology::builtin().expect("default"))),
            ..LabState::default()
        };
        state.save(&paths).expect("save");
        assert_eq!(find(dir.path()).expect("find").1, Found::NotRunning);

        let topology = Topology::builtin().expect("default");
        let tokens = crate::plan::Tokens::generate(&topology);
        let spec = crate::plan::plan(&topology, &paths, &tokens).remove(0);
        state.processes.push(crate::state::ProcessRecord {
            spec,
            pid: Some(std::process::id()),
            start_time: None,
            started_at: None,
            stopped: false,
        });
        state.save(&paths).expect("save");
        let (root, found) = find(dir.path()).expect("find");
        assert_eq!(root, dir.path());
        assert!(matches!(found, Found::Running(e) if e.agents.len() == 4));
        state.endpoints = None;
        state.save(&paths).expect("save");
        assert_eq!(find(dir.path()).expect("find").1, Found::NoRecord);
    }
}
