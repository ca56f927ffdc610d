//! One test per validation error: each checks the reported line and field.

use super::*;

/// A one-DC lab: server VM at line 5, services VM (counting, web) at line 11.
const ONE_DC: &str = r#"[[datacenter]]
name = "dc1"
primary = true

[[vm]]
name = "server"
dc = "dc1"
address = "127.30.0.10"
roles = ["server"]

[[vm]]
name = "app"
dc = "dc1"
address = "127.30.0.12"
roles = ["services"]

[[vm.service]]
name = "counting"
kind = "counting"
port = 9003

[[vm.service]]
name = "web"
kind = "dashboard"
port = 9002

[[vm.service.upstream]]
destination = "counting"
local_bind_port = 5000
"#;

fn invalid(text: &str) -> (usize, String, String) {
    match Topology::parse(text, "t.toml") {
        Err(TopologyError::Invalid {
            origin,
            line,
            field,
            message,
        }) => {
            assert_eq!(origin, "t.toml");
            (line, field, message)
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
}

fn syntax(text: &str) -> (usize, String) {
    match Topology::parse(text, "t.toml") {
        Err(TopologyError::Syntax { line, message, .. }) => (line, message),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn builtin_default_is_the_two_dc_demo() {
    let t = Topology::builtin().expect("default topology is valid");
    assert_eq!(t.primary_dc(), "dc1");
    assert_eq!(t.datacenters.len(), 2);
    let names: Vec<&str> = t.vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "primary-server",
            "primary-gateway",
            "primary-services",
            "secondary-server",
            "secondary-gateway",
            "secondary-services"
        ]
    );
    let dash = &t.vms[2].services[0];
    assert_eq!(dash.kind, ServiceKind::Dashboard);
    assert_eq!(dash.port, 9002);
    assert_eq!(dash.sidecar_port, 21000);
    assert_eq!(
        dash.upstreams,
        [Upstream {
            destination: "counting".into(),
            datacenter: "dc2".into(),
            local_bind_port: 5000,
            mesh_gateway: MeshGatewayMode::Local
        }]
    );
    assert_eq!(t.vms[5].address, Ipv4Addr::new(127, 20, 2, 12));
    assert_eq!(t.vms[5].services[0].kind, ServiceKind::Counting);
}

#[test]
fn defaults_fill_datacenter_mode_check_path_and_ports() {
    let t = Topology::parse(ONE_DC, "t.toml").expect("valid");
    let web = &t.vms[1].services[1];
    assert_eq!(web.upstreams[0].datacenter, "dc1");
    assert_eq!(web.upstreams[0].mesh_gateway, MeshGatewayMode::Local);
    assert_eq!(web.check_path, "/health");
    assert_eq!(web.sidecar_port, 21001);
    assert_eq!(t.vms[1].sidecar_admin_port(1), 19001);
}

#[test]
fn toml_syntax_error_has_line() {
    let (line, _) = syntax(&ONE_DC.replace("port = 9003", "port = = 9003"));
    assert_eq!(line, 20);
}

#[test]
fn unknown_field_is_rejected_with_its_line() {
    let (line, message) = syntax(&ONE_DC.replace("port = 9003", "port = 9003\nprot = 1"));
    assert_eq!(line, 21);
    assert!(message.contains("unknown field `prot`"), "{message}");
}

#[test]
fn unknown_role_and_mode_are_rejected() {
    let (line, message) = syntax(&ONE_DC.replace(r#"roles = ["server"]"#, r#"roles = ["sever"]"#));
    assert_eq!(line, 9);
    assert!(message.contains("sever"), "{message}");
    let (_, message) = syntax(&ONE_DC.replace(
        "local_bind_port = 5000",
        "local_bind_port = 5000\nmesh_gateway = \"far\"",
    ));
    assert!(message.contains("far"), "{message}");
}

#[test]
fn no_datacenter() {
    let (_, field, _) = invalid("");
    assert_eq!(field, "datacenter");
}

#[test]
fn no_primary() {
    let (line, field, message) = invalid(&ONE_DC.replace("primary = true", ""));
    assert_eq!((line, field.as_str()), (2, "datacenter[0].primary"));
    assert!(message.contains("primary = true"), "{message}");
}

#[test]
fn more_than_one_primary() {
    let text = ONE_DC.replacen(
        "[[vm]]",
        "[[datacenter]]\nname = \"dc2\"\nprimary = true\n\n[[vm]]",
        1,
    );
    let (line, field, message) = invalid(&text);
    assert_eq!((line, field.as_str()), (7, "datacenter[1].primary"));
    assert!(message.contains("dc1 is already primary"), "{message}");
}

#[test]
fn duplicate_datacenter() {
    let text = ONE_DC.replacen("[[vm]]", "[[datacenter]]\nname = \"dc1\"\n\n[[vm]]", 1);
    let (line, field, _) = invalid(&text);
    assert_eq!((line, field.as_str()), (6, "datacenter[1].name"));
}

#[test]
fn invalid_names() {
    let (line, field, message) = invalid(&ONE_DC.replace("name = \"dc1\"", "name = \"DC_1\""));
    assert_eq!((line, field.as_str()), (2, "datacenter[0].name"));
    assert!(message.contains("a-z"), "{message}");
    let (line, field, _) = invalid(&ONE_DC.replace("name = \"web\"", "name = \"web app\""));
    assert_eq!((line, field.as_str()), (23, "vm[1].service[1].name"));
}

#[test]
fn unknown_dc_on_vm() {
    let (line, field, message) = invalid(&ONE_DC.replacen("dc = \"dc1\"", "dc = \"dc9\"", 1));
    assert_eq!((line, field.as_str()), (7, "vm[0].dc"));
    assert!(
        message.contains("dc9") && message.contains("dc1"),
        "{message}"
    );
}

#[test]
fn duplicate_vm_name_and_address() {
    let (line, field, _) = invalid(&ONE_DC.replace("name = \"app\"", "name = \"server\""));
    assert_eq!((line, field.as_str()), (12, "vm[1].name"));
    let (line, field, message) = invalid(&ONE_DC.replace("127.30.0.12", "127.30.0.10"));
    assert_eq!((line, field.as_str()), (14, "vm[1].address"));
    assert!(
        message.contains("127.30.0.10") && message.contains("vm[0]"),
        "{message}"
    );
}

#[test]
fn address_must_be_ipv4_loopback() {
    let (line, field, _) = invalid(&ONE_DC.replace("127.30.0.12", "localhost"));
    assert_eq!((line, field.as_str()), (14, "vm[1].address"));
    let (_, _, message) = invalid(&ONE_DC.replace("127.30.0.12", "10.0.0.1"));
    assert!(message.contains("loopback"), "{message}");
}

#[test]
fn role_errors() {
    let (line, field, _) = invalid(&ONE_DC.replace(r#"roles = ["server"]"#, "roles = []"));
    assert_eq!((line, field.as_str()), (9, "vm[0].roles"));
    let (_, _, message) =
        invalid(&ONE_DC.replace(r#"roles = ["server"]"#, r#"roles = ["server", "gateway"]"#));
    assert!(message.contains("cannot also be"), "{message}");
    let (_, _, message) = invalid(&ONE_DC.replace(
        r#"roles = ["services"]"#,
        r#"roles = ["services", "services"]"#,
    ));
    assert!(message.contains("twice"), "{message}");
}

#[test]
fn service_needs_services_role() {
    let (line, field, _) =
        invalid(&ONE_DC.replace(r#"roles = ["services"]"#, r#"roles = ["gateway"]"#));
    assert_eq!((line, field.as_str()), (18, "vm[1].service"));
}

#[test]
fn command_kind_needs_command_and_only_it() {
    let (line, field, _) = invalid(&ONE_DC.replace("kind = \"counting\"", "kind = \"command\""));
    assert_eq!((line, field.as_str()), (19, "vm[1].service[0].command"));
    let (_, field, _) = invalid(&ONE_DC.replace(
        "kind = \"counting\"",
        "kind = \"counting\"\ncommand = [\"x\"]",
    ));
    assert_eq!(field, "vm[1].service[0].command");
    let t = Topology::parse(
        &ONE_DC.replace(
            "kind = \"counting\"",
            "kind = \"command\"\ncommand = [\"srv\", \"-v\"]",
        ),
        "t.toml",
    )
    .expect("valid");
    assert_eq!(
        t.vms[1].services[0].kind,
        ServiceKind::Command {
            argv: vec!["srv".into(), "-v".into()]
        }
    );
}

#[test]
fn dashboard_needs_an_upstream() {
    let text = ONE_DC.replace(
        "[[vm.service.upstream]]\ndestination = \"counting\"\nlocal_bind_port = 5000\n",
        "",
    );
    let (line, field, _) = invalid(&text);
    assert_eq!((line, field.as_str()), (24, "vm[1].service[1].upstream"));
}

#[test]
fn duplicate_service_on_a_vm() {
    let (line, field, _) = invalid(&ONE_DC.replace("name = \"web\"", "name = \"counting\""));
    assert_eq!((line, field.as_str()), (23, "vm[1].service[1].name"));
}

#[test]
fn check_path_must_be_absolute() {
    let (line, field, _) =
        invalid(&ONE_DC.replace("port = 9003", "port = 9003\ncheck_path = \"health\""));
    assert_eq!((line, field.as_str()), (21, "vm[1].service[0].check_path"));
}

#[test]
fn upstream_to_unknown_service_or_dc() {
    let (line, field, message) =
        invalid(&ONE_DC.replace("destination = \"counting\"", "destination = \"countin\""));
    assert_eq!(
        (line, field.as_str()),
        (28, "vm[1].service[1].upstream[0].destination")
    );
    assert!(message.contains("counting, web"), "{message}");
    let text = ONE_DC.replace(
        "local_bind_port = 5000",
        "local_bind_port = 5000\ndatacenter = \"dc7\"",
    );
    let (line, field, _) = invalid(&text);
    assert_eq!(
        (line, field.as_str()),
        (30, "vm[1].service[1].upstream[0].datacenter")
    );
}

#[test]
fn port_clashes() {
    let (line, field, message) = invalid(&ONE_DC.replace("port = 9003", "port = 8500"));
    assert_eq!((line, field.as_str()), (20, "vm[1].service[0].port"));
    assert!(
        message.contains("127.30.0.12") && message.contains("HTTP API"),
        "{message}"
    );
    let (line, field, message) = invalid(&ONE_DC.replace("port = 9002", "port = 9003"));
    assert_eq!((line, field.as_str()), (25, "vm[1].service[1].port"));
    assert!(message.contains("service counting"), "{message}");
    let (line, field, _) =
        invalid(&ONE_DC.replace("local_bind_port = 5000", "local_bind_port = 21000"));
    assert_eq!(
        (line, field.as_str()),
        (29, "vm[1].service[1].upstream[0].local_bind_port")
    );
    let (_, field, message) =
        invalid(&ONE_DC.replace("port = 9002", "port = 9002\nsidecar_port = 19000"));
    assert_eq!(field, "vm[1].service[1].sidecar_port");
    assert!(message.contains("admin endpoint"), "{message}");
}

/// `extra` more server VMs in ONE_DC's dc1, before its first VM.
fn with_servers(extra: usize) -> String {
    let vms: String = (0..extra)
        .map(|i| {
            format!("[[vm]]\nname = \"server{i}\"\ndc = \"dc1\"\naddress = \"127.30.1.{i}\"\nroles = [\"server\"]\n\n")
        })
        .collect();
    ONE_DC.replacen("[[vm]]", &format!("{vms}[[vm]]"), 1)
}

#[test]
fn one_to_seven_servers_per_dc() {
    let (line, field, _) =
        invalid(&ONE_DC.replace(r#"roles = ["server"]"#, r#"roles = ["gateway"]"#));
    assert_eq!((line, field.as_str()), (2, "datacenter[0]"));
    let t = Topology::parse(&with_servers(6), "t.toml").expect("seven servers");
    assert_eq!(t.servers_in("dc1").count(), 7);
    let (line, field, message) = invalid(&with_servers(7));
    assert_eq!((line, field.as_str()), (51, "vm[7].roles"));
    assert!(message.contains("already has 7 servers"), "{message}");
}

#[test]
fn federated_dcs_need_gateways() {
    let text = Topology::builtin()
        .map(|_| DEFAULT_TOPOLOGY.replace(r#"roles = ["gateway"]"#, r#"roles = ["services"]"#))
        .expect("default parses");
    let (line, field, message) = invalid(&text);
    assert_eq!(field, "datacenter[0]");
    assert_eq!(line, 5);
    assert!(message.contains("gateway"), "{message}");
}

#[test]
fn error_display_names_file_line_and_field() {
    let e = Topology::parse(&ONE_DC.replace("port = 9003", "port = 0"), "lab.toml")
        .expect_err("invalid");
    assert_eq!(
        e.to_string(),
        "lab.toml:20: field `vm[1].service[0].port`: port 0 is not a fixed port"
    );
}
