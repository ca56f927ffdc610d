//! Writes snapshot files, the process list and the paths for bench/run.sh. Everything lives
//! on 127.60.0.0/16 (the bench's loopback range), one address per proxy:
//! - direct:                                  backend 127.60.0.1:18080, iperf3 127.60.0.2:5201
//! - s2s: s1 -> s2 (s2i for iperf3):          127.60.1.1:15000 (http), :15010 (iperf3)
//! - gw:  s3 -> gw1 -> gw2 -> s4 (s4i):       127.60.2.1:15000 (http), :15010 (iperf3)
//! - envoy-s2s and envoy-gw: the same two paths with Envoy as every proxy (es1.., egw1..),
//!   on 127.61.x.y; each Envoy gets its snapshot over ADS from its own `strait envoy ads`
//!   (process `ads-<name>`), rendered by the code the agent's ADS server uses.
//!
//! Usage: `bench_topology OUT_DIR`. Writes `OUT_DIR/<proxy>.json`, `OUT_DIR/procs.txt` (one
//! `name args...` line per proxy process, to run as `strait <args...>`) and
//! `OUT_DIR/paths.txt` (one `path http_addr iperf_addr http_proxies...` line per path; the
//! listed proxies are the ones on the HTTP path, whose CPU is summed).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use strait_identity::testing::{issue_identity, test_ca};
use strait_identity::SpiffeId;
use strait_snapshot::{
    service_sni, service_spiffe_id, GatewayMode, GatewaySnapshot, Leaf, ProxyRole, Secret,
    SidecarSnapshot, Snapshot, UpstreamSnapshot, UpstreamTarget,
};

const TD: &str = "b3e4n5c6.strait";
const BACKEND: &str = "127.60.0.1:18080";
const IPERF: &str = "127.60.0.2:5201";

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
        mode: GatewayMode::Local,
        primary: UpstreamTarget {
            service: dest.into(),
            subset: String::new(),
            datacenter: dc.into(),
            sni: service_sni(dest, dc, TD),
            spiffe_id: service_spiffe_id(dest, dc, TD),
            endpoints: endpoints.iter().map(|e| a(e)).collect(),
        },
        failover: vec![],
        connect_timeout_ms: None,
        passive_health: None,
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
        trust_domain: TD.into(),
        datacenter: dc.into(),
        service: service.into(),
        leaf: pki.leaf(dc, service),
        roots_pem: vec![pki.ca.cert_pem.clone()],
        role: ProxyRole::Sidecar(SidecarSnapshot {
            intentions: Default::default(),
            public_listener: a(public),
            local_app: a(app),
            upstreams: ups,
        }),
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
    let mut procs = String::new();
    for (net, prefix) in [("127.60", ""), ("127.61", "e")] {
        write_paths(&pki, out, net, prefix, &mut procs)?;
    }
    std::fs::write(out.join("procs.txt"), procs)?;
    let paths = format!(
        "direct {BACKEND} {IPERF}\n\
         s2s 127.60.1.1:15000 127.60.1.1:15010 s1 s2\n\
         gw 127.60.2.1:15000 127.60.2.1:15010 s3 gw1 gw2 s4\n\
         envoy-s2s 127.61.1.1:15000 127.61.1.1:15010 es1 es2\n\
         envoy-gw 127.61.2.1:15000 127.61.2.1:15010 es3 egw1 egw2 es4\n"
    );
    std::fs::write(out.join("paths.txt"), paths)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// The s2s and gw paths on `<net>.x.y`, their proxies named with `prefix` (`""`: strait's
/// built-in proxy, `"e"`: Envoy): snapshot files, and their lines in `procs`.
fn write_paths(
    pki: &Pki,
    out: &Path,
    net: &str,
    prefix: &str,
    procs: &mut String,
) -> anyhow::Result<()> {
    let ip = |host: &str| format!("{net}.{host}");
    let (gw1, gw2) = (ip("2.2:8443"), ip("3.2:8443"));
    let (gw1, gw2) = (gw1.as_str(), gw2.as_str());
    let sc = |dc: &str, svc: &str, ip: &str, app: &str, ups| {
        sidecar(pki, dc, svc, &format!("{ip}:21000"), app, ups)
    };
    // (name, IP: the admin endpoint listens on IP:19000, snapshot)
    let proxies: Vec<(&str, String, Snapshot)> = vec![
        (
            "s1",
            ip("1.1"),
            sc(
                "dc1",
                "web",
                &ip("1.1"),
                BACKEND,
                vec![
                    upstream("backend", "dc1", &ip("1.1:15000"), &[&ip("1.2:21000")]),
                    upstream("iperf", "dc1", &ip("1.1:15010"), &[&ip("1.3:21000")]),
                ],
            ),
        ),
        (
            "s2",
            ip("1.2"),
            sc("dc1", "backend", &ip("1.2"), BACKEND, vec![]),
        ),
        (
            "s2i",
            ip("1.3"),
            sc("dc1", "iperf", &ip("1.3"), IPERF, vec![]),
        ),
        (
            "s3",
            ip("2.1"),
            sc(
                "dc1",
                "web",
                &ip("2.1"),
                BACKEND,
                vec![
                    upstream("backend", "dc2", &ip("2.1:15000"), &[gw1]),
                    upstream("iperf", "dc2", &ip("2.1:15010"), &[gw1]),
                ],
            ),
        ),
        ("gw1", ip("2.2"), gateway("dc1", gw1, &[], &[("dc2", gw2)])),
        (
            "gw2",
            ip("3.2"),
            gateway(
                "dc2",
                gw2,
                &[("backend", &ip("3.1:21000")), ("iperf", &ip("3.3:21000"))],
                &[],
            ),
        ),
        (
            "s4",
            ip("3.1"),
            sc("dc2", "backend", &ip("3.1"), BACKEND, vec![]),
        ),
        (
            "s4i",
            ip("3.3"),
            sc("dc2", "iperf", &ip("3.3"), IPERF, vec![]),
        ),
    ];
    for (name, ip, snapshot) in proxies {
        let name = format!("{prefix}{name}");
        let file = out.join(format!("{name}.json"));
        // Snapshots carry private keys: 0600.
        strait_identity::files::write_secret(&file, &serde_json::to_vec_pretty(&snapshot)?)?;
        let file = file.display();
        let admin = format!("{ip}:19000");
        if prefix.is_empty() {
            match &snapshot.role {
                ProxyRole::Gateway(gw) => writeln!(
                    procs,
                    "{name} gateway --mesh --address {} --snapshot-file {file} --admin {admin}",
                    gw.lan
                )?,
                ProxyRole::Sidecar(_) => {
                    writeln!(procs, "{name} proxy --snapshot-file {file} --admin {admin}")?
                }
            }
            continue;
        }
        let ads = format!("{ip}:8502");
        writeln!(
            procs,
            "ads-{name} envoy ads --listen {ads} --snapshot-file {file}"
        )?;
        let kind = match &snapshot.role {
            ProxyRole::Gateway(gw) => format!("--gateway mesh --address {} --no-register", gw.lan),
            ProxyRole::Sidecar(_) => format!("--sidecar-for {}", snapshot.service),
        };
        writeln!(
            procs,
            "{name} envoy run {kind} --proxy-id {} --admin {admin} --grpc {ads} \
             -- --concurrency 1 --log-level warn",
            snapshot.proxy_id
        )?;
    }
    Ok(())
}
