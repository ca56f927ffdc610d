//! Where the commands for humans (`members`, `catalog`, `intention`, `doctor`) find the mesh,
//! first match wins:
//!
//! 1. the address flag or its environment variable (`--http-addr`, `STRAIT_HTTP_ADDR`;
//!    `intention`: `STRAIT_SERVER_HTTP_ADDR`);
//! 2. the lab in `$STRAIT_LAB_DIR`, or in `./.strait-lab` when one was started there: the
//!    agent or server `strait_lab::endpoints` picks (an error if that lab is not running);
//! 3. `127.0.0.1:8500`: the local agent (or server) of the VM the command runs on.
//!
//! The answer carries how it was found, so that a failure says what was tried, and for a
//! running lab its management token file, which the CLI sends when given no token.

use anyhow::{bail, Result};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use strait_lab::endpoints::{self, Endpoint, Found};

/// The default part of an address flag's help: `role` is what answers ("agent", "server").
pub(crate) fn help(role: &str) -> String {
    format!(
        "Default: in a lab directory (./.strait-lab or $STRAIT_LAB_DIR) the lab's primary DC's \
         first {role}, else 127.0.0.1:8500 (this VM's {role})"
    )
}

/// The local API of a VM running neither a lab nor an explicit address.
const DEFAULT: &str = "127.0.0.1:8500";

/// What a command asks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Want<'a> {
    /// Any agent: the first of the primary DC.
    Agent,
    /// The agent of the VM running this service (`doctor --service`).
    AgentOf(&'a str),
    /// A server: the first of the primary DC.
    Server,
}

/// The address flag a command has and the environment variable behind it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flag {
    pub value: Option<SocketAddr>,
    pub env: &'static str,
}

/// An address and how it was found.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub addr: SocketAddr,
    pub how: String,
    /// Found in a running lab with ACLs: its management token file (`LabPaths::management_token`).
    pub lab_token: Option<PathBuf>,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.addr, self.how)
    }
}

/// The agent `strait doctor` asks: with `--service`, the one of the lab VM running it.
pub(crate) fn doctor_agent(args: &strait_doctor::DoctorArgs) -> Result<Located> {
    let flag = Flag {
        value: args.http_addr,
        env: "STRAIT_HTTP_ADDR",
    };
    let want = args.service.as_deref().map_or(Want::Agent, Want::AgentOf);
    locate(flag, want)
}

pub(crate) fn locate(flag: Flag, want: Want<'_>) -> Result<Located> {
    let lab_env = std::env::var_os("STRAIT_LAB_DIR").filter(|d| !d.is_empty());
    let dir = lab_env
        .as_ref()
        .map_or_else(|| PathBuf::from(strait_lab::DEFAULT_DIR), PathBuf::from);
    locate_in(flag, want, &dir, lab_env.is_some())
}

/// [`locate`] with the lab directory given; `from_env`: it is `$STRAIT_LAB_DIR`.
fn locate_in(flag: Flag, want: Want<'_>, dir: &Path, from_env: bool) -> Result<Located> {
    if let Some(addr) = flag.value {
        let how = format!("from --http-addr or {}", flag.env);
        return Ok(Located {
            addr,
            how,
            lab_token: None,
        });
    }
    let (root, found) = endpoints::find(dir)?;
    let lab = if from_env {
        format!("the lab in STRAIT_LAB_DIR={}", root.display())
    } else {
        format!("the lab in {}", root.display())
    };
    let not_there = format!(
        "no --http-addr, no {}, no lab in {}{}",
        flag.env,
        root.display(),
        if from_env {
            " (STRAIT_LAB_DIR)"
        } else {
            " (STRAIT_LAB_DIR not set)"
        }
    );
    let ask = format!("pass --http-addr or set {}", flag.env);
    match found {
        Found::NoLab if from_env => {
            bail!("{not_there}: start one with `strait lab up`, unset STRAIT_LAB_DIR, or {ask}")
        }
        Found::NoLab => Ok(Located {
            addr: DEFAULT.parse()?,
            how: format!("the default: {not_there}"),
            lab_token: None,
        }),
        Found::NotRunning => {
            bail!("{lab} is not running (no process of it is alive): start it with `strait lab up`, or {ask}")
        }
        Found::NoRecord => {
            bail!("{lab} was started by a strait that does not record where its agents listen: restart it (`strait lab down`, `strait lab up`), or {ask}")
        }
        Found::Running(e) => {
            let lab_token = Some(strait_lab::paths::LabPaths::new(&root)?.management_token())
                .filter(|t| t.exists());
            let pick = |what: &str, chosen: Option<&Endpoint>| match chosen {
                Some(Endpoint {
                    netns: Some(ns), ..
                }) => Err(run_inside(ns, lab_token.as_deref())),
                Some(chosen) => Ok(Located {
                    addr: chosen.http,
                    how: format!("{what} on {} ({}), {lab}", chosen.vm, chosen.dc),
                    lab_token: lab_token.clone(),
                }),
                None => bail!("{lab} has no {what}: {ask}"),
            };
            match want {
                Want::Agent => pick("agent", e.agent()),
                Want::AgentOf(service) => match e.agent_of(service) {
                    Some(chosen) => pick(&format!("agent of {service}"), Some(chosen)),
                    None => pick(
                        &format!("agent (no VM of the lab runs {service})"),
                        e.agent(),
                    ),
                },
                Want::Server => pick("server", e.server()),
            }
        }
    }
}

/// With the netns driver a lab VM's API answers only inside its namespace: this very command
/// runs again there (`ip netns exec`), asking the VM's own `127.0.0.1:8500` as on a real VM,
/// like `strait lab exec <vm> -- strait ...`, with the lab's management token file unless a
/// token is set in the environment (flags win there anyway). Returns only if that cannot
/// start.
fn run_inside(ns: &str, lab_token: Option<&Path>) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return anyhow::anyhow!("cannot find this strait binary to run it in {ns}: {e}"),
    };
    let mut cmd = std::process::Command::new("ip");
    if let Some(file) = lab_token.filter(|_| !crate::cmd::token::in_environment()) {
        cmd.env(crate::cmd::token::TOKEN_FILE_ENV, file);
    }
    let err = cmd
        .args(["netns", "exec", ns])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env("STRAIT_HTTP_ADDR", DEFAULT)
        .env(crate::cmd::intention::SERVER_ENV, DEFAULT)
        .env_remove("STRAIT_LAB_DIR")
        .exec();
    anyhow::anyhow!(
        "the lab VM's API answers only inside its network namespace {ns}, and `ip netns exec {ns}` failed: {err} (run as root, or use `strait lab exec`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_lab::endpoints::Endpoints;
    use strait_lab::state::LabState;

    const ENV: &str = "STRAIT_HTTP_ADDR";

    fn none() -> Flag {
        Flag {
            value: None,
            env: ENV,
        }
    }

    #[test]
    fn flag_wins_then_lab_then_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = Flag {
            value: Some("127.0.0.9:1".parse().expect("addr")),
            env: ENV,
        };
        let got = locate_in(flag, Want::Agent, dir.path(), true).expect("flag");
        assert_eq!(got.addr.to_string(), "127.0.0.9:1");

        // No lab in the default directory: the local agent, saying what was tried.
        let got = locate_in(none(), Want::Agent, dir.path(), false).expect("default");
        assert_eq!(got.addr.to_string(), DEFAULT);
        let text = got.to_string();
        for tried in ["--http-addr", ENV, "no lab in", "STRAIT_LAB_DIR not set"] {
            assert!(text.contains(tried), "{tried} not in {text}");
        }
        // ... but a STRAIT_LAB_DIR without a lab is an error, not a silent default.
        let err = locate_in(none(), Want::Agent, dir.path(), true).expect_err("no lab");
        assert!(err.to_string().contains("STRAIT_LAB_DIR"), "{err}");
    }

    /// (A running lab's choices: strait_lab::endpoints's tests and the lab end-to-end test.)
    #[test]
    fn a_stopped_lab_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = strait_lab::paths::LabPaths::new(dir.path()).expect("paths");
        let topology = strait_lab::topology::Topology::builtin().expect("default");
        let state = LabState {
            endpoints: Some(Endpoints::of(&topology)),
            ..LabState::default()
        };
        state.save(&paths).expect("save");
        let err = locate_in(none(), Want::Agent, dir.path(), false).expect_err("stopped");
        let msg = err.to_string();
        assert!(
            msg.contains("is not running") && msg.contains("strait lab up"),
            "{msg}"
        );
    }
}
