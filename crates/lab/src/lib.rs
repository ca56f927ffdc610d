//! strait-lab: `strait lab …` builds and runs a whole multi-DC topology on one
//! machine, and `strait demo …` are the demo services it runs.
//!
//! Flow: topology file (or built-in default) -> [`topology::Topology`] ->
//! [`plan::plan`] (pure: processes, args, files, readiness URLs, order) ->
//! supervisor (start detached, wait ready, record in `DIR/state.json`) ->
//! status / logs / stop / start / down read that state.
#![deny(unsafe_code)]

pub mod acl;
pub mod config_entries;
pub mod control;
pub mod demo;
pub mod down;
pub mod endpoints;
pub mod exec;
pub mod faults;
pub mod logs;
pub mod netns;
pub mod paths;
pub mod plan;
pub mod procfs;
pub mod signal;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod topology;
pub mod units;
pub mod up;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// Where the lab keeps its files unless `--dir` says otherwise.
pub const DEFAULT_DIR: &str = "./.strait-lab";

/// `strait lab …`
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// Directory holding everything the lab generates (configs, data, logs, state).
    #[arg(long, global = true, default_value = DEFAULT_DIR, env = "STRAIT_LAB_DIR")]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub cmd: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Start a lab: every server, agent, gateway, demo service and sidecar of the topology.
    Up {
        /// Topology file (TOML, see docs/lab.md) or a built-in topology's name (`default`,
        /// `failover`); default: the built-in two-DC demo.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Seconds each process has to become ready.
        #[arg(long, default_value_t = 60)]
        step_timeout: u64,
        /// Data plane of gateways and sidecars on VMs whose topology entry names no `proxy`.
        #[arg(long, value_enum, default_value = "builtin")]
        proxy: topology::DataPlane,
        /// `local`: every VM an address on the loopback (no root); `netns`: every VM its own
        /// network namespace, a bridge per DC, only gateways on the WAN (root; docs/lab.md).
        #[arg(long, value_enum, default_value = "local")]
        driver: netns::Driver,
        /// ACLs: `deny` (default; Consul's production setting: nothing without a token that
        /// allows it, the lab creates every token its processes need), `allow`, or `off`.
        #[arg(long, value_enum, default_value = "deny")]
        acl: acl::AclMode,
    },
    /// Validate a topology and print the processes `up` would start, in order.
    Plan {
        /// Topology file; default: the built-in two-DC demo.
        #[arg(long)]
        topology: Option<PathBuf>,
    },
    /// Show every process of the lab: state, health, address.
    Status,
    /// Print a VM's logs.
    Logs {
        /// VM name (see `strait lab status`).
        vm: String,
        /// Only this process (e.g. agent, gateway, counting, counting-sidecar).
        #[arg(long)]
        process: Option<String>,
        /// Keep printing new lines until Ctrl-C.
        #[arg(long, short)]
        follow: bool,
    },
    /// Stop one service's app process (its sidecar keeps running), or a gateway or sidecar by
    /// process name (`gateway`, `<service>-sidecar`; see `strait lab status`).
    Stop {
        service: String,
        /// Only the instance on this VM.
        #[arg(long)]
        vm: Option<String>,
    },
    /// Start a service, gateway or sidecar stopped with `strait lab stop` again; or, given a
    /// VM name, every process of that VM that is not running (after `strait lab kill`).
    Start {
        service: String,
        /// Only the instance on this VM.
        #[arg(long)]
        vm: Option<String>,
    },
    /// Run a command on a VM: inside its network namespace (netns driver), or with its
    /// environment (local driver: STRAIT_HTTP_ADDR names its agent), e.g. `strait lab exec
    /// primary-services -- strait members`.
    Exec {
        /// VM name (see `strait lab status`).
        vm: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Drop WAN traffic between two DCs' gateways (netns driver).
    Partition { dc_a: String, dc_b: String },
    /// Restore WAN traffic between two DCs, or between all partitioned DCs (netns driver).
    Heal {
        dc_a: Option<String>,
        #[arg(requires = "dc_a")]
        dc_b: Option<String>,
    },
    /// Take a VM off every network but its loopback (netns driver).
    Isolate { vm: String },
    /// Give an isolated VM its network back (netns driver).
    Rejoin { vm: String },
    /// SIGKILL every process of a VM (`lab start` restarts apps, gateways, sidecars).
    Kill { vm: String },
    /// SIGSTOP every process of a VM.
    Pause { vm: String },
    /// SIGCONT every process of a VM.
    Resume { vm: String },
    /// Stop every process of the lab.
    Down {
        /// Also remove the lab directory.
        #[arg(long)]
        purge: bool,
        /// Seconds to wait after SIGTERM before SIGKILL.
        #[arg(long, default_value_t = 10)]
        grace: u64,
    },
}

/// `strait demo …`
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(subcommand)]
    pub cmd: DemoCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DemoCommand {
    /// Counts requests; answers {"count":N,"hostname":"..."}.
    Counting(demo::counting::CountingArgs),
    /// Web page showing the live count from the counting service.
    Dashboard(demo::dashboard::DashboardArgs),
}

/// How to stop the lab in `dir`, for messages.
fn down_command(dir: &Path) -> String {
    if dir == Path::new(DEFAULT_DIR) {
        "strait lab down".to_owned()
    } else {
        format!("strait lab down --dir {}", dir.display())
    }
}

fn print_plan(topology: Option<&PathBuf>) -> anyhow::Result<()> {
    let (topology, _, origin) = up::load_topology(topology)?;
    let paths =
        paths::LabPaths::new(Path::new(DEFAULT_DIR)).context("cannot resolve the lab directory")?;
    let specs = plan::plan(&topology, &paths, &plan::Tokens::generate(&topology));
    println!("{origin}: valid; {} processes in start order:", specs.len());
    for (i, p) in specs.iter().enumerate() {
        println!(
            "[{}/{}] {} {}: {} ({}) ready at {}",
            i + 1,
            specs.len(),
            p.dc,
            p.vm,
            p.name,
            p.address,
            p.ready_url
        );
    }
    Ok(())
}

pub async fn run_lab(args: LabArgs) -> anyhow::Result<()> {
    let paths = paths::LabPaths::new(&args.dir)
        .with_context(|| format!("cannot resolve lab directory {}", args.dir.display()))?;
    match args.cmd {
        LabCommand::Up {
            topology,
            step_timeout,
            proxy,
            driver,
            acl,
        } => {
            let options = up::UpOptions {
                topology,
                step_timeout: Duration::from_secs(step_timeout),
                down_command: down_command(&args.dir),
                proxy,
                driver,
                acl,
            };
            up::up(&paths, &options).await
        }
        LabCommand::Plan { topology } => print_plan(topology.as_ref()),
        LabCommand::Status => status::status(&paths).await,
        LabCommand::Logs {
            vm,
            process,
            follow,
        } => logs::logs(&paths, &vm, process.as_deref(), follow).await,
        LabCommand::Stop { service, vm } => {
            control::stop(&paths, &service, vm.as_deref(), Duration::from_secs(10)).await
        }
        LabCommand::Start { service, vm } => {
            control::start(&paths, &service, vm.as_deref(), Duration::from_secs(60)).await
        }
        LabCommand::Exec { vm, command } => exec::exec(&paths, &vm, &command),
        LabCommand::Partition { dc_a, dc_b } => faults::partition(&paths, &dc_a, &dc_b),
        LabCommand::Heal { dc_a, dc_b } => match (dc_a, dc_b) {
            (Some(a), Some(b)) => faults::heal(&paths, Some((&a, &b))),
            (None, None) => faults::heal(&paths, None),
            _ => anyhow::bail!("`strait lab heal` takes two datacenters, or none (heal all)"),
        },
        LabCommand::Isolate { vm } => faults::isolate(&paths, &vm),
        LabCommand::Rejoin { vm } => faults::rejoin(&paths, &vm),
        LabCommand::Kill { vm } => faults::signal_vm(&paths, &vm, faults::ProcessFault::Kill),
        LabCommand::Pause { vm } => faults::signal_vm(&paths, &vm, faults::ProcessFault::Pause),
        LabCommand::Resume { vm } => faults::signal_vm(&paths, &vm, faults::ProcessFault::Resume),
        LabCommand::Down { purge, grace } => {
            down::down(&paths, purge, Duration::from_secs(grace)).await
        }
    }
}

pub async fn run_demo(args: DemoArgs, role: strait_systemd::lifecycle::Role) -> anyhow::Result<()> {
    match args.cmd {
        DemoCommand::Counting(a) => demo::counting::run(a, role).await,
        DemoCommand::Dashboard(a) => demo::dashboard::run(a, role).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Lab(LabArgs),
        Demo(DemoArgs),
    }

    #[test]
    fn cli_shapes() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "strait", "lab", "logs", "vm1", "--follow", "--dir", "/tmp/x",
        ])
        .expect("parse");
        match cli.cmd {
            Top::Lab(LabArgs {
                dir,
                cmd:
                    LabCommand::Logs {
                        vm,
                        follow,
                        process,
                    },
            }) => {
                assert_eq!(
                    (dir, vm.as_str(), follow, process),
                    (PathBuf::from("/tmp/x"), "vm1", true, None)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli =
            Cli::try_parse_from(["strait", "demo", "counting", "--port", "7"]).expect("parse");
        assert!(
            matches!(cli.cmd, Top::Demo(DemoArgs { cmd: DemoCommand::Counting(ref a) }) if a.port == 7)
        );
    }

    #[test]
    fn down_hint_names_a_non_default_dir() {
        assert_eq!(down_command(Path::new(DEFAULT_DIR)), "strait lab down");
        assert_eq!(
            down_command(Path::new("/tmp/lab")),
            "strait lab down --dir /tmp/lab"
        );
    }
}
