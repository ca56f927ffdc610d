//! Writes snapshot files and the process list for bench/run.sh:
//! - sidecar -> sidecar:                 127.0.0.1:15001 (http), :15011 (iperf3)
//! - sidecar -> gw(dc1) -> gw(dc2) -> sidecar: 127.0.0.1:15002 (http), :15012 (iperf3)
//!
//! The HTTP backend is expected on 127.0.0.1:18080 and iperf3 on 127.0.0.1:15201.
//! Usage: `bench_topology OUT_DIR`. Writes `OUT_DIR/<proxy>.json` and `OUT_DIR/procs.txt`
//! (one `name args...` line per proxy process, to run as `strait <args...>`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use strait_identity::testing::{issue_identity, test_ca};
use strait_identity::SpiffeId;
use strait_snapshot::{
    service_sni, service_spiffe_id, GatewayMode, GatewaySnapshot, Leaf, ProxyKind, Secret,
    SidecarSnapshot, Snapshot, UpstreamSnapshot,
};

const TD: &str = "b3e4n5c6.strait";
const BACKEND: &str = "127.0.0.1:18080";
const IPERF: &str = "127.0.0.1:15201";

fn a(s: &str) -> SocketAddr {
    s.parse().expect("static address")
}

struct Pki {
    ca: strait_identity::ca::CaCert,
}

impl Pki {
    fn leaf(&self, dc: &str, service: &str) -> Leaf {
        let id = SpiffeId::service(TD, dc, service);
        let (chain, key) = issue_identity(&self.ca, &id);
        let info = strait_identity::ca::cert_info(&chain).expect("leaf info");
        Leaf {
            cert_chain_pem: chain,
            key_pem: Secret(key),
            spiffe_id: id.to_string(),
            serial: info.serial_hex,
            not_after_unix: info.not_after_unix,
        }
    }
}

fn upstream(dest: &str, dc: &str, bind: &str, endpoints: &[&str]) -> UpstreamSnapshot {
    UpstreamSnapshot {
        destination: dest.into(),
        datacenter: dc.into(),
        bind: a(bind),
        sni: service_sni(dest, dc, TD),
        spiffe_id: service_spiffe_id(dest, dc, TD),
        mode: GatewayMode::Local,
        endpoints: endpoints.iter().map(|e| a(e)).collect(),
    }
}

fn sidecar(
    pki: &Pki,
    dc: &str,
    service: &str,
    public: &str,
    app: &str,
    ups: Vec<UpstreamSnapshot>,
) -> Snapshot {
    Snapshot {
        version: 1,
        proxy_id: format!("{service}-sidecar-proxy"),
        kind: ProxyKind::Sidecar,
        trust_domain: TD.into(),
        datacenter: dc.into(),
        service: service.into(),
        leaf: pki.leaf(dc, service),
        roots_pem: vec![pki.ca.cert_pem.clone()],
        sidecar: Some(SidecarSnapshot {
            public_listener: a(public),
            local_app: a(app),
            upstreams: ups,
        }),
        gateway: None,
    }
}

fn gateway(dc: &str, lan: &str, local: &[(&str, &str)], remote: &[(&str, &str)]) -> Snapshot {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<SocketAddr>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![a(v)]))
            .collect()
    };
    Snapshot {
        version: 1,
        proxy_id: "mesh-gateway".into(),
        kind: ProxyKind::MeshGateway,
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
        sidecar: None,
        gateway: Some(GatewaySnapshot {
            lan: a(lan),
            wan: a(lan),
            local_services: map(local),
            local_servers: vec![],
            remote_gateways: map(remote),
        }),
    }
}

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "bench/out".into());
    let out = Path::new(&out);
    std::fs::create_dir_all(out)?;
    let pki = Pki { ca: test_ca(TD) };
    let (gw1, gw2) = ("127.0.0.1:18443", "127.0.0.1:28443");
    let proxies: Vec<(&str, &str, Snapshot)> = vec![
        (
            "s1",
            "19101",
            sidecar(
                &pki,
                "dc1",
                "web",
                "127.0.0.1:21000",
                BACKEND,
                vec![
                    upstream("backend", "dc1", "127.0.0.1:15001", &["127.0.0.1:21001"]),
                    upstream("iperf", "dc1", "127.0.0.1:15011", &["127.0.0.1:21011"]),
                ],
            ),
        ),
        (
            "s2",
            "19102",
            sidecar(&pki, "dc1", "backend", "127.0.0.1:21001", BACKEND, vec![]),
        ),
        (
            "s2i",
            "19103",
            sidecar(&pki, "dc1", "iperf", "127.0.0.1:21011", IPERF, vec![]),
        ),
        (
            "s3",
            "19104",
            sidecar(
                &pki,
                "dc1",
                "web",
                "127.0.0.1:21020",
                BACKEND,
                vec![
                    upstream("backend", "dc2", "127.0.0.1:15002", &[gw1]),
                    upstream("iperf", "dc2", "127.0.0.1:15012", &[gw1]),
                ],
            ),
        ),
        ("gw1", "19105", gateway("dc1", gw1, &[], &[("dc2", gw2)])),
        (
            "gw2",
            "19106",
            gateway(
                "dc2",
                gw2,
                &[("backend", "127.0.0.1:21002"), ("iperf", "127.0.0.1:21012")],
                &[],
            ),
        ),
        (
            "s4",
            "19107",
            sidecar(&pki, "dc2", "backend", "127.0.0.1:21002", BACKEND, vec![]),
        ),
        (
            "s4i",
            "19108",
            sidecar(&pki, "dc2", "iperf", "127.0.0.1:21012", IPERF, vec![]),
        ),
    ];
    let mut procs = String::new();
    for (name, admin, snapshot) in proxies {
        let file = out.join(format!("{name}.json"));
        // Snapshots carry private keys: 0600.
        strait_identity::files::write_secret(&file, &serde_json::to_vec_pretty(&snapshot)?)?;
        let file = file.display();
        let admin = format!("127.0.0.1:{admin}");
        match &snapshot.gateway {
            Some(gw) => writeln!(
                procs,
                "{name} gateway --mesh --address {} --snapshot-file {file} --admin {admin}",
                gw.lan
            )?,
            None => writeln!(procs, "{name} proxy --snapshot-file {file} --admin {admin}")?,
        }
    }
    std::fs::write(out.join("procs.txt"), procs)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
