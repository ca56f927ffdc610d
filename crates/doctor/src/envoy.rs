//! Envoy as the sidecar at `--admin`: its admin pages read into the doctor's facts.
//!
//! - `/server_info`: the version and the node id (= the proxy id, crates/envoy bootstrap).
//! - `/certs`: the leaf (`cert_chain[0]` of each TLS context: the inbound listener and every
//!   upstream cluster) and the roots (`ca_cert`; Envoy lists only the first certificate of a
//!   trusted bundle).
//! - `/clusters?format=json`: the hosts of each upstream's cluster, named by the upstream's
//!   SNI (crates/envoy/src/render).
//!
//! What Envoy's admin does not show (an upstream's destination, datacenter, identity and
//! gateway mode; the whole root bundle; the leaf the agent means it to hold) comes from the
//! agent's snapshot for Envoy's node id, `GET /v1/agent/proxy/snapshot/<id>`. Only public
//! fields of it are decoded: the leaf's private key never is.

use crate::client::Http;
use crate::sidecar::{join, list, norm_serial, Held, Leaf, Problem, Upstream};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// What `/server_info` says.
pub(crate) struct Info {
    /// `1.40.0`, see [`version`].
    pub version: String,
    pub node_id: String,
}

#[derive(Deserialize)]
struct ServerInfo {
    version: String,
    node: Node,
}

#[derive(Deserialize)]
struct Node {
    id: String,
}

pub(crate) async fn info(admin: &Http) -> anyhow::Result<Info> {
    let si: ServerInfo = admin.json("/server_info").await?;
    Ok(Info {
        version: version(&si.version).to_string(),
        node_id: si.node.id,
    })
}

/// `1.40.0` of `<sha>/1.40.0/<status>/<type>/<ssl>`; the whole text if it has another form.
fn version(full: &str) -> &str {
    full.split('/').nth(1).unwrap_or(full)
}

/// The public part of the agent's snapshot for Envoy's node.
#[derive(Deserialize)]
struct Snapshot {
    leaf: SnapshotLeaf,
    roots_pem: Vec<String>,
    sidecar: Option<SnapshotSidecar>,
}

#[derive(Deserialize)]
struct SnapshotLeaf {
    serial: String,
}

#[derive(Deserialize)]
struct SnapshotSidecar {
    upstreams: Vec<Upstream>,
}

async fn snapshot(agent: &Http, info: &Info) -> Result<Snapshot, Problem> {
    let path = format!("/v1/agent/proxy/snapshot/{}", info.node_id);
    agent.json(&path).await.map_err(|e| {
        Problem::new(
            format!("{e:#}"),
            format!(
                "--admin names an Envoy this agent does not serve (node id {}: a gateway, or a proxy of another agent): pass the admin address of this service's sidecar (`strait envoy run --sidecar-for` against this agent)",
                info.node_id
            ),
        )
    })
}

#[derive(Deserialize)]
struct CertsPage {
    #[serde(default)]
    certificates: Vec<TlsContext>,
}

#[derive(Deserialize)]
struct TlsContext {
    #[serde(default)]
    ca_cert: Vec<CertDetail>,
    #[serde(default)]
    cert_chain: Vec<CertDetail>,
}

#[derive(Deserialize)]
struct CertDetail {
    serial_number: String,
    #[serde(default)]
    subject_alt_names: Vec<San>,
    #[serde(default)]
    valid_from: String,
    #[serde(default)]
    expiration_time: String,
}

#[derive(Deserialize)]
struct San {
    uri: Option<String>,
}

const SECRETS_HINT: &str = "Envoy did not apply the agent's latest secrets: look for `Envoy rejected a configuration` in the agent log; Envoy's admin /config_dump?resource=dynamic_active_secrets shows what it holds";

/// The certificates Envoy holds, checked against what the agent's snapshot sends it.
pub(crate) async fn held(admin: &Http, agent: &Http, info: &Info) -> Result<Held, Problem> {
    let page: CertsPage = admin.json("/certs").await.map_err(|e| {
        Problem::new(
            format!("{e:#}"),
            "Envoy's admin /certs did not answer; read Envoy's log",
        )
    })?;
    let snap = snapshot(agent, info).await?;
    Ok(Held {
        leaf: leaf(&page, &snap),
        roots: roots(&page, &snap),
    })
}

fn unix(field: &str, value: &str) -> Result<i64, Problem> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(time::OffsetDateTime::unix_timestamp)
        .map_err(|e| {
            Problem::new(
                format!("Envoy's admin /certs: {field} {value:?} is not an RFC 3339 time: {e}"),
                "an Envoy other than 1.40 may print /certs differently: compare with docs/envoy.md",
            )
        })
}

/// The leaf of the TLS context that expires first, if it is the one the agent sent.
fn leaf(page: &CertsPage, snap: &Snapshot) -> Result<Leaf, Problem> {
    let mut leaves = Vec::new();
    for cert in page
        .certificates
        .iter()
        .filter_map(|c| c.cert_chain.first())
    {
        leaves.push(Leaf {
            spiffe_id: cert
                .subject_alt_names
                .iter()
                .find_map(|s| s.uri.clone())
                .unwrap_or_default(),
            serial: cert.serial_number.clone(),
            not_before_unix: unix("valid_from", &cert.valid_from)?,
            not_after_unix: unix("expiration_time", &cert.expiration_time)?,
        });
    }
    let Some(first) = leaves.into_iter().min_by_key(|l| l.not_after_unix) else {
        return Err(Problem::new(
            "Envoy's admin /certs shows no certificate chain",
            format!("Envoy has no `leaf` secret: the agent has not issued one (agent log: signing errors) or {SECRETS_HINT}"),
        ));
    };
    if norm_serial(&first.serial) != norm_serial(&snap.leaf.serial) {
        return Err(Problem::new(
            format!(
                "Envoy holds leaf serial {} but the agent sends serial {}",
                first.serial, snap.leaf.serial
            ),
            SECRETS_HINT,
        ));
    }
    Ok(first)
}

/// The serials of the roots the agent sends Envoy, once Envoy's `/certs` shows it holds them.
fn roots(page: &CertsPage, snap: &Snapshot) -> Result<BTreeSet<String>, Problem> {
    let mut sent = BTreeSet::new();
    for pem in &snap.roots_pem {
        let info = strait_identity::ca::cert_info(pem).map_err(|e| {
            Problem::new(
                format!("a root in the agent's snapshot does not parse: {e:#}"),
                "the agent holds a broken CA root: compare GET /v1/agent/connect/ca/roots with the servers'",
            )
        })?;
        sent.insert(norm_serial(&info.serial_hex));
    }
    let shown: BTreeSet<String> = page
        .certificates
        .iter()
        .flat_map(|c| &c.ca_cert)
        .map(|c| norm_serial(&c.serial_number))
        .collect();
    if shown.is_empty() {
        return Err(Problem::new(
            "Envoy's admin /certs shows no CA certificate",
            format!("Envoy has no `roots` secret: {SECRETS_HINT}"),
        ));
    }
    let stale: BTreeSet<String> = shown.difference(&sent).cloned().collect();
    if !stale.is_empty() {
        return Err(Problem::new(
            format!(
                "Envoy trusts root serial(s) [{}] that the agent does not send it (it sends [{}])",
                join(&stale),
                join(&sent)
            ),
            SECRETS_HINT,
        ));
    }
    Ok(sent)
}

/// The sidecar's upstreams, as the agent's snapshot describes them (Envoy's admin does not
/// show destinations, datacenters, identities or modes); their endpoints are filled in from
/// Envoy by [`endpoints`].
pub(crate) async fn upstreams(agent: &Http, info: &Info) -> Result<Vec<Upstream>, Problem> {
    let snap = snapshot(agent, info).await?;
    match snap.sidecar {
        Some(s) => Ok(s.upstreams),
        None => Err(Problem::new(
            format!("Envoy's node {} is not a sidecar", info.node_id),
            "--admin names another proxy (a gateway?): pass the admin address of this service's sidecar",
        )),
    }
}

#[derive(Deserialize)]
struct ClustersPage {
    #[serde(default)]
    cluster_statuses: Vec<ClusterStatus>,
}

#[derive(Deserialize)]
struct ClusterStatus {
    name: String,
    #[serde(default)]
    host_statuses: Vec<HostStatus>,
}

#[derive(Deserialize)]
struct HostStatus {
    address: HostAddress,
}

#[derive(Deserialize)]
struct HostAddress {
    socket_address: Option<SocketAddress>,
}

#[derive(Deserialize)]
struct SocketAddress {
    address: String,
    port_value: u16,
}

/// The hosts of `up`'s cluster (named by its SNI) in Envoy's `/clusters?format=json`, if
/// they are the endpoints the agent's snapshot sends.
pub(crate) async fn endpoints(admin: &Http, up: &Upstream) -> Result<Vec<SocketAddr>, Problem> {
    let page: ClustersPage = admin.json("/clusters?format=json").await.map_err(|e| {
        Problem::new(
            format!("{e:#}"),
            "Envoy's admin /clusters did not answer; read Envoy's log",
        )
    })?;
    let Some(cluster) = page.cluster_statuses.iter().find(|c| c.name == up.sni) else {
        let names: Vec<&str> = page
            .cluster_statuses
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        return Err(Problem::new(
            format!("Envoy has no cluster {} for upstream {} (it has: {})", up.sni, up.destination, names.join(", ")),
            "Envoy did not apply the agent's clusters: look for `Envoy rejected a configuration` in the agent log; Envoy's admin /config_dump?resource=dynamic_active_clusters shows what it holds",
        ));
    };
    let mut have: Vec<SocketAddr> = cluster
        .host_statuses
        .iter()
        .filter_map(|h| h.address.socket_address.as_ref())
        .filter_map(|a| Some(SocketAddr::new(a.address.parse().ok()?, a.port_value)))
        .collect();
    have.sort();
    let mut want = up.endpoints.clone();
    want.sort();
    if have != want {
        return Err(Problem::new(
            format!(
                "Envoy's cluster {} has hosts [{}] but the agent sends [{}]",
                up.sni,
                list(&have),
                list(&want)
            ),
            "Envoy did not apply the agent's latest endpoints (EDS): look for `Envoy rejected a configuration` in the agent log; Envoy's admin /clusters shows what it holds",
        ));
    }
    Ok(have)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy 1.40's `/certs` for a sidecar (two TLS contexts), trimmed.
    fn page(leaf_serial: &str, root_serial: &str) -> CertsPage {
        let context = serde_json::json!({
            "ca_cert": [{"path": "<inline>", "serial_number": root_serial,
                "subject_alt_names": [{"uri": "spiffe://td.strait"}],
                "days_until_expiration": "3649",
                "valid_from": "2026-11-25T10:07:09Z", "expiration_time": "2036-11-22T10:08:09Z"}],
            "cert_chain": [{"path": "<inline>", "serial_number": leaf_serial,
                "subject_alt_names": [{"uri": "spiffe://td.strait/ns/default/dc/dc1/svc/web"}],
                "days_until_expiration": "2",
                "valid_from": "2026-11-25T10:07:11Z", "expiration_time": "2026-11-28T10:08:11Z"}],
        });
        serde_json::from_value(serde_json::json!({"certificates": [context.clone(), context]}))
            .unwrap()
    }

    fn snapshot(leaf_serial: &str, roots_pem: Vec<String>) -> Snapshot {
        Snapshot {
            leaf: SnapshotLeaf {
                serial: leaf_serial.into(),
            },
            roots_pem,
            sidecar: None,
        }
    }

    #[test]
    fn leaf_is_read_from_certs_and_checked_against_the_snapshot() {
        let leaf = leaf(&page("2f61", "6d04"), &snapshot("2F61", vec![])).unwrap();
        assert_eq!(
            leaf.spiffe_id,
            "spiffe://td.strait/ns/default/dc/dc1/svc/web"
        );
        assert_eq!(leaf.not_after_unix - leaf.not_before_unix, 3 * 86400 + 60);
        let stale = leaf_problem(&page("2f61", "6d04"), &snapshot("9999", vec![]));
        assert!(stale
            .detail
            .contains("serial 2f61 but the agent sends serial 9999"));
        assert!(stale
            .hint
            .contains("/config_dump?resource=dynamic_active_secrets"));
        let none = leaf_problem(
            &CertsPage {
                certificates: vec![],
            },
            &snapshot("1", vec![]),
        );
        assert!(
            none.detail.contains("no certificate chain"),
            "{}",
            none.detail
        );
    }

    fn leaf_problem(page: &CertsPage, snap: &Snapshot) -> Problem {
        match leaf(page, snap) {
            Ok(l) => panic!("accepted leaf {}", l.serial),
            Err(p) => p,
        }
    }

    #[test]
    fn roots_are_the_snapshots_once_envoy_shows_one_of_them() {
        let ca = strait_identity::testing::test_ca("td.strait");
        let serial = norm_serial(
            &strait_identity::ca::cert_info(&ca.cert_pem)
                .unwrap()
                .serial_hex,
        );
        let snap = snapshot("1", vec![ca.cert_pem.clone()]);
        let got = roots(&page("1", &serial.to_uppercase()), &snap).unwrap();
        assert_eq!(got, BTreeSet::from([serial.clone()]));
        let Err(p) = roots(&page("1", "abcd"), &snap) else {
            panic!("a root the agent does not send was accepted");
        };
        assert!(
            p.detail.contains("[abcd]") && p.detail.contains(&serial),
            "{}",
            p.detail
        );
    }

    #[test]
    fn version_is_the_second_field_of_envoys() {
        let full = "9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL";
        assert_eq!(version(full), "1.40.0");
        assert_eq!(version("dev"), "dev");
    }
}
