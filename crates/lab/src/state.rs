//! What a running lab leaves on disk so later commands (`status`, `logs`,
//! `stop`, `start`, `down`) can find its processes: `DIR/state.json` (every
//! process: spec, pid, start time; where its agents and servers answer, for the
//! commands for humans, see [`crate::endpoints`]) and `DIR/lab.lock` (one lab per
//! directory).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::paths::LabPaths;
use crate::plan::ProcessSpec;
use crate::procfs;

/// One supervised process and how it was last started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessRecord {
    #[serde(flatten)]
    pub spec: ProcessSpec,
    /// Also the process group id (each process leads its own group).
    pub pid: Option<u32>,
    /// /proc start time, to tell our process from a recycled pid.
    pub start_time: Option<u64>,
    /// Unix seconds.
    pub started_at: Option<u64>,
    /// Stopped on purpose by `strait lab stop`.
    #[serde(default)]
    pub stopped: bool,
}

impl ProcessRecord {
    pub fn is_alive(&self) -> bool {
        self.pid
            .is_some_and(|pid| procfs::is_alive(pid, self.start_time))
    }

    /// The group to signal, unless its leader's pid now names another process.
    pub fn group(&self) -> Option<u32> {
        let pid = self.pid?;
        (!procfs::is_recycled(pid, self.start_time)).then_some(pid)
    }
}

/// The contents of `DIR/state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabState {
    /// Unix seconds.
    pub started_at: u64,
    /// The topology file, or the built-in default's name.
    pub topology: String,
    /// In start order.
    pub processes: Vec<ProcessRecord>,
    /// Where the agents and servers answer; `None` in a state written before it was recorded.
    #[serde(default)]
    pub endpoints: Option<crate::endpoints::Endpoints>,
}

/// Unix seconds (lab timestamps are unsigned).
pub fn now() -> u64 {
    u64::try_from(strait_base::unix_now()).unwrap_or(0)
}

/// RFC 3339 (UTC) for messages.
pub fn format_time(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("unix time {unix}"))
}

/// Writes `contents` to `path` atomically (temp file + rename), mode 0600 when `secret`.
pub fn write_file(path: &Path, contents: &[u8], secret: bool) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    let mode = if secret { 0o600 } else { 0o644 };
    options.mode(mode);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    // A temp file left by an interrupted write keeps its old mode: set it before any byte.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

impl LabState {
    /// `Ok(None)` when no lab state exists in the directory.
    pub fn load(paths: &LabPaths) -> anyhow::Result<Option<LabState>> {
        let path = paths.state();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("corrupt lab state {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Like `load`, but a missing state is an error telling the user what to do.
    pub fn require(paths: &LabPaths) -> anyhow::Result<LabState> {
        match Self::load(paths)? {
            Some(state) => Ok(state),
            None => bail!(
                "no lab in {}; start one with `strait lab up`",
                paths.root().display()
            ),
        }
    }

    pub fn save(&self, paths: &LabPaths) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self).context("cannot encode lab state")?;
        write_file(&paths.state(), &json, true)
    }

    pub fn any_alive(&self) -> bool {
        self.processes.iter().any(ProcessRecord::is_alive)
    }
}

/// The contents of `DIR/lab.lock`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lock {
    /// The `strait lab up` that created it.
    pub pid: u32,
    pub start_time: Option<u64>,
    /// Unix seconds.
    pub started_at: u64,
}

/// A lab already runs in the directory.
#[derive(Debug, thiserror::Error)]
#[error("a lab is already running in {} (started at {}); run `{down}` first", dir.display(), format_time(*started_at))]
pub struct AlreadyRunning {
    pub dir: PathBuf,
    pub started_at: u64,
    /// The command that stops it (with `--dir` when not the default).
    pub down: String,
}

impl Lock {
    pub fn read(paths: &LabPaths) -> Option<Lock> {
        serde_json::from_slice(&std::fs::read(paths.lock()).ok()?).ok()
    }

    /// Takes the directory's lock. A lock is stale, and replaced, when neither
    /// its `lab up` nor any process of the recorded lab is alive.
    pub fn acquire(paths: &LabPaths, down: &str) -> anyhow::Result<Lock> {
        for _ in 0..2 {
            let me = std::process::id();
            let lock = Lock {
                pid: me,
                start_time: procfs::start_time(me),
                started_at: now(),
            };
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(paths.lock());
            match created {
                Ok(mut file) => {
                    let json = serde_json::to_vec(&lock).context("cannot encode lock")?;
                    file.write_all(&json)
                        .with_context(|| format!("cannot write {}", paths.lock().display()))?;
                    return Ok(lock);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let existing = Lock::read(paths);
                    let up_alive = existing
                        .as_ref()
                        .is_some_and(|l| procfs::is_alive(l.pid, l.start_time));
                    let lab_alive = LabState::load(paths)
                        .ok()
                        .flatten()
                        .is_some_and(|s| s.any_alive());
                    if up_alive || lab_alive {
                        return Err(AlreadyRunning {
                            dir: paths.root().to_owned(),
                            started_at: existing.map_or(0, |l| l.started_at),
                            down: down.to_owned(),
                        }
                        .into());
                    }
                    eprintln!(
                        "note: removing stale lock {} (no process of it is alive)",
                        paths.lock().display()
                    );
                    std::fs::remove_file(paths.lock()).with_context(|| {
                        format!("cannot remove stale lock {}", paths.lock().display())
                    })?;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create {}", paths.lock().display()))
                }
            }
        }
        bail!(
            "cannot take the lock {}: another `strait lab up` is racing us",
            paths.lock().display()
        )
    }

    pub fn release(paths: &LabPaths) -> anyhow::Result<()> {
        match std::fs::remove_file(paths.lock()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", paths.lock().display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_while_the_holder_lives_and_stale_lock_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = LabPaths::new(dir.path()).expect("paths");
        Lock::acquire(&paths, "strait lab down").expect("first lock");
        // We are the holder and alive: a second acquire is refused.
        let err = Lock::acquire(&paths, "strait lab down --dir X").expect_err("running");
        let msg = err.to_string();
        assert!(
            msg.contains("a lab is already running in") && msg.contains("strait lab down --dir X"),
            "{msg}"
        );

        // A lock whose holder is gone (pid of an exited child) and no live process: stale.
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let dead = child.id();
        child.wait().expect("wait");
        let stale = Lock {
            pid: dead,
            start_time: Some(1),
            started_at: 1,
        };
        write_file(
            &paths.lock(),
            &serde_json::to_vec(&stale).expect("json"),
            true,
        )
        .expect("write");
        let lock = Lock::acquire(&paths, "strait lab down").expect("stale lock replaced");
        assert_eq!(lock.pid, std::process::id());
        Lock::release(&paths).expect("release");
        assert!(!paths.lock().exists());
    }

    #[test]
    fn state_round_trips_and_missing_state_is_explained() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = LabPaths::new(dir.path()).expect("paths");
        let err = LabState::require(&paths).expect_err("no state");
        assert!(err.to_string().contains("strait lab up"), "{err}");
        let topology = crate::topology::Topology::builtin().expect("default");
        let tokens = crate::plan::Tokens::generate(&topology);
        let spec = crate::plan::plan(&topology, &paths, &tokens).remove(0);
        let state = LabState {
            started_at: 5,
            topology: "t".into(),
            processes: vec![ProcessRecord {
                spec: spec.clone(),
                pid: Some(std::process::id()),
                start_time: None,
                started_at: Some(5),
                stopped: false,
            }],
            endpoints: None,
        };
        state.save(&paths).expect("save");
        let text = std::fs::read_to_string(paths.state()).expect("read");
        assert!(
            !text.contains(&tokens.federation),
            "state.json must not hold tokens"
        );
        let loaded = LabState::require(&paths).expect("load");
        assert_eq!(loaded.processes[0].spec.args, spec.args);
        assert!(loaded.any_alive());
    }
}
