//! `strait lab status`: one row per process: VM, process, running/exited,
//! health from its readiness endpoint, address.

use std::time::Duration;

use crate::netns::enter::{get, Probe};
use crate::paths::LabPaths;
use crate::state::{self, LabState, ProcessRecord};

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub vm: String,
    pub process: String,
    pub state: String,
    pub health: String,
    pub address: String,
}

async fn health(record: &ProcessRecord, alive: bool) -> String {
    if !alive {
        return "-".to_owned();
    }
    let spec = &record.spec;
    let probe = get(
        spec.netns.as_deref(),
        &spec.ready_url,
        Duration::from_secs(1),
    );
    match probe.await {
        Ok(r) if r.status == http::StatusCode::OK => "ready".to_owned(),
        Ok(r) => format!("not ready (HTTP {})", r.status.as_u16()),
        Err(Probe::Http(strait_rpc::RpcError::Timeout { .. })) => "no answer".to_owned(),
        Err(_) => "unreachable".to_owned(),
    }
}

/// Probes every process concurrently, so a lab of dead processes answers in
/// about one timeout, not one per process. Rows keep the start order.
pub async fn rows(state: &LabState) -> Vec<Row> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, record) in state.processes.iter().cloned().enumerate() {
        tasks.spawn(async move {
            let alive = record.is_alive();
            let paused = record
                .pid
                .and_then(crate::procfs::stat)
                .is_some_and(|s| s.state == 'T');
            let state = match (alive, record.stopped) {
                (true, _) if paused => "paused",
                (true, _) => "running",
                (false, true) => "stopped",
                (false, false) => "exited",
            };
            let row = Row {
                vm: record.spec.vm.clone(),
                process: record.spec.name.clone(),
                state: state.to_owned(),
                health: health(&record, alive).await,
                address: record.spec.address.clone(),
            };
            (i, row)
        });
    }
    let mut rows: Vec<(usize, Row)> = tasks.join_all().await;
    rows.sort_by_key(|(i, _)| *i);
    rows.into_iter().map(|(_, r)| r).collect()
}

/// Formats rows as an aligned table with a header.
pub fn table(rows: &[Row]) -> String {
    let header = Row {
        vm: "VM".into(),
        process: "PROCESS".into(),
        state: "STATE".into(),
        health: "HEALTH".into(),
        address: "ADDRESS".into(),
    };
    let all: Vec<&Row> = std::iter::once(&header).chain(rows).collect();
    let w = |f: fn(&Row) -> &str| all.iter().map(|r| f(r).len()).max().unwrap_or(0);
    let (a, b, c, d) = (
        w(|r| &r.vm),
        w(|r| &r.process),
        w(|r| &r.state),
        w(|r| &r.health),
    );
    all.iter()
        .map(|r| {
            format!(
                "{:a$}  {:b$}  {:c$}  {:d$}  {}",
                r.vm, r.process, r.state, r.health, r.address
            )
        })
        .map(|line| line.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn status(paths: &LabPaths) -> anyhow::Result<()> {
    let state = LabState::require(paths)?;
    println!(
        "lab in {} (started at {}, topology {})",
        paths.root().display(),
        state::format_time(state.started_at),
        state.topology
    );
    if let Some(network) = crate::netns::setup::Network::load(paths)? {
        println!("{}", vm_table(&network.layout));
        for fault in &network.faults {
            println!("fault in force: {fault}");
        }
    }
    println!("{}", table(&rows(&state).await));
    Ok(())
}

/// The driver and, for the netns driver, every VM's addresses and namespace (the local
/// driver's VM addresses are those in the process table).
pub fn vm_table(layout: &crate::netns::Layout) -> String {
    let mut out = format!("driver {}", layout.driver.as_str());
    if layout.driver == crate::netns::Driver::Local {
        out.push_str(" (each VM an address on the loopback: see ADDRESS)");
        return out;
    }
    for v in &layout.vms {
        out.push_str(&format!("\n  {} ({}): {}", v.vm, v.dc, v.lan));
        if let Some(wan) = v.wan {
            out.push_str(&format!(", WAN {wan}"));
        }
        if let Some(ns) = &v.netns {
            out.push_str(&format!(", namespace {ns}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned() {
        let rows = vec![Row {
            vm: "primary-gateway".into(),
            process: "gateway".into(),
            state: "running".into(),
            health: "ready".into(),
            address: "127.20.1.11:8443".into(),
        }];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "VM               PROCESS  STATE    HEALTH  ADDRESS"
        );
        assert_eq!(
            lines[1],
            "primary-gateway  gateway  running  ready   127.20.1.11:8443"
        );
    }
}
