//! Runs `strait lab` as a user would, in a temporary lab directory, and makes sure
//! `strait lab down` runs even when the test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::strait_bin;

/// The management token file of the (ACL-enabled) lab this test process started: helpers
/// that run `strait` as the lab's operator without the lab at hand (the doctor's) use it.
pub static LAB_TOKEN_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

pub struct Lab {
    pub dir: tempfile::TempDir,
    down: bool,
}

impl Lab {
    /// `strait lab --dir <tmp> up [args...]`; panics with the output if it fails.
    pub fn up(args: &[&str]) -> Lab {
        let lab = Lab {
            dir: tempfile::tempdir().unwrap(),
            down: false,
        };
        let mut all = vec!["up"];
        all.extend_from_slice(args);
        let out = lab.run(&all);
        assert!(
            out.status.success(),
            "strait lab up failed\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let token = lab.path().join("management.token");
        if token.exists() {
            let _ = LAB_TOKEN_FILE.set(token);
        }
        lab
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a topology file into the lab's temporary directory.
    pub fn topology_file(dir: &Path, name: &str, text: &str) -> PathBuf {
        super::write(&dir.join(name), text)
    }

    /// `strait lab --dir <dir> <args...>`.
    pub fn run(&self, args: &[&str]) -> Output {
        run_lab(self.path(), args)
    }

    /// Like `run`, but panics unless the command succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strait lab {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `strait <args>` as a user in this lab: `STRAIT_LAB_DIR` names it, no address flag or
    /// variable is set. (exit code, stdout + stderr).
    pub fn cli(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = Command::new(strait_bin())
            .args(args)
            .env("STRAIT_LAB_DIR", self.path())
            .env_remove("STRAIT_HTTP_ADDR")
            .env_remove("STRAIT_SERVER_HTTP_ADDR")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    }

    /// The lab's management token (the lab runs with ACLs, default deny, unless `--acl`).
    pub fn token(&self) -> String {
        let path = self.path().join("management.token");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// `METHOD path` on `addr` with the management token: (status, body).
    pub fn http(
        &self,
        method: &str,
        addr: std::net::SocketAddr,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        let token = self.token();
        let r = super::request_with(method, addr, path, body, &[("X-Consul-Token", &token)])
            .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"));
        (r.status, r.body)
    }

    /// The pids `state.json` records (every process the lab started).
    pub fn pids(&self) -> Vec<u32> {
        recorded_pids(self.path())
    }

    /// The last lines of one process's log, for failure messages.
    pub fn log_tail(&self, vm: &str, process: &str) -> String {
        let out = self.run(&["logs", vm, "--process", process]);
        super::tail(&String::from_utf8_lossy(&out.stdout), 40)
    }

    /// `strait lab down`; asserts it succeeded.
    pub fn down(&mut self) {
        self.down = true;
        self.ok(&["down"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.down {
            let _ = self.run(&["down"]);
        }
    }
}

/// The pids the `state.json` of the lab in `dir` records.
pub fn recorded_pids(dir: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(dir.join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pid"].as_u64().map(|p| p as u32))
        .collect()
}

pub fn run_lab(dir: &Path, args: &[&str]) -> Output {
    Command::new(strait_bin())
        .arg("lab")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// True if `pid` names a live process (a zombie waiting to be reaped counts as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Pids of live processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && alive(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}
