//! `strait lab down [--purge]`: stop every process group of the lab (TERM,
//! grace, KILL), verify none is left, release the lock; `--purge` also removes
//! the lab directory.

use std::time::Duration;

use anyhow::{bail, Context};

use crate::paths::LabPaths;
use crate::state::{LabState, Lock};
use crate::supervisor;

pub async fn down(paths: &LabPaths, purge: bool, grace: Duration) -> anyhow::Result<()> {
    match LabState::load(paths)? {
        Some(state) => {
            let groups: Vec<u32> = state.processes.iter().filter_map(|p| p.group()).collect();
            let killed = supervisor::stop_groups(&groups, grace).await?;
            let note = if killed > 0 {
                format!(" ({killed} needed SIGKILL after {}s)", grace.as_secs())
            } else {
                String::new()
            };
            println!(
                "stopped {} processes{note}; none is left",
                state.processes.len()
            );
            std::fs::remove_file(paths.state())
                .with_context(|| format!("cannot remove {}", paths.state().display()))?;
        }
        None if paths.lock().exists() || paths.network().exists() => {
            println!("no processes recorded in {}", paths.root().display())
        }
        None if !purge => bail!("no lab in {}", paths.root().display()),
        None => {}
    }
    let removed = crate::netns::setup::teardown(paths)?;
    if removed > 0 {
        println!("removed {removed} network namespaces and links (none of the lab's is left)");
    }
    Lock::release(paths)?;
    if purge {
        if !paths.root().exists() {
            return Ok(());
        }
        if !paths.looks_like_lab() {
            bail!(
                "refusing to purge {}: it does not look like a lab directory (no lab.lock, state.json or vms/)",
                paths.root().display()
            );
        }
        std::fs::remove_dir_all(paths.root())
            .with_context(|| format!("cannot remove {}", paths.root().display()))?;
        println!("removed {}", paths.root().display());
    } else if paths.vms().exists() {
        println!(
            "logs and configs kept in {} (removed by the next `strait lab up`, or now with --purge)",
            paths.vms().display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{App, ProcessSpec, Program, Role};
    use crate::procfs;

    fn sleeper(paths: &LabPaths, name: &str) -> ProcessSpec {
        ProcessSpec {
            vm: "vm1".into(),
            dc: "dc1".into(),
            name: name.into(),
            role: Role::App(App::Command),
            service: Some(name.into()),
            program: Program::Path("sh".into()),
            args: vec!["-c".into(), "sleep 60 & sleep 60".into()],
            env: Vec::new(),
            files: Vec::new(),
            dirs: Vec::new(),
            ready_url: String::new(),
            address: String::new(),
            listens: Vec::new(),
            log: paths.log("vm1", name),
            netns: None,
        }
    }

    #[tokio::test]
    async fn down_leaves_no_process_and_purge_removes_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = LabPaths::new(&dir.path().join("lab")).expect("paths");
        std::fs::create_dir_all(paths.root()).expect("mkdir");
        Lock::acquire(&paths, "strait lab down").expect("lock");
        let mut state = LabState::default();
        let mut children = Vec::new();
        for name in ["a", "b"] {
            let spec = sleeper(&paths, name);
            supervisor::prepare(&spec).expect("prepare");
            let (child, record) =
                supervisor::spawn(&spec, std::path::Path::new("/nonexistent")).expect("spawn");
            children.push(child);
            state.processes.push(record);
        }
        state.save(&paths).expect("save");
        let pids: Vec<u32> = state.processes.iter().filter_map(|p| p.pid).collect();
        // `sh` forks its background sleep first: wait until both groups have two members.
        for &pid in &pids {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while procfs::group_members(pid).len() < 2 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        down(&paths, false, Duration::from_secs(5))
            .await
            .expect("down");
        for child in &mut children {
            child.wait().expect("reap");
        }
        for pid in pids {
            assert!(
                procfs::group_members(pid).is_empty(),
                "group {pid} survived"
            );
        }
        assert!(!paths.lock().exists() && !paths.state().exists());
        assert!(paths.vms().exists(), "logs are kept without --purge");

        // A second down explains there is nothing; purge then removes the dir.
        assert!(down(&paths, false, Duration::from_secs(1)).await.is_err());
        down(&paths, true, Duration::from_secs(1))
            .await
            .expect("purge");
        assert!(!paths.root().exists());
    }

    #[tokio::test]
    async fn purge_refuses_a_directory_that_is_not_a_lab() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("precious.txt"), "keep").expect("write");
        let paths = LabPaths::new(dir.path()).expect("paths");
        let err = down(&paths, true, Duration::from_secs(1))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("refusing to purge"), "{err}");
        assert!(dir.path().join("precious.txt").exists());
    }
}
