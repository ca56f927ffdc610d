//! SIGHUP handling shared by every role: `systemctl reload` runs `kill -HUP $MAINPID`, the
//! role answers `RELOADING=1`, reloads what it can, and ends with `READY=1` whose `STATUS=`
//! says what happened. A failed reload keeps the previous configuration running.

use std::fmt::Display;
use std::future::Future;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// The names of the fields whose flag says they changed, for reload logs and statuses.
pub fn changed_fields<const N: usize>(fields: [(&'static str, bool); N]) -> Vec<&'static str> {
    fields
        .into_iter()
        .filter_map(|(field, changed)| changed.then_some(field))
        .collect()
}

/// Installs the SIGHUP handler. Call it at start-up: from then on a SIGHUP waits for
/// [`serve`] (pending signals coalesce into one) instead of killing the process, SIGHUP's
/// default action.
pub fn hangup() -> std::io::Result<Signal> {
    signal(SignalKind::hangup())
}

/// Answers each SIGHUP until `shutdown`: `RELOADING=1`, then `reload()`, then `READY=1` with
/// its outcome as status (`Ok`: what changed; `Err`: logged, and the status says the previous
/// configuration is kept).
pub async fn serve<F, Fut, E>(mut hangup: Signal, shutdown: CancellationToken, mut reload: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<String, E>>,
    E: Display,
{
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hangup.recv() => if got.is_none() { return },
        }
        crate::notify::reloading();
        let status = match reload().await {
            Ok(done) => format!("ready; {done}"),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"),
                    "reload failed; still running with the previous configuration");
                format!("ready; reload failed, previous configuration kept: {e:#}")
            }
        };
        crate::notify::ready(&status);
    }
}
