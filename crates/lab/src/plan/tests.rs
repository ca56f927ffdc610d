//! The plan of the built-in topology, checked against the contracts of the
//! server, agent, proxy and demo roles.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::*;

fn default_plan() -> (Vec<ProcessSpec>, Tokens) {
    let topology = Topology::builtin().expect("valid default");
    let paths = LabPaths::new(Path::new("/lab")).expect("absolute");
    let tokens = Tokens {
        federation: "fed".into(),
        join: [("dc1".into(), "j1".into()), ("dc2".into(), "j2".into())].into(),
        acl: None,
    };
    (plan(&topology, &paths, &tokens), tokens)
}

fn find<'a>(plan: &'a [ProcessSpec], vm: &str, name: &str) -> &'a ProcessSpec {
    plan.iter()
        .find(|p| p.vm == vm && p.name == name)
        .unwrap_or_else(|| panic!("no {name} on {vm}"))
}

fn file<'a>(p: &'a ProcessSpec, name: &str) -> &'a FileSpec {
    p.files
        .iter()
        .find(|f| f.path.ends_with(name))
        .unwrap_or_else(|| panic!("{} writes no {name}", p.name))
}

#[test]
fn start_order_follows_dependencies() {
    let (plan, _) = default_plan();
    let order: Vec<(&str, &str)> = plan
        .iter()
        .map(|p| (p.vm.as_str(), p.name.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("primary-server", "server"),
            ("primary-gateway", "agent"),
            ("primary-gateway", "gateway"),
            ("secondary-server", "server"),
            ("secondary-gateway", "agent"),
            ("secondary-gateway", "gateway"),
            ("primary-services", "agent"),
            ("secondary-services", "agent"),
            ("primary-services", "dashboard"),
            ("secondary-services", "counting"),
            ("primary-services", "dashboard-sidecar"),
            ("secondary-services", "counting-sidecar"),
        ]
    );
}

#[test]
fn server_configs_match_the_server_contract() {
    let (plan, _) = default_plan();
    let primary = find(&plan, "primary-server", "server");
    assert_eq!(
        primary.args,
        ["server", "--config", "/lab/vms/primary-server/server.toml"]
    );
    assert_eq!(primary.ready_url, "http://127.20.1.10:8500/v1/status/ready");
    let f = file(primary, "server.toml");
    assert!(f.secret);
    let v: toml::Value = toml::from_str(&f.contents).expect("toml");
    assert_eq!(v["datacenter"].as_str(), Some("dc1"));
    assert_eq!(v["primary_datacenter"].as_str(), Some("dc1"));
    assert_eq!(v["node_name"].as_str(), Some("primary-server"));
    assert_eq!(
        v["data_dir"].as_str(),
        Some("/lab/vms/primary-server/data/server")
    );
    assert_eq!(v["https_addr"].as_str(), Some("127.20.1.10:8300"));
    assert_eq!(v["http_addr"].as_str(), Some("127.20.1.10:8500"));
    assert_eq!(v["join_token"].as_str(), Some("j1"));
    assert_eq!(v["federation_token"].as_str(), Some("fed"));
    assert!(v.get("primary_gateways").is_none());

    let secondary = find(&plan, "secondary-server", "server");
    let v: toml::Value = toml::from_str(&file(secondary, "server.toml").contents).expect("toml");
    assert_eq!(v["datacenter"].as_str(), Some("dc2"));
    assert_eq!(v["primary_datacenter"].as_str(), Some("dc1"));
    assert_eq!(v["join_token"].as_str(), Some("j2"));
    assert_eq!(v["federation_token"].as_str(), Some("fed"));
    let gws: Vec<&str> = v["primary_gateways"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    assert_eq!(gws, ["127.20.1.11:8443"]);
}

#[test]
fn agent_config_and_service_definition_match_the_agent_contract() {
    let (plan, _) = default_plan();
    let agent = find(&plan, "primary-services", "agent");
    assert_eq!(agent.ready_url, "http://127.20.1.12:8500/v1/agent/ready");
    let v: toml::Value = toml::from_str(&file(agent, "agent.toml").contents).expect("toml");
    assert_eq!(v["datacenter"].as_str(), Some("dc1"));
    assert_eq!(v["advertise_addr"].as_str(), Some("127.20.1.12"));
    assert_eq!(v["http_addr"].as_str(), Some("127.20.1.12:8500"));
    assert_eq!(v["servers"].as_array().map(|s| s.len()), Some(1));
    assert_eq!(v["servers"][0].as_str(), Some("127.20.1.10:8300"));
    assert_eq!(v["join_token"].as_str(), Some("j1"));
    assert_eq!(
        v["config_dir"].as_str(),
        Some("/lab/vms/primary-services/agent.d")
    );

    let def: serde_json::Value =
        serde_json::from_str(&file(agent, "agent.d/dashboard.json").contents).expect("json");
    assert_eq!(
        def,
        serde_json::json!({
            "ID": "dashboard", "Name": "dashboard", "Address": "127.20.1.12", "Port": 9002,
            "Check": {"HTTP": "http://127.20.1.12:9002/health", "Interval": "1s"},
            "Connect": {"SidecarService": {"Port": 21000, "Proxy": {"Upstreams": [{
                "DestinationName": "counting", "Datacenter": "dc2",
                "LocalBindAddress": "127.20.1.12", "LocalBindPort": 5000,
                "MeshGateway": {"Mode": "local"}
            }], "LocalServiceAddress": "127.20.1.12"}}}
        })
    );
    let gw_agent = find(&plan, "secondary-gateway", "agent");
    let v: toml::Value = toml::from_str(&file(gw_agent, "agent.toml").contents).expect("toml");
    assert_eq!(v["join_token"].as_str(), Some("j2"));
    assert_eq!(
        gw_agent.files.len(),
        1,
        "a gateway-only VM has no service definitions"
    );
}

#[test]
fn gateway_sidecar_and_app_commands() {
    let (plan, _) = default_plan();
    let gw = find(&plan, "primary-gateway", "gateway");
    assert_eq!(
        gw.args,
        [
            "gateway",
            "--mesh",
            "--agent",
            "127.20.1.11:8500",
            "--address",
            "127.20.1.11:8443",
            "--wan-address",
            "127.20.1.11:8443",
            "--admin",
            "127.20.1.11:19000"
        ]
    );
    assert_eq!(gw.ready_url, "http://127.20.1.11:19000/ready");
    assert_eq!(gw.ready_summary(), "gateway ready (127.20.1.11:8443)");

    let sc = find(&plan, "secondary-services", "counting-sidecar");
    assert_eq!(
        sc.args,
        [
            "proxy",
            "--sidecar-for",
            "counting",
            "--agent",
            "127.20.2.12:8500",
            "--admin",
            "127.20.2.12:19000"
        ]
    );
    assert_eq!(sc.ready_url, "http://127.20.2.12:19000/ready");
    assert_eq!(sc.service.as_deref(), Some("counting"));

    let dash = find(&plan, "primary-services", "dashboard");
    assert_eq!(dash.role, Role::App(App::Dashboard));
    assert_eq!(dash.args, ["demo", "dashboard"]);
    let env: BTreeMap<&str, &str> = dash
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env["PORT"], "9002");
    assert_eq!(env["BIND_ADDR"], "127.20.1.12");
    assert_eq!(env["COUNTING_SERVICE_URL"], "http://127.20.1.12:5000");
    assert_eq!(dash.ready_url, "http://127.20.1.12:9002/health");
    assert_eq!(
        dash.log,
        Path::new("/lab/vms/primary-services/logs/dashboard.log")
    );

    let counting = find(&plan, "secondary-services", "counting");
    assert_eq!(counting.role, Role::App(App::Counting));
    assert!(counting
        .env
        .contains(&("STRAIT_HOSTNAME".into(), "secondary-services".into())));
}

#[test]
fn no_two_processes_listen_on_the_same_address() {
    let (plan, _) = default_plan();
    let mut seen = HashSet::new();
    for p in &plan {
        for a in &p.listens {
            assert!(
                seen.insert(*a),
                "{a} claimed twice (again by {} on {})",
                p.name,
                p.vm
            );
        }
    }
}

#[test]
fn gateway_and_services_on_one_vm_share_an_agent() {
    let text = r#"
[[datacenter]]
name = "dc1"
primary = true
[[vm]]
name = "s"
dc = "dc1"
address = "127.31.0.1"
roles = ["server"]
[[vm]]
name = "edge"
dc = "dc1"
address = "127.31.0.2"
roles = ["gateway", "services"]
[[vm.service]]
name = "tool"
kind = "command"
command = ["python3", "-m", "http.server"]
port = 8000
check_path = "/"
"#;
    let topology = Topology::parse(text, "t.toml").expect("valid");
    let paths = LabPaths::new(Path::new("/lab")).expect("absolute");
    let plan = plan(&topology, &paths, &Tokens::generate(&topology));
    let names: Vec<&str> = plan.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["server", "agent", "gateway", "tool", "tool-sidecar"]
    );
    let tool = &plan[3];
    assert_eq!(tool.role, Role::App(App::Command));
    assert_eq!(dashboards(&plan).count(), 0);
    assert_eq!(tool.program, Program::Path("python3".into()));
    assert_eq!(tool.args, ["-m", "http.server"]);
    assert_eq!(tool.ready_url, "http://127.31.0.2:8000/");
    assert!(plan[4]
        .args
        .ends_with(&["--admin".to_owned(), "127.31.0.2:19001".to_owned()]));
}

#[test]
fn dashboards_are_known_from_the_plan() {
    let (plan, _) = default_plan();
    let found: Vec<(&str, &str)> = dashboards(&plan)
        .map(|p| (p.vm.as_str(), p.name.as_str()))
        .collect();
    assert_eq!(found, [("primary-services", "dashboard")]);
}

#[test]
fn roles_in_state_json() {
    let app = Role::App(App::Dashboard);
    assert_eq!(
        serde_json::to_value(app).expect("json"),
        serde_json::json!({"app": "dashboard"})
    );
    assert_eq!(
        serde_json::to_value(Role::Sidecar).expect("json"),
        "sidecar"
    );
    for role in [
        Role::Server,
        Role::Agent,
        Role::Gateway,
        Role::Sidecar,
        Role::App(App::Counting),
        app,
        Role::App(App::Command),
    ] {
        let json = serde_json::to_string(&role).expect("json");
        assert_eq!(serde_json::from_str::<Role>(&json).expect(&json), role);
    }
    // A state written before apps recorded their app still loads (its lab must still stop).
    let old: Role = serde_json::from_str("\"app\"").expect("old state");
    assert_eq!(old, Role::App(App::Unrecorded));
    let err = serde_json::from_str::<Role>("\"robot\"").expect_err("unknown role");
    assert!(
        err.to_string().contains("did not match any variant"),
        "{err}"
    );
}

#[test]
fn tokens_are_fresh_random_hex() {
    let topology = Topology::builtin().expect("valid default");
    let a = Tokens::generate(&topology);
    let b = Tokens::generate(&topology);
    assert_eq!(a.federation.len(), 64);
    assert!(a.federation.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a.federation, b.federation);
    assert_ne!(a.join["dc1"], a.join["dc2"]);
}

#[test]
fn netns_plan_listens_on_the_vms_own_loopback_and_differs_only_in_addresses() {
    let topology = Topology::builtin().expect("valid default");
    let paths = LabPaths::new(Path::new("/lab")).expect("absolute");
    let tokens = default_plan().1;
    let layout = Layout::netns(&topology).expect("fits");
    let netns = plan_on(&topology, &paths, &tokens, &layout);
    let local = plan(&topology, &paths, &tokens);
    // Same processes, in the same order, each in its VM's namespace.
    let names = |p: &[ProcessSpec]| {
        p.iter()
            .map(|p| (p.vm.clone(), p.name.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&netns), names(&local));
    assert!(netns
        .iter()
        .all(|p| p.netns.as_deref() == Some(format!("strait-{}", p.vm).as_str())));
    assert!(local.iter().all(|p| p.netns.is_none()));

    let server = find(&netns, "secondary-server", "server");
    let toml = &file(server, "server.toml").contents;
    assert!(toml.contains("https_addr = \"10.213.2.10:8300\""), "{toml}");
    assert!(toml.contains("http_addr = \"127.0.0.1:8500\""), "{toml}");
    assert!(
        toml.contains("primary_gateways = [\"10.213.0.10:8443\"]"),
        "{toml}"
    );
    assert_eq!(server.ready_url, "http://127.0.0.1:8500/v1/status/ready");

    let gateway = find(&netns, "secondary-gateway", "gateway");
    assert_eq!(
        gateway.args.join(" "),
        "gateway --mesh --agent 127.0.0.1:8500 --address 10.213.2.11:8443 --wan-address 10.213.0.11:8443 --admin 127.0.0.1:19000"
    );

    let agent = find(&netns, "primary-services", "agent");
    let toml = &file(agent, "agent.toml").contents;
    assert!(toml.contains("advertise_addr = \"10.213.1.12\""), "{toml}");
    assert!(toml.contains("servers = [\"10.213.1.10:8300\"]"), "{toml}");
    let def: serde_json::Value =
        serde_json::from_str(&file(agent, "dashboard.json").contents).expect("json");
    assert_eq!(def["Address"], "10.213.1.12");
    let proxy = &def["Connect"]["SidecarService"]["Proxy"];
    assert_eq!(proxy["LocalServiceAddress"], "127.0.0.1");
    assert_eq!(proxy["Upstreams"][0]["LocalBindAddress"], "127.0.0.1");

    let dashboard = find(&netns, "primary-services", "dashboard");
    let env: HashMap<&str, &str> = dashboard
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env["BIND_ADDR"], "0.0.0.0");
    assert_eq!(env["COUNTING_SERVICE_URL"], "http://127.0.0.1:5000");
    assert_eq!(dashboard.address, "10.213.1.12:9002");
    let counting = find(&netns, "secondary-services", "counting");
    assert!(counting
        .env
        .contains(&("BIND_ADDR".into(), "127.0.0.1".into())));
}
