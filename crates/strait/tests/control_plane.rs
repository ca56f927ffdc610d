//! Two datacenters of real `strait` processes on loopback, federated through real
//! `strait gateway` processes: cross-DC queries, the secondary's intermediate CA signed by the
//! primary, persistence across a server restart, agent re-sync, and a refused join token.

mod common;

use common::*;
use std::time::Duration;

struct Federation {
    dir: tempfile::TempDir,
    s1: Proc,
    s2: Proc,
    gw1: (Proc, Proc),
    gw2: (Proc, Proc),
}

const NET: &str = "127.41";

fn ip(dc: u8, host: u8) -> String {
    format!("{NET}.{dc}.{host}")
}

fn federation() -> Federation {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c1 = server_config(d, "dc1", &ip(1, 10), &[]);
    let s1 = Proc::start(
        d,
        "server-dc1",
        &["server", "--config", c1.to_str().unwrap()],
    );
    wait_ready(
        sa(&format!("{}:8500", ip(1, 10))),
        "/v1/status/ready",
        &[&s1],
    );
    let gw1 = start_gateway_vm(d, "dc1", &ip(1, 11), &ip(1, 10));
    let pg = format!("{}:8443", ip(1, 11));
    let c2 = server_config(d, "dc2", &ip(2, 10), &[&pg]);
    let s2 = Proc::start(
        d,
        "server-dc2",
        &["server", "--config", c2.to_str().unwrap()],
    );
    wait_ready(
        sa(&format!("{}:8500", ip(2, 10))),
        "/v1/status/ready",
        &[&s2, &gw1.1],
    );
    let gw2 = start_gateway_vm(d, "dc2", &ip(2, 11), &ip(2, 10));
    Federation {
        dir,
        s1,
        s2,
        gw1,
        gw2,
    }
}

fn counting_definition(ip: &str) -> String {
    format!(
        r#"{{"ID":"counting","Name":"counting","Port":9003,"Address":"{ip}","Check":{{"TCP":"{ip}:9003","Interval":"1s"}},"Connect":{{"SidecarService":{{"Port":21000}}}}}}"#
    )
}

#[test]
fn two_datacenters_federate_through_gateways() {
    let mut f = federation();
    let d = f.dir.path().to_path_buf();

    // A service VM in dc2 with counting defined in its config directory, plus one
    // registered through the local API.
    let node = "services-dc2";
    let cfg = agent_config(&d, "dc2", node, &ip(2, 12), &ip(2, 10), &join_token("dc2"));
    write(
        &services_dir(&d, node).join("counting.json"),
        &counting_definition(&ip(2, 12)),
    );
    let agent_addr = sa(&format!("{}:8500", ip(2, 12)));
    let mut a2 = Proc::start(
        &d,
        "agent-services-dc2",
        &["agent", "--config", cfg.to_str().unwrap()],
    );
    wait_ready(agent_addr, "/v1/agent/ready", &[&a2, &f.s2]);
    let (st, body) = http(
        "PUT",
        agent_addr,
        "/v1/agent/service/register",
        Some(r#"{"Name":"billing","Port":9100}"#),
    )
    .unwrap();
    assert_eq!(st, 200, "{body}");

    // A bad body is a 400 naming the field, and nothing registered is lost.
    let (st, body) = http(
        "PUT",
        agent_addr,
        "/v1/agent/service/register",
        Some(r#"{"Name":"x","Prot":1}"#),
    )
    .unwrap();
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("Prot"), "{body}");

    // 1. Registration in dc2 is visible from dc1 with ?dc=dc2 (through both gateways).
    let dc1_gw_agent = sa(&format!("{}:8500", ip(1, 11)));
    eventually(
        "counting and billing in dc2 seen from dc1",
        Duration::from_secs(30),
        || {
            let (st, body) = get(dc1_gw_agent, "/v1/catalog/services?dc=dc2");
            (st == 200 && body.contains("\"counting\"") && body.contains("\"billing\""))
                .then_some(())
        },
    );
    let (st, body) = get(dc1_gw_agent, "/v1/health/service/counting?dc=dc2");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["Node"]["Datacenter"], "dc2", "{body}");
    // And dc1's own catalog does not have it.
    let (_, local) = get(dc1_gw_agent, "/v1/catalog/services");
    assert!(!local.contains("\"counting\""), "{local}");
    // The gateways carried that: both count routed connections for dc2's servers.
    let (_, m1) = get(sa(&format!("{}:19000", ip(1, 11))), "/metrics");
    let (_, m2) = get(sa(&format!("{}:19000", ip(2, 11))), "/metrics");
    assert!(
        m1.contains("strait_gateway_routed_total{dc=\"dc2\""),
        "dc1 gateway metrics:\n{m1}"
    );
    assert!(m2.contains("server.dc2."), "dc2 gateway metrics:\n{m2}");

    // 2. The secondary's intermediate is signed by the primary's root, and a dc2 leaf verifies
    //    against the dc1 roots.
    let inter = std::fs::read_to_string(d.join("data-server-dc2/ca/intermediate.pem")).unwrap();
    let info = strait_identity::ca::cert_info(&inter).unwrap();
    assert!(info.is_ca);
    let (st, roots) = get(dc1_gw_agent, "/v1/agent/connect/ca/roots");
    assert_eq!(st, 200, "{roots}");
    let roots: serde_json::Value = serde_json::from_str(&roots).unwrap();
    let root_pem = roots["Roots"][0]["RootCert"].as_str().unwrap().to_string();
    // Consul's `IntermediateCerts`: none in the primary, dc2's intermediate in dc2.
    assert_eq!(
        roots["Roots"][0]["IntermediateCerts"],
        serde_json::json!([])
    );
    let (st, dc2_roots) = get(agent_addr, "/v1/agent/connect/ca/roots");
    assert_eq!(st, 200, "{dc2_roots}");
    let dc2_roots: serde_json::Value = serde_json::from_str(&dc2_roots).unwrap();
    assert_eq!(
        dc2_roots["Roots"][0]["RootCert"].as_str(),
        Some(root_pem.as_str())
    );
    assert_eq!(
        dc2_roots["Roots"][0]["IntermediateCerts"],
        serde_json::json!([inter])
    );
    let (st, leaf) = get(agent_addr, "/v1/agent/connect/ca/leaf/counting");
    assert_eq!(st, 200, "{leaf}");
    let leaf: serde_json::Value = serde_json::from_str(&leaf).unwrap();
    let td = roots["TrustDomain"].as_str().unwrap();
    assert_eq!(
        leaf["ServiceURI"],
        format!("spiffe://{td}/ns/default/dc/dc2/svc/counting")
    );
    tls_check::leaf_verifies(
        leaf["CertPEM"].as_str().unwrap(),
        leaf["PrivateKeyPEM"].as_str().unwrap(),
        &root_pem,
        &format!("spiffe://{td}/ns/default/dc/dc2/svc/counting"),
    );
    // Key files are 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.join("data-server-dc2/ca/intermediate.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // 3. Server restart keeps the catalog: stop the agent first so nothing re-syncs.
    a2.stop();
    f.s2.stop();
    let c2 = d.join("server-dc2.toml");
    f.s2 = Proc::start(
        &d,
        "server-dc2-restarted",
        &["server", "--config", c2.to_str().unwrap()],
    );
    let s2_http = sa(&format!("{}:8500", ip(2, 10)));
    wait_ready(s2_http, "/v1/status/ready", &[&f.s2]);
    let (_, body) = get(s2_http, "/v1/catalog/services");
    assert!(
        body.contains("\"counting\"") && body.contains("\"billing\""),
        "after restart: {body}"
    );
    assert!(f.s2.log_text().contains("server ready"));
    assert!(
        !f.s2.log_text().contains("intermediate CA signed"),
        "the restarted server must reuse its intermediate"
    );

    // 4. Agent restart re-syncs: remove counting's file while the agent is down; the API
    //    registration survives (persisted), counting disappears, a new file appears.
    std::fs::remove_file(services_dir(&d, node).join("counting.json")).unwrap();
    write(
        &services_dir(&d, node).join("ledger.json"),
        r#"{"Name":"ledger","Port":9200}"#,
    );
    let a2b = Proc::start(
        &d,
        "agent-services-dc2-restarted",
        &["agent", "--config", cfg.to_str().unwrap()],
    );
    wait_ready(agent_addr, "/v1/agent/ready", &[&a2b]);
    eventually(
        "catalog re-synced after the agent restart",
        Duration::from_secs(30),
        || {
            let (_, body) = get(s2_http, "/v1/catalog/services");
            (body.contains("\"billing\"")
                && body.contains("\"ledger\"")
                && !body.contains("\"counting\""))
            .then_some(())
        },
    );

    // 5. A wrong join token is refused with a message saying so, and the agent exits non-zero.
    let bad = agent_config(
        &d,
        "dc2",
        "intruder",
        &ip(2, 13),
        &ip(2, 10),
        "not-the-token-of-this-dc",
    );
    let mut intruder = Proc::start(
        &d,
        "agent-intruder",
        &["agent", "--config", bad.to_str().unwrap()],
    );
    let status = intruder
        .wait_exit(Duration::from_secs(30))
        .expect("the refused agent must exit");
    assert!(!status.success());
    assert!(
        intruder.log_text().contains("join token refused"),
        "{}",
        intruder.log_text()
    );
    let (_, nodes) = get(s2_http, "/v1/catalog/nodes");
    assert!(!nodes.contains("intruder"), "{nodes}");

    // Members: both DCs through the CLI.
    let out = std::process::Command::new(strait_bin())
        .args(["members", "--http-addr", &format!("{}:8500", ip(1, 11))])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("server-dc1") && text.contains("server-dc2") && text.contains("services-dc2"),
        "{text}"
    );
    drop(f.gw1);
    drop(f.gw2);
    drop(f.s1);
}

#[test]
fn cli_says_when_the_agent_is_unreachable() {
    let out = std::process::Command::new(strait_bin())
        .args(["catalog", "services", "--http-addr", "127.41.9.9:8500"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the agent at 127.41.9.9:8500"),
        "{err}"
    );
}

#[test]
fn bad_config_exits_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir.path().join("bad.toml"),
        "datacenter = \"dc1\"\nnode_name = \"n\"\nbogus_field = 1\n",
    );
    for role in ["server", "agent"] {
        let out = std::process::Command::new(strait_bin())
            .args([role, "--config", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bogus_field") && err.contains("bad.toml"),
            "{role}: {err}"
        );
    }
    let out = std::process::Command::new(strait_bin())
        .args(["config", "check", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

mod tls_check {
    //! Verifies a leaf against roots with a real in-memory TLS handshake using strait's own
    //! verifiers (chain + exact SPIFFE ID).
    use std::sync::Arc;
    use strait_identity::spiffe::SpiffeId;
    use strait_identity::tls::{client_config, server_config, ClientAuth, Expect, Identity, Roots};

    pub fn leaf_verifies(chain_pem: &str, key_pem: &str, root_pem: &str, id: &str) {
        let identity = Identity::from_pem(chain_pem, key_pem).unwrap();
        let roots = Roots::from_pems(&[root_pem.to_string()]).unwrap();
        let expect: SpiffeId = id.parse().unwrap();
        let client = client_config(None, &roots, Expect::Exact(expect)).unwrap();
        let server = server_config(&identity, &roots, ClientAuth::Optional).unwrap();
        let name = rustls_pki_types::ServerName::try_from("x.internal").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::clone(&client), name).unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets().unwrap();
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()
                .expect("the dc2 leaf must verify against the dc1 root");
            if !c.is_handshaking() && !s.is_handshaking() {
                return;
            }
        }
        panic!("handshake did not complete");
    }
}
