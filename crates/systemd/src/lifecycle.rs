//! One lifecycle for every long-running role (server, agent, sidecar, gateway, the Envoy
//! runner, the demo services): the only place that owns signals, readiness, background tasks
//! and the way a role ends.
//!
//! * Signals: SIGTERM and SIGINT start a graceful stop (`STOPPING=1`, the role's shutdown
//!   token is cancelled, listeners stop accepting, connections drain); a second one skips the
//!   rest of the grace period. SIGHUP runs the role's reload ([`Role::on_reload`]) between
//!   `RELOADING=1` and `READY=1`; all three handlers are installed by [`Lifecycle::new`], so a
//!   SIGHUP that arrives before the role can reload waits instead of killing the process.
//! * Readiness: [`Role::ready`] sends `READY=1` once the role is usable.
//! * Tasks: every background loop is started with [`Role::spawn`] under a name. A task that
//!   returns an error, panics, or ends while the role is not stopping is logged with its name
//!   and stops the whole role with a runtime failure (exit status 1, so systemd's
//!   `Restart=on-failure` restarts it) instead of leaving a half-dead process.
//! * Ending: [`Lifecycle::run`] waits for the role's main future, a signal or a failed task,
//!   then for the main future and every task under the grace deadline, and returns the
//!   outcome; the binary maps errors to an [`Exit`] status in `main`, nowhere else.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strait_base::sync::lock;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How a process ends: its exit status. `main` maps every outcome through this one enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: finished, or stopped cleanly by a signal.
    Clean,
    /// 1: a runtime failure (a task failed, an address is taken, a peer refused us); worth a
    /// restart.
    Failure,
    /// 64 (`EX_USAGE`): the command line is wrong.
    Usage,
    /// 78 (`EX_CONFIG`): a configuration file or its contents are wrong; a restart cannot
    /// help, so the units say `RestartPreventExitStatus=64 78`.
    Config,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Clean => 0,
            Exit::Failure => 1,
            Exit::Usage => 64,
            Exit::Config => 78,
        }
    }

    /// The status for an error: [`Exit::Config`] or [`Exit::Usage`] when anything in its
    /// chain is a [`BadConfig`] or [`BadUsage`], else [`Exit::Failure`].
    pub fn of(err: &anyhow::Error) -> Exit {
        for cause in err.chain() {
            if cause.is::<BadConfig>() {
                return Exit::Config;
            }
            if cause.is::<BadUsage>() {
                return Exit::Usage;
            }
        }
        Exit::Failure
    }
}

/// An error that is the configuration's fault ([`Exit::Config`]). Its `Display` is the whole
/// chain of the error it wraps, so the message is not shortened.
#[derive(Debug)]
pub struct BadConfig(pub anyhow::Error);

/// An error in the command line ([`Exit::Usage`]).
#[derive(Debug)]
pub struct BadUsage(pub anyhow::Error);

impl fmt::Display for BadConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl fmt::Display for BadUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for BadConfig {}
impl std::error::Error for BadUsage {}

/// Tags an error with the exit status it deserves.
pub trait ExitContext<T> {
    /// The error is the configuration's fault: exit 78.
    fn bad_config(self) -> anyhow::Result<T>;
    /// The error is the command line's fault: exit 64.
    fn bad_usage(self) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> ExitContext<T> for Result<T, E> {
    fn bad_config(self) -> anyhow::Result<T> {
        self.map_err(|e| BadConfig(e.into()).into())
    }

    fn bad_usage(self) -> anyhow::Result<T> {
        self.map_err(|e| BadUsage(e.into()).into())
    }
}

/// What a task may return: `()` (it cannot fail) or a `Result` whose error stops the role.
pub trait TaskOutput: Send + 'static {
    fn into_result(self) -> anyhow::Result<()>;
}

impl TaskOutput for () {
    fn into_result(self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl<E: Into<anyhow::Error> + Send + 'static> TaskOutput for Result<(), E> {
    fn into_result(self) -> anyhow::Result<()> {
        self.map_err(Into::into)
    }
}

/// How a registered task ended when it should not have.
#[derive(Debug)]
enum Ending {
    /// Returned `Ok` while the role was not stopping.
    Returned,
    Failed(anyhow::Error),
    Panicked(String),
}

#[derive(Debug)]
struct TaskFailure {
    task: Cow<'static, str>,
    ending: Ending,
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let task = &self.task;
        match &self.ending {
            Ending::Returned => write!(f, "task `{task}` ended unexpectedly"),
            Ending::Failed(e) => write!(f, "task `{task}` failed: {e:#}"),
            Ending::Panicked(msg) => write!(f, "task `{task}` panicked: {msg}"),
        }
    }
}

/// A role's handle on its lifecycle: cloned into whatever starts background tasks.
#[derive(Clone)]
pub struct Role {
    name: &'static str,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The names of the tasks still running, by registration number (logged when a stop
    /// overruns its grace period).
    live: Arc<Mutex<BTreeMap<u64, Cow<'static, str>>>>,
    next_id: Arc<AtomicU64>,
    failures: mpsc::UnboundedSender<TaskFailure>,
    /// Taken by [`Role::on_reload`].
    hangup: Arc<Mutex<Option<Signal>>>,
}

impl fmt::Debug for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Role")
            .field("name", &self.name)
            .field("stopping", &self.shutdown.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Role {
    /// The role's name (`server`, `agent`, ...).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Cancelled when the role starts stopping (signal, failed task, or the main future
    /// ended): listeners stop accepting and loops return.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Asks the role to stop, as SIGTERM would.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Starts a named background task. It must run until [`Role::shutdown`] is cancelled:
    /// an error, a panic, or returning earlier stops the role with a runtime failure naming
    /// the task.
    pub fn spawn<F>(&self, name: impl Into<Cow<'static, str>>, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        let name = name.into();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.live).insert(id, name.clone());
        let inject = injected_panic(&name);
        let inner = tokio::spawn(async move {
            if inject {
                panic!("injected by {PANIC_TASK_ENV}");
            }
            task.await
        });
        let (live, failures, shutdown) = (
            self.live.clone(),
            self.failures.clone(),
            self.shutdown.clone(),
        );
        self.tracker.spawn(async move {
            let outcome = inner.await.map(TaskOutput::into_result);
            lock(&live).remove(&id);
            let ending = match outcome {
                Ok(Ok(())) if shutdown.is_cancelled() => return,
                Ok(Ok(())) => Ending::Returned,
                Ok(Err(e)) => Ending::Failed(e),
                Err(e) if e.is_panic() => Ending::Panicked(panic_message(e.into_panic())),
                Err(_) => return,
            };
            let failure = TaskFailure { task: name, ending };
            tracing::error!(task = %failure.task, "{failure}");
            let _ = failures.send(failure);
        });
    }

    /// [`Role::spawn`] for a loop with nothing to drain (a watch, a renewal timer, a retry
    /// loop): it is dropped as soon as the stop begins, whatever it is waiting on.
    pub fn spawn_cancellable<F>(&self, name: impl Into<Cow<'static, str>>, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        let shutdown = self.shutdown.clone();
        self.spawn(name, async move {
            tokio::select! {
                r = task => r.into_result(),
                _ = shutdown.cancelled() => Ok(()),
            }
        });
    }

    /// `READY=1` with a status line: the role is usable.
    pub fn ready(&self, status: &str) {
        crate::notify::ready(status);
    }

    /// Answers each SIGHUP with `reload` (between `RELOADING=1` and `READY=1`), as the task
    /// `reload`. Only the first call takes the signal; a role that never calls this ignores
    /// SIGHUP rather than dying of it.
    pub fn on_reload<F, Fut, E>(&self, reload: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: fmt::Display + 'static,
    {
        let Some(hangup) = lock(&self.hangup).take() else {
            tracing::warn!(role = self.name, "reload handler installed twice; ignored");
            return;
        };
        let shutdown = self.shutdown.clone();
        self.spawn("reload", crate::reload::serve(hangup, shutdown, reload));
    }
}

/// One process's lifecycle. Create it first (it installs the signal handlers), hand
/// [`Lifecycle::role`] to the role, and [`Lifecycle::run`] the role's main future.
pub struct Lifecycle {
    role: Role,
    failures: mpsc::UnboundedReceiver<TaskFailure>,
    term: Signal,
    int: Signal,
    grace: Duration,
}

impl fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("role", &self.role)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// How long a stop may take by default, from the signal to the last task ended.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

impl Lifecycle {
    /// Installs the SIGTERM, SIGINT and SIGHUP handlers for the role `name`. Must be called
    /// inside the tokio runtime.
    pub fn new(name: &'static str) -> anyhow::Result<Lifecycle> {
        let install = |kind: SignalKind, what: &str| {
            signal(kind).map_err(|e| anyhow::anyhow!("cannot install the {what} handler: {e}"))
        };
        let term = install(SignalKind::terminate(), "SIGTERM")?;
        let int = install(SignalKind::interrupt(), "SIGINT")?;
        let hangup = install(SignalKind::hangup(), "SIGHUP")?;
        let (failures_tx, failures) = mpsc::unbounded_channel();
        Ok(Lifecycle {
            role: Role {
                name,
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
                live: Default::default(),
                next_id: Default::default(),
                failures: failures_tx,
                hangup: Arc::new(Mutex::new(Some(hangup))),
            },
            failures,
            term,
            int,
            grace: DEFAULT_GRACE,
        })
    }

    /// How long a stop may take, from its start to the last task ended ([`DEFAULT_GRACE`]).
    pub fn with_grace(mut self, grace: Duration) -> Lifecycle {
        self.grace = grace;
        self
    }

    /// The role's handle.
    pub fn role(&self) -> Role {
        self.role.clone()
    }

    /// Runs the role: `main` (which should end once [`Role::shutdown`] is cancelled) until it
    /// ends, a signal arrives or a task fails; then stops everything under the grace deadline.
    /// Returns `main`'s error, else the first task failure, else `Ok` (a clean stop).
    pub async fn run<F>(mut self, main: F) -> anyhow::Result<()>
    where
        F: Future<Output = anyhow::Result<()>>,
    {
        let role = self.role.clone();
        let name = role.name;
        tokio::pin!(main);
        let mut outcome = None;
        let mut failure = None;
        tokio::select! {
            r = &mut main => outcome = Some(r),
            _ = self.term.recv() => tracing::info!(role = name, "SIGTERM: stopping"),
            _ = self.int.recv() => tracing::info!(role = name, "SIGINT: stopping"),
            f = self.failures.recv() => failure = f,
            _ = role.shutdown.cancelled() => tracing::info!(role = name, "stopping"),
        }
        crate::notify::stopping();
        role.shutdown.cancel();
        let deadline = Instant::now() + self.grace;
        let mut overran = false;
        if outcome.is_none() {
            outcome = self.until(deadline, &mut main).await;
            overran |= outcome.is_none();
        }
        role.tracker.close();
        overran |= self.until(deadline, role.tracker.wait()).await.is_none();
        if overran {
            let left: Vec<_> = lock(&role.live).values().cloned().collect();
            tracing::warn!(role = name, grace = ?self.grace, tasks = ?left,
                "did not stop within the grace period; stopping hard");
        }
        // Failures that happened while stopping are logged where they happened; the first
        // one decides the outcome if nothing failed before.
        while let Ok(f) = self.failures.try_recv() {
            failure.get_or_insert(f);
        }
        match (outcome, failure) {
            (Some(Err(e)), _) => Err(e),
            (_, Some(f)) => Err(anyhow::anyhow!("{f}")),
            (Some(Ok(())), None) => Ok(()),
            (None, None) => Err(anyhow::anyhow!(
                "{name} did not stop within its grace period of {:?}",
                self.grace
            )),
        }
    }

    /// `fut` unless the deadline passes or a second SIGTERM/SIGINT asks to stop at once.
    async fn until<T>(&mut self, deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            r = fut => Some(r),
            _ = tokio::time::sleep_until(deadline) => None,
            _ = self.term.recv() => {
                tracing::warn!(role = self.role.name, "second SIGTERM: stopping now");
                None
            }
            _ = self.int.recv() => {
                tracing::warn!(role = self.role.name, "second SIGINT: stopping now");
                None
            }
        }
    }
}

/// Debug builds only: the name of a task to panic as soon as it starts, so end-to-end tests
/// can check what a real role does when one of its tasks dies.
pub const PANIC_TASK_ENV: &str = "STRAIT_TEST_PANIC_TASK";

fn injected_panic(task: &str) -> bool {
    cfg!(debug_assertions) && std::env::var(PANIC_TASK_ENV).is_ok_and(|t| t == task)
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast_ref::<&'static str>()
            .map_or_else(|| "(no message)".to_owned(), |s| (*s).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn explode(msg: &str) {
        panic!("{msg}");
    }

    async fn until_stopped(role: Role) -> anyhow::Result<()> {
        role.shutdown().cancelled().await;
        Ok(())
    }

    #[test]
    fn exit_codes_follow_sysexits() {
        assert_eq!(Exit::Clean.code(), 0);
        assert_eq!(Exit::Failure.code(), 1);
        assert_eq!(Exit::Usage.code(), 64);
        assert_eq!(Exit::Config.code(), 78);
    }

    #[test]
    fn errors_are_classified_through_their_context() {
        let config: anyhow::Result<()> = Err(anyhow::anyhow!("field `x` is empty"));
        let err = anyhow::Context::context(config.bad_config(), "cannot start").unwrap_err();
        assert_eq!(Exit::of(&err), Exit::Config);
        assert_eq!(format!("{err:#}"), "cannot start: field `x` is empty");
        let usage = Err::<(), _>(std::io::Error::other("--x")).bad_usage();
        assert_eq!(Exit::of(&usage.unwrap_err()), Exit::Usage);
        assert_eq!(Exit::of(&anyhow::anyhow!("refused")), Exit::Failure);
    }

    #[test]
    fn a_panicking_task_stops_the_role_with_its_name() {
        runtime().block_on(async {
            let life = Lifecycle::new("test").unwrap();
            let role = life.role();
            role.spawn("healthy", role.shutdown().clone().cancelled_owned());
            role.spawn("exploder", async { explode("boom") });
            let main = until_stopped(role.clone());
            let err = life.run(main).await.unwrap_err();
            assert_eq!(err.to_string(), "task `exploder` panicked: boom");
            assert_eq!(Exit::of(&err), Exit::Failure);
        });
    }

    #[test]
    fn a_task_that_returns_early_or_fails_stops_the_role() {
        runtime().block_on(async {
            let life = Lifecycle::new("test").unwrap();
            life.role().spawn("quitter", async {});
            let main = until_stopped(life.role());
            let err = life.run(main).await.unwrap_err();
            assert_eq!(err.to_string(), "task `quitter` ended unexpectedly");

            let life = Lifecycle::new("test").unwrap();
            life.role()
                .spawn(format!("loop {}", 7), async { anyhow::bail!("disk full") });
            let main = until_stopped(life.role());
            let err = life.run(main).await.unwrap_err();
            assert_eq!(err.to_string(), "task `loop 7` failed: disk full");
        });
    }

    #[test]
    fn a_clean_stop_waits_for_tasks_and_returns_ok() {
        runtime().block_on(async {
            let life = Lifecycle::new("test").unwrap();
            let role = life.role();
            let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
            role.spawn("drainer", {
                let stop = role.shutdown().clone();
                async move {
                    stop.cancelled().await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = done_tx.send(());
                }
            });
            let main = until_stopped(role.clone());
            role.stop();
            life.run(main).await.unwrap();
            done_rx
                .try_recv()
                .expect("the task ran to its end before run returned");
        });
    }

    #[test]
    fn a_main_that_does_not_stop_is_an_error_after_the_grace_period() {
        runtime().block_on(async {
            let life = Lifecycle::new("test")
                .unwrap()
                .with_grace(Duration::from_millis(50));
            life.role().stop();
            let err = life.run(std::future::pending()).await.unwrap_err();
            assert!(err.to_string().contains("did not stop within"), "{err}");
        });
    }

    #[test]
    fn a_stop_that_overruns_the_grace_period_names_what_is_left() {
        runtime().block_on(async {
            let life = Lifecycle::new("test")
                .unwrap()
                .with_grace(Duration::from_millis(50));
            life.role().spawn("stubborn", std::future::pending::<()>());
            life.role()
                .spawn_cancellable("dropped at the stop", std::future::pending::<()>());
            life.role().stop();
            let main = async { Ok(()) };
            let err = life.run(main).await;
            // `main` ended cleanly; the stubborn task is logged and the stop still ends.
            assert!(err.is_ok(), "{err:?}");
        });
    }
}
