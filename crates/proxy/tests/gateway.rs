//! Mesh gateway against real sockets: SNI routing to local services and to another DC's
//! gateway, bytes intact (64 MiB, hashed), and every way a hello can be refused while other
//! connections keep working.

mod common;

use common::*;
use rustls::pki_types::ServerName;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use strait_proxy::{start_gateway, GatewayHandle, Options};
use strait_snapshot::Snapshot;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The first flight of a real TLS client naming `sni` (None: no SNI at all).
fn client_hello(sni: Option<&str>) -> Vec<u8> {
    let config = strait_identity::tls::dangerous_unverified_client_config();
    let name = match sni {
        Some(name) => ServerName::try_from(name.to_string()).expect("dns name"),
        None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    let mut conn = rustls::ClientConnection::new(Arc::clone(&config), name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls");
    }
    out
}

fn sni(service: &str, dc: &str) -> String {
    strait_snapshot::service_sni(service, dc, TD)
}

async fn gateway(
    options: Options,
    snapshot: Snapshot,
) -> (GatewayHandle, SocketAddr, CancellationToken) {
    let listener = TcpListener::bind(ANY).await.expect("bind gateway");
    let shutdown = CancellationToken::new();
    let (tx, rx) = channel(snapshot);
    // Keep the sender alive for the gateway's lifetime.
    std::mem::forget(tx);
    let gw = start_gateway(
        options,
        vec![("lan".into(), listener)],
        rx,
        shutdown.clone(),
    )
    .await
    .expect("start gateway");
    gw.ready().await;
    let addr = gw.local_addrs()[0];
    (gw, addr, shutdown)
}

/// Sends `first` then reads until EOF; returns what came back (or the error).
async fn send_and_read(addr: SocketAddr, first: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(first).await?;
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut back))
        .await
        .map_err(|_| std::io::Error::other("no EOF within 10s"))??;
    Ok(back)
}

/// A sidecar's snapshot is refused and counted; the gateway waits for its own.
#[tokio::test]
async fn a_sidecars_snapshot_is_refused() {
    init_tracing();
    let pki = Pki::new(TD);
    let web = tag_server("web").await;
    let listener = TcpListener::bind(ANY).await.expect("bind gateway");
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let (tx, rx) = channel(sidecar_snapshot(&pki, 1, "dc1", "web", web, vec![]));
    let gw = start_gateway(options(), vec![("lan".into(), listener)], rx, shutdown)
        .await
        .expect("start gateway");
    let metrics = gw.metrics().clone();
    eventually("the sidecar's snapshot refused", || async {
        metrics.snapshots_rejected.load(Relaxed) == 1
    })
    .await;
    let local = BTreeMap::from([("web".to_string(), vec![web])]);
    tx.send_replace(Some(Arc::new(gateway_snapshot(
        2,
        "dc1",
        local,
        BTreeMap::new(),
    ))));
    gw.ready().await;
    let hello = client_hello(Some(&sni("web", "dc1")));
    let back = send_and_read(gw.local_addrs()[0], &hello)
        .await
        .expect("routed");
    assert_eq!(back, b"web");
    assert_eq!(metrics.snapshots_applied.load(Relaxed), 1);
}

#[tokio::test]
async fn routes_by_sni_to_the_right_local_service() {
    init_tracing();
    let web = tag_server("web").await;
    let api = tag_server("api").await;
    let services = BTreeMap::from([("web".into(), vec![web]), ("api".into(), vec![api])]);
    let (gw, addr, _stop) = gateway(
        options(),
        gateway_snapshot(1, "dc1", services, BTreeMap::new()),
    )
    .await;

    // The backend half-closes first: the gateway must carry that FIN back while the
    // client's direction is still open.
    let got = send_and_read(addr, &client_hello(Some(&sni("web", "dc1"))))
        .await
        .expect("web");
    assert_eq!(got, b"web");
    let got = send_and_read(addr, &client_hello(Some(&sni("api", "dc1"))))
        .await
        .expect("api");
    assert_eq!(got, b"api");
    let upper = sni("web", "dc1").to_uppercase();
    let got = send_and_read(addr, &client_hello(Some(&upper)))
        .await
        .expect("WEB");
    assert_eq!(got, b"web");

    let m = gw.metrics();
    assert_eq!(m.routed("dc1", &sni("web", "dc1")), 2);
    assert_eq!(m.routed("dc1", &sni("api", "dc1")), 1);
    let lan = m.listener("lan");
    assert_eq!(lan.accepted.load(Relaxed), 3);
    assert_eq!(lan.bytes_tx.load(Relaxed), 9);
    assert!(m.to_prometheus().contains(&format!(
        "strait_gateway_routed_total{{dc=\"dc1\",sni=\"{}\"}} 2",
        sni("web", "dc1")
    )));
}

/// Deterministic pseudo-random bytes (xorshift), fast even in debug builds.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test]
async fn routes_to_a_remote_dc_gateway_with_64_mib_intact() {
    init_tracing();
    let echo = echo_server().await;
    let dc2 = gateway_snapshot(
        1,
        "dc2",
        BTreeMap::from([("bulk".into(), vec![echo])]),
        BTreeMap::new(),
    );
    let (gw2, gw2_addr, _stop2) = gateway(options(), dc2).await;
    let dc1 = gateway_snapshot(
        1,
        "dc1",
        BTreeMap::new(),
        BTreeMap::from([("dc2".into(), vec![gw2_addr])]),
    );
    let (gw1, gw1_addr, _stop1) = gateway(options(), dc1).await;

    let mut sent = client_hello(Some(&sni("bulk", "dc2")));
    sent.extend_from_slice(&noise(64 << 20));
    let back = round_trip(gw1_addr, &sent).await.expect("round trip");
    assert_eq!(back.len(), sent.len());
    assert!(sha256(&back) == sha256(&sent), "bytes changed on the way");

    assert_eq!(gw1.metrics().routed("dc2", "*"), 1);
    assert_eq!(gw2.metrics().routed("dc2", &sni("bulk", "dc2")), 1);
    for gw in [&gw1, &gw2] {
        let lan = gw.metrics().listener("lan");
        assert_eq!(lan.bytes_rx.load(Relaxed), sent.len() as u64);
        assert_eq!(lan.bytes_tx.load(Relaxed), sent.len() as u64);
    }
}

/// A port nothing listens on (bound, then closed).
async fn refused_port() -> SocketAddr {
    let l = TcpListener::bind(ANY).await.expect("bind");
    l.local_addr().expect("addr")
}

/// Each remote DC's gateways are taken in turn on their own (connections to dc2 and dc3
/// alternating do not leave dc2's all on one gateway); a gateway that refuses is passed over
/// for the next; a DC none of whose gateways answers is closed at once and counted.
#[tokio::test]
async fn remote_gateways_round_robin_per_dc_and_skip_the_unreachable() {
    init_tracing();
    let (a, b) = (tag_server("a").await, tag_server("b").await);
    let (c, d) = (tag_server("c").await, tag_server("d").await);
    let dead = refused_port().await;
    let remote = BTreeMap::from([
        ("dc2".into(), vec![a, b]),
        ("dc3".into(), vec![c, d]),
        ("dc4".into(), vec![dead, a]),
        ("dc5".into(), vec![dead]),
    ]);
    let (gw, addr, _stop) = gateway(
        options(),
        gateway_snapshot(1, "dc1", BTreeMap::new(), remote),
    )
    .await;
    let hello = |dc| client_hello(Some(&sni("web", dc)));
    let mut seen = BTreeMap::<&str, Vec<String>>::new();
    for _ in 0..2 {
        for dc in ["dc2", "dc3"] {
            let back = send_and_read(addr, &hello(dc)).await.expect(dc);
            seen.entry(dc)
                .or_default()
                .push(String::from_utf8(back).unwrap());
        }
    }
    for (dc, mut tags) in seen {
        tags.sort();
        let expected = if dc == "dc2" { ["a", "b"] } else { ["c", "d"] };
        assert_eq!(tags, expected, "{dc}'s gateways each took one connection");
    }
    for _ in 0..2 {
        let back = send_and_read(addr, &hello("dc4")).await.expect("dc4");
        assert_eq!(back, b"a", "the refusing gateway is passed over");
    }

    let started = std::time::Instant::now();
    let back = send_and_read(addr, &hello("dc5")).await.unwrap_or_default();
    assert!(back.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed after {:?}",
        started.elapsed()
    );
    let m = gw.metrics();
    eventually("remote_gateways_unreachable", || async {
        m.hello_rejected.get("remote_gateways_unreachable") == 1
    })
    .await;
    assert_eq!(m.hello_rejected.get("upstream_unreachable"), 0);
    assert_eq!(m.routed("dc2", "*"), 2);
    assert_eq!(m.routed("dc5", "*"), 0);
}

#[tokio::test]
async fn refused_hellos_are_closed_and_counted() {
    init_tracing();
    let web = tag_server("web").await;
    let services = BTreeMap::from([("web".into(), vec![web]), ("sick".into(), vec![])]);
    let (gw, addr, _stop) = gateway(
        options(),
        gateway_snapshot(1, "dc1", services, BTreeMap::new()),
    )
    .await;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no_sni", client_hello(None)),
        ("unknown_service", client_hello(Some(&sni("nope", "dc1")))),
        ("unknown_datacenter", client_hello(Some(&sni("web", "dc9")))),
        (
            "no_healthy_endpoints",
            client_hello(Some(&sni("sick", "dc1"))),
        ),
        (
            "foreign_trust_domain",
            client_hello(Some("web.default.dc1.internal.other.strait")),
        ),
        ("malformed", client_hello(Some(&format!("web.{TD}")))),
    ];
    for (reason, hello) in &cases {
        let back = send_and_read(addr, hello).await.unwrap_or_default();
        assert!(back.is_empty(), "{reason}: got bytes back");
        let m = gw.metrics();
        eventually(reason, || async { m.hello_rejected.get(reason) == 1 }).await;
    }
    // Garbage: plain HTTP, and a TLS alert record.
    let back = send_and_read(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap_or_default();
    assert!(back.is_empty());
    let back = send_and_read(addr, &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
        .await
        .unwrap_or_default();
    assert!(back.is_empty());
    let m = gw.metrics();
    eventually("two tls_* rejections", || async {
        let tls: u64 = m
            .hello_rejected
            .snapshot()
            .iter()
            .filter(|(r, _)| r.starts_with("tls_"))
            .map(|(_, v)| v)
            .sum();
        tls == 2
    })
    .await;
    // A hello larger than the cap: a handshake message claiming 60000 bytes.
    let mut huge = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xEA, 0x60];
    huge.resize(5 + 0x4000, 0);
    huge.extend_from_slice(&[0x16, 0x03, 0x01, 0x40, 0x00]);
    huge.resize(huge.len() + 0x4000, 0);
    let _ = send_and_read(addr, &huge).await;
    eventually("too_large", || async {
        m.hello_rejected.get("too_large") == 1
    })
    .await;
    // A client that closes mid-hello.
    let hello = client_hello(Some(&sni("web", "dc1")));
    {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&hello[..20]).await.expect("write");
    }
    eventually("eof", || async { m.hello_rejected.get("eof") == 1 }).await;

    // None of that affected a good connection.
    let got = send_and_read(addr, &hello).await.expect("web");
    assert_eq!(got, b"web");
}

#[tokio::test]
async fn slow_hello_dribbled_over_many_writes_is_routed() {
    init_tracing();
    let web = tag_server("web").await;
    let services = BTreeMap::from([("web".into(), vec![web])]);
    let (gw, addr, _stop) = gateway(
        options(),
        gateway_snapshot(1, "dc1", services, BTreeMap::new()),
    )
    .await;
    let hello = client_hello(Some(&sni("web", "dc1")));
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    for chunk in hello.chunks(hello.len() / 6 + 1) {
        stream.write_all(chunk).await.expect("write");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.expect("read");
    assert_eq!(back, b"web");
    assert_eq!(gw.metrics().routed("dc1", &sni("web", "dc1")), 1);
}

#[tokio::test]
async fn stalled_hello_is_closed_after_the_timeout_while_others_work() {
    init_tracing();
    let web = tag_server("web").await;
    let services = BTreeMap::from([("web".into(), vec![web])]);
    let opts = Options {
        handshake_timeout: Duration::from_millis(400),
        ..options()
    };
    let (gw, addr, _stop) =
        gateway(opts, gateway_snapshot(1, "dc1", services, BTreeMap::new())).await;
    let hello = client_hello(Some(&sni("web", "dc1")));

    let started = tokio::time::Instant::now();
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(&hello[..hello.len() / 2])
        .await
        .expect("write half");
    // Meanwhile, good connections are served.
    for _ in 0..3 {
        assert_eq!(send_and_read(addr, &hello).await.expect("web"), b"web");
    }
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf))
        .await
        .expect("closed before 5s")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(gw.metrics().hello_rejected.get("timeout"), 1);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_counted() {
    init_tracing();
    let web = tag_server("web").await;
    let services = BTreeMap::from([("web".into(), vec![web])]);
    let opts = Options {
        max_connections: 2,
        ..options()
    };
    let (gw, addr, _stop) =
        gateway(opts, gateway_snapshot(1, "dc1", services, BTreeMap::new())).await;
    let hello = client_hello(Some(&sni("web", "dc1")));
    let a = TcpStream::connect(addr).await.expect("a");
    let b = TcpStream::connect(addr).await.expect("b");
    let lan = gw.metrics().listener("lan");
    eventually("two active", || async { lan.active.load(Relaxed) == 2 }).await;
    let refused = send_and_read(addr, &hello).await.unwrap_or_default();
    assert!(refused.is_empty());
    assert_eq!(lan.rejected_max_connections.load(Relaxed), 1);
    drop((a, b));
    eventually("slots released", || async { lan.active.load(Relaxed) == 0 }).await;
    assert_eq!(send_and_read(addr, &hello).await.expect("web"), b"web");
}

#[tokio::test]
async fn shutdown_drains_then_cuts_after_grace() {
    init_tracing();
    let echo = echo_server().await;
    let services = BTreeMap::from([("echo".into(), vec![echo])]);
    let opts = Options {
        grace: Duration::from_millis(500),
        ..options()
    };
    let (gw, addr, stop) =
        gateway(opts, gateway_snapshot(1, "dc1", services, BTreeMap::new())).await;
    let hello = client_hello(Some(&sni("echo", "dc1")));
    let mut open = TcpStream::connect(addr).await.expect("connect");
    open.write_all(&hello).await.expect("hello");
    let mut echoed = vec![0u8; hello.len()];
    open.read_exact(&mut echoed).await.expect("echo");

    stop.cancel();
    // New connections are refused once the listener is closed.
    eventually("listener closed", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    // The established connection still works during the grace period.
    open.write_all(b"still here")
        .await
        .expect("write during drain");
    let mut buf = [0u8; 10];
    open.read_exact(&mut buf).await.expect("read during drain");
    assert_eq!(&buf, b"still here");
    // Then it is cut, and the gateway finishes.
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), gw.join())
        .await
        .expect("drained within 5s")
        .expect("join");
    assert!(started.elapsed() <= Duration::from_secs(2));
    let n = open.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0);
}
