//! Executes a [`ProcessSpec`]: writes its files, starts it detached in its own
//! process group with output to its log file, waits for its readiness URL, and
//! stops process groups (TERM, grace, KILL, verify).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::netns;
use crate::plan::{ProcessSpec, Program};
use crate::procfs;
use crate::signal::{self, Signal};
use crate::state::{self, ProcessRecord};

/// Variables the demo apps read; cleared so the user's shell cannot leak them
/// into the wrong process.
const CLEARED_ENV: [&str; 5] = [
    "PORT",
    "BIND_ADDR",
    "COUNTING_SERVICE_URL",
    "STRAIT_HOSTNAME",
    // A lab run under systemd: its children must not speak for the lab's own unit.
    "NOTIFY_SOCKET",
];

/// The strait executable for child processes: `STRAIT_BIN`, else ourselves.
pub fn strait_bin() -> anyhow::Result<PathBuf> {
    match std::env::var_os("STRAIT_BIN") {
        Some(bin) if !bin.is_empty() => Ok(PathBuf::from(bin)),
        _ => std::env::current_exe().context("cannot find the strait executable (set STRAIT_BIN)"),
    }
}

/// Creates the directories and writes the files the process needs.
pub fn prepare(spec: &ProcessSpec) -> anyhow::Result<()> {
    let log_dir = spec.log.parent().unwrap_or(Path::new("."));
    for dir in spec.dirs.iter().map(PathBuf::as_path).chain([log_dir]) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    for file in &spec.files {
        if let Some(parent) = file.path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        state::write_file(&file.path, file.contents.as_bytes(), file.secret)?;
    }
    Ok(())
}

/// Starts the process in its own process group (so it survives the `lab`
/// command, ignores the terminal's Ctrl-C, and can be stopped as a group).
pub fn spawn(spec: &ProcessSpec, strait: &Path) -> anyhow::Result<(Child, ProcessRecord)> {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .with_context(|| format!("cannot open log {}", spec.log.display()))?;
    let err_log = log
        .try_clone()
        .with_context(|| format!("cannot open log {}", spec.log.display()))?;
    let program = match &spec.program {
        Program::Strait => strait.to_owned(),
        Program::Path(p) => PathBuf::from(p),
    };
    // A marker per start, so restarts (`lab start`) are visible in the log.
    writeln!(
        log,
        "--- strait lab: starting {} {} at {} ---",
        program.display(),
        spec.args.join(" "),
        state::format_time(state::now())
    )
    .with_context(|| format!("cannot write log {}", spec.log.display()))?;
    let mut cmd = match &spec.netns {
        // `ip netns exec` execs the program in place: the pid recorded is the program's.
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(&program);
            cmd
        }
        None => Command::new(&program),
    };
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .process_group(0);
    for key in CLEARED_ENV {
        cmd.env_remove(key);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    let child = cmd.spawn().with_context(|| {
        format!(
            "{} {}: cannot start {}",
            spec.vm,
            spec.name,
            program.display()
        )
    })?;
    let pid = child.id();
    let record = ProcessRecord {
        spec: spec.clone(),
        pid: Some(pid),
        start_time: procfs::start_time(pid),
        started_at: Some(state::now()),
        stopped: false,
    };
    Ok((child, record))
}

/// The last `n` lines of a log file, indented, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    if tail.is_empty() {
        return "    (log is empty)".to_owned();
    }
    tail.iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls the readiness URL until it answers 200. Fails early if the process
/// exits, and at `timeout`; both errors quote the log.
pub async fn wait_ready(
    spec: &ProcessSpec,
    child: &mut Child,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        let probe = netns::enter::get(
            spec.netns.as_deref(),
            &spec.ready_url,
            Duration::from_secs(1),
        );
        let last = match probe.await {
            Ok(r) if r.status == http::StatusCode::OK => return Ok(()),
            Ok(r) => format!("HTTP {}", r.status),
            Err(e) => e.to_string(),
        };
        if let Some(status) = child.try_wait().context("cannot check child status")? {
            bail!(
                "{} {}: exited ({status}) before becoming ready\nlog {} (last lines):\n{}",
                spec.vm,
                spec.name,
                spec.log.display(),
                log_tail(&spec.log, 20)
            );
        }
        if started.elapsed() >= timeout {
            bail!(
                "{} {}: not ready within {}s: GET {} -> {last}\nlog {} (last lines):\n{}",
                spec.vm,
                spec.name,
                timeout.as_secs(),
                spec.ready_url,
                spec.log.display(),
                log_tail(&spec.log, 20)
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

async fn wait_groups_gone(groups: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<u32> = groups
            .iter()
            .copied()
            .filter(|&g| !procfs::group_members(g).is_empty())
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops whole process groups: SIGTERM, up to `grace` to exit, then SIGKILL.
/// Returns how many groups needed SIGKILL; fails if any process survives.
pub async fn stop_groups(groups: &[u32], grace: Duration) -> anyhow::Result<usize> {
    for &g in groups {
        signal::signal_group(g, Signal::Term)
            .with_context(|| format!("cannot send SIGTERM to process group {g}"))?;
        // A group paused by `lab pause` handles SIGTERM only once it runs again.
        signal::signal_group(g, Signal::Cont)
            .with_context(|| format!("cannot send SIGCONT to process group {g}"))?;
    }
    let stragglers = wait_groups_gone(groups, grace).await;
    for &g in &stragglers {
        signal::signal_group(g, Signal::Kill)
            .with_context(|| format!("cannot send SIGKILL to process group {g}"))?;
    }
    let left = wait_groups_gone(&stragglers, Duration::from_secs(5)).await;
    if !left.is_empty() {
        let pids: Vec<u32> = left
            .iter()
            .flat_map(|&g| procfs::group_members(g))
            .collect();
        bail!("processes survived SIGKILL: {pids:?}");
    }
    Ok(stragglers.len())
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
pub(crate) mod tests;
