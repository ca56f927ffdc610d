//! Write operations of the [`Catalog`]. Each validates its input, computes the new value of
//! the one item it touches from the current state, and commits it at the next index. A write
//! that would change nothing is not committed and leaves the index alone, so agents' periodic
//! anti-entropy and check updates do not wake every blocking query.

use crate::catalog::Catalog;
use crate::error::{CatalogError, Result};
use crate::store::{ConfigKey, Edit, NodeRecord};
use crate::types::{Check, ConfigEntry, FederationState, Indexed, Node, Service, SyncOutcome};
use crate::validate;
use std::collections::BTreeMap;

/// Inserts `item` unless an equal one (ignoring its index) is there; stamps changed items
/// with `index`. Returns whether anything changed.
fn upsert<T: Indexed + PartialEq>(
    map: &mut BTreeMap<String, T>,
    key: &str,
    mut item: T,
    index: u64,
) -> bool {
    if let Some(old) = map.get(key) {
        item.set_modify_index(old.modify_index());
        if *old == item {
            return false;
        }
    }
    item.set_modify_index(index);
    map.insert(key.to_string(), item);
    true
}

fn set_node(record: &mut NodeRecord, mut node: Node, index: u64) -> bool {
    node.set_modify_index(record.node.modify_index());
    if record.node == node {
        return false;
    }
    node.set_modify_index(index);
    record.node = node;
    true
}

impl NodeRecord {
    /// An empty record for a node registered for the first time at `index`.
    fn new(node: &Node, index: u64) -> NodeRecord {
        NodeRecord {
            node: Node {
                modify_index: index,
                ..node.clone()
            },
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
        }
    }
}

impl Catalog {
    fn node_record(&self, name: &str) -> Option<NodeRecord> {
        self.read_state().nodes.get(name).cloned()
    }

    /// Registers (or updates) a node and some of its services and checks; what is already
    /// registered on the node and not named here is kept. Returns the index after the write.
    pub fn register(&self, node: Node, services: Vec<Service>, checks: Vec<Check>) -> Result<u64> {
        validate::node(&node)?;
        let writer = self.lock_writer();
        let index = self.next_index();
        let name = node.node.clone();
        let old = self.node_record(&name);
        let mut record = old.clone().unwrap_or_else(|| NodeRecord::new(&node, index));
        let mut changed = old.is_none();
        changed |= set_node(&mut record, node, index);
        for svc in services {
            let svc = validate::service(&name, svc)?;
            let id = svc.id.clone();
            changed |= upsert(&mut record.services, &id, svc, index);
        }
        for chk in checks {
            let chk = validate::check(&name, chk, |id| {
                record.services.get(id).map(|s| s.service.as_str())
            })?;
            let id = chk.check_id.clone();
            changed |= upsert(&mut record.checks, &id, chk, index);
        }
        if !changed {
            return Ok(self.index());
        }
        self.commit(&writer, Edit::Node(name, Some(record)))
    }

    /// Anti-entropy: makes the node's services and checks exactly the given sets (removing
    /// any others). Changes nothing, and keeps the index, when the catalog already agrees.
    pub fn sync_node(
        &self,
        node: Node,
        services: Vec<Service>,
        checks: Vec<Check>,
    ) -> Result<SyncOutcome> {
        validate::node(&node)?;
        let writer = self.lock_writer();
        let index = self.next_index();
        let name = node.node.clone();
        let old = self.node_record(&name);
        let mut record = old.clone().unwrap_or_else(|| NodeRecord::new(&node, index));
        let mut changed = old.is_none();
        changed |= set_node(&mut record, node, index);

        let mut services_next = BTreeMap::new();
        for svc in services {
            let svc = validate::service(&name, svc)?;
            let id = svc.id.clone();
            if let Some(old) = record.services.get(&id) {
                services_next.insert(id.clone(), old.clone());
            }
            changed |= upsert(&mut services_next, &id, svc, index);
        }
        let removed_services: Vec<String> = record
            .services
            .keys()
            .filter(|id| !services_next.contains_key(*id))
            .cloned()
            .collect();
        record.services = services_next;

        let mut checks_next = BTreeMap::new();
        for chk in checks {
            let chk = validate::check(&name, chk, |id| {
                record.services.get(id).map(|s| s.service.as_str())
            })?;
            let id = chk.check_id.clone();
            if let Some(old) = record.checks.get(&id) {
                checks_next.insert(id.clone(), old.clone());
            }
            changed |= upsert(&mut checks_next, &id, chk, index);
        }
        let removed_checks: Vec<String> = record
            .checks
            .keys()
            .filter(|id| !checks_next.contains_key(*id))
            .cloned()
            .collect();
        record.checks = checks_next;

        changed |= !removed_services.is_empty() || !removed_checks.is_empty();
        let index = if changed {
            self.commit(&writer, Edit::Node(name, Some(record)))?
        } else {
            self.index()
        };
        Ok(SyncOutcome {
            changed,
            index,
            removed_services,
            removed_checks,
        })
    }

    /// Removes a service and its checks from a node.
    pub fn deregister_service(&self, node: &str, service_id: &str) -> Result<u64> {
        let writer = self.lock_writer();
        let mut record = self
            .node_record(node)
            .ok_or_else(|| CatalogError::UnknownNode { node: node.into() })?;
        if record.services.remove(service_id).is_none() {
            return Err(CatalogError::UnknownService {
                node: node.into(),
                service: service_id.into(),
            });
        }
        record.checks.retain(|_, c| c.service_id != service_id);
        self.commit(&writer, Edit::Node(node.into(), Some(record)))
    }

    /// Removes a node with all its services and checks.
    pub fn deregister_node(&self, node: &str) -> Result<u64> {
        let writer = self.lock_writer();
        if self.node_record(node).is_none() {
            return Err(CatalogError::UnknownNode { node: node.into() });
        }
        self.commit(&writer, Edit::Node(node.into(), None))
    }

    /// Records a check result. Unchanged status and output do not bump the index.
    pub fn update_check_status(
        &self,
        node: &str,
        check_id: &str,
        status: &str,
        output: &str,
    ) -> Result<u64> {
        validate::check_status(status)?;
        let writer = self.lock_writer();
        let index = self.next_index();
        let mut record = self
            .node_record(node)
            .ok_or_else(|| CatalogError::UnknownNode { node: node.into() })?;
        let check = record
            .checks
            .get_mut(check_id)
            .ok_or_else(|| CatalogError::UnknownCheck {
                node: node.into(),
                check: check_id.into(),
            })?;
        if check.status == status && check.output == output {
            return Ok(self.index());
        }
        check.status = status.into();
        check.output = output.into();
        check.modify_index = index;
        self.commit(&writer, Edit::Node(node.into(), Some(record)))
    }

    /// Creates or replaces a config entry (keyed by Kind and Name).
    pub fn set_config_entry(&self, entry: ConfigEntry) -> Result<u64> {
        self.set_config_entry_cas(entry, None)
    }

    /// [`Catalog::set_config_entry`] as Consul's check-and-set (`?cas=`) when `cas` is given:
    /// only if the entry's `ModifyIndex` is `cas` (0: only if there is none), else
    /// [`CatalogError::CasMismatch`] and nothing changes.
    pub fn set_config_entry_cas(&self, entry: ConfigEntry, cas: Option<u64>) -> Result<u64> {
        let mut entry = validate::config_entry(entry)?;
        let writer = self.lock_writer();
        validate::resolver_graph(&entry, self.read_state().config.values())?;
        let key = (entry.kind.clone(), entry.name.clone());
        let old = self.read_state().config.get(&key).cloned();
        check_cas(&key, old.as_ref(), cas)?;
        if let Some(old) = old {
            entry.modify_index = old.modify_index;
            if old == entry {
                return Ok(self.index());
            }
        }
        entry.modify_index = self.next_index();
        self.commit(&writer, Edit::Config(key, Some(entry)))
    }

    /// Deletes a config entry.
    pub fn delete_config_entry(&self, kind: &str, name: &str) -> Result<u64> {
        self.delete_config_entry_cas(kind, name, None)
    }

    /// [`Catalog::delete_config_entry`], with Consul's check-and-set when `cas` is given.
    pub fn delete_config_entry_cas(&self, kind: &str, name: &str, cas: Option<u64>) -> Result<u64> {
        let writer = self.lock_writer();
        let key = (kind.to_string(), name.to_string());
        let old = self.read_state().config.get(&key).cloned();
        check_cas(&key, old.as_ref(), cas)?;
        if old.is_none() {
            return Err(CatalogError::UnknownConfigEntry {
                kind: key.0,
                name: key.1,
            });
        }
        self.commit(&writer, Edit::Config(key, None))
    }

    /// Creates or replaces a DC's federation state (its gateways' WAN addresses); the
    /// addresses are kept sorted so replicas compare equal.
    pub fn set_federation_state(&self, mut fed: FederationState) -> Result<u64> {
        validate::federation_state(&fed)?;
        fed.mesh_gateways.sort();
        fed.mesh_gateways.dedup();
        let writer = self.lock_writer();
        let old = self.read_state().federation.get(&fed.datacenter).cloned();
        if let Some(old) = old {
            fed.updated_index = old.updated_index;
            if old == fed {
                return Ok(self.index());
            }
        }
        fed.updated_index = self.next_index();
        self.commit(&writer, Edit::Federation(fed.datacenter.clone(), Some(fed)))
    }
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;

/// Consul's check-and-set on a config entry: `cas` must be its `ModifyIndex` (0 when `old` is
/// none).
fn check_cas(key: &ConfigKey, old: Option<&ConfigEntry>, cas: Option<u64>) -> Result<()> {
    let Some(cas) = cas else {
        return Ok(());
    };
    let actual = old.map_or(0, |o| o.modify_index);
    if actual == cas {
        return Ok(());
    }
    Err(CatalogError::CasMismatch {
        kind: key.0.clone(),
        name: key.1.clone(),
        cas,
        actual,
    })
}
