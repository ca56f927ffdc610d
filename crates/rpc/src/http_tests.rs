use super::*;
use crate::mesh::first_answer;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

/// An address nothing listens on.
fn refused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// A loopback API answering `/json` with JSON, `/text` with text, `/missing` with 404.
async fn api() -> (SocketAddr, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = Router::new()
        .route("/json", get(|| async { axum::Json(vec![1, 2]) }))
        .route("/text", get(|| async { "not json" }));
    let stop = CancellationToken::new();
    tokio::spawn(crate::serve::serve_plain(listener, router, stop.clone()));
    (addr, stop)
}

#[tokio::test]
async fn json_and_its_errors_name_the_peer_and_the_path() {
    let (addr, stop) = api().await;
    let client = Client::new(addr, Duration::from_secs(5));
    assert_eq!(
        client.json::<Vec<u32>>("/json").await.expect("json"),
        [1, 2]
    );
    let err = client.json::<Vec<u32>>("/text").await.expect_err("text");
    assert!(matches!(err, RpcError::Decode { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&addr.to_string()) && text.contains("/text"),
        "{text}"
    );
    let err = client.json::<Vec<u32>>("/missing").await.expect_err("404");
    assert!(
        matches!(err, RpcError::Status { status: 404, ref path, .. } if path == "/missing"),
        "{err}"
    );
    stop.cancel();
}

#[tokio::test]
async fn refused_silent_and_closing_peers_are_told_apart() {
    let refused = refused_addr();
    let err = Client::new(refused, Duration::from_secs(2))
        .get("/x")
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, RpcError::Connect { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to {refused}: ")),
        "{err}"
    );

    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let err = Client::new(addr, Duration::from_millis(200))
        .get("/slow")
        .await
        .expect_err("never answers");
    assert_eq!(
        err.to_string(),
        format!("{addr} did not answer /slow within 200ms")
    );

    drop(silent);

    // Accepts, reads the request, closes without a word.
    let closer = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = closer.local_addr().expect("addr");
    let closing = tokio::spawn(async move {
        let (mut conn, _) = closer.accept().await.expect("accept");
        let mut buf = [0u8; 1024];
        let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await;
    });
    let err = Client::new(addr, Duration::from_secs(5))
        .get("/gone")
        .await
        .expect_err("closed");
    assert!(matches!(err, RpcError::Closed { .. }), "{err}");
    closing.await.expect("closing peer");
}

#[tokio::test]
async fn urls_resolve_names_and_refuse_other_schemes() {
    let (addr, stop) = api().await;
    let r = get_url(
        &format!("http://localhost:{}/json", addr.port()),
        Duration::from_secs(5),
    )
    .await
    .expect("localhost resolves");
    assert_eq!((r.status, r.path.as_str()), (StatusCode::OK, "/json"));
    assert!(
        r.peer.ip().is_loopback() && r.peer.port() == addr.port(),
        "{}",
        r.peer
    );
    let err = get_url("https://127.0.0.1:1/", Duration::from_secs(1))
        .await
        .expect_err("https");
    assert!(matches!(err, RpcError::BadUrl { .. }), "{err}");
    stop.cancel();
}

/// "Try every server": the answer and its errors name the server that answered, not the
/// first one tried; when none answers, every server appears with its own error.
#[tokio::test]
async fn trying_every_server_names_the_one_at_fault() {
    let (up, stop) = api().await;
    let down = refused_addr();
    let timeout = Duration::from_secs(5);
    let resp = first_answer(&[down, up], "server.dc1.test", |a| {
        request_with_timeout(a, Method::GET, "/text", None, timeout)
    })
    .await
    .expect("the second answers");
    assert_eq!(resp.peer, up);
    let err = resp.json::<Vec<u32>>().expect_err("not json").to_string();
    assert!(
        err.contains(&up.to_string()) && !err.contains(&down.to_string()),
        "{err}"
    );

    let down2 = refused_addr();
    let err = first_answer(&[down, down2], "server.dc1.test", |a| {
        request_with_timeout(a, Method::GET, "/x", None, timeout)
    })
    .await
    .expect_err("none answers");
    assert!(matches!(&err, RpcError::AllFailed { failures, .. } if failures.len() == 2));
    let text = err.to_string();
    assert!(
        text.starts_with("no server for server.dc1.test answered: ")
            && text.contains(&format!("cannot connect to {down}: "))
            && text.contains(&format!("cannot connect to {down2}: ")),
        "{text}"
    );

    let err = first_answer(&[], "server.dc9.test", |a| {
        request_with_timeout(a, Method::GET, "/x", None, timeout)
    })
    .await
    .expect_err("no address");
    assert_eq!(err.to_string(), "no address to reach server.dc9.test");
    stop.cancel();
}
