//! Persistence of the catalog in redb: loaded once into memory at open, then written through
//! in one transaction per operation, so reads never touch disk and a crash never leaves half
//! an operation on disk. Values are JSON; a node is one record (node + services + checks).

use crate::error::{store_err, CatalogError, Result};
use crate::types::{Check, ConfigEntry, FederationState, Node, Service};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const NODES: TableDefinition<'_, &str, &str> = TableDefinition::new("nodes");
const CONFIG: TableDefinition<'_, &str, &str> = TableDefinition::new("config_entries");
const FEDERATION: TableDefinition<'_, &str, &str> = TableDefinition::new("federation_states");
const INDEX_KEY: &str = "index";

/// A node with everything registered on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeRecord {
    pub node: Node,
    /// Service ID -> service.
    pub services: BTreeMap<String, Service>,
    /// Check ID -> check.
    pub checks: BTreeMap<String, Check>,
}

/// Config entries are keyed by (Kind, Name).
pub(crate) type ConfigKey = (String, String);

/// The whole catalog state, held in memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub index: u64,
    pub nodes: BTreeMap<String, NodeRecord>,
    pub config: BTreeMap<ConfigKey, ConfigEntry>,
    pub federation: BTreeMap<String, FederationState>,
}

/// One operation's change: the new value of one item, or `None` to delete it.
pub(crate) enum Edit {
    Node(String, Option<NodeRecord>),
    Config(ConfigKey, Option<ConfigEntry>),
    Federation(String, Option<FederationState>),
}

impl State {
    pub fn apply(&mut self, index: u64, edit: Edit) {
        self.index = index;
        match edit {
            Edit::Node(k, Some(v)) => drop(self.nodes.insert(k, v)),
            Edit::Node(k, None) => drop(self.nodes.remove(&k)),
            Edit::Config(k, Some(v)) => drop(self.config.insert(k, v)),
            Edit::Config(k, None) => drop(self.config.remove(&k)),
            Edit::Federation(k, Some(v)) => drop(self.federation.insert(k, v)),
            Edit::Federation(k, None) => drop(self.federation.remove(&k)),
        }
    }
}

pub(crate) struct Store {
    db: Database,
}

fn config_key_string(key: &ConfigKey) -> String {
    format!("{}/{}", key.0, key.1)
}

impl Store {
    /// Opens (or creates) the catalog file and loads its state.
    pub fn open(path: &Path) -> Result<(Store, State)> {
        let db = Database::create(path)
            .map_err(|e| CatalogError::Store(format!("opening {}: {e}", path.display())))?;
        Store::load(db)
    }

    /// An empty catalog that lives only in memory.
    pub fn in_memory() -> Result<(Store, State)> {
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(store_err)?;
        Store::load(db)
    }

    fn load(db: Database) -> Result<(Store, State)> {
        // Create the tables on first open so read transactions can open them.
        let tx = db.begin_write().map_err(store_err)?;
        tx.open_table(META).map_err(store_err)?;
        tx.open_table(NODES).map_err(store_err)?;
        tx.open_table(CONFIG).map_err(store_err)?;
        tx.open_table(FEDERATION).map_err(store_err)?;
        tx.commit().map_err(store_err)?;

        let tx = db.begin_read().map_err(store_err)?;
        let meta = tx.open_table(META).map_err(store_err)?;
        let mut state = State {
            index: meta
                .get(INDEX_KEY)
                .map_err(store_err)?
                .map(|v| v.value())
                .unwrap_or(0),
            ..State::default()
        };
        for (key, node) in read_json::<NodeRecord>(&tx, NODES, "nodes")? {
            state.nodes.insert(key, node);
        }
        for (_, entry) in read_json::<ConfigEntry>(&tx, CONFIG, "config_entries")? {
            state
                .config
                .insert((entry.kind.clone(), entry.name.clone()), entry);
        }
        for (key, fed) in read_json::<FederationState>(&tx, FEDERATION, "federation_states")? {
            state.federation.insert(key, fed);
        }
        drop(meta);
        drop(tx);
        Ok((Store { db }, state))
    }

    /// Writes one edit and the new index in a single transaction.
    pub fn commit(&self, index: u64, edit: &Edit) -> Result<()> {
        let tx = self.db.begin_write().map_err(store_err)?;
        {
            tx.open_table(META)
                .map_err(store_err)?
                .insert(INDEX_KEY, index)
                .map_err(store_err)?;
            match edit {
                Edit::Node(key, value) => put(&tx, NODES, key, value.as_ref())?,
                Edit::Config(key, value) => {
                    put(&tx, CONFIG, &config_key_string(key), value.as_ref())?
                }
                Edit::Federation(key, value) => put(&tx, FEDERATION, key, value.as_ref())?,
            }
        }
        tx.commit().map_err(store_err)
    }

    /// Replaces everything with `state` in one transaction (a restored snapshot).
    pub fn replace(&self, state: &State) -> Result<()> {
        let tx = self.db.begin_write().map_err(store_err)?;
        for table in [NODES, CONFIG, FEDERATION] {
            tx.delete_table(table).map_err(store_err)?;
        }
        tx.open_table(META)
            .map_err(store_err)?
            .insert(INDEX_KEY, state.index)
            .map_err(store_err)?;
        for (key, record) in &state.nodes {
            put(&tx, NODES, key, Some(record))?;
        }
        for (key, entry) in &state.config {
            put(&tx, CONFIG, &config_key_string(key), Some(entry))?;
        }
        for (key, fed) in &state.federation {
            put(&tx, FEDERATION, key, Some(fed))?;
        }
        tx.commit().map_err(store_err)
    }
}

fn put<T: Serialize>(
    tx: &redb::WriteTransaction,
    table: TableDefinition<'_, &str, &str>,
    key: &str,
    value: Option<&T>,
) -> Result<()> {
    let mut table = tx.open_table(table).map_err(store_err)?;
    match value {
        Some(v) => {
            let json = serde_json::to_string(v)
                .map_err(|e| CatalogError::Store(format!("encoding {key:?}: {e}")))?;
            table.insert(key, json.as_str()).map_err(store_err)?;
        }
        None => {
            table.remove(key).map_err(store_err)?;
        }
    }
    Ok(())
}

fn read_json<T: DeserializeOwned>(
    tx: &redb::ReadTransaction,
    table: TableDefinition<'_, &str, &str>,
    name: &'static str,
) -> Result<Vec<(String, T)>> {
    let table = tx.open_table(table).map_err(store_err)?;
    let mut out = Vec::new();
    for row in table.iter().map_err(store_err)? {
        let (key, value) = row.map_err(store_err)?;
        let key = key.value().to_string();
        let parsed = serde_json::from_str(value.value()).map_err(|e| CatalogError::Corrupt {
            table: name,
            key: key.clone(),
            reason: e.to_string(),
        })?;
        out.push((key, parsed));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MeshGatewayConfig;
    use crate::Catalog;
    use strait_snapshot::GatewayMode;

    fn node(name: &str) -> Node {
        Node {
            node: name.into(),
            address: "10.0.0.1".into(),
            ..Node::default()
        }
    }

    fn sidecar(id: &str, dest: &str) -> Service {
        Service {
            id: id.into(),
            service: format!("{dest}-sidecar-proxy"),
            kind: crate::types::kind::CONNECT_PROXY.into(),
            proxy: Some(crate::types::ProxyConfig {
                destination_service_name: dest.into(),
                ..Default::default()
            }),
            ..Service::default()
        }
    }

    fn check(id: &str, service_id: &str, status: &str) -> Check {
        Check {
            check_id: id.into(),
            service_id: service_id.into(),
            status: status.into(),
            ..Check::default()
        }
    }

    #[test]
    fn state_and_index_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("catalog.redb");
        {
            let cat = Catalog::open(&path).expect("open");
            cat.register(
                node("n1"),
                vec![sidecar("web-sp", "web")],
                vec![check("c", "web-sp", "passing")],
            )
            .expect("register");
            cat.set_config_entry(ConfigEntry {
                kind: "proxy-defaults".into(),
                name: "global".into(),
                mesh_gateway: MeshGatewayConfig {
                    mode: "local".into(),
                },
                ..ConfigEntry::default()
            })
            .expect("config");
            cat.set_federation_state(FederationState {
                datacenter: "dc2".into(),
                mesh_gateways: vec!["192.0.2.1:8443".into()],
                updated_index: 0,
            })
            .expect("federation");
            cat.register(node("gone"), vec![], vec![])
                .expect("register");
            cat.deregister_node("gone").expect("deregister");
            assert_eq!(cat.index(), 5);
        }
        let cat = Catalog::open(&path).expect("reopen");
        assert_eq!(cat.index(), 5);
        let names: Vec<_> = cat.nodes().into_iter().map(|n| n.node).collect();
        assert_eq!(names, ["n1"]);
        assert_eq!(cat.connect_instances("web")[0].checks[0].status, "passing");
        assert_eq!(cat.proxy_defaults_mode(), GatewayMode::Local);
        assert_eq!(cat.federation_states().len(), 1);
        assert_eq!(
            cat.register(node("n3"), vec![], vec![]),
            Ok(6),
            "index continues"
        );
    }

    #[test]
    fn corrupt_record_is_reported_with_table_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("catalog.redb");
        Catalog::open(&path)
            .expect("create")
            .register(node("n1"), vec![], vec![])
            .expect("register");
        {
            let db = Database::create(&path).expect("db");
            let tx = db.begin_write().expect("tx");
            tx.open_table(NODES)
                .expect("table")
                .insert("n1", "{not json")
                .expect("insert");
            tx.commit().expect("commit");
        }
        let err = Catalog::open(&path).expect_err("corrupt");
        assert!(
            matches!(&err, CatalogError::Corrupt { table: "nodes", key, .. } if key == "n1"),
            "{err}"
        );
    }
}
