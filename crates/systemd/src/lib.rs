//! strait-systemd: how strait runs, under systemd or not.
//!
//! Used by every role and by the lab:
//! * [`lifecycle`]: the one lifecycle every long-running role starts through: signals,
//!   readiness, named background tasks that cannot die unnoticed, a graceful stop under a
//!   grace deadline, and the [`lifecycle::Exit`] status of every outcome.
//! * [`notify`]: the `sd_notify` protocol (one datagram per state change to `$NOTIFY_SOCKET`,
//!   path or abstract `@name`), so `Type=notify` units know when a role is really ready, when
//!   it reloads and when it stops.
//! * [`unit`]: the unit files of each role (`strait-server.service`, `strait-agent.service`,
//!   `strait-gateway.service`, the sidecar template `strait-proxy@.service`), rendered from a
//!   [`unit::Layout`] so `strait install` (paths of a real VM) and `strait lab` (paths under the
//!   lab directory) write the same units.
//!
//! * [`reload`]: the SIGHUP loop every role shares (`RELOADING=1`, reload, `READY=1`).
//!
//! Sits beside the roles in the flow: server / agent / proxy call [`notify`]; the binary's
//! `install` command and the lab call [`unit`].
#![forbid(unsafe_code)]

pub mod lifecycle;
pub mod notify;
pub mod reload;
pub mod unit;
