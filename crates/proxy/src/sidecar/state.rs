//! Snapshot -> everything the sidecar's data path needs, built once per snapshot: the
//! inbound server config, one client config per upstream target (expecting exactly that
//! target's SPIFFE ID), the SNI names, each target's counters and its endpoints' passive
//! health. Connections only clone `Arc`s out of it.

use super::passive::EndpointHealth;
use super::tunnel;
use crate::metrics::{Metrics, TargetMetrics};
use rustls::ServerConfig;
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use strait_identity::tls::{self, ClientAuth, Expect, Identity, Roots};
use strait_identity::SpiffeId;
use strait_snapshot::{Intentions, PassiveHealth, Snapshot, WrongKind};
use tokio_rustls::TlsConnector;

/// Identifies an upstream across snapshots: its listener follows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamKey {
    pub destination: String,
    pub datacenter: String,
}

impl UpstreamKey {
    /// Listener name in metrics and logs: `outbound:<destination>@<datacenter>`.
    pub fn listener_name(&self) -> String {
        format!("outbound:{}@{}", self.destination, self.datacenter)
    }
}

/// One upstream, ready to dial: its chain of targets, tried in order.
pub(crate) struct UpstreamState {
    pub key: UpstreamKey,
    pub bind: SocketAddr,
    /// The primary target, then the failover targets.
    pub targets: Vec<TargetState>,
    /// Bound on one connection attempt over every target (`None`: the proxy's default).
    pub connect_timeout: Option<Duration>,
    /// Passive health of every target's endpoints (`None`: off).
    pub passive_health: Option<PassiveHealth>,
}

/// One target of an upstream's chain.
pub(crate) struct TargetState {
    pub sni: ServerName<'static>,
    /// `<sni>:443`: the authority of a tunnel stream's `CONNECT` (informational).
    pub authority: http::Uri,
    pub connector: TlsConnector,
    pub endpoints: Vec<SocketAddr>,
    /// Passive health of each of `endpoints` (same order); kept across snapshots.
    pub health: Vec<Arc<EndpointHealth>>,
    /// The tunnel open to each of `endpoints` (same order); new with each snapshot.
    pub tunnels: Vec<tunnel::Pool>,
    /// Round-robin start over endpoints.
    pub next: AtomicUsize,
    /// Connections served and failovers to it; kept across snapshots.
    pub metrics: Arc<TargetMetrics>,
}

/// The sidecar's data-path configuration for one snapshot.
pub(crate) struct SidecarState {
    pub public_listener: SocketAddr,
    pub local_app: SocketAddr,
    /// The inbound TLS config for callers that do not offer a tunnel (no ALPN selected).
    pub server: Arc<ServerConfig>,
    /// The same, selecting [`tunnel::ALPN`], for callers that offer it (`None`: tunnels off).
    pub tunnel_server: Option<Arc<ServerConfig>>,
    pub upstreams: Vec<UpstreamState>,
    pub intentions: Intentions,
    /// The trust roots callers are verified against (PEM, sorted): a tunnel verified under
    /// a root no longer among them takes no new streams.
    pub roots_pem: Vec<String>,
}

/// Why a snapshot could not be turned into configs; the previous one stays in use.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A gateway's snapshot (`--snapshot-file` or `--proxy-id` naming another proxy).
    #[error(transparent)]
    WrongKind(#[from] WrongKind),
    #[error("snapshot {version}: {what}: {error}")]
    Identity {
        version: u64,
        what: String,
        error: strait_identity::IdentityError,
    },
    #[error("snapshot {version}: upstream {destination:?}: SNI {sni:?} is not a DNS name")]
    BadSni {
        version: u64,
        destination: String,
        sni: String,
    },
}

impl SidecarState {
    /// `tunnels`: offer and accept [`tunnel`]s (`--multiplex`).
    pub(crate) fn build(
        snapshot: &Snapshot,
        metrics: &Metrics,
        tunnels: bool,
    ) -> Result<SidecarState, StateError> {
        let version = snapshot.version;
        let sidecar = snapshot.sidecar()?;
        let identity_err = |what: String| {
            move |error| StateError::Identity {
                version,
                what,
                error,
            }
        };
        let identity = Identity::from_pem(&snapshot.leaf.cert_chain_pem, &snapshot.leaf.key_pem.0)
            .map_err(identity_err("leaf certificate".into()))?;
        let roots = Roots::from_pems(&snapshot.roots_pem).map_err(identity_err("roots".into()))?;
        let server = tls::server_config(&identity, &roots, ClientAuth::Required)
            .map_err(identity_err("inbound TLS config".into()))?;
        let mut upstreams = Vec::with_capacity(sidecar.upstreams.len());
        for up in &sidecar.upstreams {
            let key = UpstreamKey {
                destination: up.destination.clone(),
                datacenter: up.datacenter.clone(),
            };
            let listener = key.listener_name();
            let mut targets = Vec::new();
            for target in up.targets() {
                let what = || {
                    format!(
                        "upstream {:?}, target {}@{}",
                        up.destination, target.service, target.datacenter
                    )
                };
                let expect: SpiffeId = target
                    .spiffe_id
                    .parse()
                    .map_err(identity_err(format!("{}: SPIFFE ID", what())))?;
                let mut client = tls::client_config(Some(&identity), &roots, Expect::Exact(expect))
                    .map_err(identity_err(format!("{}: TLS config", what())))?;
                if tunnels {
                    let mut config = (*client).clone();
                    config.alpn_protocols = vec![tunnel::ALPN.to_vec()];
                    client = Arc::new(config);
                }
                let bad_sni = || StateError::BadSni {
                    version,
                    destination: up.destination.clone(),
                    sni: target.sni.clone(),
                };
                let sni = ServerName::try_from(target.sni.clone()).map_err(|_| bad_sni())?;
                let authority =
                    http::Uri::try_from(format!("{}:443", target.sni)).map_err(|_| bad_sni())?;
                let metrics = metrics.target(&listener, &target.sni);
                targets.push(TargetState {
                    sni,
                    authority,
                    connector: TlsConnector::from(client),
                    endpoints: target.endpoints.clone(),
                    health: metrics.endpoint_health(&target.endpoints),
                    tunnels: target
                        .endpoints
                        .iter()
                        .map(|_| Default::default())
                        .collect(),
                    next: AtomicUsize::new(0),
                    metrics,
                });
            }
            upstreams.push(UpstreamState {
                key,
                bind: up.bind,
                targets,
                connect_timeout: up.connect_timeout_ms.map(Duration::from_millis),
                passive_health: up.passive_health,
            });
        }
        Ok(SidecarState {
            public_listener: sidecar.public_listener,
            local_app: sidecar.local_app,
            tunnel_server: tunnels.then(|| {
                let mut config = (*server).clone();
                config.alpn_protocols = vec![tunnel::ALPN.to_vec()];
                Arc::new(config)
            }),
            server,
            upstreams,
            intentions: sidecar.intentions.clone(),
            roots_pem: snapshot.roots_pem.clone(),
        })
    }

    /// Whether a caller with this verified identity may connect: services as intentions
    /// say; agents and servers never call services through sidecars.
    pub(crate) fn admits(&self, caller: &SpiffeId) -> bool {
        match caller {
            SpiffeId::Service { service, .. } => self.intentions.allows(service),
            SpiffeId::Server { .. } | SpiffeId::Agent { .. } => false,
        }
    }

    pub(crate) fn upstream(&self, key: &UpstreamKey) -> Option<&UpstreamState> {
        self.upstreams.iter().find(|u| &u.key == key)
    }
}
