//! Check definitions in Consul's shape (a service's `Check`/`Checks`, `PUT
//! /v1/agent/check/register` bodies) and what the agent runs: a [`CheckSpec`] with its
//! [`Probe`] and [`Streak`].

use crate::http_check::{self, HttpCheck};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use strait_catalog::{rules, CheckStatus};

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct CheckDefinition {
    #[serde(default, rename = "CheckID")]
    pub check_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "HTTP")]
    pub http: String,
    #[serde(default, rename = "TCP")]
    pub tcp: String,
    /// A TTL check: the application reports its status (`PUT /v1/agent/check/pass/<id>`, ...)
    /// at least this often, or the check turns critical.
    #[serde(default, rename = "TTL")]
    pub ttl: String,
    #[serde(default)]
    pub interval: String,
    #[serde(default)]
    pub timeout: String,
    /// The status before the first result: `passing`, `warning` or `critical` (the default).
    #[serde(default)]
    pub status: String,
    /// Free text for humans, shown in `GET /v1/agent/checks`.
    #[serde(default)]
    pub notes: String,
    /// The service a check registered on its own belongs to (empty: the node's). In a service
    /// definition, empty or that service.
    #[serde(default, rename = "ServiceID")]
    pub service_id: String,
    /// HTTP checks: the method (default GET), headers (a map of lists), body, and for
    /// `https://` the name to verify (default the URL's host) or no verification at all.
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub body: String,
    #[serde(default, rename = "TLSServerName")]
    pub tls_server_name: String,
    #[serde(default, rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    /// Consecutive results a probed check needs before its status changes (Consul's).
    #[serde(default)]
    pub success_before_passing: u32,
    #[serde(default)]
    pub failures_before_warning: u32,
    #[serde(default)]
    pub failures_before_critical: u32,
}

impl CheckDefinition {
    /// Validates the check whose fields are at `prefix` (`Check.`, `Checks[1].`, or empty for
    /// a check registered on its own; named in errors) as a check of service
    /// `service_id` (empty: of the node), with these defaults for `CheckID` and `Name`.
    pub fn spec(
        &self,
        prefix: &str,
        default_id: String,
        default_name: String,
        service_id: &str,
        service_name: &str,
    ) -> Result<CheckSpec> {
        let c = self;
        let set = [&c.http, &c.tcp, &c.ttl];
        let probe = match set.iter().filter(|v| !v.is_empty()).count() {
            1 if !c.http.is_empty() => Probe::Http(HttpCheck::parse(http_check::Fields {
                prefix,
                url: &c.http,
                method: &c.method,
                header: &c.header,
                body: &c.body,
                tls_server_name: &c.tls_server_name,
                tls_skip_verify: c.tls_skip_verify,
            })?),
            1 if !c.tcp.is_empty() => Probe::Tcp {
                addr: c
                    .tcp
                    .replace("localhost", "127.0.0.1")
                    .parse()
                    .map_err(|_| {
                        anyhow::anyhow!("field {prefix}TCP = {:?}: expected ip:port", c.tcp)
                    })?,
            },
            1 => Probe::Ttl {
                ttl: parse_duration(&format!("{prefix}TTL"), &c.ttl, Duration::ZERO)?,
            },
            0 if is_maintenance(&c.check_id) => Probe::Maintenance,
            _ => {
                let at = prefix.trim_end_matches('.');
                let at = if at.is_empty() {
                    String::new()
                } else {
                    format!("field {at}: ")
                };
                bail!("{at}exactly one of HTTP, TCP or TTL must be set")
            }
        };
        if c.http.is_empty() {
            for (field, set) in [
                ("Method", !c.method.is_empty()),
                ("Header", !c.header.is_empty()),
                ("Body", !c.body.is_empty()),
                ("TLSServerName", !c.tls_server_name.is_empty()),
                ("TLSSkipVerify", c.tls_skip_verify),
            ] {
                if set {
                    bail!("field {prefix}{field}: only for HTTP checks");
                }
            }
        }
        let streak = Streak::new(prefix, c)?;
        let initial = match c.status.as_str() {
            "" => CheckStatus::Critical,
            s => CheckStatus::ALL
                .into_iter()
                .find(|v| v.as_str() == s)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "field {prefix}Status = {s:?}: expected passing, warning or critical"
                    )
                })?,
        };
        let check_id = if c.check_id.is_empty() {
            default_id
        } else {
            c.check_id.clone()
        };
        rules::id(&format!("{prefix}CheckID"), &check_id).map_err(anyhow::Error::msg)?;
        Ok(CheckSpec {
            check_id,
            name: if c.name.is_empty() {
                default_name
            } else {
                c.name.clone()
            },
            service_id: service_id.to_string(),
            service_name: service_name.to_string(),
            probe,
            interval: parse_duration(
                &format!("{prefix}Interval"),
                &c.interval,
                Duration::from_secs(10),
            )?,
            timeout: parse_duration(
                &format!("{prefix}Timeout"),
                &c.timeout,
                Duration::from_secs(5),
            )?,
            initial,
            notes: c.notes.clone(),
            streak,
        })
    }

    /// A check registered on its own (`PUT /v1/agent/check/register`): `Name` is required and
    /// is the default `CheckID`, as in Consul; `service_name` is the name of the local service
    /// `ServiceID` names (empty for a node check).
    pub fn standalone(&self, service_name: &str) -> Result<CheckSpec> {
        if self.name.is_empty() {
            bail!("field Name is required");
        }
        let name = self.name.clone();
        self.spec("", name.clone(), name, &self.service_id, service_name)
    }
}

/// Consul's `SuccessBeforePassing`, `FailuresBeforeWarning` and `FailuresBeforeCritical`:
/// how many consecutive results a probed check needs before its status changes (0 and 1:
/// the first). Warning results count as successes, as in Consul.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Streak {
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
}

impl Streak {
    fn new(prefix: &str, c: &CheckDefinition) -> Result<Streak> {
        let s = Streak {
            success_before_passing: c.success_before_passing,
            // Consul's default: as FailuresBeforeCritical.
            failures_before_warning: match c.failures_before_warning {
                0 => c.failures_before_critical,
                n => n,
            },
            failures_before_critical: c.failures_before_critical,
        };
        if s.failures_before_warning > s.failures_before_critical {
            bail!(
                "field {prefix}FailuresBeforeWarning = {}: must not exceed FailuresBeforeCritical ({})",
                s.failures_before_warning,
                s.failures_before_critical
            );
        }
        if !c.ttl.is_empty() && s != Streak::default() {
            bail!("field {prefix}: SuccessBeforePassing, FailuresBeforeWarning and FailuresBeforeCritical are for probed checks, not TTL checks");
        }
        Ok(s)
    }
}

/// Counts a check's consecutive results.
#[derive(Debug, Default)]
pub struct Counter {
    successes: u32,
    failures: u32,
}

impl Counter {
    /// Records a probe's result; returns the status to set, or `None` to leave the check's
    /// status (and output) as they are (Consul's StatusHandler).
    pub fn record(&mut self, streak: &Streak, result: CheckStatus) -> Option<CheckStatus> {
        if result == CheckStatus::Critical {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.failures >= streak.failures_before_critical {
                Some(CheckStatus::Critical)
            } else if self.failures >= streak.failures_before_warning {
                Some(CheckStatus::Warning)
            } else {
                None
            }
        } else {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            (self.successes >= streak.success_before_passing).then_some(result)
        }
    }
}

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// An HTTP or HTTPS request; 2xx is passing, 429 warning, anything else critical.
    Http(HttpCheck),
    /// A TCP connect to `addr`.
    Tcp { addr: SocketAddr },
    /// Mirrors the worst status of another service's checks (sidecar -> its app).
    Alias { service_id: String },
    /// Set by the application through the agent API; critical when not set within `ttl`.
    Ttl { ttl: Duration },
    /// Maintenance mode ([`crate::maintenance`]): critical, with the reason as its output.
    Maintenance,
}

/// The check of the node's maintenance mode, as Consul names it.
pub const NODE_MAINTENANCE: &str = "_node_maintenance";
/// The checks of services' maintenance mode are this and the service's ID.
pub const SERVICE_MAINTENANCE_PREFIX: &str = "_service_maintenance:";

/// Whether `check_id` is a maintenance check's (only those are checks without a probe).
fn is_maintenance(check_id: &str) -> bool {
    check_id == NODE_MAINTENANCE || check_id.starts_with(SERVICE_MAINTENANCE_PREFIX)
}

/// A check as the agent runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub check_id: String,
    pub name: String,
    pub service_id: String,
    pub service_name: String,
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    /// The status until the first result.
    pub initial: CheckStatus,
    pub notes: String,
    pub streak: Streak,
}

/// A check's `Interval` or `Timeout`: between 100ms and 24h (a zero interval would probe in
/// a busy loop).
fn parse_duration(field: &str, v: &str, default: Duration) -> Result<Duration> {
    if v.is_empty() {
        return Ok(default);
    }
    let d = strait_rpc::duration::parse(v).map_err(|e| anyhow::anyhow!("field {field} = {e}"))?;
    if !(Duration::from_millis(100)..=Duration::from_secs(86_400)).contains(&d) {
        bail!("field {field} = {v:?}: must be between 100ms and 24h");
    }
    Ok(d)
}
