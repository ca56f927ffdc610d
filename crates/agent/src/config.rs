//! `strait agent --config FILE`: raw TOML validated into [`AgentConfig`].

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// No `Debug`: it holds the join token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// The agent's datacenter (must match its servers').
    datacenter: String,
    /// This VM's node name in the catalog.
    node_name: String,
    /// Where the agent keeps API-registered services (`services.json`).
    data_dir: PathBuf,
    /// The VM's address, used for services that do not name one.
    advertise_addr: IpAddr,
    /// Local HTTP API (Consul-compatible); must be loopback.
    http_addr: SocketAddr,
    /// mTLS API addresses of this DC's servers.
    servers: Vec<SocketAddr>,
    /// The DC's join token.
    join_token: String,
    /// Directory of service definition files (`*.json`, Consul's shape).
    #[serde(default)]
    config_dir: Option<PathBuf>,
    /// ADS (gRPC) address for Envoy proxies; must be loopback. Unset: no ADS server.
    #[serde(default)]
    grpc_addr: Option<SocketAddr>,
    /// A PEM file of CA certificates `https://` health checks trust besides the system's
    /// (Consul's `ca_file`).
    #[serde(default)]
    ca_file: Option<PathBuf>,
    /// A directory whose `*.pem` / `*.crt` files are trusted likewise (Consul's `ca_path`).
    #[serde(default)]
    ca_path: Option<PathBuf>,
    /// `[acl]`: whether the local API checks its callers' tokens (strait-acl's table).
    #[serde(default)]
    acl: strait_acl::AclConfig,
}

/// A validated agent configuration. Its `Debug` leaves the join token out.
#[derive(Clone)]
pub struct AgentConfig {
    pub datacenter: String,
    pub node_name: String,
    pub data_dir: PathBuf,
    pub advertise_addr: IpAddr,
    pub http_addr: SocketAddr,
    pub servers: Vec<SocketAddr>,
    pub join_token: String,
    pub config_dir: Option<PathBuf>,
    pub grpc_addr: Option<SocketAddr>,
    /// CA certificates HTTPS checks trust besides the system's (read at start-up).
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    /// `[acl]`, validated for an agent (its `Debug` never prints a token).
    pub acl: strait_acl::AclConfig,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("datacenter", &self.datacenter)
            .field("node_name", &self.node_name)
            .field("data_dir", &self.data_dir)
            .field("advertise_addr", &self.advertise_addr)
            .field("http_addr", &self.http_addr)
            .field("servers", &self.servers)
            .field("join_token", &"<redacted>")
            .field("config_dir", &self.config_dir)
            .field("grpc_addr", &self.grpc_addr)
            .field("ca_file", &self.ca_file)
            .field("ca_path", &self.ca_path)
            .field("acl", &self.acl)
            .finish()
    }
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read agent config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid agent config {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<AgentConfig> {
        let raw: RawConfig = strait_rpc::config::parse_toml(text)?;
        strait_identity::spiffe::validate_name("datacenter", &raw.datacenter)?;
        strait_identity::spiffe::validate_name("node_name", &raw.node_name)?;
        if !raw.http_addr.ip().is_loopback() {
            bail!(
                "field `http_addr` = {}: the agent's local API must listen on a loopback address",
                raw.http_addr
            );
        }
        if let Some(grpc) = raw.grpc_addr.filter(|a| !a.ip().is_loopback()) {
            bail!(
                "field `grpc_addr` = {grpc}: the agent's ADS server for Envoy must listen on a loopback address"
            );
        }
        if raw.servers.is_empty() {
            bail!("field `servers` is empty: name at least one server's https_addr");
        }
        strait_rpc::config::check_token("join_token", &raw.join_token)?;
        raw.acl
            .validate(strait_acl::Side::Agent)
            .map_err(anyhow::Error::new)?;
        Ok(AgentConfig {
            datacenter: raw.datacenter,
            node_name: raw.node_name,
            data_dir: raw.data_dir,
            advertise_addr: raw.advertise_addr,
            http_addr: raw.http_addr,
            servers: raw.servers,
            join_token: raw.join_token,
            config_dir: raw.config_dir,
            grpc_addr: raw.grpc_addr,
            ca_file: raw.ca_file,
            ca_path: raw.ca_path,
            acl: raw.acl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const GOOD: &str = r#"
datacenter = "dc1"
node_name = "web-1"
data_dir = "/tmp/a"
advertise_addr = "127.0.0.1"
http_addr = "127.0.0.1:8500"
servers = ["127.0.0.1:8300"]
join_token = "0123456789abcdef0"
"#;

    #[test]
    fn parses() {
        AgentConfig::parse(GOOD).unwrap();
    }

    #[test]
    fn unknown_field_named() {
        let e = AgentConfig::parse(&format!("{GOOD}serverz = []\n")).unwrap_err();
        assert!(format!("{e:#}").contains("serverz"), "{e:#}");
    }

    #[test]
    fn grpc_addr_optional_and_loopback() {
        assert_eq!(AgentConfig::parse(GOOD).unwrap().grpc_addr, None);
        let c = AgentConfig::parse(&format!("{GOOD}grpc_addr = \"127.0.0.1:8502\"\n")).unwrap();
        assert_eq!(c.grpc_addr, Some("127.0.0.1:8502".parse().unwrap()));
        let e = AgentConfig::parse(&format!("{GOOD}grpc_addr = \"0.0.0.0:8502\"\n")).unwrap_err();
        assert!(format!("{e:#}").contains("grpc_addr"), "{e:#}");
    }

    #[test]
    fn join_token_as_long_as_the_servers() {
        let e = AgentConfig::parse(&GOOD.replace("0123456789abcdef0", "tooshort")).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("join_token") && e.contains("16"), "{e}");
        assert!(!e.contains("tooshort"), "the value is never quoted: {e}");
    }

    #[test]
    fn acl_table_is_checked_and_never_printed() {
        assert!(!AgentConfig::parse(GOOD).unwrap().acl.enabled);
        let secret = "6f3a2c1d-0e9b-4a8c-b7d6-5e4f3a2b1c0d";
        let c = AgentConfig::parse(&format!(
            "{GOOD}[acl]\nenabled = true\ndefault_policy = \"deny\"\ntoken_ttl = \"2s\"\n\
             [acl.tokens]\ndefault = {secret:?}\n"
        ))
        .unwrap();
        assert!(c.acl.enabled);
        assert_eq!(c.acl.token_ttl(), std::time::Duration::from_secs(2));
        assert!(!format!("{c:?}").contains(secret), "{c:?}");
        let e = AgentConfig::parse(&format!(
            "{GOOD}[acl.tokens]\ninitial_management = {secret:?}\n"
        ))
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("acl.tokens.initial_management") && !e.contains(secret),
            "{e}"
        );
        let e = AgentConfig::parse(&format!("{GOOD}[acl]\ndown_policy = \"later\"\n")).unwrap_err();
        assert!(format!("{e:#}").contains("down_policy"), "{e:#}");
    }

    #[test]
    fn servers_required() {
        let e = AgentConfig::parse(&GOOD.replace("servers = [\"127.0.0.1:8300\"]", "servers = []"))
            .unwrap_err();
        assert!(format!("{e:#}").contains("servers"), "{e:#}");
    }
}
