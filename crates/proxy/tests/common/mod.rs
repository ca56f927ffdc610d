//! Shared fixtures of the proxy's integration tests: a test CA, snapshots built in code,
//! small TCP servers, and helpers to wait for counters without fixed sleeps.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use strait_identity::ca::CaCert;
use strait_identity::testing::{issue_identity, test_ca};
use strait_identity::SpiffeId;
use strait_proxy::Options;
use strait_snapshot::{
    service_sni, service_spiffe_id, GatewayMode, GatewaySnapshot, Leaf, ProxyRole, Secret,
    SidecarSnapshot, Snapshot, UpstreamSnapshot, UpstreamTarget,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TD: &str = "t1e2s3t4.strait";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Short timeouts so tests of timeouts finish quickly.
pub fn options() -> Options {
    Options {
        admin: None,
        grace: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
        max_connections: 1000,
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(5),
        upstream_handshake_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

pub const ANY: &str = "127.0.0.1:0";

/// A CA for trust domain `td`.
pub struct Pki {
    pub ca: CaCert,
    pub td: String,
}

impl Pki {
    pub fn new(td: &str) -> Pki {
        Pki {
            ca: test_ca(td),
            td: td.to_string(),
        }
    }

    pub fn id(&self, dc: &str, service: &str) -> SpiffeId {
        SpiffeId::service(&self.td, dc, service)
    }

    /// A one-hour leaf for `service` in `dc`.
    pub fn leaf(&self, dc: &str, service: &str) -> Leaf {
        let id = self.id(dc, service);
        let (chain, key) = issue_identity(&self.ca, &id);
        leaf_from(chain, key, &id)
    }

    pub fn roots(&self) -> Vec<String> {
        vec![self.ca.cert_pem.clone()]
    }
}

pub fn leaf_from(chain: String, key: String, id: &SpiffeId) -> Leaf {
    let info = strait_identity::ca::cert_info(&chain).expect("leaf info");
    Leaf {
        cert_chain_pem: chain,
        key_pem: Secret(key),
        spiffe_id: id.to_string(),
        serial: info.serial_hex,
        not_after_unix: info.not_after_unix,
    }
}

/// An upstream of `dest` in `dc`, listening on 127.0.0.1:0.
pub fn upstream(td: &str, dest: &str, dc: &str, endpoints: Vec<SocketAddr>) -> UpstreamSnapshot {
    UpstreamSnapshot {
        destination: dest.to_string(),
        datacenter: dc.to_string(),
        bind: addr(ANY),
        mode: GatewayMode::Local,
        primary: target(td, dest, dc, endpoints),
        failover: vec![],
        connect_timeout_ms: None,
        passive_health: None,
    }
}

/// A target: `dest` in `dc`, reached at `endpoints`.
pub fn target(td: &str, dest: &str, dc: &str, endpoints: Vec<SocketAddr>) -> UpstreamTarget {
    UpstreamTarget {
        service: dest.to_string(),
        subset: String::new(),
        datacenter: dc.to_string(),
        sni: service_sni(dest, dc, td),
        spiffe_id: service_spiffe_id(dest, dc, td),
        endpoints,
    }
}

pub fn sidecar_snapshot(
    pki: &Pki,
    version: u64,
    dc: &str,
    service: &str,
    local_app: SocketAddr,
    upstreams: Vec<UpstreamSnapshot>,
) -> Snapshot {
    Snapshot {
        version,
        proxy_id: format!("{service}-sidecar-proxy"),
        trust_domain: pki.td.clone(),
        datacenter: dc.to_string(),
        service: service.to_string(),
        leaf: pki.leaf(dc, service),
        roots_pem: pki.roots(),
        role: ProxyRole::Sidecar(SidecarSnapshot {
            intentions: Default::default(),
            public_listener: addr(ANY),
            local_app,
            upstreams,
        }),
    }
}

pub fn gateway_snapshot(
    version: u64,
    dc: &str,
    local_services: BTreeMap<String, Vec<SocketAddr>>,
    remote_gateways: BTreeMap<String, Vec<SocketAddr>>,
) -> Snapshot {
    Snapshot {
        version,
        proxy_id: "mesh-gateway".into(),
        trust_domain: TD.into(),
        datacenter: dc.into(),
        service: "mesh-gateway".into(),
        leaf: Leaf {
            cert_chain_pem: String::new(),
            key_pem: Secret(String::new()),
            spiffe_id: String::new(),
            serial: String::new(),
            not_after_unix: 0,
        },
        roots_pem: vec![],
        role: ProxyRole::Gateway(GatewaySnapshot {
            lan: addr(ANY),
            wan: addr(ANY),
            local_services,
            local_servers: vec![],
            remote_gateways,
        }),
    }
}

pub fn channel(snapshot: Snapshot) -> (strait_proxy::SnapshotTx, strait_proxy::SnapshotRx) {
    tokio::sync::watch::channel(Some(Arc::new(snapshot)))
}

/// A TCP server that echoes every byte and half-closes after the client does.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(ANY).await.expect("bind echo");
    let local = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    local
}

/// A TCP server that answers every connection with `tag` and closes.
pub async fn tag_server(tag: &'static str) -> SocketAddr {
    let listener = TcpListener::bind(ANY).await.expect("bind tag");
    let local = listener.local_addr().expect("tag addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(tag.as_bytes()).await;
                let _ = stream.shutdown().await;
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink).await;
            });
        }
    });
    local
}

/// Sends `payload`, half-closes, reads everything back.
pub async fn round_trip(addr: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    let (mut r, mut w) = stream.split();
    let send = async {
        w.write_all(payload).await?;
        w.shutdown().await
    };
    let mut back = Vec::new();
    let recv = r.read_to_end(&mut back);
    let (sent, received) = tokio::join!(send, recv);
    sent?;
    received?;
    Ok(back)
}

/// Waits (up to 10 s) until `probe` returns true.
pub async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}
