//! Sidecar against real sockets and real mTLS: bytes both ways, every refusal counted by
//! reason, endpoint failover, snapshot swaps that keep established connections, admin pages,
//! and the whole sidecar -> gateway -> gateway -> sidecar path.

mod common;

use common::*;
use http::Method;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use strait_identity::ca::generate_key_and_csr;
use strait_identity::tls::{self, Expect, Identity, Roots};
use strait_proxy::sidecar::state::UpstreamKey;
use strait_proxy::{start_gateway, start_sidecar, Options, SidecarHandle};
use strait_snapshot::{ProxyRole, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct Running {
    handle: SidecarHandle,
    tx: strait_proxy::SnapshotTx,
    _stop: tokio_util::sync::DropGuard,
}

async fn sidecar(options: Options, snapshot: Snapshot) -> Running {
    let upstreams = snapshot.sidecar().map_or(0, |s| s.upstreams.len());
    let (tx, rx) = channel(snapshot);
    let stop = CancellationToken::new();
    let handle = start_sidecar(options, rx, stop.clone())
        .await
        .expect("start sidecar");
    handle.ready().await;
    handle
        .wait_bound(|b| b.public.is_some() && b.upstreams.len() == upstreams)
        .await;
    Running {
        handle,
        tx,
        _stop: stop.drop_guard(),
    }
}

impl Running {
    fn public(&self) -> SocketAddr {
        self.handle
            .bound()
            .borrow()
            .public
            .expect("public listener bound")
    }
    fn upstream(&self, dest: &str, dc: &str) -> SocketAddr {
        let key = UpstreamKey {
            destination: dest.into(),
            datacenter: dc.into(),
        };
        *self
            .handle
            .bound()
            .borrow()
            .upstreams
            .get(&key)
            .expect("upstream bound")
    }
}

/// "api" in dc1 fronting an echo server; "web" in dc1 with an upstream to it.
async fn pair(pki: &Pki) -> (Running, Running) {
    pair_multiplexed(pki, true, true).await
}

/// [`pair`], with tunnels on or off (`--multiplex`) on each side.
async fn pair_multiplexed(pki: &Pki, api_tunnels: bool, web_tunnels: bool) -> (Running, Running) {
    let api = Options {
        multiplex: api_tunnels,
        ..options()
    };
    let web = Options {
        multiplex: web_tunnels,
        ..options()
    };
    pair_with(pki, echo_server().await, api, web).await
}

/// "api" in dc1 fronting `app`, "web" in dc1 with an upstream to it, each with its options.
async fn pair_with(pki: &Pki, app: SocketAddr, api: Options, web: Options) -> (Running, Running) {
    let api = sidecar(api, sidecar_snapshot(pki, 1, "dc1", "api", app, vec![])).await;
    let up = upstream(&pki.td, "api", "dc1", vec![api.public()]);
    let web = sidecar(web, sidecar_snapshot(pki, 1, "dc1", "web", app, vec![up])).await;
    (api, web)
}

/// (full, resumed) handshakes of the client (`web`, outbound) and the server (`api`,
/// inbound), and the tunnel streams each opened.
fn handshakes_and_streams(api: &Running, web: &Running) -> [(u64, u64, u64); 2] {
    let (w, a) = (web.handle.metrics(), api.handle.metrics());
    [
        (
            w.handshakes_outbound.full.load(Relaxed),
            w.handshakes_outbound.resumed.load(Relaxed),
            w.tunnel_streams_outbound.load(Relaxed),
        ),
        (
            a.handshakes_inbound.full.load(Relaxed),
            a.handshakes_inbound.resumed.load(Relaxed),
            a.tunnel_streams_inbound.load(Relaxed),
        ),
    ]
}

/// A megabyte each way, then a second connection: it is a second stream of the first
/// connection's tunnel (one handshake for both).
#[tokio::test]
async fn mtls_carries_bytes_both_ways() {
    init_tracing();
    let pki = Pki::new(TD);
    let (api, web) = pair(&pki).await;
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let back = round_trip(web.upstream("api", "dc1"), &payload)
        .await
        .expect("round trip");
    assert!(back == payload, "payload changed");

    let out = web.handle.metrics().listener("outbound:api@dc1");
    assert_eq!(out.accepted.load(Relaxed), 1);
    assert_eq!(out.bytes_rx.load(Relaxed), payload.len() as u64);
    assert_eq!(out.bytes_tx.load(Relaxed), payload.len() as u64);
    let inbound = api.handle.metrics().listener("inbound");
    assert_eq!(inbound.bytes_rx.load(Relaxed), payload.len() as u64);
    assert!(api.handle.metrics().handshake_inbound.snapshot().is_empty());

    let again = round_trip(web.upstream("api", "dc1"), b"again")
        .await
        .expect("second round trip");
    assert_eq!(again, b"again");
    assert_eq!(
        handshakes_and_streams(&api, &web),
        [(1, 0, 2), (1, 0, 2)],
        "(full, resumed, streams): client, server"
    );
}

/// Without tunnels on either side (the client does not offer one, or the server does not
/// select it: Envoy, an older strait) each connection is a TLS connection of its own; the
/// second one resumes the first one's session (a TLS 1.3 ticket): the peer identity the
/// server admits comes from the full handshake that verified it.
#[tokio::test]
async fn without_tunnels_each_connection_has_its_own_resumed_handshake() {
    init_tracing();
    let pki = Pki::new(TD);
    for (api_tunnels, web_tunnels) in [(true, false), (false, true)] {
        let (api, web) = pair_multiplexed(&pki, api_tunnels, web_tunnels).await;
        for payload in [&b"first"[..], b"again"] {
            let back = round_trip(web.upstream("api", "dc1"), payload)
                .await
                .expect("round trip");
            assert_eq!(back, payload);
        }
        assert_eq!(
            handshakes_and_streams(&api, &web),
            [(1, 1, 0), (1, 1, 0)],
            "api tunnels {api_tunnels}, web tunnels {web_tunnels}: (full, resumed, streams)"
        );
    }
}

/// Dials `api`'s public listener as a raw TLS client presenting `identity`; returns the
/// bytes echoed back for "ping" (empty when the server refused).
async fn probe(pki: &Pki, api: &Running, identity: Option<&Identity>) -> Vec<u8> {
    let roots = Roots::from_pems(&pki.roots()).expect("roots");
    let config =
        tls::client_config(identity, &roots, Expect::Exact(pki.id("dc1", "api"))).expect("config");
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = TcpStream::connect(api.public()).await.expect("connect");
    let name =
        rustls::pki_types::ServerName::try_from(strait_snapshot::service_sni("api", "dc1", TD))
            .expect("sni");
    // TLS 1.3: the client finishes before the server has judged its certificate, so the
    // refusal shows up on the first read.
    let Ok(mut stream) = connector.connect(name, tcp).await else {
        return Vec::new();
    };
    let _ = stream.write_all(b"ping").await;
    let _ = stream.flush().await;
    let mut buf = vec![0u8; 4];
    match tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf)).await {
        Ok(Ok(_)) => buf,
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn inbound_refusals_are_counted_by_reason() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let api = sidecar(
        options(),
        sidecar_snapshot(&pki, 1, "dc1", "api", echo, vec![]),
    )
    .await;
    let m = api.handle.metrics().clone();

    // A good client identity is let in.
    let leaf = pki.leaf("dc1", "web");
    let good = Identity::from_pem(&leaf.cert_chain_pem, &leaf.key_pem.0).expect("identity");
    assert_eq!(probe(&pki, &api, Some(&good)).await, b"ping");

    // No client certificate.
    assert!(probe(&pki, &api, None).await.is_empty());
    eventually("no_certificate", || async {
        m.handshake_inbound.get("no_certificate") == 1
    })
    .await;

    // A certificate from another CA (same trust domain name).
    let other = Pki::new(TD);
    let leaf = other.leaf("dc1", "web");
    let foreign = Identity::from_pem(&leaf.cert_chain_pem, &leaf.key_pem.0).expect("identity");
    assert!(probe(&pki, &api, Some(&foreign)).await.is_empty());
    eventually("unknown_ca", || async {
        m.handshake_inbound.get("unknown_ca") == 1
    })
    .await;

    // An expired certificate from the right CA.
    let id = pki.id("dc1", "web");
    let (key, csr) = generate_key_and_csr(&id).expect("csr");
    let now = time::OffsetDateTime::now_utc();
    let issued = pki
        .ca
        .sign_leaf_with_validity(
            &csr,
            &id,
            now - time::Duration::days(2),
            now - time::Duration::days(1),
        )
        .expect("expired leaf");
    let chain = pki.ca.leaf_chain_pem(&issued.cert_pem).expect("chain");
    let expired = Identity::from_pem(&chain, &key).expect("identity");
    assert!(probe(&pki, &api, Some(&expired)).await.is_empty());
    eventually("expired", || async {
        m.handshake_inbound.get("expired") == 1
    })
    .await;

    assert_eq!(
        m.listener("inbound").bytes_rx.load(Relaxed),
        4,
        "only the good probe got through"
    );
    let text = m.to_prometheus();
    for reason in ["no_certificate", "unknown_ca", "expired"] {
        let line = format!("strait_sidecar_handshake_failures_total{{direction=\"inbound\",reason=\"{reason}\"}} 1");
        assert!(text.contains(&line), "missing {line}\n{text}");
    }
}

#[tokio::test]
async fn outbound_refuses_an_endpoint_with_the_wrong_spiffe_id() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    // "billing" answers where "api" was expected.
    let impostor = sidecar(
        options(),
        sidecar_snapshot(&pki, 1, "dc1", "billing", echo, vec![]),
    )
    .await;
    let up = upstream(&pki.td, "api", "dc1", vec![impostor.public()]);
    let web = sidecar(
        options(),
        sidecar_snapshot(&pki, 1, "dc1", "web", echo, vec![up]),
    )
    .await;
    let back = round_trip(web.upstream("api", "dc1"), b"secret")
        .await
        .unwrap_or_default();
    assert!(back.is_empty(), "bytes reached an impostor");
    let m = web.handle.metrics();
    assert_eq!(m.handshake_outbound.get("bad_identity"), 1);
    assert_eq!(
        impostor
            .handle
            .metrics()
            .listener("inbound")
            .bytes_rx
            .load(Relaxed),
        0
    );
}

#[tokio::test]
async fn failover_to_the_next_endpoint() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let api = sidecar(
        options(),
        sidecar_snapshot(&pki, 1, "dc1", "api", echo, vec![]),
    )
    .await;
    // A port nobody listens on: bind, note it, close.
    let dead = TcpListener::bind(ANY)
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let up = upstream(&pki.td, "api", "dc1", vec![dead, api.public()]);
    let web = sidecar(
        options(),
        sidecar_snapshot(&pki, 1, "dc1", "web", echo, vec![up]),
    )
    .await;
    for _ in 0..2 {
        let back = round_trip(web.upstream("api", "dc1"), b"hello")
            .await
            .expect("round trip");
        assert_eq!(back, b"hello");
    }
    // Round-robin made one of the two connections start at the dead endpoint.
    let out = web.handle.metrics().listener("outbound:api@dc1");
    assert_eq!(out.connect_errors.load(Relaxed), 1);
}

#[tokio::test]
async fn new_snapshot_swaps_config_without_dropping_connections() {
    init_tracing();
    let pki = Pki::new(TD);
    let (api, web) = pair(&pki).await;
    let old_bind = web.upstream("api", "dc1");
    let mut open = TcpStream::connect(old_bind).await.expect("connect");
    open.write_all(b"one").await.expect("write");
    let mut buf = [0u8; 3];
    open.read_exact(&mut buf).await.expect("echo one");

    // Version 2: "api" gone, "api2" (same sidecar) added, new leaf.
    let echo = echo_server().await;
    let up = upstream(&pki.td, "api2", "dc1", vec![api.public()]);
    let mut next = sidecar_snapshot(&pki, 2, "dc1", "web", echo, vec![up]);
    // api2's sidecar is really "api": expect that identity.
    let ProxyRole::Sidecar(sidecar) = &mut next.role else {
        panic!("not a sidecar: {next:?}")
    };
    sidecar.upstreams[0].primary.spiffe_id = pki.id("dc1", "api").to_string();
    web.tx.send_replace(Some(Arc::new(next)));
    let bound = web
        .handle
        .wait_bound(|b| {
            b.upstreams.len() == 1 && b.upstreams.keys().all(|k| k.destination == "api2")
        })
        .await;
    let new_bind = *bound.upstreams.values().next().expect("api2");
    assert_eq!(round_trip(new_bind, b"two").await.expect("api2"), b"two");
    // The old listener is gone ...
    eventually("old listener closed", || async {
        TcpStream::connect(old_bind).await.is_err()
    })
    .await;
    // ... but the connection made through it still works.
    open.write_all(b"three").await.expect("write after swap");
    let mut buf = [0u8; 5];
    open.read_exact(&mut buf).await.expect("echo after swap");
    assert_eq!(&buf, b"three");

    // An older version is ignored.
    let stale = sidecar_snapshot(&pki, 1, "dc1", "web", echo, vec![]);
    web.tx.send_replace(Some(Arc::new(stale)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(web.handle.bound().borrow().upstreams.len(), 1);
    assert_eq!(web.handle.metrics().snapshots_applied.load(Relaxed), 2);
}

#[tokio::test]
async fn admin_pages() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let opts = Options {
        admin: Some(addr(ANY)),
        ..options()
    };
    let api = sidecar(opts, sidecar_snapshot(&pki, 1, "dc1", "api", echo, vec![])).await;
    let admin = api.handle.admin_addr().expect("admin bound");
    let get = |path: &'static str| strait_rpc::http::request(admin, Method::GET, path, None);

    let ready = get("/ready").await.expect("ready");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body.as_ref(), b"ready\n");
    let config = get("/config").await.expect("config");
    let text = String::from_utf8_lossy(&config.body);
    assert!(!text.contains("PRIVATE KEY"), "key leaked on /config");
    assert!(text.contains("api-sidecar-proxy"));
    let certs: serde_json::Value =
        serde_json::from_slice(&get("/certs").await.expect("certs").body).expect("json");
    assert_eq!(certs["leaf"]["spiffe_id"], pki.id("dc1", "api").to_string());
    assert_eq!(certs["roots"][0]["is_ca"], true);
    let clusters: serde_json::Value =
        serde_json::from_slice(&get("/clusters").await.expect("clusters").body).expect("json");
    assert_eq!(clusters["inbound"]["local_app"], echo.to_string());
    let stats: serde_json::Value =
        serde_json::from_slice(&get("/stats").await.expect("stats").body).expect("json");
    assert_eq!(stats["component"], "sidecar");
    let metrics = get("/metrics").await.expect("metrics");
    assert!(String::from_utf8_lossy(&metrics.body)
        .contains("strait_sidecar_connections_accepted_total"));
    assert_eq!(get("/nope").await.expect("404").status, 404);

    // Not loopback: refused at start.
    let (_tx, rx) = channel(sidecar_snapshot(&pki, 1, "dc1", "x", echo, vec![]));
    let bad = Options {
        admin: Some(addr("0.0.0.0:0")),
        ..options()
    };
    let err = start_sidecar(bad, rx, CancellationToken::new())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[tokio::test]
async fn not_ready_without_a_snapshot() {
    init_tracing();
    let (_tx, rx) = tokio::sync::watch::channel(None);
    let opts = Options {
        admin: Some(addr(ANY)),
        ..options()
    };
    let handle = start_sidecar(opts, rx, CancellationToken::new())
        .await
        .expect("start");
    let admin = handle.admin_addr().expect("admin");
    let ready = strait_rpc::http::request(admin, Method::GET, "/ready", None)
        .await
        .expect("ready");
    assert_eq!(ready.status, 503);
}

/// A gateway's snapshot (a `--snapshot-file` for the wrong proxy) is refused and counted:
/// nothing binds and the sidecar is not ready, until a sidecar's snapshot arrives.
#[tokio::test]
async fn a_gateways_snapshot_is_refused() {
    init_tracing();
    let pki = Pki::new(TD);
    let opts = Options {
        admin: Some(addr(ANY)),
        ..options()
    };
    let (tx, rx) = channel(gateway_snapshot(1, "dc1", BTreeMap::new(), BTreeMap::new()));
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let handle = start_sidecar(opts, rx, stop).await.expect("start");
    let metrics = handle.metrics().clone();
    eventually("the gateway's snapshot refused", || async {
        metrics.snapshots_rejected.load(Relaxed) == 1
    })
    .await;
    let admin = handle.admin_addr().expect("admin");
    let ready = || strait_rpc::http::request(admin, Method::GET, "/ready", None);
    assert_eq!(ready().await.expect("ready").status, 503);
    assert_eq!(handle.bound().borrow().public, None);

    let echo = echo_server().await;
    let next = sidecar_snapshot(&pki, 2, "dc1", "api", echo, vec![]);
    tx.send_replace(Some(Arc::new(next)));
    handle.ready().await;
    assert_eq!(ready().await.expect("ready").status, 200);
    assert_eq!(metrics.snapshots_applied.load(Relaxed), 1);
}

#[tokio::test]
async fn sidecar_to_sidecar_through_two_gateways() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let counting = sidecar(
        options(),
        sidecar_snapshot(&pki, 1, "dc2", "counting", echo, vec![]),
    )
    .await;

    let gw = |dc: &'static str,
              local: BTreeMap<String, Vec<SocketAddr>>,
              remote: BTreeMap<String, Vec<SocketAddr>>| async move {
        let listener = TcpListener::bind(ANY).await.expect("bind");
        let (tx, rx) = channel(gateway_snapshot(1, dc, local, remote));
        std::mem::forget(tx);
        let handle = start_gateway(
            options(),
            vec![("lan".into(), listener)],
            rx,
            CancellationToken::new(),
        )
        .await
        .expect("gateway");
        handle.ready().await;
        handle
    };
    let gw2 = gw(
        "dc2",
        BTreeMap::from([("counting".into(), vec![counting.public()])]),
        BTreeMap::new(),
    )
    .await;
    let gw1 = gw(
        "dc1",
        BTreeMap::new(),
        BTreeMap::from([("dc2".into(), vec![gw2.local_addrs()[0]])]),
    )
    .await;
    let up = upstream(&pki.td, "counting", "dc2", vec![gw1.local_addrs()[0]]);
    let dashboard = sidecar(
        options(),
        sidecar_snapshot(&pki, 1, "dc1", "dashboard", echo, vec![up]),
    )
    .await;

    let payload: Vec<u8> = (0..4_000_000u32).map(|i| (i % 253) as u8).collect();
    let back = round_trip(dashboard.upstream("counting", "dc2"), &payload)
        .await
        .expect("round trip");
    assert!(back == payload, "payload changed");
    assert_eq!(gw1.metrics().routed("dc2", "*"), 1);
    assert_eq!(
        gw2.metrics()
            .routed("dc2", &strait_snapshot::service_sni("counting", "dc2", TD)),
        1
    );
}

/// Accepts and closes at once: a gateway whose far side is gone.
async fn closer() -> SocketAddr {
    let listener = TcpListener::bind(ANY).await.expect("bind closer");
    let local = listener.local_addr().expect("closer addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    local
}

#[tokio::test]
async fn a_chain_fails_over_past_closing_and_hung_endpoints_within_its_deadline() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let dc3 = sidecar(
        options(),
        sidecar_snapshot(&pki, 1, "dc3", "counting", echo, vec![]),
    )
    .await;
    // Hung: the kernel completes the TCP handshake into the backlog, nobody ever answers.
    let hung = TcpListener::bind(ANY).await.expect("bind hung");
    let mut up = upstream(
        &pki.td,
        "counting",
        "dc2",
        vec![closer().await, hung.local_addr().expect("hung addr")],
    );
    up.failover = vec![
        target(&pki.td, "counting", "dc4", vec![]),
        target(&pki.td, "counting", "dc3", vec![dc3.public()]),
    ];
    let opts = Options {
        admin: Some(addr(ANY)),
        upstream_handshake_timeout: Duration::from_millis(300),
        ..options()
    };
    let web = sidecar(
        opts,
        sidecar_snapshot(&pki, 1, "dc1", "web", echo, vec![up]),
    )
    .await;
    let started = tokio::time::Instant::now();
    let back = round_trip(web.upstream("counting", "dc2"), b"hello")
        .await
        .expect("round trip");
    assert_eq!(back, b"hello");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "one closing and one hung endpoint cost {:?}",
        started.elapsed()
    );
    let metrics = web.handle.metrics();
    let listener = "outbound:counting@dc2";
    let dc3_target = metrics.target(listener, "counting.default.dc3.internal.t1e2s3t4.strait");
    assert_eq!(dc3_target.failovers.load(Relaxed), 1);
    assert_eq!(dc3_target.connections.load(Relaxed), 1);
    let failures = metrics.handshake_outbound.snapshot();
    assert_eq!(failures.get("eof"), Some(&1), "{failures:?}");
    assert_eq!(failures.get("timeout"), Some(&1), "{failures:?}");
    assert!(metrics.to_prometheus().contains(
        "strait_sidecar_upstream_failovers_total{listener=\"outbound:counting@dc2\",target=\"counting.default.dc3.internal.t1e2s3t4.strait\"} 1"
    ));
    // The admin shows the chain in order and the target that served last.
    let admin = web.handle.admin_addr().expect("admin bound");
    let clusters = strait_rpc::http::request(admin, Method::GET, "/clusters", None)
        .await
        .expect("clusters");
    let clusters: serde_json::Value = serde_json::from_slice(&clusters.body).expect("json");
    let up = &clusters["upstreams"][0];
    assert_eq!(
        up["active"],
        "counting.default.dc3.internal.t1e2s3t4.strait"
    );
    let dcs: Vec<&str> = up["chain"]
        .as_array()
        .expect("chain")
        .iter()
        .map(|t| t["datacenter"].as_str().expect("dc"))
        .collect();
    assert_eq!(dcs, ["dc2", "dc4", "dc3"]);
    assert_eq!(up["chain"][2]["failovers"], 1);
    drop(hung);
}

#[tokio::test]
async fn a_chain_gives_up_at_the_resolvers_connect_timeout() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let hung = TcpListener::bind(ANY).await.expect("bind hung");
    let hung_addr = hung.local_addr().expect("hung addr");
    let mut up = upstream(&pki.td, "counting", "dc2", vec![hung_addr]);
    up.failover = vec![target(&pki.td, "counting", "dc3", vec![hung_addr])];
    up.connect_timeout_ms = Some(400);
    let opts = Options {
        upstream_handshake_timeout: Duration::from_secs(5),
        ..options()
    };
    let web = sidecar(
        opts,
        sidecar_snapshot(&pki, 1, "dc1", "web", echo, vec![up]),
    )
    .await;
    let started = tokio::time::Instant::now();
    let back = round_trip(web.upstream("counting", "dc2"), b"hello").await;
    let took = started.elapsed();
    assert!(back.map_or(true, |b| b.is_empty()), "nothing answers");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(1500),
        "ConnectTimeout 400ms, took {took:?}"
    );
    drop(hung);
}

/// A destination whose app is down refuses the caller, who fails over to the next target:
/// with tunnels, the stream is answered 503; without, the handshake fails.
#[tokio::test]
async fn a_destination_whose_app_is_down_is_passed_over_for_the_next_target() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let dead_app = TcpListener::bind(ANY)
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    for tunnels in [true, false] {
        let options = || Options {
            multiplex: tunnels,
            ..options()
        };
        let dc2 = sidecar(
            options(),
            sidecar_snapshot(&pki, 1, "dc2", "counting", dead_app, vec![]),
        )
        .await;
        let dc3 = sidecar(
            options(),
            sidecar_snapshot(&pki, 1, "dc3", "counting", echo, vec![]),
        )
        .await;
        let mut up = upstream(&pki.td, "counting", "dc2", vec![dc2.public()]);
        up.failover = vec![target(&pki.td, "counting", "dc3", vec![dc3.public()])];
        let web = sidecar(
            options(),
            sidecar_snapshot(&pki, 1, "dc1", "web", echo, vec![up]),
        )
        .await;
        let back = round_trip(web.upstream("counting", "dc2"), b"hello")
            .await
            .expect("round trip");
        assert_eq!(
            back, b"hello",
            "served by dc3, not cut by dc2 (tunnels {tunnels})"
        );
        let inbound = dc2.handle.metrics().listener("inbound");
        assert_eq!(inbound.connect_errors.load(Relaxed), 1);
        let failures = web.handle.metrics().handshake_outbound.snapshot();
        let failed_handshakes = failures.values().sum::<u64>();
        if tunnels {
            // dc2 completed the handshake and answered the stream 503.
            assert_eq!(failed_handshakes, 0, "{failures:?}");
            assert_eq!(dc2.handle.metrics().tunnel_streams_inbound.load(Relaxed), 0);
            assert_eq!(dc3.handle.metrics().tunnel_streams_inbound.load(Relaxed), 1);
        } else {
            // eof or io (a reset: the ClientHello was unread when dc2 closed).
            assert_eq!(failed_handshakes, 1, "{failures:?}");
        }
    }
}

/// A tunnel's streams are judged one by one, by the intentions of the snapshot current when
/// each opens: once `api`'s snapshot denies `web`, the next connection is refused (403, counted
/// on both sides) and closed, with nothing else tried and no failure counted; allowed again,
/// it goes through, still on that tunnel.
#[tokio::test]
async fn each_stream_of_a_tunnel_is_judged_by_the_intentions_current_then() {
    init_tracing();
    let pki = Pki::new(TD);
    let (api, web) = pair(&pki).await;
    let echo = echo_server().await;
    assert_eq!(
        round_trip(web.upstream("api", "dc1"), b"one")
            .await
            .expect("allowed"),
        b"one"
    );
    let with_rules = |version: u64, allow: bool| {
        let mut next = sidecar_snapshot(&pki, version, "dc1", "api", echo, vec![]);
        let ProxyRole::Sidecar(sidecar) = &mut next.role else {
            panic!("not a sidecar")
        };
        sidecar.intentions.rules = vec![strait_snapshot::IntentionRule {
            source: "web".into(),
            allow,
        }];
        Arc::new(next)
    };
    api.tx.send_replace(Some(with_rules(2, false)));
    eventually("snapshot 2 applied", || async {
        api.handle.metrics().snapshots_applied.load(Relaxed) == 2
    })
    .await;
    let refused = round_trip(web.upstream("api", "dc1"), b"two").await;
    assert!(
        refused.map_or(true, |b| b.is_empty()),
        "denied: nothing echoed"
    );
    assert_eq!(api.handle.metrics().intentions_denied.load(Relaxed), 1);
    assert_eq!(web.handle.metrics().tunnel_streams_denied.load(Relaxed), 1);
    let out = web.handle.metrics().listener("outbound:api@dc1");
    assert_eq!(
        out.connect_errors.load(Relaxed),
        0,
        "a refusal is not a failure"
    );

    api.tx.send_replace(Some(with_rules(3, true)));
    eventually("snapshot 3 applied", || async {
        api.handle.metrics().snapshots_applied.load(Relaxed) == 3
    })
    .await;
    assert_eq!(
        round_trip(web.upstream("api", "dc1"), b"three")
            .await
            .expect("allowed again"),
        b"three"
    );
    assert_eq!(
        handshakes_and_streams(&api, &web),
        [(1, 0, 2), (1, 0, 2)],
        "one handshake for the three streams, two of them carried"
    );
}

/// Many connections at once over one tunnel, each moving its own bytes both ways; an idle
/// tunnel is closed by its server after the idle timeout, and the next connection opens a new
/// one (a resumed handshake) without failing.
#[tokio::test]
async fn one_tunnel_carries_concurrent_connections_and_is_replaced_once_closed_idle() {
    init_tracing();
    let pki = Pki::new(TD);
    let quick_idle = Options {
        idle_timeout: Duration::from_millis(300),
        ..options()
    };
    let (api, web) = pair_with(&pki, echo_server().await, quick_idle, options()).await;
    let addr = web.upstream("api", "dc1");
    // The first connection sets the tunnel up; the others share it.
    assert_eq!(round_trip(addr, b"first").await.expect("first"), b"first");
    let mut all = tokio::task::JoinSet::new();
    for i in 0..32u32 {
        all.spawn(async move {
            let payload: Vec<u8> = (0..100_000u32)
                .map(|j| ((i + j * 13) % 251) as u8)
                .collect();
            let back = round_trip(addr, &payload).await.expect("round trip");
            assert!(back == payload, "connection {i}: bytes changed");
        });
    }
    while let Some(done) = all.join_next().await {
        done.expect("connection task");
    }
    assert_eq!(
        handshakes_and_streams(&api, &web),
        [(1, 0, 33), (1, 0, 33)],
        "33 streams, one handshake"
    );
    // Idle for longer than api's idle timeout: api closes the tunnel (GOAWAY), which
    // held api's only connection slot.
    let inbound = api.handle.metrics().listener("inbound");
    eventually("the idle tunnel closed", || async {
        inbound.active.load(Relaxed) == 0
    })
    .await;
    // Counted open, on both sides, only while open.
    let (api_m, web_m) = (api.handle.metrics(), web.handle.metrics());
    eventually("both sides count the tunnel closed", || async {
        api_m.tunnels_inbound.load(Relaxed) == 0 && web_m.tunnels_outbound.load(Relaxed) == 0
    })
    .await;
    assert_eq!(
        round_trip(addr, b"later").await.expect("after idle close"),
        b"later"
    );
    assert_eq!(
        handshakes_and_streams(&api, &web),
        [(1, 1, 34), (1, 1, 34)],
        "a new tunnel (resumed) for the next connection"
    );
    assert_eq!(api_m.tunnels_inbound.load(Relaxed), 1);
    assert_eq!(web_m.tunnels_outbound.load(Relaxed), 1);
    let out = web.handle.metrics().listener("outbound:api@dc1");
    assert_eq!(out.connect_errors.load(Relaxed), 0);
}

/// A tunnel takes new connections for `--tunnel-max-age`; the next connection opens a new
/// one (resumed), so that gateways route it by their current view.
#[tokio::test]
async fn a_tunnel_past_its_max_age_is_replaced_for_new_connections() {
    init_tracing();
    let pki = Pki::new(TD);
    let short_age = Options {
        tunnel_max_age: Duration::from_millis(200),
        ..options()
    };
    let (api, web) = pair_with(&pki, echo_server().await, options(), short_age).await;
    let addr = web.upstream("api", "dc1");
    let opened = tokio::time::Instant::now();
    let mut on_first = 0;
    while handshakes_and_streams(&api, &web)[0].1 == 0 {
        assert_eq!(round_trip(addr, b"x").await.expect("round trip"), b"x");
        if opened.elapsed() < Duration::from_millis(200) {
            on_first += 1;
        }
        assert!(opened.elapsed() < Duration::from_secs(5), "never replaced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let [(full, resumed, streams), _] = handshakes_and_streams(&api, &web);
    assert_eq!((full, resumed), (1, 1), "one new tunnel, resumed");
    assert!(
        on_first >= 2,
        "connections within the max age shared the first tunnel"
    );
    assert!(streams > on_first, "every connection a stream");
}

/// A caller that offers a tunnel, completes the TLS handshake and then sends no HTTP/2
/// preface is closed at the handshake deadline, like one that never finishes its handshake.
#[tokio::test]
async fn a_tunnel_without_a_preface_is_closed_at_the_handshake_deadline() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let api = sidecar(
        Options {
            handshake_timeout: Duration::from_millis(300),
            ..options()
        },
        sidecar_snapshot(&pki, 1, "dc1", "api", echo, vec![]),
    )
    .await;
    let mut stream = tunnel_client(&pki, &api).await;
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"strait-tunnel/1"[..])
    );
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    // The server's own preface (its SETTINGS) may come first; then the close.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after 5 s");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let inbound = api.handle.metrics().listener("inbound");
    eventually("the slot given back", || async {
        inbound.active.load(Relaxed) == 0
    })
    .await;
}

/// A caller the intentions refuse may open a tunnel, but each stream is answered 403 and the
/// tunnel, having carried nothing, is closed at the handshake deadline rather than the idle
/// timeout: a refused identity holds a connection slot no longer than an unfinished handshake.
#[tokio::test]
async fn a_tunnel_that_carried_nothing_is_closed_at_the_handshake_deadline() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let mut snapshot = sidecar_snapshot(&pki, 1, "dc1", "api", echo, vec![]);
    let ProxyRole::Sidecar(sidecar_role) = &mut snapshot.role else {
        panic!("not a sidecar")
    };
    sidecar_role.intentions.rules = vec![strait_snapshot::IntentionRule {
        source: "web".into(),
        allow: false,
    }];
    let api = sidecar(
        Options {
            handshake_timeout: Duration::from_millis(300),
            ..options()
        },
        snapshot,
    )
    .await;
    let tls = tunnel_client(&pki, &api).await;
    let (send, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut send = send.ready().await.expect("ready");
    let request = http::Request::builder()
        .method(Method::CONNECT)
        .uri("api:443")
        .body(())
        .expect("request");
    let (answer, _tx) = send.send_request(request, false).expect("send");
    let answer = answer.await.expect("answer");
    assert_eq!(answer.status(), http::StatusCode::FORBIDDEN);
    let started = tokio::time::Instant::now();
    drop(send);
    // Closed by the server: the connection's end (an error or a clean close) is all we need.
    let _ = tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the tunnel still open after 5 s (the idle timeout is 30 s)")
        .expect("connection task");
    assert_eq!(api.handle.metrics().intentions_denied.load(Relaxed), 1);
    let inbound = api.handle.metrics().listener("inbound");
    eventually("the slot given back", || async {
        inbound.active.load(Relaxed) == 0
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A TLS client of `api`'s public listener as "web", offering a tunnel (its ALPN protocol).
async fn tunnel_client(pki: &Pki, api: &Running) -> tokio_rustls::client::TlsStream<TcpStream> {
    let leaf = pki.leaf("dc1", "web");
    let web = Identity::from_pem(&leaf.cert_chain_pem, &leaf.key_pem.0).expect("identity");
    let roots = Roots::from_pems(&pki.roots()).expect("roots");
    let config = tls::client_config(Some(&web), &roots, Expect::Exact(pki.id("dc1", "api")))
        .expect("config");
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"strait-tunnel/1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(api.public()).await.expect("connect");
    let name =
        rustls::pki_types::ServerName::try_from(strait_snapshot::service_sni("api", "dc1", TD))
            .expect("sni");
    connector.connect(name, tcp).await.expect("handshake")
}

/// Writes `message` on `stream` and reads its echo back.
async fn echoed(stream: &mut TcpStream, message: &[u8]) {
    let mut back = vec![0u8; message.len()];
    stream.write_all(message).await.expect("write");
    stream.read_exact(&mut back).await.expect("echo");
    assert_eq!(back, message);
}

/// An app whose connections starting with `S` are never read (their reader stopped) and the
/// others echoed.
async fn stalling_server() -> SocketAddr {
    let listener = TcpListener::bind(ANY).await.expect("bind");
    let local = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                if stream.read_exact(&mut first).await.is_err() || first[0] == b'S' {
                    return std::future::pending::<()>().await;
                }
                let (mut r, mut w) = stream.split();
                let _ = w.write_all(&first).await;
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    local
}

/// Connections whose apps stopped reading hold only their own streams' windows: five of them
/// (more than the 8 MiB stream windows would fill of a shared 32 MiB tunnel window) leave the
/// other connections of their tunnel moving, as separate TCP connections would.
#[tokio::test]
async fn stalled_connections_do_not_hold_back_the_others_of_their_tunnel() {
    init_tracing();
    let pki = Pki::new(TD);
    let app = stalling_server().await;
    let (api, web) = pair_with(&pki, app, options(), options()).await;
    let addr = web.upstream("api", "dc1");
    // The tunnel, set up by a first connection.
    assert_eq!(round_trip(addr, b"E").await.expect("first"), b"E");
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let written = written.clone();
        writers.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(b"S").await.expect("first byte");
            let chunk = vec![7u8; 64 * 1024];
            loop {
                stream.write_all(&chunk).await.expect("write");
                written.fetch_add(chunk.len(), Relaxed);
            }
        });
    }
    // Until the writers stop moving (three samples in a row): every stalled stream's window
    // is full.
    let mut last = 0;
    let mut still = 0;
    let stalled = tokio::time::timeout(Duration::from_secs(30), async {
        while still < 3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = written.load(Relaxed);
            still = if now == last && now > 0 { still + 1 } else { 0 };
            last = now;
        }
    })
    .await;
    assert!(stalled.is_ok(), "the writers never stalled");
    assert!(last > 40 << 20, "{last} bytes written before the stall");
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let mut message = b"E".to_vec();
    message.extend_from_slice(&payload);
    let back = tokio::time::timeout(Duration::from_secs(10), round_trip(addr, &message))
        .await
        .expect("a connection beside the stalled ones still moves")
        .expect("round trip");
    assert!(back == message, "bytes changed");
    assert_eq!(
        handshakes_and_streams(&api, &web),
        [(1, 0, 7), (1, 0, 7)],
        "all on one tunnel"
    );
    writers.abort_all();
}

/// A stream the server refuses at its connection cap (`REFUSED_STREAM`) fails that
/// connection only: the tunnel stays and carries the next connection, with no new handshake.
#[tokio::test]
async fn a_stream_refused_at_the_connection_cap_keeps_its_tunnel() {
    init_tracing();
    let pki = Pki::new(TD);
    // The tunnel's connection and one stream.
    let capped = Options {
        max_connections: 2,
        ..options()
    };
    let (api, web) = pair_with(&pki, echo_server().await, capped, options()).await;
    let addr = web.upstream("api", "dc1");
    let mut held = TcpStream::connect(addr).await.expect("connect");
    echoed(&mut held, b"held").await;
    let refused = round_trip(addr, b"refused").await;
    assert!(refused.map_or(true, |b| b.is_empty()), "over the cap");
    let inbound = api.handle.metrics().listener("inbound");
    assert_eq!(inbound.rejected_max_connections.load(Relaxed), 1);
    drop(held);
    eventually("the held stream's slot given back", || async {
        inbound.active.load(Relaxed) == 1
    })
    .await;
    assert_eq!(round_trip(addr, b"next").await.expect("next"), b"next");
    assert_eq!(
        handshakes_and_streams(&api, &web),
        [(1, 0, 2), (1, 0, 2)],
        "the tunnel kept: one handshake for the three connections"
    );
}

/// A tunnel takes new streams while the roots its caller was verified under are trusted: a
/// root added (a CA rotation begins) changes nothing, one removed (it ends) closes the tunnel
/// for new streams. A connection in flight goes on; the next one gets a new tunnel (a new
/// handshake, verified under the roots trusted then), without a failure.
#[tokio::test]
async fn a_tunnel_takes_no_new_streams_once_a_trust_root_is_removed() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let (old_root, new_root) = (Pki::new(TD).roots(), Pki::new(TD).roots());
    let api_with = |version: u64, extra: &[Vec<String>]| {
        let mut next = sidecar_snapshot(&pki, version, "dc1", "api", echo, vec![]);
        next.roots_pem.extend(extra.iter().flatten().cloned());
        next.roots_pem.sort();
        next
    };
    let api = sidecar(options(), api_with(1, std::slice::from_ref(&old_root))).await;
    let up = upstream(&pki.td, "api", "dc1", vec![api.public()]);
    let web = sidecar(
        options(),
        sidecar_snapshot(&pki, 1, "dc1", "web", echo, vec![up]),
    )
    .await;
    let addr = web.upstream("api", "dc1");
    let mut held = TcpStream::connect(addr).await.expect("connect");
    echoed(&mut held, b"one").await;
    let apply = |version: u64, snapshot: Snapshot| {
        api.tx.send_replace(Some(Arc::new(snapshot)));
        let m = api.handle.metrics();
        eventually("the snapshot applied", move || {
            let applied = m.snapshots_applied.load(Relaxed);
            async move { applied == version }
        })
    };

    apply(2, api_with(2, &[old_root.clone(), new_root.clone()])).await;
    assert_eq!(round_trip(addr, b"two").await.expect("root added"), b"two");
    let [(full, resumed, _), _] = handshakes_and_streams(&api, &web);
    assert_eq!(full + resumed, 1, "a root added: the same tunnel");

    apply(3, api_with(3, &[new_root])).await;
    assert_eq!(
        round_trip(addr, b"three").await.expect("root removed"),
        b"three"
    );
    // The stream in flight goes on.
    echoed(&mut held, b"one").await;
    let [(full, resumed, _), _] = handshakes_and_streams(&api, &web);
    assert_eq!(
        full + resumed,
        2,
        "a root removed: a new tunnel for the new stream"
    );
    let out = web.handle.metrics().listener("outbound:api@dc1");
    assert_eq!(out.connect_errors.load(Relaxed), 0);
}

/// A tunnel takes new streams only while its caller's certificate is valid: once it
/// expires, the server closes the tunnel for new streams (GOAWAY), and the caller's next
/// connection needs a new handshake, which the expired certificate fails.
#[tokio::test]
async fn a_tunnel_takes_no_new_streams_once_its_callers_certificate_expires() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let api = sidecar(
        options(),
        sidecar_snapshot(&pki, 1, "dc1", "api", echo, vec![]),
    )
    .await;
    let up = upstream(&pki.td, "api", "dc1", vec![api.public()]);
    let mut snapshot = sidecar_snapshot(&pki, 1, "dc1", "web", echo, vec![up]);
    snapshot.leaf = short_leaf(&pki, "web");
    // Longer than the test: only the server's GOAWAY at the expiry ends the tunnel.
    let long_age = Options {
        tunnel_max_age: Duration::from_secs(60),
        ..options()
    };
    let web = sidecar(long_age, snapshot).await;
    let addr = web.upstream("api", "dc1");
    let mut held = TcpStream::connect(addr).await.expect("connect");
    echoed(&mut held, b"one").await;

    let m = api.handle.metrics();
    eventually("the expired caller's next handshake refused", || async {
        let _ = round_trip(addr, b"two").await;
        m.handshake_inbound.get("expired") >= 1
    })
    .await;
    // The stream in flight goes on.
    echoed(&mut held, b"one").await;
    assert_eq!(handshakes_and_streams(&api, &web)[1].0, 1, "one tunnel");
}

/// A tunnel carries at most 100 streams at once: the 101st connection opens a second
/// tunnel to the same endpoint (resumed), and both carry their connections.
#[tokio::test]
async fn the_101st_concurrent_connection_opens_a_second_tunnel() {
    init_tracing();
    let pki = Pki::new(TD);
    let (api, web) = pair(&pki).await;
    let addr = web.upstream("api", "dc1");
    let mut held = Vec::new();
    for i in 0..101u32 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        echoed(&mut stream, &i.to_be_bytes()).await;
        held.push(stream);
    }
    assert_eq!(
        handshakes_and_streams(&api, &web),
        [(1, 1, 101), (1, 1, 101)],
        "two tunnels for 101 streams"
    );
    let inbound = api.handle.metrics().listener("inbound");
    assert_eq!(
        inbound.active.load(Relaxed),
        2 + 101,
        "two tunnels, 101 streams"
    );
    let open = |m: &strait_proxy::Metrics| {
        (
            m.tunnels_inbound.load(Relaxed),
            m.tunnels_outbound.load(Relaxed),
        )
    };
    assert_eq!(
        open(web.handle.metrics()),
        (0, 2),
        "web dialled two tunnels"
    );
    assert_eq!(open(api.handle.metrics()), (2, 0), "api serves two tunnels");
}

/// A leaf for `service` in dc1 that expires in five seconds.
fn short_leaf(pki: &Pki, service: &str) -> strait_snapshot::Leaf {
    let id = pki.id("dc1", service);
    let (key, csr) = generate_key_and_csr(&id).expect("csr");
    let now = time::OffsetDateTime::now_utc();
    let issued = pki
        .ca
        .sign_leaf_with_validity(
            &csr,
            &id,
            now - time::Duration::minutes(1),
            now + time::Duration::seconds(5),
        )
        .expect("short leaf");
    let chain = pki.ca.leaf_chain_pem(&issued.cert_pem).expect("chain");
    leaf_from(chain, key, &id)
}

/// A session resumed after the upstream's certificate expired is refused by the caller
/// (rustls does not verify a resumed session's certificate again): the connection fails as
/// a handshake with an expired certificate would.
#[tokio::test]
async fn a_resumed_session_with_an_expired_upstream_certificate_is_refused() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let mut snapshot = sidecar_snapshot(&pki, 1, "dc1", "api", echo, vec![]);
    snapshot.leaf = short_leaf(&pki, "api");
    let api = sidecar(options(), snapshot).await;
    let up = upstream(&pki.td, "api", "dc1", vec![api.public()]);
    let web = sidecar(
        Options {
            multiplex: false,
            ..options()
        },
        sidecar_snapshot(&pki, 1, "dc1", "web", echo, vec![up]),
    )
    .await;
    let addr = web.upstream("api", "dc1");
    assert_eq!(round_trip(addr, b"one").await.expect("valid"), b"one");
    let m = web.handle.metrics();
    eventually("the expired upstream refused on resumption", || async {
        let _ = round_trip(addr, b"two").await;
        m.handshake_outbound.get("expired") >= 1
    })
    .await;
    assert_eq!(
        m.handshakes_outbound.full.load(Relaxed),
        1,
        "never a new full handshake"
    );
}
