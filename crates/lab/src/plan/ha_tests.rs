//! The plan of the built-in `ha` topology: three servers per DC forming one cluster each,
//! agents listing all three, servers of a DC started together.

use std::path::Path;

use super::*;
use crate::topology::HA_TOPOLOGY;

fn ha() -> Topology {
    Topology::parse(HA_TOPOLOGY, "<ha>").expect("the ha topology is valid")
}

fn tokens() -> Tokens {
    Tokens {
        federation: "fed".into(),
        join: [("dc1".into(), "j1".into()), ("dc2".into(), "j2".into())].into(),
        acl: None,
    }
}

fn config(p: &ProcessSpec, name: &str) -> toml::Value {
    let f = p
        .files
        .iter()
        .find(|f| f.path.ends_with(name))
        .unwrap_or_else(|| panic!("{} on {} writes no {name}", p.name, p.vm));
    toml::from_str(&f.contents).expect("toml")
}

fn strings(v: &toml::Value) -> Vec<&str> {
    v.as_array()
        .expect("a list")
        .iter()
        .filter_map(toml::Value::as_str)
        .collect()
}

/// A server's `(https_addr, bootstrap_expect, retry_join)`.
type Member = (String, i64, Vec<String>);

/// Per DC: each server's [`Member`], and what each agent lists as `servers`.
fn clusters(plan: &[ProcessSpec], dc: &str) -> (Vec<Member>, Vec<Vec<String>>) {
    let own = |v: &toml::Value| strings(v).into_iter().map(String::from).collect();
    let servers = plan
        .iter()
        .filter(|p| p.dc == dc && p.role == Role::Server)
        .map(|p| {
            let v = config(p, "server.toml");
            let https = v["https_addr"].as_str().expect("https_addr").to_owned();
            let expect = v["bootstrap_expect"]
                .as_integer()
                .expect("bootstrap_expect");
            (https, expect, own(&v["retry_join"]))
        })
        .collect();
    let agents = plan
        .iter()
        .filter(|p| p.dc == dc && p.role == Role::Agent)
        .map(|p| own(&config(p, "agent.toml")["servers"]))
        .collect();
    (servers, agents)
}

#[test]
fn three_servers_per_dc_each_joining_the_other_two_and_every_agent_lists_all_three() {
    let paths = LabPaths::new(Path::new("/lab")).expect("absolute");
    let plan = plan(&ha(), &paths, &tokens());
    for (dc, net) in [("dc1", 1), ("dc2", 2)] {
        let addrs: Vec<String> = [10, 13, 14]
            .iter()
            .map(|host| format!("127.26.{net}.{host}:8300"))
            .collect();
        let (servers, agents) = clusters(&plan, dc);
        let expected: Vec<Member> = addrs
            .iter()
            .map(|me| {
                let others = addrs.iter().filter(|a| *a != me).cloned().collect();
                (me.clone(), 3, others)
            })
            .collect();
        assert_eq!(servers, expected, "{dc}");
        assert_eq!(
            agents.len(),
            2,
            "{dc}: the gateway's and the services VM's agents"
        );
        for servers in agents {
            assert_eq!(servers, addrs, "{dc}");
        }
    }
}

/// A lone server's file keeps the server's defaults: no `bootstrap_expect`, no `retry_join`.
#[test]
fn a_lone_server_has_no_cluster_settings() {
    let paths = LabPaths::new(Path::new("/lab")).expect("absolute");
    let default = Topology::builtin().expect("default");
    for p in plan(&default, &paths, &tokens()) {
        if p.role == Role::Server {
            let v = config(&p, "server.toml");
            assert!(v.get("bootstrap_expect").is_none() && v.get("retry_join").is_none());
        }
    }
}

#[test]
fn a_dcs_servers_start_together_everything_else_one_by_one() {
    let paths = LabPaths::new(Path::new("/lab")).expect("absolute");
    let plan = plan(&ha(), &paths, &tokens());
    let groups = start_groups(&plan);
    let named: Vec<Vec<&str>> = groups
        .iter()
        .take(4)
        .map(|g| plan[g.clone()].iter().map(|p| p.vm.as_str()).collect())
        .collect();
    assert_eq!(
        named,
        [
            vec!["primary-server-1", "primary-server-2", "primary-server-3"],
            vec!["primary-gateway"],
            vec!["primary-gateway"],
            vec![
                "secondary-server-1",
                "secondary-server-2",
                "secondary-server-3"
            ],
        ]
    );
    assert_eq!(
        groups.len(),
        plan.len() - 4,
        "two groups of three, the rest alone"
    );
    assert_eq!(groups.last().map(|g| g.end), Some(plan.len()));
    assert!(groups.windows(2).all(|w| w[0].end == w[1].start));

    let default = Topology::builtin().expect("default");
    let lone = super::plan(&default, &paths, &tokens());
    assert!(start_groups(&lone).iter().all(|g| g.len() == 1));
}

#[test]
fn netns_clusters_use_the_lan_addresses() {
    let paths = LabPaths::new(Path::new("/lab")).expect("absolute");
    let topology = ha();
    let layout = Layout::netns(&topology).expect("fits");
    let plan = plan_on(&topology, &paths, &tokens(), &layout);
    let (servers, agents) = clusters(&plan, "dc2");
    let addrs: Vec<&str> = servers.iter().map(|(a, _, _)| a.as_str()).collect();
    assert!(
        addrs.iter().all(|a| a.starts_with("10.213.2.")),
        "{addrs:?}"
    );
    for (me, _, others) in &servers {
        assert!(!others.contains(me) && others.len() == 2, "{servers:?}");
    }
    assert!(agents.iter().all(|a| a == &addrs), "{agents:?}");
}
