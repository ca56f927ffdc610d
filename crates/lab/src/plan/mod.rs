//! Topology -> process plan: which process runs on which VM, with which
//! arguments, environment, files and readiness URL, in start order. Pure (no
//! I/O, tokens passed in), so the whole lab layout is unit-tested; the
//! supervisor only executes it.

mod files;

#[cfg(test)]
mod ha_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::acl::{AclMode, LabAcl};
use crate::netns::{Driver, Layout};
use crate::paths::LabPaths;
use crate::topology::{
    DataPlane, ServiceKind, Topology, Vm, GATEWAY_PORT, GRPC_PORT, HTTP_API_PORT, SERVER_HTTPS_PORT,
};

/// What a process is, for ordering, progress lines, `lab stop|start` and what `lab up`
/// waits for. In state.json: `"server"`, `"agent"`, `"gateway"`, `"sidecar"`,
/// `{"app": "<app>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", from = "RoleInState")]
pub enum Role {
    Server,
    Agent,
    Gateway,
    /// A demo or command service (what `lab stop|start <service>` acts on).
    App(App),
    Sidecar,
}

/// Which application a [`Role::App`] process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum App {
    /// `strait demo counting`.
    Counting,
    /// `strait demo dashboard`: `lab up` waits until it reaches its upstream through the mesh.
    Dashboard,
    /// A user command (`kind = "command"` in the topology).
    Command,
    /// Read from a state.json written before apps recorded which app they run.
    Unrecorded,
}

/// [`Role`] as state.json holds it: the current form, or the bare `"app"` of a state
/// written before apps recorded which app they run (a lab started by an older strait must
/// still stop).
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RoleInState {
    Server,
    Agent,
    Gateway,
    App(App),
    Sidecar,
    #[serde(untagged)]
    Unrecorded(BareApp),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum BareApp {
    App,
}

impl From<RoleInState> for Role {
    fn from(role: RoleInState) -> Role {
        match role {
            RoleInState::Server => Role::Server,
            RoleInState::Agent => Role::Agent,
            RoleInState::Gateway => Role::Gateway,
            RoleInState::App(app) => Role::App(app),
            RoleInState::Sidecar => Role::Sidecar,
            RoleInState::Unrecorded(BareApp::App) => Role::App(App::Unrecorded),
        }
    }
}

/// Which executable to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Program {
    /// The strait binary itself (`STRAIT_BIN` or the running executable).
    Strait,
    /// A user command (`kind = "command"`), looked up in `PATH` if relative.
    Path(String),
}

/// A file the lab writes before starting a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: PathBuf,
    pub contents: String,
    /// Holds a token: written with mode 0600.
    pub secret: bool,
}

/// One supervised process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub vm: String,
    pub dc: String,
    /// Unique per VM: `server`, `agent`, `gateway`, `<service>`, `<service>-sidecar`.
    pub name: String,
    pub role: Role,
    /// For apps and sidecars: the service they belong to.
    pub service: Option<String>,
    pub program: Program,
    pub args: Vec<String>,
    /// Set on top of the lab's environment (demo variables are cleared first).
    pub env: Vec<(String, String)>,
    /// Written before start; not kept in state.json since they hold tokens.
    #[serde(skip)]
    pub files: Vec<FileSpec>,
    /// Created before start (data dirs, config dirs).
    pub dirs: Vec<PathBuf>,
    /// Ready once a GET here answers 200.
    pub ready_url: String,
    /// The address users care about (shown in progress and status).
    pub address: String,
    /// Every address the process will listen on (checked free before `up`).
    pub listens: Vec<SocketAddr>,
    pub log: PathBuf,
    /// The VM's network namespace (netns driver): the process runs in it (`ip netns exec`),
    /// and its readiness URL is probed from inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

impl ProcessSpec {
    /// The progress line's summary, e.g. `gateway ready (127.20.1.11:8443)`.
    pub fn ready_summary(&self) -> String {
        format!("{} ready ({})", self.name, self.address)
    }
}

/// Secrets of one lab run, generated fresh by each `lab up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// Shared by all servers of the federation.
    pub federation: String,
    /// Per DC: what agents present to join.
    pub join: BTreeMap<String, String>,
    /// ACL tokens, when the lab runs with ACLs ([`Tokens::with_acl`]).
    pub acl: Option<LabAcl>,
}

impl Tokens {
    /// 32 random bytes, hex-encoded, per token.
    pub fn generate(topology: &Topology) -> Tokens {
        let fresh = || {
            let mut bytes = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut bytes);
            hex::encode(bytes)
        };
        Tokens {
            federation: fresh(),
            join: topology
                .datacenters
                .iter()
                .map(|dc| (dc.name.clone(), fresh()))
                .collect(),
            acl: None,
        }
    }

    /// The same, with ACL tokens for `mode` (none with ACLs off).
    pub fn with_acl(mut self, topology: &Topology, mode: AclMode) -> Tokens {
        self.acl = LabAcl::generate(topology, mode);
        self
    }

    /// The `[acl]` table of a server (`primary`: it bootstraps with the management token;
    /// otherwise it replicates with it) or, with `agent`, of that agent.
    fn acl_toml(&self, primary: bool, agent: Option<&str>) -> Option<files::AclToml<'_>> {
        let acl = self.acl.as_ref()?;
        let management = Some(acl.management.as_str());
        let tokens = match agent {
            Some(vm) => files::AclTokensToml {
                agent: acl.agents.get(vm).map(String::as_str),
                ..Default::default()
            },
            None if primary => files::AclTokensToml {
                initial_management: management,
                ..Default::default()
            },
            None => files::AclTokensToml {
                replication: management,
                ..Default::default()
            },
        };
        Some(files::AclToml {
            enabled: true,
            default_policy: acl.default_policy,
            down_policy: "extend-cache",
            tokens,
        })
    }

    /// Gives a gateway's or sidecar's process its token: a 0600 file named by
    /// `STRAIT_HTTP_TOKEN_FILE` (state.json keeps the path, never the secret).
    fn give_token(&self, p: &mut ProcessSpec, paths: &LabPaths) {
        let Some(secret) = self.acl.as_ref().and_then(|a| a.proxy(&p.vm, &p.name)) else {
            return;
        };
        let path = paths.config(&p.vm, &format!("{}.token", p.name));
        p.env
            .push(("STRAIT_HTTP_TOKEN_FILE".into(), path.display().to_string()));
        p.files.push(FileSpec {
            path,
            contents: format!("{secret}\n"),
            secret: true,
        });
    }

    fn join(&self, dc: &str) -> String {
        self.join.get(dc).cloned().unwrap_or_default()
    }
}

/// The dashboards of a plan: `lab up` waits until each reaches its upstream through the mesh.
pub fn dashboards(plan: &[ProcessSpec]) -> impl Iterator<Item = &ProcessSpec> {
    plan.iter().filter(|p| p.role == Role::App(App::Dashboard))
}

fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// Where a VM's processes listen. Local driver: everything on the VM's loopback address.
/// Netns driver: as on a real VM: what only the VM itself uses (HTTP APIs, admin endpoints,
/// upstream listeners, apps behind their sidecar) on 127.0.0.1, what other VMs reach
/// (servers' mTLS API, gateways, sidecars' public ports) on the LAN address, gateways also
/// on the WAN address.
struct On<'a> {
    layout: &'a Layout,
}

impl On<'_> {
    fn netns(&self) -> bool {
        self.layout.driver == Driver::Netns
    }

    fn loopback(&self, vm: &Vm) -> Ipv4Addr {
        if self.netns() {
            Ipv4Addr::LOCALHOST
        } else {
            vm.address
        }
    }

    /// What other DCs' gateways dial.
    fn wan(&self, vm: &Vm) -> Ipv4Addr {
        self.layout
            .vm(&vm.name)
            .and_then(|v| v.wan)
            .unwrap_or(vm.address)
    }

    fn namespace(&self, vm: &Vm) -> Option<String> {
        self.layout.vm(&vm.name).and_then(|v| v.netns.clone())
    }
}

/// The start order: primary server -> primary gateways (agent + gateway) ->
/// per secondary DC: server, gateways -> agents of services VMs -> apps -> sidecars.
/// The local driver's plan (see [`plan_on`]).
pub fn plan(topology: &Topology, paths: &LabPaths, tokens: &Tokens) -> Vec<ProcessSpec> {
    plan_on(topology, paths, tokens, &Layout::local(topology))
}

/// The plan for a driver's [`Layout`]: the same processes, files and order with either
/// driver; only addresses (and the namespace each process runs in) differ.
pub fn plan_on(
    topology: &Topology,
    paths: &LabPaths,
    tokens: &Tokens,
    layout: &Layout,
) -> Vec<ProcessSpec> {
    let topology = &layout.readdress(topology);
    let on = &On { layout };
    let primary = topology.primary_dc();
    let mut dcs: Vec<&str> = vec![primary];
    dcs.extend(
        topology
            .datacenters
            .iter()
            .map(|d| d.name.as_str())
            .filter(|d| *d != primary),
    );
    let primary_gateways: Vec<SocketAddr> = topology
        .vms_in(primary)
        .filter(|vm| vm.roles.gateway)
        .map(|vm| addr(on.wan(vm), GATEWAY_PORT))
        .collect();

    let mut out = Vec::new();
    for dc in &dcs {
        for vm in topology.servers_in(dc) {
            let gateways = if *dc == primary {
                &[][..]
            } else {
                &primary_gateways[..]
            };
            out.push(server(on, topology, vm, paths, tokens, gateways));
        }
        for vm in topology.vms_in(dc).filter(|vm| vm.roles.gateway) {
            out.push(agent(on, topology, vm, paths, tokens));
            let mut gw = gateway(on, vm, paths);
            tokens.give_token(&mut gw, paths);
            out.push(gw);
        }
    }
    let services_vms = || {
        dcs.iter()
            .flat_map(|dc| topology.vms_in(dc))
            .filter(|vm| vm.roles.services)
    };
    for vm in services_vms().filter(|vm| !vm.roles.gateway) {
        out.push(agent(on, topology, vm, paths, tokens));
    }
    for vm in services_vms() {
        for service in &vm.services {
            out.push(app(on, vm, service, paths));
        }
    }
    for vm in services_vms() {
        for (index, service) in vm.services.iter().enumerate() {
            let mut proxy = sidecar(on, vm, index, service, paths);
            tokens.give_token(&mut proxy, paths);
            out.push(proxy);
        }
    }
    out
}

/// How `lab up` starts `plan`: groups of consecutive processes, each group started at once
/// and then waited for. A DC's servers form one group: a server of a cluster is ready only
/// once the cluster has formed, so they must all be running before any is waited for.
/// Every other process is a group of its own (started once the one before it is ready).
pub fn start_groups(plan: &[ProcessSpec]) -> Vec<std::ops::Range<usize>> {
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, p) in plan.iter().enumerate() {
        let joins_previous = i > 0
            && p.role == Role::Server
            && plan[i - 1].role == Role::Server
            && plan[i - 1].dc == p.dc;
        match groups.last_mut() {
            Some(group) if joins_previous => group.end = i + 1,
            _ => groups.push(i..i + 1),
        }
    }
    groups
}

fn base(on: &On<'_>, vm: &Vm, name: &str, role: Role, paths: &LabPaths) -> ProcessSpec {
    ProcessSpec {
        vm: vm.name.clone(),
        dc: vm.dc.clone(),
        name: name.to_owned(),
        role,
        service: None,
        program: Program::Strait,
        args: Vec::new(),
        env: Vec::new(),
        files: Vec::new(),
        dirs: Vec::new(),
        ready_url: String::new(),
        address: String::new(),
        listens: Vec::new(),
        log: paths.log(&vm.name, name),
        netns: on.namespace(vm),
    }
}

/// `strait <name> --config <config>`, the config written (0600: it holds tokens) first.
fn configured(
    on: &On<'_>,
    vm: &Vm,
    name: &str,
    role: Role,
    paths: &LabPaths,
    config: PathBuf,
    contents: String,
) -> ProcessSpec {
    let mut p = base(on, vm, name, role, paths);
    p.args = vec![name.into(), "--config".into(), config.display().to_string()];
    p.files.push(FileSpec {
        path: config,
        contents,
        secret: true,
    });
    p
}

fn server(
    on: &On<'_>,
    topology: &Topology,
    vm: &Vm,
    paths: &LabPaths,
    tokens: &Tokens,
    primary_gateways: &[SocketAddr],
) -> ProcessSpec {
    let https = addr(vm.address, SERVER_HTTPS_PORT);
    let http = addr(on.loopback(vm), HTTP_API_PORT);
    let cluster = server_addrs(topology, &vm.dc);
    let retry_join: Vec<SocketAddr> = cluster.iter().copied().filter(|a| *a != https).collect();
    let config = paths.config(&vm.name, "server.toml");
    let data = paths.data(&vm.name, "server");
    let contents = files::server_toml(&files::ServerToml {
        datacenter: &vm.dc,
        primary_datacenter: topology.primary_dc(),
        node_name: &vm.name,
        data_dir: &data,
        https_addr: https,
        http_addr: http,
        join_token: &tokens.join(&vm.dc),
        federation_token: &tokens.federation,
        primary_gateways,
        bootstrap_expect: cluster.len(),
        retry_join: &retry_join,
        acl: tokens.acl_toml(vm.dc == topology.primary_dc(), None),
    });
    let mut p = configured(on, vm, "server", Role::Server, paths, config, contents);
    p.dirs.push(data);
    p.ready_url = format!("http://{http}/v1/status/ready");
    p.address = https.to_string();
    p.listens = vec![https, http];
    p
}

fn agent(
    on: &On<'_>,
    topology: &Topology,
    vm: &Vm,
    paths: &LabPaths,
    tokens: &Tokens,
) -> ProcessSpec {
    let http = addr(on.loopback(vm), HTTP_API_PORT);
    let config = paths.config(&vm.name, "agent.toml");
    let data = paths.data(&vm.name, "agent");
    let config_dir = paths.agent_config_dir(&vm.name);
    let servers = server_addrs(topology, &vm.dc);
    let contents = files::agent_toml(&files::AgentToml {
        datacenter: &vm.dc,
        node_name: &vm.name,
        data_dir: &data,
        advertise_addr: vm.address,
        http_addr: http,
        servers: &servers,
        join_token: &tokens.join(&vm.dc),
        config_dir: &config_dir,
        grpc_addr: envoy_ads(on, vm),
        acl: tokens.acl_toml(false, Some(&vm.name)),
    });
    let mut p = configured(on, vm, "agent", Role::Agent, paths, config, contents);
    for service in &vm.services {
        p.files.push(FileSpec {
            path: config_dir.join(format!("{}.json", service.name)),
            contents: files::service_definition(vm, service, on.loopback(vm)),
            secret: false,
        });
    }
    p.dirs = vec![data, config_dir];
    p.ready_url = format!("http://{http}/v1/agent/ready");
    p.address = http.to_string();
    p.listens = vec![http];
    p.listens.extend(envoy_ads(on, vm));
    p
}

/// The mTLS API of every server of `dc`: what agents list as `servers`, and each server's
/// cluster (its `retry_join` is the others).
fn server_addrs(topology: &Topology, dc: &str) -> Vec<SocketAddr> {
    topology
        .servers_in(dc)
        .map(|v| addr(v.address, SERVER_HTTPS_PORT))
        .collect()
}

/// The agent's ADS address, on VMs whose proxies are Envoy.
fn envoy_ads(on: &On<'_>, vm: &Vm) -> Option<SocketAddr> {
    (vm.data_plane() == DataPlane::Envoy).then(|| addr(on.loopback(vm), GRPC_PORT))
}

/// `strait envoy run` in place of `strait gateway` / `strait proxy`: the same proxy,
/// configured by the agent over ADS. `kind` is `--gateway mesh ...` or `--sidecar-for S`.
fn envoy_args(on: &On<'_>, vm: &Vm, kind: &[&str], admin: SocketAddr) -> Vec<String> {
    let grpc = addr(on.loopback(vm), GRPC_PORT).to_string();
    let agent = addr(on.loopback(vm), HTTP_API_PORT).to_string();
    let mut args = vec!["envoy", "run"];
    args.extend_from_slice(kind);
    let admin = admin.to_string();
    args.extend(["--agent", &agent, "--grpc", &grpc, "--admin", &admin]);
    // One worker per Envoy: a lab runs many of them on one machine.
    args.extend(["--", "--concurrency", "1"]);
    args.into_iter().map(String::from).collect()
}

fn gateway(on: &On<'_>, vm: &Vm, paths: &LabPaths) -> ProcessSpec {
    let agent = addr(on.loopback(vm), HTTP_API_PORT);
    let listen = addr(vm.address, GATEWAY_PORT);
    let wan = addr(on.wan(vm), GATEWAY_PORT);
    let admin = addr(on.loopback(vm), vm.gateway_admin_port());
    let mut p = base(on, vm, "gateway", Role::Gateway, paths);
    let address = listen.to_string();
    let wan_address = wan.to_string();
    let envoy = [
        "--gateway",
        "mesh",
        "--address",
        &address,
        "--wan-address",
        &wan_address,
    ];
    p.args = [
        "gateway",
        "--mesh",
        "--agent",
        &agent.to_string(),
        "--address",
        &listen.to_string(),
        "--wan-address",
        &wan_address,
        "--admin",
        &admin.to_string(),
    ]
    .map(String::from)
    .to_vec();
    if vm.data_plane() == DataPlane::Envoy {
        p.args = envoy_args(on, vm, &envoy, admin);
    }
    p.ready_url = format!("http://{admin}/ready");
    p.address = listen.to_string();
    p.listens = vec![listen, admin];
    if wan != listen {
        p.listens.push(wan);
    }
    p
}

fn app(on: &On<'_>, vm: &Vm, service: &crate::topology::Service, paths: &LabPaths) -> ProcessSpec {
    let local = addr(on.loopback(vm), service.port);
    let app = match &service.kind {
        ServiceKind::Counting => App::Counting,
        ServiceKind::Dashboard => App::Dashboard,
        ServiceKind::Command { .. } => App::Command,
    };
    // In a namespace, apps are reached through their sidecar on 127.0.0.1, except dashboards,
    // which people open from the host: they also answer on the LAN address.
    let (bind, listen) = if on.netns() && app == App::Dashboard {
        (Ipv4Addr::UNSPECIFIED, addr(vm.address, service.port))
    } else {
        (on.loopback(vm), local)
    };
    let mut p = base(on, vm, &service.name, Role::App(app), paths);
    p.service = Some(service.name.clone());
    p.env = vec![
        ("PORT".into(), service.port.to_string()),
        ("BIND_ADDR".into(), bind.to_string()),
        ("STRAIT_HOSTNAME".into(), vm.name.clone()),
    ];
    match &service.kind {
        ServiceKind::Counting => p.args = vec!["demo".into(), "counting".into()],
        ServiceKind::Dashboard => {
            p.args = vec!["demo".into(), "dashboard".into()];
            // Validation guarantees a dashboard has an upstream; it shows the first.
            if let Some(up) = service.upstreams.first() {
                let url = format!("http://{}", addr(on.loopback(vm), up.local_bind_port));
                p.env.push(("COUNTING_SERVICE_URL".into(), url));
            }
        }
        ServiceKind::Command { argv } => {
            p.program = Program::Path(argv.first().cloned().unwrap_or_default());
            p.args = argv.iter().skip(1).cloned().collect();
        }
    }
    p.ready_url = format!("http://{local}{}", service.check_path);
    p.address = listen.to_string();
    p.listens = vec![listen];
    p
}

fn sidecar(
    on: &On<'_>,
    vm: &Vm,
    index: usize,
    service: &crate::topology::Service,
    paths: &LabPaths,
) -> ProcessSpec {
    let agent = addr(on.loopback(vm), HTTP_API_PORT);
    let admin = addr(on.loopback(vm), vm.sidecar_admin_port(index));
    let public = addr(vm.address, service.sidecar_port);
    let mut p = base(
        on,
        vm,
        &format!("{}-sidecar", service.name),
        Role::Sidecar,
        paths,
    );
    p.service = Some(service.name.clone());
    p.args = [
        "proxy",
        "--sidecar-for",
        &service.name,
        "--agent",
        &agent.to_string(),
        "--admin",
        &admin.to_string(),
    ]
    .map(String::from)
    .to_vec();
    if vm.data_plane() == DataPlane::Envoy {
        p.args = envoy_args(on, vm, &["--sidecar-for", &service.name], admin);
    }
    p.ready_url = format!("http://{admin}/ready");
    p.address = public.to_string();
    p.listens = vec![public, admin];
    p.listens.extend(
        service
            .upstreams
            .iter()
            .map(|u| addr(on.loopback(vm), u.local_bind_port)),
    );
    p
}
