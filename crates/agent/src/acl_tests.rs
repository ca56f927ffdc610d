//! The token cache and down_policy in memory, and resolution through a TLS server that
//! answers as the servers do.

use super::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use strait_acl::DefaultPolicy;

fn acl(text: &str) -> Acl {
    #[derive(serde::Deserialize)]
    struct File {
        acl: AclConfig,
    }
    let cfg = strait_rpc::config::parse_toml::<File>(text).unwrap().acl;
    Acl::new(&cfg)
}

fn auth(accessor: &str) -> Arc<Authorizer> {
    let rules = strait_acl::Rules::default();
    Arc::new(Authorizer::from_rules(accessor, rules, DefaultPolicy::Deny))
}

#[test]
fn the_token_is_presented_else_the_default_else_anonymous() {
    let none = acl("[acl]\nenabled = true\n");
    let default = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
    let with_default = acl(&format!(
        "[acl]\nenabled = true\n[acl.tokens]\ndefault = {default:?}\n"
    ));
    let mut h = HeaderMap::new();
    assert_eq!(none.secret_of(&h), None);
    assert_eq!(with_default.secret_of(&h), Some(SecretId::new(default)));
    h.insert("authorization", "Bearer abc".parse().unwrap());
    assert_eq!(with_default.secret_of(&h), Some(SecretId::new("abc")));
    h.insert("x-consul-token", " def ".parse().unwrap());
    assert_eq!(none.secret_of(&h), Some(SecretId::new("def")));
    h.insert("x-consul-token", "".parse().unwrap());
    assert_eq!(
        none.secret_of(&h),
        Some(SecretId::new("abc")),
        "empty is none"
    );
    h.remove("x-consul-token");
    h.insert("authorization", "Basic abc".parse().unwrap());
    assert_eq!(none.secret_of(&h), None);
    h.insert("authorization", "Bearer  ".parse().unwrap());
    assert_eq!(with_default.secret_of(&h), Some(SecretId::new(default)));
}

#[test]
fn cached_tokens_are_fresh_for_the_ttl_then_stale() {
    let a = acl("[acl]\nenabled = true\ntoken_ttl = \"2s\"\n");
    let key = Some(SecretHash::of("web-secret"));
    let t0 = Instant::now();
    assert!(matches!(a.lookup(&key, t0), Lookup::Missing));
    a.remember(key, auth("web"), t0);
    assert!(
        matches!(a.lookup(&key, t0 + Duration::from_millis(1999)), Lookup::Fresh(x) if x.accessor_id() == "web")
    );
    assert!(matches!(
        a.lookup(&key, t0 + Duration::from_secs(2)),
        Lookup::Stale(_)
    ));
    assert!(
        matches!(a.lookup(&None, t0), Lookup::Missing),
        "anonymous is its own entry"
    );
    a.forget(&key);
    assert!(matches!(a.lookup(&key, t0), Lookup::Missing));
}

#[test]
fn down_policy_decides_when_no_server_answers() {
    let extend = acl("[acl]\nenabled = true\n");
    let got = extend.when_down(Some(auth("web")), "x").ok().unwrap();
    assert_eq!(got.accessor_id(), "web");
    let refused = extend.when_down(None, "no route").unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let deny = acl("[acl]\nenabled = true\ndown_policy = \"deny\"\n");
    assert_eq!(
        deny.when_down(Some(auth("web")), "x").unwrap_err().status,
        StatusCode::FORBIDDEN
    );

    let allow = acl("[acl]\nenabled = true\ndown_policy = \"allow\"\n");
    let got = allow.when_down(None, "x").ok().unwrap();
    assert!(got.is_management());
}

/// A server answering `/v1/internal/acl/authorizer` as the servers do: web's secret and the
/// anonymous token resolve, anything else is "ACL not found"; `acls_off`: Consul's 401. It
/// counts the resolutions it was asked for, and answers 503 (no leader) once `down` is set.
struct AclServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    _stop: tokio_util::sync::DropGuard,
}

async fn acl_server(acls_off: bool) -> AclServer {
    let hits = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let (counted, unavailable) = (hits.clone(), down.clone());
    let handler = move |headers: HeaderMap| {
        counted.fetch_add(1, SeqCst);
        let unavailable = unavailable.load(SeqCst);
        async move {
            if unavailable {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no Raft leader".to_string(),
                );
            }
            if acls_off {
                return (StatusCode::UNAUTHORIZED, "ACL support disabled".to_string());
            }
            let token = headers.get("x-consul-token").and_then(|v| v.to_str().ok());
            let (accessor, rules) = match token {
                Some(WEB_SECRET) => (
                    "web-accessor",
                    "service \"web\" {\n  policy = \"write\"\n}\n",
                ),
                Some(ANONYMOUS_SECRET) => (strait_acl::ANONYMOUS_TOKEN_ID, ""),
                _ => return (StatusCode::FORBIDDEN, "ACL not found".to_string()),
            };
            let rules = strait_acl::Rules::parse(rules).unwrap();
            let auth = Authorizer::from_rules(accessor, rules, DefaultPolicy::Deny);
            (StatusCode::OK, serde_json::to_string(&auth).unwrap())
        }
    };
    let router = axum::Router::new().route(RESOLVE_PATH, axum::routing::get(handler));
    let (addr, stop) = crate::servers::tests::tls_server(router).await;
    AclServer {
        addr,
        hits,
        down,
        _stop: stop.drop_guard(),
    }
}

const WEB_SECRET: &str = "0f1e2d3c-4b5a-4968-8776-655443322110";

/// A joined agent of dc1 whose one server is `server`, with `acl` as its `[acl]` table.
fn agent(server: SocketAddr, acl: &str) -> Agent {
    let cfg = crate::config::AgentConfig::parse(&format!(
        "datacenter = \"dc1\"\nnode_name = \"n1\"\ndata_dir = \"/nonexistent\"\n\
         advertise_addr = \"127.0.0.1\"\nhttp_addr = \"127.0.0.1:8500\"\n\
         servers = [\"{server}\"]\njoin_token = \"0123456789abcdef0\"\n{acl}"
    ))
    .unwrap();
    let local = Arc::new(crate::local::LocalState::new(
        "n1",
        cfg.advertise_addr,
        &cfg.data_dir,
    ));
    let agent = Agent::new(cfg, local);
    agent.set_conn(crate::join::ServerConn {
        trust_domain: "test.strait".into(),
        tls: strait_identity::tls::dangerous_unverified_client_config(),
        sni: strait_identity::spiffe::server_sni("dc1", "test.strait"),
        not_after_unix: i64::MAX,
    });
    agent
}

#[tokio::test]
async fn tokens_resolve_through_the_servers_once_per_ttl() {
    let server = acl_server(false).await;
    let hits = &server.hits;
    let a = agent(
        server.addr,
        "[acl]\nenabled = true\ndefault_policy = \"deny\"\n",
    );
    let web = SecretId::new(WEB_SECRET);
    let auth = a.authorizer(Some(&web)).await.unwrap();
    assert!(auth.service_write("web").is_ok());
    let denied = auth.service_write("counting").unwrap_err().to_string();
    assert!(denied.contains("'web-accessor'"), "{denied}");
    a.authorizer(Some(&web)).await.unwrap();
    assert_eq!(hits.load(SeqCst), 1, "the second use is the cache's");

    let anonymous = a.authorizer(None).await.unwrap();
    assert!(anonymous.service_read("web").is_err());
    assert_eq!(hits.load(SeqCst), 2, "sent as `anonymous`, its own entry");

    let bogus = SecretId::new("6a1f0c2e-9d4b-4e7a-8c3f-2b5d7e9a1c4f");
    let refused = a.authorizer(Some(&bogus)).await.unwrap_err();
    assert_eq!(
        (refused.status, refused.message.as_str()),
        (StatusCode::FORBIDDEN, "ACL not found")
    );
    assert_eq!(hits.load(SeqCst), 3);
}

#[tokio::test]
async fn acls_off_ask_no_server() {
    let a = agent(crate::servers::tests::refused(), "");
    let auth = a
        .authorizer(Some(&SecretId::new("anything")))
        .await
        .unwrap();
    assert!(auth.is_management());
}

#[tokio::test]
async fn down_policy_applies_when_no_server_answers() {
    let web = SecretId::new(WEB_SECRET);
    for (policy, stale_ok, unseen_ok) in [
        ("extend-cache", true, false),
        ("deny", false, false),
        ("allow", true, true),
    ] {
        let server = acl_server(false).await;
        // token_ttl 0: every use asks the servers, so a cached entry is always stale.
        let a = agent(
            server.addr,
            &format!("[acl]\nenabled = true\ndown_policy = \"{policy}\"\ntoken_ttl = \"0s\"\n"),
        );
        a.authorizer(Some(&web)).await.unwrap();
        a.authorizer(Some(&web)).await.unwrap();
        assert_eq!(
            server.hits.load(SeqCst),
            2,
            "{policy}: resolved on each use"
        );
        server.down.store(true, SeqCst);
        let stale = a.authorizer(Some(&web)).await;
        assert_eq!(stale.is_ok(), stale_ok, "{policy}: a token resolved before");
        let unseen = a.authorizer(None).await;
        assert_eq!(
            unseen.is_ok(),
            unseen_ok,
            "{policy}: a token never resolved"
        );
        if let Err(e) = unseen {
            assert_eq!(e.status, StatusCode::FORBIDDEN);
            assert!(e.message.contains("no server answered"), "{}", e.message);
            assert!(e.message.contains(policy), "{}", e.message);
        }
    }
}

#[tokio::test]
async fn servers_with_acls_off_are_a_503_that_says_so() {
    let server = acl_server(true).await;
    let a = agent(server.addr, "[acl]\nenabled = true\n");
    let e = a.authorizer(None).await.unwrap_err();
    assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(e.message.contains("acl.enabled"), "{}", e.message);
}
