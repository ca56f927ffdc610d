//! Failover between servers over real sockets: servers that refuse connections, accept and
//! never answer, answer 503, or answer.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Instant;
use strait_identity::spiffe::{self, SpiffeId};
use strait_identity::tls::{self, ClientAuth, Identity, Roots};
use strait_snapshot::Instance;
use tokio_util::sync::CancellationToken;

const TD: &str = "test.strait";
const SHORT: Duration = Duration::from_millis(300);

/// A TLS server of DC dc1 (any client accepted) serving `router`, until the token is
/// cancelled.
pub(crate) async fn tls_server(router: axum::Router) -> (SocketAddr, CancellationToken) {
    let root = strait_identity::ca::generate_root(TD, Duration::from_secs(3600)).expect("root");
    let root_ca = strait_identity::ca::CaCert::from_pem(&root.cert_pem, &root.key_pem).expect("ca");
    let id = SpiffeId::server(TD, "dc1");
    let (key, csr) = strait_identity::ca::generate_key_and_csr(&id).expect("csr");
    let leaf = root_ca
        .sign_leaf(&csr, &id, Duration::from_secs(3600))
        .expect("leaf");
    let identity = Identity::from_pem(&leaf.cert_pem, &key).expect("identity");
    let roots = Roots::from_pems(&[root.cert_pem]).expect("roots");
    let config = tls::server_config(&identity, &roots, ClientAuth::Optional).expect("tls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (_tx, rx) = tokio::sync::watch::channel(config);
    let stop = CancellationToken::new();
    tokio::spawn(strait_rpc::serve::serve_tls(
        listener,
        rx,
        router,
        stop.clone(),
    ));
    (addr, stop)
}

/// A server answering every request with `status` and `body`; counts its requests.
async fn answering(
    status: StatusCode,
    body: &'static str,
) -> (SocketAddr, Arc<AtomicUsize>, CancellationToken) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let router = axum::Router::new().fallback(move || {
        counted.fetch_add(1, SeqCst);
        async move { (status, body) }
    });
    let (addr, stop) = tls_server(router).await;
    (addr, hits, stop)
}

/// Accepts connections and never says a word (a hung process); counts its connections.
async fn hung() -> (SocketAddr, Arc<AtomicUsize>, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = stopped.cancelled() => return,
                Ok((socket, _)) = listener.accept() => {
                    counted.fetch_add(1, SeqCst);
                    held.push(socket);
                }
            }
        }
    });
    (addr, accepted, stop)
}

/// An address nothing listens on.
pub(crate) fn refused() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// One request to dc1's servers, 10 s for each exchange.
async fn ask(servers: &Servers, method: Method, path: &str) -> Result<Response, RpcError> {
    let sni = spiffe::server_sni("dc1", TD);
    let channel = Channel {
        tls: tls::dangerous_unverified_client_config(),
        sni: &sni,
    };
    let timeout = Duration::from_secs(10);
    servers.request(&channel, method, path, None, timeout).await
}

#[tokio::test]
async fn fails_over_past_refused_hung_and_unavailable_servers_then_keeps_the_healthy_one() {
    let down = refused();
    let (stuck, stuck_conns, stop1) = hung().await;
    let (leaderless, leaderless_hits, stop2) =
        answering(StatusCode::SERVICE_UNAVAILABLE, "no Raft leader").await;
    let (good, good_hits, stop3) = answering(StatusCode::OK, "[]").await;
    let servers = Servers::with_connect_timeout(vec![down, stuck, leaderless, good], SHORT);
    let started = Instant::now();
    let resp = ask(&servers, Method::GET, "/x")
        .await
        .expect("the fourth server answers");
    assert_eq!((resp.peer, resp.status), (good, StatusCode::OK));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the hung server is skipped after the connect deadline, not the exchange's: {:?}",
        started.elapsed()
    );
    assert_eq!(
        (stuck_conns.load(SeqCst), leaderless_hits.load(SeqCst)),
        (1, 1)
    );
    assert_eq!(servers.order(), vec![good, down, stuck, leaderless]);

    for _ in 0..3 {
        let resp = ask(&servers, Method::GET, "/x")
            .await
            .expect("the healthy server answers again");
        assert_eq!(resp.peer, good);
    }
    assert_eq!(good_hits.load(SeqCst), 4);
    assert_eq!(
        (stuck_conns.load(SeqCst), leaderless_hits.load(SeqCst)),
        (1, 1),
        "a healthy current server is asked first: the others are not tried again"
    );
    for stop in [stop1, stop2, stop3] {
        stop.cancel();
    }
}

#[tokio::test]
async fn when_no_server_answers_the_error_names_each_with_its_own_error() {
    let down = refused();
    let (stuck, _, stop1) = hung().await;
    let (leaderless, _, stop2) = answering(StatusCode::SERVICE_UNAVAILABLE, "no Raft leader").await;
    let servers = Servers::with_connect_timeout(vec![down, stuck, leaderless], SHORT);
    let sni = spiffe::server_sni("dc1", TD);
    let err = ask(&servers, Method::PUT, "/v1/internal/sync")
        .await
        .expect_err("no server answers");
    let text = err.to_string();
    assert!(matches!(&err, RpcError::AllFailed { failures, .. } if failures.len() == 3));
    for part in [
        format!("no server for {sni} answered: "),
        format!("cannot connect to {down}: "),
        format!("{stuck} did not answer /v1/internal/sync within 300ms"),
        format!("{leaderless} answered 503 to /v1/internal/sync: no Raft leader"),
    ] {
        assert!(text.contains(&part), "{part:?} missing from: {text}");
    }
    stop1.cancel();
    stop2.cancel();
}

/// A 4xx (a refused join, a bad request) or a 501 is the answer: another server would say
/// the same.
#[tokio::test]
async fn a_client_error_or_a_501_is_the_answer() {
    let (good, good_hits, stop) = answering(StatusCode::OK, "{}").await;
    for status in [StatusCode::FORBIDDEN, StatusCode::NOT_IMPLEMENTED] {
        let (first, _, stop_first) = answering(status, "no").await;
        let servers = Servers::with_connect_timeout(vec![first, good], SHORT);
        let resp = ask(&servers, Method::GET, "/x").await.expect("an answer");
        assert_eq!((resp.peer, resp.status), (first, status));
        stop_first.cancel();
    }
    assert_eq!(good_hits.load(SeqCst), 0);
    stop.cancel();
}

fn instance(kind: InstanceKind, addr: &str) -> Instance {
    Instance {
        node: "n".into(),
        service_id: "s".into(),
        service_name: "s".into(),
        kind,
        addr: addr.parse().expect("addr"),
        wan: None,
        destination_service: None,
        healthy: true,
        passing: true,
        tags: vec![],
        meta: Default::default(),
        node_meta: Default::default(),
    }
}

fn view(instances: Vec<Instance>) -> MeshView {
    MeshView {
        instances,
        ..MeshView::default()
    }
}

#[test]
fn learns_servers_from_the_catalog_and_keeps_the_configured_ones() {
    let a: SocketAddr = "127.0.0.1:8300".parse().expect("addr");
    let (b, c) = ("127.0.0.2:8300", "127.0.0.3:8300");
    let servers = Servers::new(vec![a]);
    let learned = servers.learn(&view(vec![
        instance(InstanceKind::Server, b),
        instance(InstanceKind::ConnectProxy, "127.0.0.9:21000"),
        instance(InstanceKind::Server, c),
        instance(InstanceKind::Server, "127.0.0.1:8300"),
    ]));
    let (b, c): (SocketAddr, SocketAddr) = (b.parse().expect("b"), c.parse().expect("c"));
    assert_eq!(learned, vec![b, c]);
    assert_eq!(servers.order(), vec![a, b, c]);
    assert!(servers
        .learn(&view(vec![instance(
            InstanceKind::Server,
            "127.0.0.2:8300"
        )]))
        .is_empty());

    // b was the current server and has left the catalog; a configured server never leaves.
    strait_base::sync::lock(&servers.known).current = Some(b);
    assert_eq!(servers.order(), vec![b, a]);
    assert!(servers.learn(&view(vec![])).is_empty());
    assert_eq!(servers.order(), vec![a]);
}
