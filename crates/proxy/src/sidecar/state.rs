//! Snapshot -> everything the sidecar's data path needs, built once per snapshot: the
//! inbound server config, one client config per upstream (expecting exactly that upstream's
//! SPIFFE ID), the SNI names. Connections only clone `Arc`s out of it.

use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use strait_identity::tls::{self, ClientAuth, Expect, Identity, Roots};
use strait_identity::SpiffeId;
use strait_snapshot::{Intentions, Snapshot, WrongKind};
use tokio_rustls::{TlsAcceptor, TlsConnector};

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

/// One upstream, ready to dial.
pub(crate) struct UpstreamState {
    pub key: UpstreamKey,
    pub bind: SocketAddr,
    pub sni: ServerName<'static>,
    pub connector: TlsConnector,
    pub endpoints: Vec<SocketAddr>,
    /// Round-robin start over endpoints.
    pub next: AtomicUsize,
}

/// The sidecar's data-path configuration for one snapshot.
pub(crate) struct SidecarState {
    pub public_listener: SocketAddr,
    pub local_app: SocketAddr,
    pub acceptor: TlsAcceptor,
    pub upstreams: Vec<UpstreamState>,
    pub intentions: Intentions,
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
    pub(crate) fn build(snapshot: &Snapshot) -> Result<SidecarState, StateError> {
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
            let what = || format!("upstream {:?}", up.destination);
            let expect: SpiffeId = up
                .spiffe_id
                .parse()
                .map_err(identity_err(format!("{}: SPIFFE ID", what())))?;
            let client = tls::client_config(Some(&identity), &roots, Expect::Exact(expect))
                .map_err(identity_err(format!("{}: TLS config", what())))?;
            let sni = ServerName::try_from(up.sni.clone()).map_err(|_| StateError::BadSni {
                version,
                destination: up.destination.clone(),
                sni: up.sni.clone(),
            })?;
            upstreams.push(UpstreamState {
                key: UpstreamKey {
                    destination: up.destination.clone(),
                    datacenter: up.datacenter.clone(),
                },
                bind: up.bind,
                sni,
                connector: TlsConnector::from(client),
                endpoints: up.endpoints.clone(),
                next: AtomicUsize::new(0),
            });
        }
        Ok(SidecarState {
            public_listener: sidecar.public_listener,
            local_app: sidecar.local_app,
            acceptor: TlsAcceptor::from(server),
            upstreams,
            intentions: sidecar.intentions.clone(),
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
