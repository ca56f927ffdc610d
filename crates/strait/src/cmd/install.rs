//! `strait install`: lays out a VM as a package would. Writes the role's systemd units, the
//! configuration directory `/etc/strait.d` with commented examples (never overwriting an
//! existing config), the `strait` system user (sysusers.d, plus `useradd` when installing on
//! the running system) and optionally the binary itself. Starts nothing: it prints the
//! `systemctl` commands to run once the config is filled in.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use strait_systemd::unit::{Layout, Role, USER};

/// `strait install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// What this VM runs: server; agent; gateway (agent + mesh gateway); sidecar (agent + the
    /// `strait-proxy@.service` template).
    #[arg(long, value_enum)]
    pub role: InstallRole,
    /// Sidecar only: the service ID to prepare an instance for (`strait-proxy@<ID>`).
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
    /// Install under this directory instead of the running system (images, packaging, tests).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Copy this strait executable to `<root>/usr/local/bin/strait` (mode 0755).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InstallRole {
    Server,
    Agent,
    Gateway,
    Sidecar,
}

impl InstallRole {
    /// The units a VM of this role runs (every non-server VM runs an agent).
    fn units(self) -> &'static [Role] {
        match self {
            InstallRole::Server => &[Role::Server],
            InstallRole::Agent => &[Role::Agent],
            InstallRole::Gateway => &[Role::Agent, Role::Gateway],
            InstallRole::Sidecar => &[Role::Agent, Role::Sidecar],
        }
    }
}

/// `<root>/<absolute path>`.
fn under(root: &Path, path: impl AsRef<Path>) -> PathBuf {
    root.join(path.as_ref().strip_prefix("/").unwrap_or(path.as_ref()))
}

/// A service ID usable as a systemd instance name and a file name.
fn check_service_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("--service {id:?}: a service ID here is letters, digits, '-', '_' and '.' (it names strait-proxy@<ID>.service and proxy-<ID>.env)");
    }
    Ok(())
}

/// What one run wrote, for the summary.
struct Installer {
    root: PathBuf,
    on_system: bool,
    wrote: Vec<String>,
    kept: Vec<String>,
    /// Created in /etc/strait.d, to hand to the strait group.
    config_paths: Vec<PathBuf>,
}

impl Installer {
    fn write(&mut self, path: &Path, text: &[u8], mode: u32) -> Result<()> {
        strait_identity::files::write_public(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
        self.wrote.push(format!("{} ({mode:o})", path.display()));
        Ok(())
    }

    /// Writes a config file unless the operator already has one.
    fn write_config(&mut self, path: &Path, text: &str) -> Result<()> {
        if path.exists() {
            self.kept.push(path.display().to_string());
            return Ok(());
        }
        self.write(path, text.as_bytes(), 0o640)?;
        self.config_paths.push(path.to_owned());
        Ok(())
    }

    fn dir(&mut self, path: &Path, mode: u32) -> Result<()> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
        self.config_paths.push(path.to_owned());
        Ok(())
    }
}

pub fn install(args: InstallArgs) -> Result<()> {
    if let Some(id) = &args.service {
        if args.role != InstallRole::Sidecar {
            bail!("--service is for --role sidecar (it prepares strait-proxy@<ID>.service)");
        }
        check_service_id(id)?;
    }
    let layout = Layout::vm();
    let root = std::path::absolute(&args.root)
        .with_context(|| format!("--root {}", args.root.display()))?;
    let mut inst = Installer {
        on_system: root == Path::new("/"),
        root,
        wrote: vec![],
        kept: vec![],
        config_paths: vec![],
    };
    let bin = under(&inst.root, &layout.binary);
    if let Some(src) = &args.binary {
        let bytes = std::fs::read(src).with_context(|| format!("--binary {}", src.display()))?;
        // Atomic replace, so a running strait keeps its (old) executable.
        inst.write(&bin, &bytes, 0o755)?;
    }
    for role in args.role.units() {
        let path = under(&inst.root, "/etc/systemd/system").join(role.unit_name());
        inst.write(&path, role.render(&layout).as_bytes(), 0o644)?;
    }
    write_config_dir(&mut inst, &layout, args.role, args.service.as_deref())?;
    inst.write(
        &under(&inst.root, "/usr/lib/sysusers.d/strait.conf"),
        SYSUSERS.as_bytes(),
        0o644,
    )?;
    inst.write(
        &under(&inst.root, "/usr/lib/tmpfiles.d/strait.conf"),
        TMPFILES.as_bytes(),
        0o644,
    )?;
    if inst.on_system {
        let gid = ensure_user()?;
        for path in &inst.config_paths {
            std::os::unix::fs::chown(path, Some(0), Some(gid))
                .with_context(|| format!("cannot give {} to group {USER}", path.display()))?;
        }
    }
    print_summary(&inst, &layout, &args, &bin);
    Ok(())
}

fn write_config_dir(
    inst: &mut Installer,
    layout: &Layout,
    role: InstallRole,
    service: Option<&str>,
) -> Result<()> {
    let config_dir = under(&inst.root, &layout.config_dir);
    inst.dir(&config_dir, 0o750)?;
    for unit in role.units() {
        match unit {
            Role::Server | Role::Agent => {
                let file = unit.config_file(layout).unwrap_or_default();
                let text = example_config(*unit, layout);
                if *unit == Role::Agent {
                    inst.dir(&under(&inst.root, layout.config_dir.join("agent.d")), 0o750)?;
                }
                inst.write_config(&under(&inst.root, file), &text)?;
            }
            Role::Gateway => {
                let file = unit.env_file(layout, "").unwrap_or_default();
                inst.write_config(&under(&inst.root, file), GATEWAY_ENV)?;
            }
            Role::Sidecar => {
                let Some(id) = service else { continue };
                let file = under(&inst.root, unit.env_file(layout, id).unwrap_or_default());
                // The gateway's admin endpoint is 19000; each sidecar of the VM needs its own.
                let others = std::fs::read_dir(&config_dir)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .filter(|e| {
                                let n = e.file_name().to_string_lossy().into_owned();
                                n.starts_with("proxy-") && n.ends_with(".env")
                            })
                            .count()
                    })
                    .unwrap_or(0);
                let admin = format!("--admin 127.0.0.1:{}", 19001 + others);
                let args: Vec<String> = admin.split(' ').map(String::from).collect();
                let text = format!(
                    "# Sidecar of service {id}: admin endpoint unique per sidecar on this VM;\n# add --agent ADDR if the agent's http_addr is not 127.0.0.1:8500.\n{}",
                    unit.env_file_text(&args)
                );
                inst.write_config(&file, &text)?;
            }
        }
    }
    Ok(())
}

/// A commented example for `role`, with the data directory the unit allows writing.
fn example_config(role: Role, layout: &Layout) -> String {
    let data_dir = role.data_dir(layout).unwrap_or_default();
    let data_dir = data_dir.display();
    let file = role.config_file(layout).unwrap_or_default();
    let head = format!(
        "# {} configuration (docs/configuration.md). Uncomment and fill in, then run\n#   strait config check {}\n#   systemctl enable --now {}\n",
        if role == Role::Server { "strait server" } else { "strait agent" },
        file.display(),
        role.unit_name()
    );
    let body = match role {
        Role::Server => format!(
            r#"# datacenter = "dc1"
# primary_datacenter = "dc1"
# node_name = "server-1"
# data_dir = "{data_dir}"
# https_addr = "10.0.0.10:8300"
# http_addr = "127.0.0.1:8500"
# join_token = "REPLACE-with-openssl-rand-hex-32"
# federation_token = "REPLACE-with-the-federation-token"
## Secondary datacenters only: the primary DC's mesh gateways (WAN addresses).
## primary_gateways = ["203.0.113.11:8443"]
# leaf_ttl_hours = 72
"#
        ),
        _ => format!(
            r#"# datacenter = "dc1"
# node_name = "web-1"
# data_dir = "{data_dir}"
# advertise_addr = "10.0.0.21"
# http_addr = "127.0.0.1:8500"
# servers = ["10.0.0.10:8300"]
# join_token = "REPLACE-with-the-datacenter-join-token"
# config_dir = "{}"
"#,
            layout.config_dir.join("agent.d").display()
        ),
    };
    head + &body
}

const GATEWAY_ENV: &str = "\
# Arguments of strait-gateway.service on this VM (expanded into ExecStart=). Uncomment and set:
# --address: LAN address to listen on and register; --wan-address: what other DCs dial.
# STRAIT_GATEWAY_ARGS=\"--address 10.0.0.11:8443 --wan-address 203.0.113.11:8443 --admin 127.0.0.1:19000\"
";

/// sysusers.d(5): what `systemd-sysusers` creates at boot (or `systemd-sysusers --root DIR`).
const SYSUSERS: &str = "\
# The user every strait unit runs as (written by `strait install`).
u strait - \"strait service mesh\" /var/lib/strait /usr/sbin/nologin
";

/// tmpfiles.d(5): hands the config directory to the strait group at boot, for installs under
/// another root where the group does not exist yet.
const TMPFILES: &str = "\
# Configuration readable by the strait group (written by `strait install`).
z /etc/strait.d 0750 root strait -
z /etc/strait.d/agent.d 0750 root strait -
z /etc/strait.d/*.toml 0640 root strait -
z /etc/strait.d/*.env 0640 root strait -
";

/// Creates the `strait` system user on the running system if missing; returns its group id.
fn ensure_user() -> Result<u32> {
    let lookup = |db: &str| -> Result<Option<u32>> {
        let out = Command::new("getent")
            .args([db, USER])
            .output()
            .context("cannot run getent")?;
        let line = String::from_utf8_lossy(&out.stdout);
        Ok(line.split(':').nth(2).and_then(|g| g.trim().parse().ok()))
    };
    if lookup("passwd")?.is_none() {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--home-dir",
                strait_systemd::unit::STATE_DIR,
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "strait service mesh",
                USER,
            ])
            .status()
            .context("cannot run useradd (install the passwd package, or run as root)")?;
        if !status.success() {
            bail!("useradd --system {USER} failed ({status})");
        }
    }
    lookup("group")?.with_context(|| format!("group {USER} does not exist after useradd"))
}

fn print_summary(inst: &Installer, layout: &Layout, args: &InstallArgs, bin: &Path) {
    for w in &inst.wrote {
        println!("wrote {w}");
    }
    for k in &inst.kept {
        println!("kept  {k} (exists)");
    }
    if inst.on_system {
        println!("user  {USER} (system user and group; owns nothing but its data directories)");
    } else {
        println!(
            "user  {USER}: created at boot from usr/lib/sysusers.d/strait.conf (or now: systemd-sysusers --root {})",
            inst.root.display()
        );
    }
    if !bin.exists() {
        println!(
            "note: the units run {}, which is not there yet: pass --binary target/release/strait",
            layout.binary.display()
        );
    }
    println!("\nnext:");
    let units = args.role.units();
    for role in units {
        if let Some(f) = role.config_file(layout) {
            println!(
                "  edit {} and check it: strait config check {0}",
                f.display()
            );
        }
        if let Some(f) = role.env_file(layout, args.service.as_deref().unwrap_or("<ID>")) {
            println!("  edit {}", f.display());
        }
    }
    let names: Vec<String> = units
        .iter()
        .map(|r| r.instance_name(args.service.as_deref().unwrap_or("<ID>")))
        .collect();
    println!(
        "  systemctl daemon-reload && systemctl enable --now {}",
        names.join(" ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uncomment(text: &str) -> String {
        text.lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn examples_are_valid_once_uncommented_and_use_the_units_data_dirs() {
        let layout = Layout::vm();
        let server =
            strait_server::ServerConfig::parse(&uncomment(&example_config(Role::Server, &layout)))
                .unwrap();
        assert_eq!(Some(server.data_dir), Role::Server.data_dir(&layout));
        let agent =
            strait_agent::AgentConfig::parse(&uncomment(&example_config(Role::Agent, &layout)))
                .unwrap();
        assert_eq!(Some(agent.data_dir), Role::Agent.data_dir(&layout));
        assert_eq!(agent.config_dir, Some("/etc/strait.d/agent.d".into()));
    }

    #[test]
    fn service_ids_must_name_a_unit_instance() {
        check_service_id("web-1.v2").unwrap();
        for bad in ["", "a/b", "a b", "../x", "x@y"] {
            let err = check_service_id(bad).unwrap_err();
            assert!(err.to_string().contains("--service"), "{err}");
        }
    }
}
