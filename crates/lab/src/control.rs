//! `strait lab stop|start <name>`: stop or restart one service's app process
//! (not its sidecar), e.g. to watch the dashboard report counting as
//! unreachable and then recover; or a gateway or sidecar by its process name
//! (`gateway`, `counting-sidecar`), e.g. to see what `strait doctor` reports. `start <vm>`
//! starts every process of a VM that is not running (after `lab kill <vm>`).

use std::time::Duration;

use anyhow::bail;

use crate::paths::LabPaths;
use crate::plan::Role;
use crate::state::LabState;
use crate::supervisor;

/// Indexes of the app processes of `service`, or of the gateways or sidecars whose process
/// name is `service` (optionally on one VM).
fn matching(state: &LabState, service: &str, vm: Option<&str>) -> anyhow::Result<Vec<usize>> {
    // Servers and agents are not started or stopped one by one.
    let apps = || {
        state
            .processes
            .iter()
            .enumerate()
            .filter(|(_, p)| !matches!(p.spec.role, Role::Server | Role::Agent))
    };
    let found: Vec<usize> = apps()
        .filter(|(_, p)| match p.spec.role {
            Role::App(_) => p.spec.service.as_deref() == Some(service),
            _ => p.spec.name == service,
        })
        .filter(|(_, p)| vm.is_none_or(|vm| p.spec.vm == vm))
        .map(|(i, _)| i)
        .collect();
    if found.is_empty() {
        let mut known: Vec<String> = apps()
            .map(|(_, p)| format!("{} (on {})", p.spec.name, p.spec.vm))
            .collect();
        known.dedup();
        let on = vm.map(|v| format!(" on {v}")).unwrap_or_default();
        bail!(
            "no service, gateway or sidecar {service:?}{on} in this lab (processes: {})",
            known.join(", ")
        );
    }
    Ok(found)
}

pub async fn stop(
    paths: &LabPaths,
    service: &str,
    vm: Option<&str>,
    grace: Duration,
) -> anyhow::Result<()> {
    let mut state = LabState::require(paths)?;
    for i in matching(&state, service, vm)? {
        let record = &mut state.processes[i];
        if !record.is_alive() {
            println!("{} on {} is not running", record.spec.name, record.spec.vm);
        } else if let Some(group) = record.group() {
            supervisor::stop_groups(&[group], grace).await?;
            println!(
                "stopped {} on {} (pid {group})",
                record.spec.name, record.spec.vm
            );
        }
        record.stopped = true;
    }
    state.save(paths)
}

pub async fn start(
    paths: &LabPaths,
    service: &str,
    vm: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut state = LabState::require(paths)?;
    let strait = supervisor::strait_bin()?;
    // `lab start <vm>` (after `lab kill <vm>`): every process of the VM, servers and agents
    // included, in start order.
    let found = matching(&state, service, vm).or_else(|error| {
        let of_vm: Vec<usize> = (0..state.processes.len())
            .filter(|&i| vm.is_none() && state.processes[i].spec.vm == service)
            .collect();
        if of_vm.is_empty() {
            Err(error)
        } else {
            Ok(of_vm)
        }
    })?;
    for i in found {
        if state.processes[i].is_alive() {
            let r = &state.processes[i];
            println!("{} on {} is already running", r.spec.name, r.spec.vm);
            continue;
        }
        let spec = state.processes[i].spec.clone();
        supervisor::prepare(&spec)?;
        let (mut child, record) = supervisor::spawn(&spec, &strait)?;
        state.processes[i] = record;
        state.save(paths)?;
        supervisor::wait_ready(&spec, &mut child, timeout).await?;
        println!("{} {}: {}", spec.dc, spec.vm, spec.ready_summary());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{App, ProcessSpec, Program};
    use crate::state::ProcessRecord;

    fn record(paths: &LabPaths, vm: &str, name: &str, role: Role) -> ProcessRecord {
        ProcessRecord {
            spec: ProcessSpec {
                vm: vm.into(),
                dc: "dc1".into(),
                name: name.into(),
                role,
                service: Some(name.trim_end_matches("-sidecar").into()),
                program: Program::Path("sh".into()),
                args: vec!["-c".into(), "exec sleep 60".into()],
                env: Vec::new(),
                files: Vec::new(),
                dirs: Vec::new(),
                ready_url: "http://127.0.0.1:1/".into(),
                address: String::new(),
                listens: Vec::new(),
                log: paths.log(vm, name),
                netns: None,
            },
            pid: None,
            start_time: None,
            started_at: None,
            stopped: false,
        }
    }

    #[tokio::test]
    async fn stop_acts_on_the_app_not_its_sidecar_and_unknown_names_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = LabPaths::new(dir.path()).expect("paths");
        let mut state = LabState::default();
        let mut app = record(&paths, "vm2", "counting", Role::App(App::Counting));
        supervisor::prepare(&app.spec).expect("prepare");
        let (mut child, started) =
            supervisor::spawn(&app.spec, std::path::Path::new("/x")).expect("spawn");
        app = started;
        state.processes = vec![
            app,
            record(&paths, "vm2", "counting-sidecar", Role::Sidecar),
        ];
        state.save(&paths).expect("save");

        let err = stop(&paths, "countin", None, Duration::from_secs(1))
            .await
            .expect_err("unknown");
        assert!(err.to_string().contains("counting (on vm2)"), "{err}");
        assert!(
            stop(&paths, "counting", Some("vm1"), Duration::from_secs(1))
                .await
                .is_err()
        );

        stop(&paths, "counting", None, Duration::from_secs(5))
            .await
            .expect("stop");
        child.wait().expect("reap");
        let after = LabState::require(&paths).expect("state");
        assert!(after.processes[0].stopped && !after.processes[0].is_alive());
        assert!(!after.processes[1].stopped, "the sidecar is untouched");
        // A sidecar (or gateway) is named by its process name.
        assert_eq!(
            matching(&after, "counting-sidecar", Some("vm2")).expect("sidecar"),
            vec![1]
        );
    }

    #[tokio::test]
    async fn start_restarts_a_stopped_service_and_waits_for_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = LabPaths::new(dir.path()).expect("paths");
        let (spec, port) = crate::supervisor::tests::counting_spec(dir.path());
        let mut rec = record(&paths, "vm2", "counting", Role::App(App::Counting));
        rec.spec = spec;
        rec.stopped = true;
        LabState {
            processes: vec![rec],
            ..LabState::default()
        }
        .save(&paths)
        .expect("save");

        start(&paths, "counting", None, Duration::from_secs(30))
            .await
            .expect("start");
        let state = LabState::require(&paths).expect("state");
        assert!(state.processes[0].is_alive() && !state.processes[0].stopped);
        let r =
            strait_rpc::http::get_url(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(2))
                .await
                .expect("counting answers");
        assert_eq!(r.status, 200);
        // Already running: start is a no-op.
        start(&paths, "counting", None, Duration::from_secs(5))
            .await
            .expect("no-op");

        stop(&paths, "counting", None, Duration::from_secs(5))
            .await
            .expect("stop");
        let pid = state.processes[0].pid.expect("pid");
        assert!(crate::procfs::group_members(pid).is_empty());
    }
}
