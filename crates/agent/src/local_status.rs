//! Check statuses of the local state: what probes and TTL updates set, and the catalog's
//! view of the checks with them.

use super::{specs, LocalState};
use crate::definition::Probe;
use std::time::Instant;
use strait_catalog::{Check, CheckStatus};
use tokio::sync::watch;

/// Why `PUT /v1/agent/check/pass|warn|fail|update/<id>` was refused.
#[derive(Debug, thiserror::Error)]
pub enum TtlError {
    #[error("no check {0:?} is registered with this agent")]
    UnknownCheck(String),
    #[error("check {0:?} is not a TTL check: its status comes from its probe")]
    NotTtl(String),
}

impl LocalState {
    pub fn set_status(&self, check_id: &str, status: &str, output: &str) {
        let mut inner = self.lock();
        let Some(cur) = inner.status.get_mut(check_id) else {
            return;
        };
        if cur.0 != status {
            tracing::info!(check = check_id, from = %cur.0, to = status, output, "check status changed");
            *cur = (status.to_string(), output.to_string());
            drop(inner);
            self.bump();
        } else {
            cur.1 = output.to_string();
        }
    }

    /// Sets the status of TTL check `check_id` (the application's report) and starts its TTL
    /// over.
    pub fn set_ttl_status(
        &self,
        check_id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<(), TtlError> {
        {
            let mut inner = self.lock();
            let spec = specs(&inner)
                .find(|c| c.check_id == check_id)
                .ok_or_else(|| TtlError::UnknownCheck(check_id.to_owned()))?;
            if !matches!(spec.probe, Probe::Ttl { .. }) {
                return Err(TtlError::NotTtl(check_id.to_owned()));
            }
            inner.ttl_set_at.insert(check_id.to_owned(), Instant::now());
        }
        self.set_status(check_id, status.as_str(), output);
        self.ttl_updates.send_modify(|g| *g += 1);
        Ok(())
    }

    /// When TTL check `check_id` was last set (or registered); `None` once it is gone.
    pub fn ttl_set_at(&self, check_id: &str) -> Option<Instant> {
        self.lock().ttl_set_at.get(check_id).copied()
    }

    /// Changes at every TTL status update.
    pub fn ttl_updates(&self) -> watch::Receiver<u64> {
        self.ttl_updates.subscribe()
    }

    /// Worst status of the checks of `service_id` (passing when it has none).
    pub fn service_status(&self, service_id: &str) -> CheckStatus {
        let inner = self.lock();
        specs(&inner)
            .filter(|c| c.service_id == service_id)
            .map(|c| {
                inner
                    .status
                    .get(&c.check_id)
                    .map_or(CheckStatus::Critical, |s| CheckStatus::parse(&s.0))
            })
            .max()
            .unwrap_or(CheckStatus::Passing)
    }

    /// The catalog view of our checks, with current statuses.
    pub fn checks(&self) -> Vec<Check> {
        let inner = self.lock();
        specs(&inner)
            .map(|c| {
                let (status, output) = inner.status.get(&c.check_id).cloned().unwrap_or_default();
                Check {
                    node: self.node.clone(),
                    check_id: c.check_id.clone(),
                    name: c.name.clone(),
                    status,
                    output,
                    service_id: c.service_id.clone(),
                    service_name: c.service_name.clone(),
                    ..Default::default()
                }
            })
            .collect()
    }
}
