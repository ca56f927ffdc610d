//! The demo services (`strait demo counting|dashboard`): plain HTTP apps the lab
//! puts behind sidecars, so the mesh path can be seen working (or failing).

pub mod counting;
pub mod dashboard;

/// Resolves on SIGTERM (what `strait lab stop|down` sends) or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = ctrl_c => {}
            }
        }
        Err(_) => ctrl_c.await,
    }
}
