//! The lab's own HTTP probes (readiness, `lab status`, the mesh check of `up`) inside a VM's
//! network namespace: a fresh thread enters the namespace with `setns(2)` (which moves only
//! that thread) and runs the probe on a current-thread runtime there, so its sockets belong
//! to the VM's network and `127.0.0.1` is the VM's loopback. Processes are not started this
//! way: they go through `ip netns exec`.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use strait_rpc::{http::get_url, Response, RpcError};

/// Where iproute2 keeps the handles of named namespaces.
fn handle(netns: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(netns)
}

/// Moves the calling thread into `netns`.
fn enter(netns: &str) -> anyhow::Result<()> {
    let path = handle(netns);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot open network namespace {}", path.display()))?;
    // SAFETY: setns(2) takes a file descriptor we own (kept open by `file` for the call)
    // and a flag; it touches no memory of ours and changes only this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot enter network namespace {netns}"));
    }
    Ok(())
}

/// Runs `work` on a thread inside `netns` and waits for its result.
pub async fn run_in<T, F>(netns: &str, work: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let netns = netns.to_owned();
    std::thread::Builder::new()
        .name(format!("netns {netns}"))
        .spawn(move || {
            let result = enter(&netns).map(|()| work());
            let _ = tx.send(result);
        })
        .context("cannot start a thread")?;
    rx.await.context("the namespace thread died")?
}

/// `get_url`, from inside `netns` when given.
pub async fn get(netns: Option<&str>, url: &str, timeout: Duration) -> Result<Response, Probe> {
    let Some(netns) = netns else {
        return get_url(url, timeout).await.map_err(Probe::Http);
    };
    let url = url.to_owned();
    let answer = run_in(netns, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build a runtime")?;
        Ok::<_, anyhow::Error>(runtime.block_on(get_url(&url, timeout)))
    })
    .await
    .and_then(|r| r);
    match answer {
        Ok(r) => r.map_err(Probe::Http),
        Err(e) => Err(Probe::Namespace(e)),
    }
}

/// Why a probe got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Probe {
    #[error(transparent)]
    Http(RpcError),
    #[error("{0:#}")]
    Namespace(anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_namespace_is_named() {
        let err = get(
            Some("strait-no-such-namespace"),
            "http://127.0.0.1:1/",
            Duration::from_secs(1),
        )
        .await
        .expect_err("no namespace");
        assert!(
            err.to_string().contains("strait-no-such-namespace"),
            "{err}"
        );
    }
}
