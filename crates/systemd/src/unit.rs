//! The unit files of every role, rendered from a [`Layout`] (where the binary, the configs and
//! the data live). `strait install` renders them with [`Layout::vm`]; the lab with its own
//! directories, so both write the same units and differ only in paths.
//!
//! | unit | runs | reads |
//! |---|---|---|
//! | `strait-server.service` | `strait server --config <config_dir>/server.toml` | |
//! | `strait-agent.service` | `strait agent --config <config_dir>/agent.toml` | |
//! | `strait-gateway.service` | `strait gateway --mesh $STRAIT_GATEWAY_ARGS` | `<config_dir>/gateway.env` |
//! | `strait-proxy@<service>.service` | `strait proxy --sidecar-for <service> $STRAIT_PROXY_ARGS` | `<config_dir>/proxy-<service>.env` (optional) |
//!
//! Per-VM arguments of the proxies (addresses, admin port) live in the environment files, so
//! the unit text is the same on every VM.

use std::fmt::Write as _;
use std::path::PathBuf;

/// Where the strait binary lives on a VM.
pub const BINARY: &str = "/usr/local/bin/strait";
/// The configuration directory on a VM.
pub const CONFIG_DIR: &str = "/etc/strait.d";
/// Parent of the data directories on a VM (managed by systemd as `StateDirectory=`).
pub const STATE_DIR: &str = "/var/lib/strait";
/// The system user every role runs as.
pub const USER: &str = "strait";

/// Where the units find things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The strait executable (`ExecStart=`).
    pub binary: PathBuf,
    /// Config files and environment files (`server.toml`, `agent.toml`, `agent.d/`,
    /// `gateway.env`, `proxy-<service>.env`).
    pub config_dir: PathBuf,
    /// Parent of each role's data directory (`<state_dir>/server`, `<state_dir>/agent`); the
    /// only paths a role may write.
    pub state_dir: PathBuf,
    /// `User=` and `Group=`.
    pub user: String,
}

impl Layout {
    /// The layout of an installed VM: `/usr/local/bin/strait`, `/etc/strait.d`, `/var/lib/strait`.
    pub fn vm() -> Layout {
        Layout {
            binary: BINARY.into(),
            config_dir: CONFIG_DIR.into(),
            state_dir: STATE_DIR.into(),
            user: USER.into(),
        }
    }
}

/// A role that runs as a systemd service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Server,
    Agent,
    Gateway,
    /// A template unit; the instance is the service ID the sidecar fronts.
    Sidecar,
}

/// Arguments that cannot be expressed by a unit (see [`Role::variable_args`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError(pub String);

impl std::fmt::Display for UnitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnitError {}

impl Role {
    pub const ALL: [Role; 4] = [Role::Server, Role::Agent, Role::Gateway, Role::Sidecar];

    /// The unit file name (the sidecar's is a template).
    pub fn unit_name(self) -> &'static str {
        match self {
            Role::Server => "strait-server.service",
            Role::Agent => "strait-agent.service",
            Role::Gateway => "strait-gateway.service",
            Role::Sidecar => "strait-proxy@.service",
        }
    }

    /// The unit to start: `strait-proxy@<service>.service` for a sidecar.
    pub fn instance_name(self, service: &str) -> String {
        match self {
            Role::Sidecar => format!("strait-proxy@{service}.service"),
            _ => self.unit_name().to_owned(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
            Role::Gateway => "gateway",
            Role::Sidecar => "sidecar",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Role::Server => "strait server (control plane of one datacenter)",
            Role::Agent => "strait agent (registers this VM's services)",
            Role::Gateway => "strait mesh gateway",
            Role::Sidecar => "strait sidecar proxy for %i",
        }
    }

    /// The config file a server or agent reads.
    pub fn config_file(self, layout: &Layout) -> Option<PathBuf> {
        match self {
            Role::Server => Some(layout.config_dir.join("server.toml")),
            Role::Agent => Some(layout.config_dir.join("agent.toml")),
            Role::Gateway | Role::Sidecar => None,
        }
    }

    /// The data directory a server or agent writes (its config's `data_dir`).
    pub fn data_dir(self, layout: &Layout) -> Option<PathBuf> {
        match self {
            Role::Server | Role::Agent => Some(layout.state_dir.join(self.name())),
            Role::Gateway | Role::Sidecar => None,
        }
    }

    /// The environment file holding a proxy's per-VM arguments (`instance`: the sidecar's
    /// service ID).
    pub fn env_file(self, layout: &Layout, instance: &str) -> Option<PathBuf> {
        match self {
            Role::Gateway => Some(layout.config_dir.join("gateway.env")),
            Role::Sidecar => Some(layout.config_dir.join(format!("proxy-{instance}.env"))),
            Role::Server | Role::Agent => None,
        }
    }

    /// The variable of the environment file that `ExecStart=` expands into arguments.
    pub fn args_var(self) -> Option<&'static str> {
        match self {
            Role::Gateway => Some("STRAIT_GATEWAY_ARGS"),
            Role::Sidecar => Some("STRAIT_PROXY_ARGS"),
            Role::Server | Role::Agent => None,
        }
    }

    /// The arguments (after the binary) that `ExecStart=` always passes, for `instance`.
    pub fn fixed_args(self, layout: &Layout, instance: &str) -> Vec<String> {
        let config = |r: Role| {
            let file = r.config_file(layout).unwrap_or_default();
            vec![
                r.name().to_owned(),
                "--config".into(),
                file.display().to_string(),
            ]
        };
        match self {
            Role::Server | Role::Agent => config(self),
            Role::Gateway => vec!["gateway".into(), "--mesh".into()],
            Role::Sidecar => vec!["proxy".into(), "--sidecar-for".into(), instance.into()],
        }
    }

    /// Splits the command line a role should run (`argv`, after the binary) into what the unit
    /// fixes and what goes into its environment file; an error when the unit cannot run it.
    pub fn variable_args(
        self,
        layout: &Layout,
        instance: &str,
        argv: &[String],
    ) -> Result<Vec<String>, UnitError> {
        let fixed = self.fixed_args(layout, instance);
        let rest = argv.strip_prefix(fixed.as_slice()).ok_or_else(|| {
            UnitError(format!(
                "{}: the unit runs `strait {}`, not `strait {}`",
                self.instance_name(instance),
                fixed.join(" "),
                argv.join(" ")
            ))
        })?;
        if !rest.is_empty() && self.args_var().is_none() {
            return Err(UnitError(format!(
                "{}: extra arguments {rest:?} belong in the config file",
                self.unit_name()
            )));
        }
        if let Some(bad) = rest.iter().find(|a| !plain_word(a)) {
            return Err(UnitError(format!(
                "{}: argument {bad:?} has characters an environment file cannot carry as one word",
                self.instance_name(instance)
            )));
        }
        Ok(rest.to_vec())
    }

    /// The environment file's text for `args` (from [`Role::variable_args`]).
    pub fn env_file_text(self, args: &[String]) -> String {
        let var = self.args_var().unwrap_or("STRAIT_ARGS");
        format!(
            "# Arguments of `{}` on this VM (expanded into ExecStart=).\n{var}=\"{}\"\n",
            self.unit_name(),
            args.join(" ")
        )
    }

    /// The open-file limit: proxies hold two to six descriptors per connection.
    fn limit_nofile(self) -> u32 {
        match self {
            Role::Server | Role::Agent => 65_536,
            Role::Gateway | Role::Sidecar => 131_072,
        }
    }

    /// The unit file text.
    pub fn render(self, layout: &Layout) -> String {
        let mut u = String::new();
        let line = |u: &mut String, s: &str| {
            u.push_str(s);
            u.push('\n');
        };
        let _ = writeln!(
            u,
            "# {}: written by strait (docs/operations.md); `systemctl reload` sends SIGHUP.",
            self.unit_name()
        );
        line(&mut u, "[Unit]");
        let _ = writeln!(u, "Description={}", self.description());
        let after = match self {
            Role::Server | Role::Agent => "network-online.target",
            Role::Gateway | Role::Sidecar => "network-online.target strait-agent.service",
        };
        let _ = writeln!(u, "After={after}\nWants={after}");
        line(&mut u, "");
        line(&mut u, "[Service]");
        line(&mut u, "Type=notify");
        line(&mut u, "NotifyAccess=main");
        let mut exec = exec_word(&layout.binary.display().to_string());
        let instance_marker = "\u{0}";
        for arg in self.fixed_args(layout, instance_marker) {
            exec.push(' ');
            exec.push_str(&if arg == instance_marker {
                "%i".to_owned()
            } else {
                exec_word(&arg)
            });
        }
        if let Some(var) = self.args_var() {
            let _ = write!(exec, " ${var}");
        }
        if let Some(env) = self.env_file(layout, instance_marker) {
            let optional = if self == Role::Sidecar { "-" } else { "" };
            let path = word(&env.display().to_string()).replace(instance_marker, "%i");
            let _ = writeln!(u, "EnvironmentFile={optional}{path}");
        }
        let _ = writeln!(u, "ExecStart={exec}");
        line(&mut u, "ExecReload=/bin/kill -HUP $MAINPID");
        line(&mut u, "Restart=on-failure");
        // A bad command line (64) or configuration (78) fails again at once: no restart loop.
        line(&mut u, "RestartPreventExitStatus=64 78");
        line(&mut u, "RestartSec=2s");
        let _ = writeln!(u, "User={0}\nGroup={0}", word(&layout.user));
        if let Some(data) = self.data_dir(layout) {
            if let Ok(rel) = data.strip_prefix("/var/lib") {
                let _ = writeln!(
                    u,
                    "StateDirectory={}\nStateDirectoryMode=0750",
                    word(&rel.display().to_string())
                );
            }
            let _ = writeln!(u, "ReadWritePaths={}", word(&data.display().to_string()));
        }
        let _ = writeln!(u, "LimitNOFILE={}", self.limit_nofile());
        u.push_str(HARDENING);
        line(&mut u, "");
        line(&mut u, "[Install]");
        line(&mut u, "WantedBy=multi-user.target");
        u
    }
}

/// What every role may do: listen and dial TCP, write its data directory, nothing else. No
/// role needs a capability (the gateway's default port is 8443; to bind below 1024 add a
/// drop-in with `AmbientCapabilities=CAP_NET_BIND_SERVICE` and the same bounding set).
const HARDENING: &str = "\
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
";

/// A word an environment file and `$VAR` expansion carry unchanged.
fn plain_word(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '$' | '%' | '`'))
}

/// One word of a unit setting: `%` escaped (it starts specifiers), and quoted when it holds
/// whitespace, quotes or backslashes.
fn word(s: &str) -> String {
    let s = s.replace('%', "%%");
    if s.chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

/// One word of `ExecStart=`: also `$` escaped (it starts variables).
fn exec_word(s: &str) -> String {
    word(&s.replace('$', "$$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    }

    #[test]
    fn vm_units_are_notify_hardened_and_reloadable() {
        for role in Role::ALL {
            let unit = role.render(&Layout::vm());
            for (key, value) in [
                ("Type", "notify"),
                ("ExecReload", "/bin/kill -HUP $MAINPID"),
                ("Restart", "on-failure"),
                ("ProtectSystem", "strict"),
                ("NoNewPrivileges", "yes"),
                ("CapabilityBoundingSet", ""),
                ("User", "strait"),
            ] {
                assert_eq!(setting(&unit, key), [value], "{role:?} {key}\n{unit}");
            }
            assert_eq!(setting(&unit, "LimitNOFILE").len(), 1, "{unit}");
        }
    }

    #[test]
    fn exec_start_and_data_dirs_follow_the_layout() {
        let vm = Layout::vm();
        let server = Role::Server.render(&vm);
        assert_eq!(
            setting(&server, "ExecStart"),
            ["/usr/local/bin/strait server --config /etc/strait.d/server.toml"]
        );
        assert_eq!(setting(&server, "StateDirectory"), ["strait/server"]);
        assert_eq!(
            setting(&server, "ReadWritePaths"),
            ["/var/lib/strait/server"]
        );
        let proxy = Role::Sidecar.render(&vm);
        assert_eq!(
            setting(&proxy, "ExecStart"),
            ["/usr/local/bin/strait proxy --sidecar-for %i $STRAIT_PROXY_ARGS"]
        );
        assert_eq!(
            setting(&proxy, "EnvironmentFile"),
            ["-/etc/strait.d/proxy-%i.env"]
        );
        assert!(setting(&proxy, "ReadWritePaths").is_empty());
        let lab = Layout {
            binary: "/home/me/strait 100%/strait".into(),
            config_dir: "/lab/vms/a".into(),
            state_dir: "/lab/vms/a/data".into(),
            user: USER.into(),
        };
        let agent = Role::Agent.render(&lab);
        assert_eq!(
            setting(&agent, "ExecStart"),
            ["\"/home/me/strait 100%%/strait\" agent --config /lab/vms/a/agent.toml"]
        );
        assert!(setting(&agent, "StateDirectory").is_empty());
        assert_eq!(setting(&agent, "ReadWritePaths"), ["/lab/vms/a/data/agent"]);
    }

    #[test]
    fn argv_splits_into_fixed_and_environment() {
        let vm = Layout::vm();
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let rest = Role::Sidecar
            .variable_args(
                &vm,
                "web",
                &argv("proxy --sidecar-for web --admin 127.0.0.1:19001"),
            )
            .unwrap();
        assert_eq!(rest, ["--admin", "127.0.0.1:19001"]);
        assert_eq!(
            Role::Sidecar.env_file_text(&rest).lines().last(),
            Some("STRAIT_PROXY_ARGS=\"--admin 127.0.0.1:19001\"")
        );
        assert!(Role::Server
            .variable_args(&vm, "", &argv("server --config /etc/strait.d/server.toml"))
            .unwrap()
            .is_empty());
        let err = Role::Server
            .variable_args(&vm, "", &argv("server --config /elsewhere.toml"))
            .unwrap_err();
        assert!(err.0.contains("/elsewhere.toml"), "{err}");
        let err = Role::Gateway
            .variable_args(&vm, "", &argv("gateway --mesh --service a$b"))
            .unwrap_err();
        assert!(err.0.contains("a$b"), "{err}");
    }
}
