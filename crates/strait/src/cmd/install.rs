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
    #[command(flatten)]
    pub tokens: AclTokenFiles,
}

/// ACL tokens for the role's config (`[acl.tokens]` of server.toml or agent.toml), each read
/// from a file readable by its owner only. The config that gets them becomes 0600 and owned
/// by the `strait` user (the configs cannot name a token file, so the token is in the config).
#[derive(Debug, Default, clap::Args)]
pub struct AclTokenFiles {
    /// `acl.tokens.agent`: the agent's (or server's) own requests.
    #[arg(long = "acl-agent-token-file", value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// `acl.tokens.default`: for requests to the local API that carry no token.
    #[arg(long = "acl-default-token-file", value_name = "PATH")]
    pub default: Option<PathBuf>,
    /// Servers only: `acl.tokens.initial_management`, the SecretID bootstrap creates.
    #[arg(long = "acl-initial-management-token-file", value_name = "PATH")]
    pub initial_management: Option<PathBuf>,
    /// Servers of secondary DCs only: `acl.tokens.replication`.
    #[arg(long = "acl-replication-token-file", value_name = "PATH")]
    pub replication: Option<PathBuf>,
}

/// A token for `[acl.tokens]`: its field and its secret (never printed).
struct ConfigToken {
    field: &'static str,
    /// Where it was read, for the summary.
    from: PathBuf,
    secret: String,
}

impl AclTokenFiles {
    /// Reads the files given (refusing shared, empty and missing ones, naming the flag and
    /// the file); tokens only servers read are refused for other roles.
    fn read(&self, role: InstallRole) -> Result<Vec<ConfigToken>> {
        let all = [
            ("agent", &self.agent, false),
            ("default", &self.default, false),
            ("initial_management", &self.initial_management, true),
            ("replication", &self.replication, true),
        ];
        let mut tokens = Vec::new();
        for (field, path, server_only) in all {
            let Some(path) = path else { continue };
            let flag = format!("--acl-{}-token-file", field.replace('_', "-"));
            if server_only && role != InstallRole::Server {
                bail!("{flag} is for --role server (agents do not read acl.tokens.{field})");
            }
            let token = super::token::read_file(path, &flag)?;
            strait_rpc::config::check_token(&format!("acl.tokens.{field}"), token.expose())
                .with_context(|| format!("{flag} {}", path.display()))?;
            tokens.push(ConfigToken {
                field,
                from: path.clone(),
                secret: token.expose().to_owned(),
            });
        }
        Ok(tokens)
    }
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
    /// Configs holding ACL tokens: 0600, to hand to the strait user.
    private_paths: Vec<PathBuf>,
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

    /// Writes `tokens` into the `[acl.tokens]` of the config at `path` (the example `text`
    /// when there is none yet) and makes it 0600: the config cannot name a token file, so
    /// the token lives in the config, which only the unit's user may then read. An existing
    /// config is appended to, never rewritten, and refused if it already sets one of them.
    fn write_tokens(&mut self, path: &Path, text: &str, tokens: &[ConfigToken]) -> Result<()> {
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let before = existing.as_deref().unwrap_or(text);
        let parsed: toml::Table = toml::from_str(before).with_context(|| {
            format!(
                "{} is not valid TOML; fix it before adding ACL tokens",
                path.display()
            )
        })?;
        let acl = parsed.get("acl").and_then(|a| a.as_table());
        let set = acl.and_then(|a| a.get("tokens")).and_then(|t| t.as_table());
        if let Some(field) = tokens
            .iter()
            .find(|t| set.is_some_and(|s| s.contains_key(t.field)))
        {
            bail!(
                "{} already sets acl.tokens.{}: change it there (install adds tokens to a config, it never replaces one)",
                path.display(),
                field.field
            );
        }
        let mut added = String::new();
        if acl.is_none() {
            added.push_str("\n# ACLs (docs/configuration.md); written by `strait install`.\n[acl]\nenabled = true\ndefault_policy = \"deny\"\n");
        }
        added.push_str("\n[acl.tokens]\n");
        for t in tokens {
            added.push_str(&format!(
                "{} = {}\n",
                t.field,
                toml::Value::from(t.secret.as_str())
            ));
        }
        let after = format!("{}\n{added}", before.trim_end_matches('\n'));
        let written = toml::from_str::<toml::Table>(&after).is_ok_and(|t| {
            tokens.iter().all(|tok| {
                t.get("acl")
                    .and_then(|a| a.get("tokens"))
                    .and_then(|s| s.get(tok.field))
                    .and_then(|v| v.as_str())
                    == Some(tok.secret.as_str())
            })
        });
        if !written {
            let fields: Vec<&str> = tokens.iter().map(|t| t.field).collect();
            bail!(
                "{}: cannot add {} to its [acl.tokens] table by appending (the table is inline or not the last); add them yourself from the token files",
                path.display(),
                fields.join(", ")
            );
        }
        strait_identity::files::write_secret(path, after.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        let from: Vec<String> = tokens
            .iter()
            .map(|t| format!("acl.tokens.{} from {}", t.field, t.from.display()))
            .collect();
        self.wrote
            .push(format!("{} (600, {})", path.display(), from.join(", ")));
        self.private_paths.push(path.to_owned());
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
    let tokens = args.tokens.read(args.role)?;
    let layout = Layout::vm();
    let root = std::path::absolute(&args.root)
        .with_context(|| format!("--root {}", args.root.display()))?;
    let mut inst = Installer {
        on_system: root == Path::new("/"),
        root,
        wrote: vec![],
        kept: vec![],
        config_paths: vec![],
        private_paths: vec![],
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
    write_config_dir(
        &mut inst,
        &layout,
        args.role,
        args.service.as_deref(),
        &tokens,
    )?;
    inst.write(
        &under(&inst.root, "/usr/lib/sysusers.d/strait.conf"),
        SYSUSERS.as_bytes(),
        0o644,
    )?;
    let tmpfiles = tmpfiles(&inst.root, &layout);
    inst.write(
        &under(&inst.root, "/usr/lib/tmpfiles.d/strait.conf"),
        tmpfiles.as_bytes(),
        0o644,
    )?;
    if inst.on_system {
        let (uid, gid) = ensure_user()?;
        for path in &inst.config_paths {
            std::os::unix::fs::chown(path, Some(0), Some(gid))
                .with_context(|| format!("cannot give {} to group {USER}", path.display()))?;
        }
        for path in &inst.private_paths {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("cannot give {} to user {USER}", path.display()))?;
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
    tokens: &[ConfigToken],
) -> Result<()> {
    let config_dir = under(&inst.root, &layout.config_dir);
    inst.dir(&config_dir, 0o750)?;
    for unit in role.units() {
        match unit {
            Role::Server | Role::Agent => {
                let file = under(&inst.root, unit.config_file(layout).unwrap_or_default());
                let text = example_config(*unit, layout);
                if *unit == Role::Agent {
                    inst.dir(&under(&inst.root, layout.config_dir.join("agent.d")), 0o750)?;
                }
                if tokens.is_empty() {
                    inst.write_config(&file, &text)?;
                } else {
                    inst.write_tokens(&file, &text, tokens)?;
                }
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
/// another root where the group does not exist yet. A config holding ACL tokens (mode 0600
/// now) stays 0600 and goes to the strait user.
fn tmpfiles(root: &Path, layout: &Layout) -> String {
    let dir = layout.config_dir.display();
    let mut text = format!(
        "# Configuration readable by the strait group (written by `strait install`).\n\
         z {dir} 0750 root strait -\n\
         z {dir}/agent.d 0750 root strait -\n\
         z {dir}/*.env 0640 root strait -\n"
    );
    for role in [Role::Server, Role::Agent] {
        let Some(file) = role.config_file(layout) else {
            continue;
        };
        let private = std::fs::metadata(under(root, &file))
            .is_ok_and(|m| m.permissions().mode() & 0o777 == 0o600);
        text.push_str(&match private {
            true => format!("z {} 0600 strait strait -\n", file.display()),
            false => format!("z {} 0640 root strait -\n", file.display()),
        });
    }
    text
}

/// Creates the `strait` system user on the running system if missing; returns its user and
/// group ids.
fn ensure_user() -> Result<(u32, u32)> {
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
    let uid =
        lookup("passwd")?.with_context(|| format!("user {USER} does not exist after useradd"))?;
    let gid =
        lookup("group")?.with_context(|| format!("group {USER} does not exist after useradd"))?;
    Ok((uid, gid))
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

    const TOKEN: &str = "6a1f0c2e-9d4b-4e7a-8c3f-2b5d7e9a1c4f";

    fn token_file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn args(root: &Path, role: InstallRole, tokens: AclTokenFiles) -> InstallArgs {
        InstallArgs {
            role,
            service: None,
            root: root.to_owned(),
            binary: None,
            tokens,
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// A new agent config gets the token in `[acl.tokens]` and becomes 0600 (tmpfiles keeps
    /// it so); once filled in it is a valid config with ACLs on. An existing config is
    /// appended to; one that sets the token already is refused, naming the field, never the
    /// token.
    #[test]
    fn tokens_go_into_a_private_config() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let agent_token = token_file(dir.path(), "agent.token", 0o600);
        let files = || AclTokenFiles {
            agent: Some(agent_token.clone()),
            ..AclTokenFiles::default()
        };
        install(args(&root, InstallRole::Gateway, files())).unwrap();
        let config = root.join("etc/strait.d/agent.toml");
        assert_eq!(mode(&config), 0o600);
        let text = std::fs::read_to_string(&config).unwrap();
        let acl = text.find("\n[acl]").expect("an [acl] table");
        let filled = uncomment(&text) + &text[acl..];
        let agent = strait_agent::AgentConfig::parse(&filled).unwrap();
        assert!(agent.acl.enabled);
        assert_eq!(agent.acl.tokens.agent.unwrap().expose(), TOKEN);
        let tmpfiles =
            std::fs::read_to_string(root.join("usr/lib/tmpfiles.d/strait.conf")).unwrap();
        assert!(
            tmpfiles.contains("z /etc/strait.d/agent.toml 0600 strait strait -")
                && tmpfiles.contains("z /etc/strait.d/server.toml 0640 root strait -"),
            "{tmpfiles}"
        );

        // Again: agent.toml sets acl.tokens.agent already.
        let err = install(args(&root, InstallRole::Agent, files())).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("already sets acl.tokens.agent") && msg.contains("agent.toml"),
            "{msg}"
        );
        assert!(!msg.contains(TOKEN), "{msg}");

        // An operator's server config with its own [acl] table: the tokens are appended.
        let server = root.join("etc/strait.d/server.toml");
        std::fs::create_dir_all(server.parent().unwrap()).unwrap();
        std::fs::write(
            &server,
            "# mine\ndatacenter = \"dc1\"\n\n[acl]\nenabled = true\n",
        )
        .unwrap();
        let management = token_file(dir.path(), "management.token", 0o400);
        let files = AclTokenFiles {
            initial_management: Some(management),
            ..AclTokenFiles::default()
        };
        install(args(&root, InstallRole::Server, files)).unwrap();
        let text = std::fs::read_to_string(&server).unwrap();
        assert!(
            text.starts_with("# mine\ndatacenter = \"dc1\"\n\n[acl]\nenabled = true\n"),
            "{text}"
        );
        let table: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            table["acl"]["tokens"]["initial_management"].as_str(),
            Some(TOKEN)
        );
        assert_eq!(mode(&server), 0o600);
    }

    #[test]
    fn token_files_are_checked_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let shared = token_file(dir.path(), "shared.token", 0o644);
        let files = AclTokenFiles {
            default: Some(shared.clone()),
            ..AclTokenFiles::default()
        };
        let msg = format!(
            "{:#}",
            install(args(&root, InstallRole::Agent, files)).unwrap_err()
        );
        assert!(
            msg.contains("--acl-default-token-file")
                && msg.contains(&shared.display().to_string())
                && msg.contains("mode 0644"),
            "{msg}"
        );
        let private = token_file(dir.path(), "replication.token", 0o600);
        let files = AclTokenFiles {
            replication: Some(private),
            ..AclTokenFiles::default()
        };
        let msg = format!(
            "{:#}",
            install(args(&root, InstallRole::Agent, files)).unwrap_err()
        );
        assert!(
            msg.contains("--acl-replication-token-file is for --role server"),
            "{msg}"
        );
        let short = dir.path().join("short.token");
        std::fs::write(&short, "abc\n").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        let files = AclTokenFiles {
            agent: Some(short),
            ..AclTokenFiles::default()
        };
        let msg = format!(
            "{:#}",
            install(args(&root, InstallRole::Agent, files)).unwrap_err()
        );
        assert!(
            msg.contains("acl.tokens.agent") && msg.contains("at least 16"),
            "{msg}"
        );
        assert!(!root.exists(), "nothing written");
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
