//! `strait server --config FILE`: the raw TOML, and its validation into [`ServerConfig`].
//! Unknown fields are errors; every message names the file, the field and the value.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file as written by a user. Every field is documented in docs/configuration.md.
/// No `Debug`: it holds tokens.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// This server's datacenter.
    datacenter: String,
    /// The DC that holds the root CA and the federation state. Defaults to `datacenter`.
    primary_datacenter: Option<String>,
    /// This server's node name in the catalog.
    node_name: String,
    /// Catalog database, CA keys and certificates live here.
    data_dir: PathBuf,
    /// mTLS API for agents and other servers (reached across DCs through gateways).
    https_addr: SocketAddr,
    /// Plain HTTP API for local use; must be a loopback address.
    http_addr: SocketAddr,
    /// Secret agents of this DC prove they know when they join.
    join_token: String,
    /// Secret shared by all servers of the federation (secondary -> primary join).
    federation_token: String,
    /// Secondary only: the primary DC's mesh gateway WAN addresses.
    #[serde(default)]
    primary_gateways: Vec<SocketAddr>,
    /// Leaf certificate lifetime in hours (default 72).
    #[serde(default)]
    leaf_ttl_hours: Option<u64>,
    /// How many servers this DC's cluster is formed with (1, 3 or 5; default 1).
    #[serde(default)]
    bootstrap_expect: Option<u32>,
    /// The other servers of this DC (their `https_addr`), tried until one answers.
    #[serde(default)]
    retry_join: Vec<SocketAddr>,
    /// Autopilot's CleanupDeadServers: the leader removes a voter it has not heard from for
    /// this long (`"30s"`, `"5m"`); unset: never.
    #[serde(default)]
    dead_server_cleanup: Option<String>,
    /// Consul's `performance.raft_multiplier`: scales Raft's timers (1 = fastest failover,
    /// the default; up to 10 for slow or overloaded machines).
    #[serde(default)]
    raft_multiplier: Option<u32>,
    /// `[acl]`: tokens and policies (strait-acl's table; its `Debug` never prints a token).
    #[serde(default)]
    acl: strait_acl::AclConfig,
}

/// The shortest `dead_server_cleanup`.
const MIN_DEAD_SERVER_CLEANUP: std::time::Duration = std::time::Duration::from_secs(2);

/// A validated server configuration. Its `Debug` leaves the tokens out.
#[derive(Clone)]
pub struct ServerConfig {
    pub datacenter: String,
    pub primary_datacenter: String,
    pub node_name: String,
    pub data_dir: PathBuf,
    pub https_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub join_token: String,
    pub federation_token: String,
    pub primary_gateways: Vec<SocketAddr>,
    pub leaf_ttl: std::time::Duration,
    /// Servers the DC's Raft cluster is formed with (1 = this server alone).
    pub bootstrap_expect: u32,
    /// The other servers of this DC (never this server's own `https_addr`).
    pub retry_join: Vec<SocketAddr>,
    /// After how long without an answer the leader removes a voter ([`crate::autopilot`]);
    /// `None`: dead servers are removed by an operator only.
    pub dead_server_cleanup: Option<std::time::Duration>,
    /// Scales Raft's timers ([`strait_raft::config`]).
    pub raft_multiplier: u32,
    /// `[acl]`, validated for a server.
    pub acl: strait_acl::AclConfig,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("datacenter", &self.datacenter)
            .field("primary_datacenter", &self.primary_datacenter)
            .field("node_name", &self.node_name)
            .field("data_dir", &self.data_dir)
            .field("https_addr", &self.https_addr)
            .field("http_addr", &self.http_addr)
            .field("join_token", &"<redacted>")
            .field("federation_token", &"<redacted>")
            .field("primary_gateways", &self.primary_gateways)
            .field("leaf_ttl", &self.leaf_ttl)
            .field("bootstrap_expect", &self.bootstrap_expect)
            .field("retry_join", &self.retry_join)
            .field("dead_server_cleanup", &self.dead_server_cleanup)
            .field("raft_multiplier", &self.raft_multiplier)
            .field("acl", &self.acl)
            .finish()
    }
}

impl ServerConfig {
    pub fn is_primary(&self) -> bool {
        self.datacenter == self.primary_datacenter
    }

    /// Reads and validates `path`; errors name the file and the field.
    pub fn load(path: &Path) -> Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read server config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid server config {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<ServerConfig> {
        let raw: RawConfig = strait_rpc::config::parse_toml(text)?;
        let check_name = |field: &str, v: &str| {
            strait_identity::spiffe::validate_name(field, v).map_err(anyhow::Error::from)
        };
        check_name("datacenter", &raw.datacenter)?;
        check_name("node_name", &raw.node_name)?;
        let primary = raw
            .primary_datacenter
            .unwrap_or_else(|| raw.datacenter.clone());
        check_name("primary_datacenter", &primary)?;
        if !raw.http_addr.ip().is_loopback() {
            bail!(
                "field `http_addr` = {}: the plain HTTP API must listen on a loopback address",
                raw.http_addr
            );
        }
        strait_rpc::config::check_token("join_token", &raw.join_token)?;
        strait_rpc::config::check_token("federation_token", &raw.federation_token)?;
        let is_primary = primary == raw.datacenter;
        if !is_primary && raw.primary_gateways.is_empty() {
            bail!(
                "field `primary_gateways` is empty: a secondary DC ({}) reaches the primary ({primary}) only through its mesh gateways",
                raw.datacenter
            );
        }
        if is_primary && !raw.primary_gateways.is_empty() {
            bail!("field `primary_gateways` is only for secondary DCs; this server is in the primary DC {primary}");
        }
        let expect = raw.bootstrap_expect.unwrap_or(1);
        if !(1..=7).contains(&expect) {
            bail!("field `bootstrap_expect` = {expect}: must be between 1 and 7 (3 or 5 for a cluster that survives losing servers)");
        }
        if let Some(me) = raw.retry_join.iter().find(|a| **a == raw.https_addr) {
            bail!("field `retry_join` lists {me}, this server's own https_addr");
        }
        if expect > 1 && raw.retry_join.is_empty() {
            bail!("field `retry_join` is empty: with bootstrap_expect = {expect} name the other servers' https_addr");
        }
        let dead_server_cleanup = match raw.dead_server_cleanup.as_deref() {
            None => None,
            Some(text) => {
                let d = strait_rpc::duration::parse(text)
                    .map_err(|e| anyhow::anyhow!("field `dead_server_cleanup` = {e}"))?;
                if d < MIN_DEAD_SERVER_CLEANUP {
                    bail!("field `dead_server_cleanup` = {text:?}: must be at least 2s (a server is only dead once it missed many heartbeats; an election starts 0.9-1.2 s after the last one)");
                }
                Some(d)
            }
        };
        let raft_multiplier = raw.raft_multiplier.unwrap_or(1);
        if !(1..=strait_raft::MAX_RAFT_MULTIPLIER).contains(&raft_multiplier) {
            bail!(
                "field `raft_multiplier` = {raft_multiplier}: must be between 1 and {}",
                strait_raft::MAX_RAFT_MULTIPLIER
            );
        }
        raw.acl
            .validate(strait_acl::Side::Server)
            .map_err(anyhow::Error::new)?;
        let hours = raw.leaf_ttl_hours.unwrap_or(72);
        if !(1..=24 * 365).contains(&hours) {
            bail!("field `leaf_ttl_hours` = {hours}: must be between 1 and 8760");
        }
        Ok(ServerConfig {
            datacenter: raw.datacenter,
            primary_datacenter: primary,
            node_name: raw.node_name,
            data_dir: raw.data_dir,
            https_addr: raw.https_addr,
            http_addr: raw.http_addr,
            join_token: raw.join_token,
            federation_token: raw.federation_token,
            primary_gateways: raw.primary_gateways,
            leaf_ttl: std::time::Duration::from_secs(hours * 3600),
            bootstrap_expect: expect,
            retry_join: raw.retry_join,
            dead_server_cleanup,
            raft_multiplier,
            acl: raw.acl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
datacenter = "dc2"
primary_datacenter = "dc1"
node_name = "s2"
data_dir = "/tmp/x"
https_addr = "127.0.0.1:8300"
http_addr = "127.0.0.1:8500"
join_token = "0123456789abcdef0"
federation_token = "0123456789abcdef1"
primary_gateways = ["127.0.0.2:8443"]
"#;

    #[test]
    fn parses_a_secondary() {
        let c = ServerConfig::parse(GOOD).unwrap();
        assert!(!c.is_primary());
        assert_eq!(c.leaf_ttl.as_secs(), 72 * 3600);
    }

    #[test]
    fn unknown_field_is_named() {
        let err = ServerConfig::parse(&format!("{GOOD}\nbogus = 1\n")).unwrap_err();
        assert!(format!("{err:#}").contains("bogus"), "{err:#}");
    }

    #[test]
    fn secondary_needs_gateways() {
        let text = GOOD.replace("primary_gateways = [\"127.0.0.2:8443\"]", "");
        let err = ServerConfig::parse(&text).unwrap_err();
        assert!(format!("{err:#}").contains("primary_gateways"), "{err:#}");
    }

    #[test]
    fn raft_multiplier_defaults_to_1_and_is_bounded() {
        assert_eq!(ServerConfig::parse(GOOD).unwrap().raft_multiplier, 1);
        let set = |v: u32| ServerConfig::parse(&format!("{GOOD}raft_multiplier = {v}\n"));
        assert_eq!(set(5).unwrap().raft_multiplier, 5);
        for bad in [0, 11] {
            let err = format!("{:#}", set(bad).unwrap_err());
            assert!(err.contains("field `raft_multiplier` = "), "{err}");
        }
    }

    #[test]
    fn dead_server_cleanup_is_off_unless_set_and_at_least_2s() {
        assert_eq!(ServerConfig::parse(GOOD).unwrap().dead_server_cleanup, None);
        let set = |v: &str| ServerConfig::parse(&format!("{GOOD}dead_server_cleanup = {v:?}\n"));
        assert_eq!(
            set("30s").unwrap().dead_server_cleanup,
            Some(std::time::Duration::from_secs(30))
        );
        for bad in ["1s", "soon"] {
            let err = format!("{:#}", set(bad).unwrap_err());
            assert!(
                err.contains("dead_server_cleanup") && err.contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn acl_table_is_checked_and_never_printed() {
        assert!(!ServerConfig::parse(GOOD).unwrap().acl.enabled);
        let secret = "0b4c1f7e-5d8a-4c0e-9a52-1f0d7b9e3c21";
        let c = ServerConfig::parse(&format!(
            "{GOOD}[acl]\nenabled = true\ndefault_policy = \"deny\"\n[acl.tokens]\ninitial_management = {secret:?}\n"
        ))
        .unwrap();
        assert!(c.acl.enabled);
        assert_eq!(c.acl.default_policy, strait_acl::DefaultPolicy::Deny);
        let debug = format!("{c:?}");
        assert!(
            debug.contains("enabled: true") && !debug.contains(secret),
            "{debug}"
        );
        let err =
            ServerConfig::parse(&format!("{GOOD}[acl.tokens]\ndefault = \"short\"\n")).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("acl.tokens.default") && !err.contains("short\""),
            "{err}"
        );
        let err = ServerConfig::parse(&format!("{GOOD}[acl]\nenable = true\n")).unwrap_err();
        assert!(format!("{err:#}").contains("enable"), "{err:#}");
    }

    #[test]
    fn http_must_be_loopback() {
        let text = GOOD.replace(
            "http_addr = \"127.0.0.1:8500\"",
            "http_addr = \"0.0.0.0:8500\"",
        );
        let err = ServerConfig::parse(&text).unwrap_err();
        assert!(format!("{err:#}").contains("http_addr"), "{err:#}");
    }
}
