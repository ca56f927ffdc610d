//! A datacenter of three servers on Raft, real processes on loopback: the cluster tests'
//! helper, shared with the tests that need a replicated DC.

use super::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DC: &str = "dc1";

/// Three servers of one DC on `127.<net>.0.{10,11,12}` (https :8300, loopback API :8500), each
/// with its config and data under `dir`; `procs[i]` is `None` while server `i` is down.
pub struct Cluster {
    pub net: u8,
    pub dc: &'static str,
    /// A secondary's `primary_gateways` (none: this is the primary, dc1).
    pub primary_gateways: Vec<String>,
    pub dir: PathBuf,
    pub procs: Vec<Option<Proc>>,
    /// Appended to every server's config (an `[acl]` table).
    pub extra: String,
}

impl Cluster {
    /// Writes the three configs and starts the servers in reverse: the bootstrapping server
    /// (lowest address) comes up last and must find the others fresh, not start alone. Waits
    /// for all three to be ready.
    pub fn start(dir: &Path, net: u8) -> Cluster {
        Cluster::start_dc(dir, net, DC, &[])
    }

    /// [`Cluster::start`] of datacenter `dc`, a secondary of dc1 if `primary_gateways` are
    /// given.
    pub fn start_dc(dir: &Path, net: u8, dc: &'static str, primary_gateways: &[String]) -> Cluster {
        Cluster::start_with(dir, net, dc, primary_gateways, "")
    }

    /// [`Cluster::start_dc`] with `extra` appended to each server's config.
    pub fn start_with(
        dir: &Path,
        net: u8,
        dc: &'static str,
        primary_gateways: &[String],
        extra: &str,
    ) -> Cluster {
        let mut c = Cluster {
            net,
            dc,
            primary_gateways: primary_gateways.to_vec(),
            dir: dir.to_path_buf(),
            procs: vec![None, None, None],
            extra: extra.to_owned(),
        };
        for i in 0..3 {
            c.config(i);
        }
        for i in (0..3).rev() {
            c.up(i);
        }
        c.wait_ready();
        c
    }

    pub fn ip(&self, i: usize) -> String {
        format!("127.{}.0.{}", self.net, 10 + i)
    }

    pub fn https(&self, i: usize) -> String {
        format!("{}:8300", self.ip(i))
    }

    pub fn api(&self, i: usize) -> SocketAddr {
        sa(&format!("{}:8500", self.ip(i)))
    }

    pub fn config(&self, i: usize) -> PathBuf {
        let others: Vec<String> = (0..3)
            .filter(|j| *j != i)
            .map(|j| format!("\"{}\"", self.https(j)))
            .collect();
        let ip = self.ip(i);
        let dc = self.dc;
        let primary: Vec<String> = self
            .primary_gateways
            .iter()
            .map(|g| format!("\"{g}\""))
            .collect();
        let federation = if primary.is_empty() {
            String::new()
        } else {
            format!(
                "primary_datacenter = \"dc1\"\nprimary_gateways = [{}]\n",
                primary.join(", ")
            )
        };
        write(
            &self.dir.join(format!("{}.toml", self.name(i))),
            &format!(
                "datacenter = \"{dc}\"\nnode_name = \"server-{i}\"\ndata_dir = \"{}\"\nhttps_addr = \"{ip}:8300\"\nhttp_addr = \"{ip}:8500\"\njoin_token = \"{}\"\nfederation_token = \"{FED_TOKEN}\"\nbootstrap_expect = 3\nretry_join = [{}]\n{federation}{}",
                self.dir.join(format!("data-{}", self.name(i))).display(),
                join_token(dc),
                others.join(", "),
                self.extra,
            ),
        )
    }

    /// Starts server `i` (again: its log file is appended to).
    /// `server-<i>` in dc1, `server-<dc>-<i>` in another DC (its config, data and log).
    pub fn name(&self, i: usize) -> String {
        match self.dc {
            DC => format!("server-{i}"),
            dc => format!("server-{dc}-{i}"),
        }
    }

    pub fn up(&mut self, i: usize) {
        let cfg = self.dir.join(format!("{}.toml", self.name(i)));
        self.procs[i] = Some(Proc::start(
            &self.dir,
            &self.name(i),
            &["server", "--config", cfg.to_str().unwrap()],
        ));
    }

    pub fn proc(&self, i: usize) -> &Proc {
        self.procs[i].as_ref().expect("the server runs")
    }

    pub fn running(&self) -> Vec<usize> {
        (0..3).filter(|i| self.procs[*i].is_some()).collect()
    }

    pub fn wait_ready(&self) {
        let procs: Vec<&Proc> = self.procs.iter().flatten().collect();
        for i in self.running() {
            wait_ready(self.api(i), "/v1/status/ready", &procs);
        }
    }

    /// `kill -9` of server `i`.
    pub fn kill(&mut self, i: usize) {
        let mut p = self.procs[i].take().expect("the server runs");
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    }

    /// SIGTERM to server `i`, and its exit.
    pub fn stop(&mut self, i: usize) {
        self.procs[i].take().expect("the server runs").stop();
    }

    /// Sends `signal` (STOP, CONT) to server `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.proc(i).child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} server-{i}");
    }

    /// Which server `i` says leads (`None`: no answer or no leader known).
    pub fn leader_seen_by(&self, i: usize) -> Option<usize> {
        let (code, body) = get(self.api(i), "/v1/status/leader");
        let addr: String = (code == 200).then(|| serde_json::from_str(&body).ok())??;
        (0..3).find(|j| self.https(*j) == addr)
    }

    /// Waits until every server of `among` names the same leader, one of `among`.
    pub fn agreed_leader(&self, among: &[usize]) -> usize {
        eventually(
            &format!("servers {among:?} to agree on a leader among them"),
            Duration::from_secs(30),
            || {
                let seen: Vec<usize> = among
                    .iter()
                    .map(|i| self.leader_seen_by(*i))
                    .collect::<Option<_>>()?;
                (seen.iter().all(|l| *l == seen[0]) && among.contains(&seen[0])).then_some(seen[0])
            },
        )
    }

    /// The Raft node ID of server `i`, from the cluster configuration server `asked` has.
    pub fn raft_id(&self, asked: usize, i: usize) -> String {
        let (code, body) = get(self.api(asked), "/v1/operator/raft/configuration");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["Servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Address"] == self.https(i).as_str())
            .and_then(|s| s["ID"].as_str())
            .unwrap_or_else(|| panic!("server-{i} is not in {body}"))
            .to_owned()
    }

    /// Writes intention entry `name` through server `i`; true once acknowledged.
    pub fn write_entry(&self, i: usize, name: &str) -> bool {
        put_intention(self.api(i), name, "web").is_ok_and(|(code, _)| code == 200)
    }

    /// The names of the intention entries server `i` has, sorted.
    pub fn entries(&self, i: usize) -> Vec<String> {
        let (code, body) = get(self.api(i), "/v1/config/service-intentions?stale");
        assert_eq!(code, 200, "server {i}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut names: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    /// Waits until server `i` has every entry of `acked`.
    pub fn wait_for_entries(&self, i: usize, acked: &[String], what: &str) {
        eventually(what, Duration::from_secs(30), || {
            let have = self.entries(i);
            acked.iter().all(|a| have.contains(a)).then_some(())
        });
    }

    /// The trust domain and root IDs server `i` serves.
    pub fn roots(&self, i: usize) -> (String, Vec<String>) {
        let (code, body) = get(self.api(i), "/v1/connect/ca/roots");
        assert_eq!(code, 200, "server {i}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let ids = v["Roots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ID"].as_str().unwrap().to_owned())
            .collect();
        (v["TrustDomain"].as_str().unwrap().to_owned(), ids)
    }
}

/// `PUT /v1/config` of intention entry `name` with one source, `source`, allowed.
pub fn put_intention(api: SocketAddr, name: &str, source: &str) -> std::io::Result<(u16, String)> {
    let body = format!(
        r#"{{"Kind":"service-intentions","Name":"{name}","Sources":[{{"Name":"{source}","Action":"allow"}}]}}"#
    );
    http("PUT", api, "/v1/config", Some(&body))
}
