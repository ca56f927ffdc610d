//! Connection lifecycle shared by all listeners of a process: the `--max-connections` cap,
//! task tracking, and the graceful drain (stop accepting, let connections finish under
//! `--grace`, then cut the rest).

use crate::metrics::ListenerMetrics;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Every connection task of one proxy process.
#[derive(Debug)]
pub(crate) struct Connections {
    tracker: TaskTracker,
    /// Cancelled when the grace period is over: connection tasks stop at once.
    hard_stop: CancellationToken,
    active: AtomicUsize,
    max: usize,
}

/// Held by a connection task for its whole life; releases its slot on drop.
#[derive(Debug)]
pub(crate) struct ConnGuard {
    conns: Arc<Connections>,
    listener: Arc<ListenerMetrics>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.conns.active.fetch_sub(1, Ordering::AcqRel);
        self.listener.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connections {
    pub(crate) fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            tracker: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            active: AtomicUsize::new(0),
            max,
        })
    }

    /// Takes a connection slot, or `None` when the process is at its cap.
    pub(crate) fn admit(self: &Arc<Self>, listener: &Arc<ListenerMetrics>) -> Option<ConnGuard> {
        let mut current = self.active.load(Ordering::Acquire);
        loop {
            if current >= self.max {
                return None;
            }
            match self.active.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        listener.active.fetch_add(1, Ordering::Relaxed);
        Some(ConnGuard {
            conns: self.clone(),
            listener: listener.clone(),
        })
    }

    /// Connections being served now, over all listeners.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Runs a connection task until it ends or the grace period is over.
    pub(crate) fn spawn<F>(&self, conn: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let hard_stop = self.hard_stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = conn => {}
                _ = hard_stop.cancelled() => {}
            }
        });
    }

    /// Waits for connections to finish, at most `grace`; then cuts the rest.
    /// Listeners must already have stopped accepting.
    pub(crate) async fn drain(&self, grace: Duration) {
        self.tracker.close();
        let remaining = self.active();
        if remaining > 0 {
            tracing::info!(
                remaining,
                grace_ms = grace.as_millis() as u64,
                "draining connections"
            );
        }
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.active(),
                "grace period over; closing remaining connections"
            );
            self.hard_stop.cancel();
            self.tracker.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cap_is_enforced_and_released() {
        let conns = Connections::new(2);
        let listener = Arc::new(ListenerMetrics::default());
        let a = conns.admit(&listener).expect("first");
        let _b = conns.admit(&listener).expect("second");
        assert!(conns.admit(&listener).is_none());
        assert_eq!(listener.active.load(Ordering::Relaxed), 2);
        drop(a);
        assert!(conns.admit(&listener).is_some());
        assert_eq!(conns.active(), 1);
    }

    #[tokio::test]
    async fn drain_cuts_connections_after_grace() {
        let conns = Connections::new(10);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        conns.spawn(async move {
            std::future::pending::<()>().await;
            let _ = done_tx.send(());
        });
        conns.spawn(async {});
        let started = tokio::time::Instant::now();
        conns.drain(Duration::from_millis(100)).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        // The pending task was dropped, so its sender is gone.
        assert!(done_rx.await.is_err());
    }
}
