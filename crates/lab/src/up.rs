//! `strait lab up`: topology -> plan -> start every process in dependency
//! order, waiting for each to be ready before the next, with one progress line
//! per step. The state is saved after every start, so `strait lab down` can
//! clean up after a failed or interrupted `up`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::netns::{setup, Driver, Layout};
use crate::paths::LabPaths;
use crate::plan::{self, ProcessSpec, Role, Tokens};
use crate::state::{self, LabState, Lock};
use crate::supervisor;
use crate::topology::{DataPlane, Topology, DEFAULT_ORIGIN, DEFAULT_TOPOLOGY};

/// What `up` needs besides the lab directory.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// `None`: the built-in two-DC demo.
    pub topology: Option<PathBuf>,
    /// Deadline for each process to become ready.
    pub step_timeout: Duration,
    /// The command that stops this lab, for messages.
    pub down_command: String,
    /// Data plane of VMs whose topology entry names none.
    pub proxy: DataPlane,
    /// Loopback addresses (local) or a network namespace per VM (netns).
    pub driver: Driver,
    /// ACLs on (with which default policy) or off.
    pub acl: crate::acl::AclMode,
}

/// Reads the topology file (or the default) and validates it; errors are configuration
/// errors (exit status 78).
pub fn load_topology(file: Option<&PathBuf>) -> anyhow::Result<(Topology, String, String)> {
    use strait_systemd::lifecycle::ExitContext;
    read_topology(file).bad_config()
}

fn read_topology(file: Option<&PathBuf>) -> anyhow::Result<(Topology, String, String)> {
    let builtin = file.and_then(|path| {
        let name = path.to_str()?;
        let text = crate::topology::Topology::builtin_text(name)?;
        (!path.exists()).then_some((name, text))
    });
    if let Some((name, text)) = builtin {
        let origin = format!("<built-in topology {name}>");
        let topology = Topology::parse(text, &origin)?;
        return Ok((topology, text.to_owned(), origin));
    }
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read topology file {}", path.display()))?;
            let origin = path.display().to_string();
            let topology = Topology::parse(&text, &origin)?;
            Ok((topology, text, origin))
        }
        None => Ok((
            Topology::builtin()?,
            DEFAULT_TOPOLOGY.to_owned(),
            DEFAULT_ORIGIN.to_owned(),
        )),
    }
}

/// Every listener of the plan must be free before anything starts, so a port
/// taken by another program is reported up front, not as a crash at step 9.
fn check_addresses_free(plan: &[ProcessSpec]) -> anyhow::Result<()> {
    for spec in plan {
        for addr in &spec.listens {
            if let Err(e) = TcpListener::bind(addr) {
                let hint = if e.kind() == std::io::ErrorKind::AddrNotAvailable {
                    "the local driver needs the whole 127.0.0.0/8 routed to the loopback device (Linux does this by default)"
                } else {
                    "is another lab or program using it? (`strait lab status`, `ss -ltnp`)"
                };
                bail!(
                    "cannot listen on {addr}, needed by {} on {}: {e}; {hint}",
                    spec.name,
                    spec.vm
                );
            }
        }
    }
    Ok(())
}

/// Removes what a previous (stopped) lab left: its network, VM files and state.
fn clear_previous(paths: &LabPaths) -> anyhow::Result<()> {
    if setup::teardown(paths)? > 0 {
        println!("removed the previous lab's network namespaces and links");
    }
    let vms = paths.vms();
    if vms.exists() {
        println!("removing the previous lab's files in {}", vms.display());
        std::fs::remove_dir_all(&vms)
            .with_context(|| format!("cannot remove {}", vms.display()))?;
    }
    match std::fs::remove_file(paths.state()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", paths.state().display()))
        }
        _ => Ok(()),
    }
}

pub async fn up(paths: &LabPaths, options: &UpOptions) -> anyhow::Result<()> {
    let (topology, text, origin) = load_topology(options.topology.as_ref())?;
    let topology = topology.with_default_proxy(options.proxy);
    let layout = match options.driver {
        Driver::Local => Layout::local(&topology),
        Driver::Netns => {
            setup::require_root()?;
            use strait_systemd::lifecycle::ExitContext;
            Layout::netns(&topology).bad_config()?
        }
    };
    std::fs::create_dir_all(paths.root())
        .with_context(|| format!("cannot create lab directory {}", paths.root().display()))?;
    Lock::acquire(paths, &options.down_command)?;
    let Err(error) = start_all(paths, options, &topology, &layout, &text, &origin).await else {
        return Ok(());
    };
    let state = LabState::load(paths).ok().flatten();
    let last_vm = state
        .as_ref()
        .and_then(|s| s.processes.last())
        .map_or_else(String::new, |p| format!(" {}", p.spec.vm));
    if state.is_some_and(|s| s.any_alive()) {
        Err(error.context(format!(
            "the lab is partly up: inspect it with `strait lab status` and `strait lab logs{last_vm}`, stop it with `{}`",
            options.down_command
        )))
    } else {
        // Nothing is left running: remove the network and free the directory for the next try.
        setup::teardown(paths)?;
        Lock::release(paths)?;
        Err(error.context("`strait lab up` failed; nothing is left running"))
    }
}

async fn start_all(
    paths: &LabPaths,
    options: &UpOptions,
    topology: &Topology,
    layout: &Layout,
    text: &str,
    origin: &str,
) -> anyhow::Result<()> {
    clear_previous(paths)?;
    state::write_file(&paths.topology(), text.as_bytes(), false)?;
    let tokens = Tokens::generate(topology).with_acl(topology, options.acl);
    let plan = plan::plan_on(topology, paths, &tokens, layout);
    match layout.driver {
        Driver::Local => check_addresses_free(&plan)?,
        Driver::Netns => setup::check_host(layout)?,
    }
    let strait = supervisor::strait_bin()?;
    if plan.iter().any(|p| p.program == plan::Program::Strait) && !strait.is_file() {
        bail!(
            "strait executable {} not found (set STRAIT_BIN)",
            strait.display()
        );
    }
    // The units a VM of this topology would run, beside the configs they name.
    crate::units::write(&plan, paths, &strait)?;
    setup::create(paths, layout, topology)?;
    if layout.driver == Driver::Netns {
        println!(
            "network: a namespace per VM, a bridge per DC, gateways on the WAN ({}/{}; the host is {} on {}'s LAN)",
            crate::netns::NETWORK.0,
            crate::netns::NETWORK.1,
            crate::netns::HOST_ADDRESS,
            topology.primary_dc()
        );
    }

    let mut lab = LabState {
        started_at: state::now(),
        topology: origin.to_owned(),
        processes: Vec::new(),
        endpoints: Some(match layout.driver {
            Driver::Local => crate::endpoints::Endpoints::of(topology),
            Driver::Netns => crate::endpoints::Endpoints::of(topology).in_namespaces(),
        }),
    };
    lab.save(paths)?;
    // A management token of an earlier lab must not outlive it.
    let management = paths.management_token();
    if let Err(e) = std::fs::remove_file(&management) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(e).with_context(|| format!("cannot remove {}", management.display()));
        }
    }
    if let Some(acl) = &tokens.acl {
        state::write_file(
            &management,
            format!("{}\n", acl.management).as_bytes(),
            true,
        )?;
    }
    println!(
        "starting {} processes on {} VMs in {} datacenters (driver {}, topology: {origin}; files in {})",
        plan.len(),
        topology.vms.len(),
        topology.datacenters.len(),
        layout.driver.as_str(),
        paths.root().display()
    );
    let total = plan.len();
    // A DC's servers start together (a cluster's servers are ready once it has formed).
    for group in plan::start_groups(&plan) {
        let mut children = Vec::new();
        for spec in &plan[group.clone()] {
            supervisor::prepare(spec)?;
            let (child, record) = supervisor::spawn(spec, &strait)?;
            children.push(child);
            lab.processes.push(record);
            lab.save(paths)?;
        }
        for (i, mut child) in group.clone().zip(children) {
            let spec = &plan[i];
            supervisor::wait_ready(spec, &mut child, options.step_timeout)
                .await
                .with_context(|| {
                    format!(
                        "[{}/{total}] {} {}: {} failed",
                        i + 1,
                        spec.dc,
                        spec.vm,
                        spec.name
                    )
                })?;
            println!(
                "[{}/{total}] {} {}: {}",
                i + 1,
                spec.dc,
                spec.vm,
                spec.ready_summary()
            );
        }
        // A DC's servers are up: its ACLs must be there before anything else starts.
        let last = &plan[group.end - 1];
        if let (Some(acl), Role::Server) = (&tokens.acl, last.role) {
            crate::acl::after_servers(&plan, topology, acl, &last.dc, options.step_timeout).await?;
        }
    }

    let management = tokens.acl.as_ref().map(|a| a.management.as_str());
    if let Some(acl) = &tokens.acl {
        crate::acl::intentions(&plan, topology, acl).await?;
    }
    crate::config_entries::write(&plan, topology, management).await?;
    let dashboards: Vec<&ProcessSpec> = plan::dashboards(&plan).collect();
    // Every process answers; now the path itself: each dashboard must get a count through
    // its sidecar, the gateways and counting's sidecar (health checks and federation take a
    // second or two to converge after the last process starts).
    for d in &dashboards {
        let started = std::time::Instant::now();
        wait_mesh_path(d, options.step_timeout, paths.root()).await?;
        println!(
            "[mesh] {} {}: {} reaches its upstream through the mesh ({:.1} s)",
            d.dc,
            d.vm,
            d.name,
            started.elapsed().as_secs_f64()
        );
    }

    println!();
    for p in &dashboards {
        if layout.host_reaches(&p.vm, topology.primary_dc()) {
            println!("dashboard: http://{}", p.address);
        } else {
            println!(
                "dashboard: http://{} (inside {}'s LAN: `strait lab exec {} -- ...`)",
                p.address, p.dc, p.vm
            );
        }
    }
    if let Some(acl) = &tokens.acl {
        println!(
            "ACLs:      on, default {} (management token in {}; the CLI uses it against this lab)",
            acl.default_policy,
            paths.management_token().display()
        );
    }
    println!("status:    strait lab status");
    println!("stop it:   {}", options.down_command);
    Ok(())
}

/// Polls the dashboard's `/api/count` until it reports `"reachable": true`; the error tells
/// how to run the doctor on the lab in `lab`.
async fn wait_mesh_path(
    dashboard: &ProcessSpec,
    timeout: Duration,
    lab: &std::path::Path,
) -> anyhow::Result<()> {
    let url = format!("http://{}/api/count", dashboard.address);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let probe =
            crate::netns::enter::get(dashboard.netns.as_deref(), &url, Duration::from_secs(2));
        let last = match probe.await {
            Ok(r) => {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                if v["reachable"] == serde_json::Value::Bool(true) {
                    return Ok(());
                }
                String::from_utf8_lossy(&r.body).into_owned()
            }
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{} {}: {url} still cannot reach its upstream after {timeout:?}; last answer: {}\n\
                 the processes stay up: try `STRAIT_LAB_DIR={} strait doctor --service {} \
                 --upstream <upstream>` and `strait lab logs {}`",
                dashboard.dc,
                dashboard.vm,
                last.trim(),
                lab.display(),
                dashboard.service.as_deref().unwrap_or(&dashboard.name),
                dashboard.vm
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_address_is_reported_with_its_owner() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let topology = Topology::builtin().expect("default");
        let paths = LabPaths::new(std::path::Path::new("/lab")).expect("paths");
        let mut plan = plan::plan(&topology, &paths, &Tokens::generate(&topology));
        plan.truncate(1);
        plan[0].listens = vec![addr];
        let err = check_addresses_free(&plan).expect_err("taken");
        let msg = err.to_string();
        assert!(
            msg.contains(&addr.to_string()) && msg.contains("primary-server"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn invalid_topology_touches_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[[datacenter]]\nname = \"dc1\"\n").expect("write");
        let paths = LabPaths::new(&dir.path().join("lab")).expect("paths");
        let options = UpOptions {
            topology: Some(file),
            step_timeout: Duration::from_secs(1),
            down_command: "strait lab down".into(),
            proxy: DataPlane::Builtin,
            driver: Driver::Local,
            acl: crate::acl::AclMode::Deny,
        };
        let err = up(&paths, &options).await.expect_err("no primary");
        assert!(err.to_string().contains("bad.toml:2"), "{err}");
        assert!(!paths.root().exists());
    }
}
