//! Where the lab writes everything: one directory a user can read.
//!
//! ```text
//! DIR/lab.lock                     pid + start time of the running lab
//! DIR/state.json                   every started process: spec, pid, start time;
//!                                  where agents and servers answer (endpoints.rs)
//! DIR/topology.toml                the topology this lab was started from
//! DIR/vms/<vm>/<role>.toml         server / agent configs (0600: they hold tokens)
//! DIR/vms/<vm>/agent.d/<svc>.json  service definitions read by the agent
//! DIR/vms/<vm>/data/<process>/     data dirs
//! DIR/vms/<vm>/logs/<process>.log  stdout + stderr of each process
//! ```

use std::path::{Path, PathBuf};

/// The layout of a lab directory, with an absolute root so that child
/// processes find their files whatever their working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPaths {
    root: PathBuf,
}

impl LabPaths {
    /// `dir` may be relative; it is made absolute against the current directory.
    pub fn new(dir: &Path) -> std::io::Result<LabPaths> {
        Ok(LabPaths {
            root: std::path::absolute(dir)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn lock(&self) -> PathBuf {
        self.root.join("lab.lock")
    }

    /// The lab's network: driver, addresses, what the netns driver created.
    pub fn network(&self) -> PathBuf {
        self.root.join("network.json")
    }

    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// The management token of a lab with ACLs (0600), which the CLI uses against the lab.
    pub fn management_token(&self) -> PathBuf {
        self.root.join("management.token")
    }

    pub fn topology(&self) -> PathBuf {
        self.root.join("topology.toml")
    }

    /// Parent of every per-VM directory; recreated by each `lab up`.
    pub fn vms(&self) -> PathBuf {
        self.root.join("vms")
    }

    pub fn vm(&self, vm: &str) -> PathBuf {
        self.vms().join(vm)
    }

    pub fn logs(&self, vm: &str) -> PathBuf {
        self.vm(vm).join("logs")
    }

    pub fn log(&self, vm: &str, process: &str) -> PathBuf {
        self.logs(vm).join(format!("{process}.log"))
    }

    pub fn data(&self, vm: &str, process: &str) -> PathBuf {
        self.vm(vm).join("data").join(process)
    }

    /// A config file of `vm`, e.g. `server.toml`.
    pub fn config(&self, vm: &str, file: &str) -> PathBuf {
        self.vm(vm).join(file)
    }

    /// The agent's `config_dir` of service definitions.
    pub fn agent_config_dir(&self, vm: &str) -> PathBuf {
        self.vm(vm).join("agent.d")
    }

    /// Whether the directory holds anything a lab wrote (guards `--purge`).
    pub fn looks_like_lab(&self) -> bool {
        self.lock().exists()
            || self.state().exists()
            || self.network().exists()
            || self.vms().is_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dir_becomes_absolute_and_layout_is_stable() {
        let p = LabPaths::new(Path::new("./.strait-lab")).expect("cwd exists");
        assert!(p.root().is_absolute());
        assert!(p
            .log("vm1", "agent")
            .ends_with(".strait-lab/vms/vm1/logs/agent.log"));
        assert!(p.agent_config_dir("vm1").ends_with("vms/vm1/agent.d"));
        assert!(p.data("vm1", "server").ends_with("vms/vm1/data/server"));
    }
}
