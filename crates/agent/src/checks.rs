//! Runs the local health checks: one task per check, restarted when definitions change.

use crate::definition::{CheckSpec, Counter, Probe};
use crate::http_check::Trust;
use crate::local::LocalState;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strait_catalog::CheckStatus;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One running check.
struct Running {
    spec: CheckSpec,
    handle: JoinHandle<()>,
    /// Makes the check probe now instead of at its next interval tick.
    kick: Arc<Notify>,
}

/// Keeps one task per check in step with the local state until `shutdown`. A new check runs
/// at once; a check that is not passing runs again at once whenever the local state changes
/// (its service registered again, as a gateway does when it restarts; another check turning
/// passing), so a restarted service is not left critical until the next tick.
pub async fn run(local: Arc<LocalState>, trust: Trust, shutdown: CancellationToken) {
    let mut changes = local.subscribe();
    let mut tasks: HashMap<String, Running> = HashMap::new();
    loop {
        let specs = local.check_specs();
        tasks.retain(|id, running| {
            let keep = specs
                .iter()
                .any(|s| s.check_id == *id && *s == running.spec);
            if !keep {
                running.handle.abort();
            }
            keep
        });
        for check in local.checks() {
            if check.status != CheckStatus::Passing.as_str() {
                if let Some(running) = tasks.get(&check.check_id) {
                    running.kick.notify_one();
                }
            }
        }
        for spec in specs {
            if !tasks.contains_key(&spec.check_id) {
                let kick = Arc::new(Notify::new());
                let handle = tokio::spawn(run_check(
                    local.clone(),
                    trust.clone(),
                    spec.clone(),
                    kick.clone(),
                ));
                tasks.insert(spec.check_id.clone(), Running { spec, handle, kick });
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = changes.changed() => if r.is_err() { break },
        }
    }
    for running in tasks.into_values() {
        running.handle.abort();
    }
}

async fn run_check(local: Arc<LocalState>, trust: Trust, spec: CheckSpec, kick: Arc<Notify>) {
    match spec.probe {
        Probe::Ttl { ttl } => return run_ttl(&local, &spec.check_id, ttl).await,
        Probe::Maintenance => {
            let status = CheckStatus::Critical.as_str();
            return local.set_status(&spec.check_id, status, &spec.notes);
        }
        _ => {}
    }
    let mut counter = Counter::default();
    loop {
        let (status, output) =
            match tokio::time::timeout(spec.timeout, probe(&local, &trust, &spec.probe)).await {
                Ok(r) => r,
                Err(_) => (
                    CheckStatus::Critical,
                    format!("timed out after {:?}", spec.timeout),
                ),
            };
        if let Some(status) = counter.record(&spec.streak, status) {
            local.set_status(&spec.check_id, status.as_str(), &output);
        }
        tokio::select! {
            _ = tokio::time::sleep(spec.interval) => {}
            _ = kick.notified() => {}
        }
    }
}

/// A TTL check: critical when the application has not set its status for `ttl` (Consul's
/// `TTL expired`); the timer starts over at each update.
async fn run_ttl(local: &LocalState, check_id: &str, ttl: Duration) {
    let mut updates = local.ttl_updates();
    while let Some(set_at) = local.ttl_set_at(check_id) {
        let expires = tokio::time::Instant::from_std(set_at + ttl);
        tokio::select! {
            _ = tokio::time::sleep_until(expires) => {
                if local.ttl_set_at(check_id) == Some(set_at) {
                    let output = format!("TTL expired: no status update within {ttl:?}");
                    local.set_status(check_id, CheckStatus::Critical.as_str(), &output);
                    // Nothing to do until the next update.
                    if updates.changed().await.is_err() {
                        return;
                    }
                }
            }
            r = updates.changed() => if r.is_err() { return },
        }
    }
}

async fn probe(local: &LocalState, trust: &Trust, probe: &Probe) -> (CheckStatus, String) {
    match probe {
        Probe::Tcp { addr } => match TcpStream::connect(addr).await {
            Ok(_) => (CheckStatus::Passing, format!("TCP connect {addr}: success")),
            Err(e) => (CheckStatus::Critical, format!("TCP connect {addr}: {e}")),
        },
        Probe::Http(check) => check.probe(trust).await,
        Probe::Alias { service_id } => {
            let s = local.service_status(service_id);
            let out = format!("service {service_id} is {s}");
            (s, out)
        }
        Probe::Ttl { .. } | Probe::Maintenance => {
            unreachable!("TTL and maintenance checks have no probe (run_check)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::Source;

    /// Waits for the next change of `check_id`'s status and returns (status, output).
    async fn next_status(local: &LocalState, check_id: &str) -> (String, String) {
        let mut changes = local.subscribe();
        let before = status(local, check_id);
        loop {
            let now = status(local, check_id);
            if now.0 != before.0 {
                return now;
            }
            tokio::time::timeout(Duration::from_secs(10), changes.changed())
                .await
                .expect("no status change within 10s")
                .unwrap();
        }
    }

    fn status(local: &LocalState, check_id: &str) -> (String, String) {
        let c = local.checks().into_iter().find(|c| c.check_id == check_id);
        let c = c.expect("check registered");
        (c.status, c.output)
    }

    #[tokio::test]
    async fn a_ttl_check_expires_unless_reported_and_starts_over_at_each_report() {
        let dir = tempfile::tempdir().unwrap();
        let local = Arc::new(LocalState::new(
            "n1",
            "127.0.0.1".parse().unwrap(),
            dir.path(),
        ));
        let def =
            r#"{"name": "app", "check": {"id": "app-ttl", "ttl": "300ms", "status": "passing"}}"#;
        local
            .insert(crate::decode::json(def.as_bytes()).unwrap(), Source::Api)
            .unwrap();
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(run(
            local.clone(),
            Trust::load(None, None).unwrap(),
            shutdown.clone(),
        ));

        assert_eq!(status(&local, "app-ttl").0, "passing", "the initial Status");
        let (s, output) = next_status(&local, "app-ttl").await;
        assert_eq!(s, "critical");
        assert!(output.starts_with("TTL expired"), "{output}");

        let reported = std::time::Instant::now();
        local
            .set_ttl_status("app-ttl", CheckStatus::Passing, "back")
            .unwrap();
        assert_eq!(status(&local, "app-ttl").0, "passing");
        let (s, _) = next_status(&local, "app-ttl").await;
        assert_eq!(s, "critical");
        assert!(
            reported.elapsed() >= Duration::from_millis(300),
            "expired {:?} after the report, before its TTL",
            reported.elapsed()
        );
        shutdown.cancel();
        runner.await.unwrap();
    }

    /// A gateway restarted on the same port registers itself again: its check runs at once,
    /// not at the next tick an hour later.
    #[tokio::test]
    async fn a_failing_check_runs_again_at_once_when_its_service_registers_again() {
        let dir = tempfile::tempdir().unwrap();
        let local = Arc::new(LocalState::new(
            "n1",
            "127.0.0.1".parse().unwrap(),
            dir.path(),
        ));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = port.local_addr().unwrap();
        drop(port);
        let def = format!(
            r#"{{"name": "gw", "port": {}, "check": {{"id": "gw-tcp", "tcp": "{addr}", "interval": "1h"}}}}"#,
            addr.port()
        );
        let register = || {
            local
                .insert(crate::decode::json(def.as_bytes()).unwrap(), Source::Api)
                .unwrap()
        };
        register();
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(run(
            local.clone(),
            Trust::load(None, None).unwrap(),
            shutdown.clone(),
        ));
        // The first probe leaves the initial status (critical) as it is: wait for its output.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !status(&local, "gw-tcp").1.contains("TCP connect") {
            assert!(std::time::Instant::now() < deadline, "no probe within 10s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(status(&local, "gw-tcp").0, "critical");

        let _listening = tokio::net::TcpListener::bind(addr).await.unwrap();
        register();
        let (s, output) = next_status(&local, "gw-tcp").await;
        assert_eq!(s, "passing", "{output}");
        shutdown.cancel();
        runner.await.unwrap();
    }

    /// FailuresBeforeCritical 3: a passing HTTP check stays passing through two failed
    /// probes and turns critical at the third; SuccessBeforePassing 2 likewise on the way back.
    #[tokio::test]
    async fn an_http_check_flips_only_after_its_streak() {
        use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering::SeqCst};
        let answer = Arc::new(AtomicU16::new(200));
        let served = Arc::new(AtomicUsize::new(0));
        let app = {
            let (answer, served) = (answer.clone(), served.clone());
            axum::Router::new().route(
                "/health",
                axum::routing::get(move || async move {
                    served.fetch_add(1, SeqCst);
                    http::StatusCode::from_u16(answer.load(SeqCst)).unwrap()
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().unwrap();
        let local = Arc::new(LocalState::new(
            "n1",
            "127.0.0.1".parse().unwrap(),
            dir.path(),
        ));
        let def = format!(
            r#"{{"name": "app", "check": {{"id": "app-http", "http": "http://{addr}/health",
            "interval": "100ms", "FailuresBeforeCritical": 3, "SuccessBeforePassing": 2}}}}"#
        );
        local
            .insert(crate::decode::json(def.as_bytes()).unwrap(), Source::Api)
            .unwrap();
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(run(
            local.clone(),
            Trust::load(None, None).unwrap(),
            shutdown.clone(),
        ));

        let (s, _) = next_status(&local, "app-http").await;
        assert_eq!(s, "passing");
        assert!(served.load(SeqCst) >= 2, "passing after one success");
        let before = served.load(SeqCst);
        answer.store(503, SeqCst);
        let (s, output) = next_status(&local, "app-http").await;
        assert_eq!(s, "critical");
        assert!(output.contains("503"), "{output}");
        let failed = served.load(SeqCst) - before;
        assert!(failed >= 3, "critical after {failed} failed probes");
        answer.store(200, SeqCst);
        let before = served.load(SeqCst);
        let (s, _) = next_status(&local, "app-http").await;
        assert_eq!(s, "passing");
        let ok = served.load(SeqCst) - before;
        assert!(ok >= 2, "passing again after {ok} successful probes");
        shutdown.cancel();
        runner.await.unwrap();
    }
}
