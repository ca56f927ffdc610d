//! The agent's local state: service definitions (from the config directory and the local API),
//! their expansion, and current check statuses. API-registered definitions are persisted in
//! `data_dir/services.json` so an agent restart re-registers them; config-directory ones are
//! re-read at start. Checks registered on their own (`PUT /v1/agent/check/register`) are kept
//! in `data_dir/checks.json`. Check statuses (probes', and TTL checks' set by the
//! application) are in [`status`]. Every change bumps a `watch` generation that wakes
//! anti-entropy and the snapshot builder.
//!
//! Also where each local proxy's admin endpoint listens, as the proxy registered it
//! (`PUT /v1/agent/proxy/admin/<proxy id>`), for `strait doctor`; persisted in
//! `data_dir/proxy-admin.json` so that an Envoy, which registers once before it starts, is
//! still found after an agent restart.

use crate::definition::{
    CheckDefinition, CheckSpec, Expanded, Probe, ServiceDefinition, SIDECAR_PORT_BASE,
};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;
use strait_catalog::Service;
use strait_snapshot::ProxyRegistration;
use tokio::sync::watch;

#[path = "local_status.rs"]
mod status;
pub use status::TtlError;

/// What [`LocalState::replace_file_definitions`] did, by service ID.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FileChanges {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

pub use crate::service_file::read_config_dir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    File,
    Api,
}

struct Entry {
    def: ServiceDefinition,
    source: Source,
    expanded: Expanded,
}

#[derive(Default)]
struct Inner {
    /// service ID -> entry
    entries: BTreeMap<String, Entry>,
    /// check ID -> a check registered on its own (`PUT /v1/agent/check/register`).
    standalone: BTreeMap<String, (CheckDefinition, CheckSpec)>,
    /// check ID -> (status, output)
    status: BTreeMap<String, (String, String)>,
    /// proxy ID -> its admin endpoint, as the proxy registered it.
    admins: BTreeMap<String, SocketAddr>,
    /// TTL check ID -> when its status was last set (or the check registered): it turns
    /// critical a TTL later.
    ttl_set_at: BTreeMap<String, Instant>,
}

/// Why a proxy's admin address was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no proxy {0:?} is registered with this agent")]
    UnknownProxy(String),
    #[error("AdminAddress {0}: an admin endpoint listens on loopback only")]
    NotLoopback(SocketAddr),
    #[error("cannot write {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct LocalState {
    node: String,
    advertise: IpAddr,
    persist: PathBuf,
    /// `data_dir/checks.json`: the checks registered on their own.
    checks_file: PathBuf,
    /// `data_dir/proxy-admin.json`: proxy ID -> admin address.
    admin_file: PathBuf,
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
    /// Bumped at every TTL status update, so a TTL check's timer starts over.
    ttl_updates: watch::Sender<u64>,
}

impl LocalState {
    pub fn new(node: &str, advertise: IpAddr, data_dir: &Path) -> LocalState {
        LocalState {
            node: node.to_string(),
            advertise,
            persist: data_dir.join("services.json"),
            checks_file: data_dir.join("checks.json"),
            admin_file: data_dir.join("proxy-admin.json"),
            inner: Mutex::new(Inner::default()),
            changed: watch::channel(0).0,
            ttl_updates: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        strait_base::sync::lock(&self.inner)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|g| *g += 1);
    }

    /// Loads the service files of `dir` (errors name the file) and the persisted API ones.
    pub fn load(&self, dir: Option<&Path>) -> Result<()> {
        let mut defs: Vec<_> = read_config_dir(dir)?
            .into_iter()
            .map(|(def, origin)| (def, Source::File, origin))
            .collect();
        if self.persist.exists() {
            let text = std::fs::read_to_string(&self.persist)?;
            let saved: Vec<ServiceDefinition> = crate::decode::json(text.as_bytes())
                .with_context(|| format!("corrupt {}", self.persist.display()))?;
            defs.extend(
                saved
                    .into_iter()
                    .map(|d| (d, Source::Api, "local API".to_string())),
            );
        }
        for (def, source, origin) in defs {
            self.insert(def, source)
                .with_context(|| format!("service definition from {origin}"))?;
        }
        if self.checks_file.exists() {
            let text = std::fs::read_to_string(&self.checks_file)
                .with_context(|| format!("cannot read {}", self.checks_file.display()))?;
            let saved: Vec<CheckDefinition> = crate::decode::json(text.as_bytes())
                .with_context(|| format!("corrupt {}", self.checks_file.display()))?;
            for def in saved {
                self.add_check(def)
                    .with_context(|| format!("check from {}", self.checks_file.display()))?;
            }
        }
        if self.admin_file.exists() {
            let text = std::fs::read_to_string(&self.admin_file)
                .with_context(|| format!("cannot read {}", self.admin_file.display()))?;
            self.lock().admins = serde_json::from_str(&text)
                .with_context(|| format!("corrupt {}", self.admin_file.display()))?;
        }
        Ok(())
    }

    /// Records where the admin endpoint of the registered proxy `proxy_id` listens (blocking:
    /// writes `proxy-admin.json` when it changed).
    pub fn set_admin(&self, proxy_id: &str, admin: SocketAddr) -> Result<(), AdminError> {
        if !admin.ip().is_loopback() {
            return Err(AdminError::NotLoopback(admin));
        }
        if !self.proxies().iter().any(|p| p.proxy_id == proxy_id) {
            return Err(AdminError::UnknownProxy(proxy_id.to_owned()));
        }
        let mut inner = self.lock();
        if inner.admins.insert(proxy_id.to_owned(), admin) == Some(admin) {
            return Ok(());
        }
        tracing::info!(proxy = proxy_id, %admin, "proxy admin endpoint registered");
        let json = serde_json::to_vec_pretty(&inner.admins).unwrap_or_default();
        strait_identity::files::write_public(&self.admin_file, &json).map_err(|source| {
            AdminError::Save {
                path: self.admin_file.clone(),
                source,
            }
        })
    }

    /// Every registered proxy with the admin address it registered, if any.
    pub fn proxy_admins(&self) -> Vec<(ProxyRegistration, Option<SocketAddr>)> {
        let admins = self.lock().admins.clone();
        self.proxies()
            .into_iter()
            .map(|p| {
                let admin = admins.get(&p.proxy_id).copied();
                (p, admin)
            })
            .collect()
    }

    /// Makes the config-directory definitions exactly `defs` (from [`read_config_dir`]):
    /// removes the ones gone, adds the new, replaces the changed. Every definition is
    /// validated first, so one bad file changes nothing. Returns the IDs touched.
    pub fn replace_file_definitions(
        &self,
        defs: Vec<(ServiceDefinition, String)>,
    ) -> Result<FileChanges> {
        let mut wanted: BTreeMap<String, (ServiceDefinition, String)> = BTreeMap::new();
        for (def, origin) in defs {
            let expanded = def
                .expand(self.advertise, SIDECAR_PORT_BASE)
                .with_context(|| format!("service definition from {origin}"))?;
            let id = expanded.services[0].id.clone();
            if let Some((_, first)) = wanted.get(&id) {
                anyhow::bail!("service definition from {origin}: service ID {id:?} is also defined in {first}");
            }
            wanted.insert(id, (def, origin));
        }
        let (current, api): (BTreeMap<_, _>, BTreeMap<_, _>) = self
            .lock()
            .entries
            .iter()
            .map(|(id, e)| (id.clone(), (e.source, e.def.clone())))
            .partition(|(_, (source, _))| *source == Source::File);
        let current: BTreeMap<String, ServiceDefinition> = current
            .into_iter()
            .map(|(id, (_, def))| (id, def))
            .collect();
        let mut changes = FileChanges::default();
        for id in current.keys().filter(|id| !wanted.contains_key(*id)) {
            self.remove(id)?;
            changes.removed.push(id.clone());
        }
        for (id, (def, origin)) in wanted {
            if api.contains_key(&id) {
                // As at start-up, a service registered through the API wins over a file.
                tracing::warn!(service = %id, file = %origin,
                    "service ID is registered through the local API; the file is ignored");
                continue;
            }
            match current.get(&id) {
                Some(old) if *old == def => continue,
                Some(_) => changes.changed.push(id.clone()),
                None => changes.added.push(id.clone()),
            }
            // Removed first so a changed service may keep its automatic sidecar port; the
            // checks registered on their own for it stay.
            self.remove_service(&id, false)?;
            self.insert(def, Source::File)
                .with_context(|| format!("service definition from {origin}"))?;
        }
        Ok(changes)
    }

    fn next_sidecar_port(inner: &Inner) -> u16 {
        let used: Vec<u16> = inner
            .entries
            .values()
            .flat_map(|e| e.expanded.services.iter().map(|s| s.port))
            .collect();
        (SIDECAR_PORT_BASE..)
            .find(|p| !used.contains(p))
            .unwrap_or(SIDECAR_PORT_BASE)
    }

    /// Adds or replaces a definition. Invalid ones are refused and nothing changes.
    pub fn insert(&self, def: ServiceDefinition, source: Source) -> Result<String> {
        let mut inner = self.lock();
        let port = Self::next_sidecar_port(&inner);
        let expanded = def.expand(self.advertise, port)?;
        let id = expanded.services[0].id.clone();
        for c in &expanded.checks {
            track(&mut inner, c);
        }
        inner.entries.insert(
            id.clone(),
            Entry {
                def,
                source,
                expanded,
            },
        );
        self.save(&inner)?;
        drop(inner);
        self.bump();
        Ok(id)
    }

    /// Deregisters service `id`, with the checks registered on their own for it (as Consul).
    pub fn remove(&self, id: &str) -> Result<bool> {
        self.remove_service(id, true)
    }

    fn remove_service(&self, id: &str, with_standalone_checks: bool) -> Result<bool> {
        let mut inner = self.lock();
        let Some(e) = inner.entries.remove(id) else {
            return Ok(false);
        };
        for c in &e.expanded.checks {
            untrack(&mut inner, &c.check_id);
        }
        // As Consul: the checks registered on their own for the service go with it.
        let orphans: Vec<String> = inner
            .standalone
            .iter()
            .filter(|(_, (_, spec))| with_standalone_checks && spec.service_id == id)
            .map(|(check_id, _)| check_id.clone())
            .collect();
        for check_id in &orphans {
            inner.standalone.remove(check_id);
            untrack(&mut inner, check_id);
        }
        self.save(&inner)?;
        if !orphans.is_empty() {
            self.save_checks(&inner)?;
        }
        drop(inner);
        self.bump();
        Ok(true)
    }

    /// Registers (or replaces) a check on its own, of the node or of a local service; its
    /// status starts over only when it is new. Invalid ones are refused and nothing changes.
    pub fn add_check(&self, def: CheckDefinition) -> Result<String> {
        let mut inner = self.lock();
        let service_name = match def.service_id.as_str() {
            "" => String::new(),
            sid => inner
                .entries
                .values()
                .flat_map(|e| &e.expanded.services)
                .find(|s| s.id == sid)
                .map(|s| s.service.clone())
                .ok_or_else(|| {
                    anyhow::anyhow!("field ServiceID = {sid:?}: no such service on this agent")
                })?,
        };
        let spec = def.standalone(&service_name)?;
        let id = spec.check_id.clone();
        if let Some(e) =
            (inner.entries.values()).find(|e| e.expanded.checks.iter().any(|c| c.check_id == id))
        {
            let owner = &e.expanded.services[0].id;
            anyhow::bail!("field CheckID = {id:?}: a check of service {owner:?}'s definition");
        }
        track(&mut inner, &spec);
        inner.standalone.insert(id.clone(), (def, spec));
        self.save_checks(&inner)?;
        drop(inner);
        self.bump();
        Ok(id)
    }

    /// Removes a check registered on its own; `false` when there is none with that ID.
    pub fn remove_check(&self, check_id: &str) -> Result<bool> {
        let mut inner = self.lock();
        if inner.standalone.remove(check_id).is_none() {
            return Ok(false);
        }
        untrack(&mut inner, check_id);
        self.save_checks(&inner)?;
        drop(inner);
        self.bump();
        Ok(true)
    }

    fn save_checks(&self, inner: &Inner) -> Result<()> {
        let defs: Vec<&CheckDefinition> = inner.standalone.values().map(|(d, _)| d).collect();
        let json = serde_json::to_vec_pretty(&defs)?;
        strait_identity::files::write_public(&self.checks_file, &json)
            .with_context(|| format!("cannot write {}", self.checks_file.display()))
    }

    fn save(&self, inner: &Inner) -> Result<()> {
        let api: Vec<&ServiceDefinition> = inner
            .entries
            .values()
            .filter(|e| e.source == Source::Api)
            .map(|e| &e.def)
            .collect();
        strait_identity::files::write_public(&self.persist, &serde_json::to_vec_pretty(&api)?)
            .with_context(|| format!("cannot write {}", self.persist.display()))
    }

    pub fn services(&self) -> Vec<Service> {
        self.lock()
            .entries
            .values()
            .flat_map(|e| e.expanded.services.clone())
            .collect()
    }

    pub fn check_specs(&self) -> Vec<CheckSpec> {
        specs(&self.lock()).cloned().collect()
    }

    pub fn proxies(&self) -> Vec<ProxyRegistration> {
        self.lock()
            .entries
            .values()
            .flat_map(|e| e.expanded.proxies.clone())
            .collect()
    }
}

/// Every check: those of service definitions, then those registered on their own.
fn specs(inner: &Inner) -> impl Iterator<Item = &CheckSpec> {
    let of_services = inner.entries.values().flat_map(|e| &e.expanded.checks);
    of_services.chain(inner.standalone.values().map(|(_, spec)| spec))
}

/// Starts keeping `c`'s status (its initial one) and, for a TTL check, its timer; kept as
/// they are when the check was already there.
fn track(inner: &mut Inner, c: &CheckSpec) {
    let initial = (c.initial.as_str().into(), "not run yet".into());
    inner.status.entry(c.check_id.clone()).or_insert(initial);
    if matches!(c.probe, Probe::Ttl { .. }) {
        inner
            .ttl_set_at
            .entry(c.check_id.clone())
            .or_insert_with(Instant::now);
    }
}

fn untrack(inner: &mut Inner, check_id: &str) {
    inner.status.remove(check_id);
    inner.ttl_set_at.remove(check_id);
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
