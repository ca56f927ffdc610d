//! Supervisor mechanics with real processes: the demo counting service (this
//! test binary re-run as a child), `sh` and `sleep`.

use super::*;
use crate::plan::{App, Role};

/// Env var that turns [`child_counting_server`] into a real server.
const CHILD_ENV: &str = "STRAIT_LAB_TEST_CHILD";

/// Not a test: the body of the child process other tests start. Without
/// `STRAIT_LAB_TEST_CHILD` it returns at once.
#[test]
#[ignore = "helper: run as a child process by the supervisor tests"]
fn child_counting_server() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let args = crate::demo::counting::CountingArgs {
        port: std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
        bind: std::net::Ipv4Addr::LOCALHOST.into(),
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let run = async {
        let life = strait_systemd::lifecycle::Lifecycle::new("demo")?;
        let main = crate::demo::counting::run(args, life.role());
        life.run(main).await
    };
    if let Err(e) = rt.block_on(run) {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn spec(dir: &Path, name: &str, program: Program, args: &[&str], ready_url: String) -> ProcessSpec {
    ProcessSpec {
        vm: "vm1".into(),
        dc: "dc1".into(),
        name: name.into(),
        role: Role::App(App::Command),
        service: Some(name.into()),
        program,
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        files: vec![crate::plan::FileSpec {
            path: dir.join("conf/x.toml"),
            contents: "a = 1\n".into(),
            secret: true,
        }],
        dirs: vec![dir.join("data")],
        ready_url,
        address: String::new(),
        listens: Vec::new(),
        log: dir.join("logs").join(format!("{name}.log")),
        netns: None,
    }
}

pub(crate) fn counting_spec(dir: &Path) -> (ProcessSpec, u16) {
    let port = free_port();
    let exe = std::env::current_exe().expect("test binary");
    let mut s = spec(
        dir,
        "counting",
        Program::Path(exe.display().to_string()),
        &[
            "--exact",
            "supervisor::tests::child_counting_server",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
        format!("http://127.0.0.1:{port}/health"),
    );
    s.env = vec![
        (CHILD_ENV.into(), "1".into()),
        ("PORT".into(), port.to_string()),
    ];
    (s, port)
}

#[tokio::test]
async fn starts_waits_for_readiness_and_stops_the_demo_counting_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spec, port) = counting_spec(dir.path());
    prepare(&spec).expect("prepare");
    let meta = std::fs::metadata(dir.path().join("conf/x.toml")).expect("file written");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    assert!(dir.path().join("data").is_dir());

    let (mut child, record) = spawn(&spec, Path::new("/nonexistent")).expect("spawn");
    let pid = record.pid.expect("pid");
    assert_eq!(
        procfs::stat(pid).map(|s| s.pgrp),
        Some(pid),
        "runs in its own process group"
    );
    wait_ready(&spec, &mut child, Duration::from_secs(30))
        .await
        .expect("ready");
    assert!(record.is_alive());

    let r = strait_rpc::http::get_url(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(2))
        .await
        .expect("count");
    let reply: crate::demo::counting::CountReply = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(reply.count, 1);

    let killed = stop_groups(&[pid], Duration::from_secs(10))
        .await
        .expect("stop");
    assert_eq!(killed, 0, "counting exits on SIGTERM, no SIGKILL needed");
    assert!(procfs::group_members(pid).is_empty());
    child.wait().expect("reap");
    assert!(!record.is_alive());
    let log = std::fs::read_to_string(&spec.log).expect("log");
    assert!(log.contains("counting: listening on"), "{log}");
}

#[tokio::test]
async fn early_exit_fails_fast_and_quotes_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec(
        dir.path(),
        "broken",
        Program::Path("sh".into()),
        &["-c", "echo boom >&2; exit 3"],
        format!("http://127.0.0.1:{}/", free_port()),
    );
    prepare(&spec).expect("prepare");
    let (mut child, _) = spawn(&spec, Path::new("/nonexistent")).expect("spawn");
    let started = Instant::now();
    let err = wait_ready(&spec, &mut child, Duration::from_secs(30))
        .await
        .expect_err("exits");
    assert!(started.elapsed() < Duration::from_secs(10));
    let msg = format!("{err:#}");
    assert!(
        msg.contains("exited") && msg.contains("boom") && msg.contains("broken.log"),
        "{msg}"
    );
}

#[tokio::test]
async fn readiness_timeout_names_url_and_log_then_group_is_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{}/ready", free_port());
    let spec = spec(
        dir.path(),
        "sleepy",
        Program::Path("sh".into()),
        &["-c", "echo waiting; exec sleep 30"],
        url.clone(),
    );
    prepare(&spec).expect("prepare");
    let (mut child, record) = spawn(&spec, Path::new("/nonexistent")).expect("spawn");
    let err = wait_ready(&spec, &mut child, Duration::from_millis(600))
        .await
        .expect_err("never ready");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("not ready within") && msg.contains(&url) && msg.contains("waiting"),
        "{msg}"
    );
    let pid = record.pid.expect("pid");
    stop_groups(&[pid], Duration::from_secs(5))
        .await
        .expect("stop");
    child.wait().expect("reap");
    assert!(procfs::group_members(pid).is_empty());
}

#[tokio::test]
async fn stragglers_ignoring_sigterm_get_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec(
        dir.path(),
        "stubborn",
        Program::Path("sh".into()),
        &[
            "-c",
            "trap '' TERM; echo trapped; while :; do sleep 0.1; done",
        ],
        String::new(),
    );
    prepare(&spec).expect("prepare");
    let (mut child, record) = spawn(&spec, Path::new("/nonexistent")).expect("spawn");
    let pid = record.pid.expect("pid");
    // SIGTERM must arrive after the trap is installed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&spec.log)
        .unwrap_or_default()
        .lines()
        .any(|l| l == "trapped")
    {
        assert!(Instant::now() < deadline, "shell never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = stop_groups(&[pid], Duration::from_millis(300))
        .await
        .expect("stop");
    assert_eq!(killed, 1);
    child.wait().expect("reap");
    assert!(procfs::group_members(pid).is_empty());
}

#[test]
fn strait_bin_honours_the_override() {
    // Only reads the variable when set; the default is the running executable.
    let bin = strait_bin().expect("a binary");
    if std::env::var_os("STRAIT_BIN").is_none() {
        assert_eq!(bin, std::env::current_exe().expect("exe"));
    }
}

#[test]
fn log_tail_keeps_the_last_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("x.log");
    std::fs::write(&log, "1\n2\n3\n4\n").expect("write");
    assert_eq!(log_tail(&log, 2), "    3\n    4");
    assert_eq!(
        log_tail(&dir.path().join("missing.log"), 2),
        "    (log is empty)"
    );
}
