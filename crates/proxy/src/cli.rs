//! Command-line surface of `strait proxy` and `strait gateway`: raw clap arguments, then
//! [`Options`], the validated settings every listener shares.

use crate::snapshot_source::SnapshotSource;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default agent HTTP API address.
pub const DEFAULT_AGENT: &str = "127.0.0.1:8500";

/// Settings shared by the sidecar and the gateway.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Follow this JSON snapshot file instead of the local agent (re-read on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub snapshot_file: Option<PathBuf>,
    /// Local agent HTTP API.
    #[arg(long, default_value = DEFAULT_AGENT, value_name = "ADDR")]
    pub agent: SocketAddr,
    /// Admin endpoint (loopback only): /ready /config /clusters /certs /stats /metrics;
    /// registered with the agent, where `strait doctor` finds it.
    #[arg(long, default_value = "127.0.0.1:19000", value_name = "ADDR")]
    pub admin: SocketAddr,
    /// How long active connections may finish after SIGTERM/SIGINT, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Close a connection after this long without a byte in either direction.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Concurrent connections over all listeners; more are accepted, closed and counted.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Deadline for dialling one upstream endpoint; short, so that a dead endpoint or
    /// gateway is passed over while the client still waits.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

/// `strait proxy`: the sidecar beside one service.
#[derive(Debug, Clone, Args)]
pub struct SidecarArgs {
    /// Service ID this sidecar fronts; the proxy ID is `<service-id>-sidecar-proxy`.
    #[arg(
        long,
        value_name = "SERVICE_ID",
        required_unless_present = "snapshot_file"
    )]
    pub sidecar_for: Option<String>,
    /// Override the proxy ID asked from the agent.
    #[arg(long)]
    pub proxy_id: Option<String>,
    /// Deadline for an inbound TLS handshake.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Deadline for one outbound TLS handshake (per endpoint), and for a tunnel stream's
    /// answer; short, so that a hung endpoint or gateway (accepting, never answering) is
    /// passed over for the next one or the next failover target.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub upstream_handshake_timeout: Duration,
    /// Carry connections between strait sidecars as streams of one mTLS connection per
    /// upstream endpoint (HTTP/2 CONNECT, negotiated by ALPN: other peers get a TLS
    /// connection each); `off`: a TLS connection per connection, both ways.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub multiplex: Switch,
    /// How long a tunnel takes new connections; the next one opens a new tunnel (a resumed
    /// handshake), which the gateways route by their current view of the remote gateways'
    /// health, as they route each new TCP connection.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub tunnel_max_age: Duration,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// `strait gateway --mesh`: the SNI-routing mesh gateway.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Run as a mesh gateway (the only kind for now).
    #[arg(long, required = true)]
    pub mesh: bool,
    /// LAN address to listen on and register (ip:port).
    #[arg(long, value_name = "ADDR")]
    pub address: SocketAddr,
    /// WAN address other DCs dial (ip:port); also listened on when it differs. Default: --address.
    #[arg(long, value_name = "ADDR")]
    pub wan_address: Option<SocketAddr>,
    /// Service name and ID to register; the snapshot followed is this ID's.
    #[arg(long, default_value = "mesh-gateway")]
    pub service: String,
    /// Close a connection whose ClientHello is not complete after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hello_timeout: Duration,
    /// Close a connection whose ClientHello is larger than this many bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_hello_size: usize,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Validated settings shared by every listener of one proxy process.
#[derive(Debug, Clone)]
pub struct Options {
    /// Admin endpoint; `None` runs without one (tests).
    pub admin: Option<SocketAddr>,
    pub grace: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Per endpoint dialled.
    pub connect_timeout: Duration,
    /// Sidecar: inbound TLS handshake deadline. Gateway: ClientHello deadline.
    pub handshake_timeout: Duration,
    /// Sidecar: deadline of one outbound TLS handshake.
    pub upstream_handshake_timeout: Duration,
    /// Sidecar: bound on one outbound connection attempt over every target of an upstream
    /// whose resolver sets no `ConnectTimeout` (Consul's default, 5s).
    pub attempt_timeout: Duration,
    /// Gateway: largest ClientHello accepted, in bytes.
    pub max_hello_size: usize,
    /// Sidecar: offer and accept tunnels (`--multiplex`).
    pub multiplex: bool,
    /// Sidecar: how long a tunnel takes new streams (`--tunnel-max-age`).
    pub tunnel_max_age: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            admin: None,
            grace: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connections: 10_000,
            connect_timeout: Duration::from_millis(500),
            handshake_timeout: Duration::from_secs(10),
            upstream_handshake_timeout: Duration::from_millis(500),
            attempt_timeout: Duration::from_secs(5),
            max_hello_size: 16 * 1024,
            multiplex: true,
            tunnel_max_age: Duration::from_secs(5),
        }
    }
}

/// Why arguments were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("--admin {0}: the admin endpoint only listens on loopback (127.0.0.0/8 or ::1)")]
    AdminNotLoopback(SocketAddr),
    #[error(
        "--agent {0}: the agent's API is plain HTTP and hands out the leaf's private key; \
         it must be the local agent on a loopback address"
    )]
    AgentNotLoopback(SocketAddr),
    #[error("--{field} must be greater than zero")]
    Zero { field: &'static str },
    #[error("--max-hello-size {0}: must be between 512 and 65535 bytes")]
    HelloSize(usize),
}

impl CommonArgs {
    fn options(&self, handshake_timeout: Duration) -> Result<Options, ArgsError> {
        if !self.admin.ip().is_loopback() {
            return Err(ArgsError::AdminNotLoopback(self.admin));
        }
        if self.snapshot_file.is_none() && !self.agent.ip().is_loopback() {
            return Err(ArgsError::AgentNotLoopback(self.agent));
        }
        for (field, zero) in [
            ("idle-timeout", self.idle_timeout.is_zero()),
            ("connect-timeout", self.connect_timeout.is_zero()),
            ("max-connections", self.max_connections == 0),
            ("handshake-timeout", handshake_timeout.is_zero()),
        ] {
            if zero {
                return Err(ArgsError::Zero { field });
            }
        }
        Ok(Options {
            admin: Some(self.admin),
            grace: self.grace,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            connect_timeout: self.connect_timeout,
            handshake_timeout,
            ..Options::default()
        })
    }

    fn source(&self, proxy_id: String) -> SnapshotSource {
        match &self.snapshot_file {
            Some(path) => SnapshotSource::File(path.clone()),
            None => SnapshotSource::Agent {
                agent: self.agent,
                proxy_id,
                admin: Some(self.admin),
            },
        }
    }
}

impl SidecarArgs {
    /// The proxy ID asked from the agent.
    pub fn proxy_id(&self) -> String {
        match (&self.proxy_id, &self.sidecar_for) {
            (Some(id), _) => id.clone(),
            (None, Some(service)) => format!("{service}-sidecar-proxy"),
            (None, None) => "sidecar-proxy".to_string(),
        }
    }

    pub fn validate(&self) -> Result<(Options, SnapshotSource), ArgsError> {
        let mut options = self.common.options(self.handshake_timeout)?;
        if self.upstream_handshake_timeout.is_zero() {
            return Err(ArgsError::Zero {
                field: "upstream-handshake-timeout",
            });
        }
        options.upstream_handshake_timeout = self.upstream_handshake_timeout;
        options.multiplex = self.multiplex == Switch::On;
        if self.tunnel_max_age.is_zero() {
            return Err(ArgsError::Zero {
                field: "tunnel-max-age",
            });
        }
        options.tunnel_max_age = self.tunnel_max_age;
        Ok((options, self.common.source(self.proxy_id())))
    }
}

impl GatewayArgs {
    pub fn validate(&self) -> Result<(Options, SnapshotSource), ArgsError> {
        let mut options = self.common.options(self.hello_timeout)?;
        if !(512..=65535).contains(&self.max_hello_size) {
            return Err(ArgsError::HelloSize(self.max_hello_size));
        }
        options.max_hello_size = self.max_hello_size;
        Ok((options, self.common.source(self.service.clone())))
    }
}

/// Parses `500ms`, `10s`, `5m`, `1h` or a bare number of seconds.
pub use strait_rpc::duration::parse as parse_duration;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Sidecar {
        #[command(flatten)]
        args: SidecarArgs,
    }

    #[derive(Parser)]
    struct Gateway {
        #[command(flatten)]
        args: GatewayArgs,
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10d").is_err());
        assert!(parse_duration("99999999999999999h").is_err());
    }

    #[test]
    fn sidecar_defaults_and_proxy_id() {
        let cli = Sidecar::try_parse_from(["proxy", "--sidecar-for", "web"]).expect("parse");
        assert_eq!(cli.args.proxy_id(), "web-sidecar-proxy");
        let (options, source) = cli.args.validate().expect("valid");
        assert_eq!(options.grace, Duration::from_secs(10));
        assert_eq!(options.idle_timeout, Duration::from_secs(300));
        assert_eq!(options.max_connections, 10_000);
        assert_eq!(options.connect_timeout, Duration::from_millis(500));
        assert_eq!(
            options.upstream_handshake_timeout,
            Duration::from_millis(500)
        );
        assert!(
            matches!(source, SnapshotSource::Agent { proxy_id, .. } if proxy_id == "web-sidecar-proxy")
        );
        assert!(Sidecar::try_parse_from(["proxy"]).is_err());
        assert!(Sidecar::try_parse_from(["proxy", "--snapshot-file", "/x.json"]).is_ok());
    }

    #[test]
    fn admin_must_be_loopback() {
        let cli =
            Sidecar::try_parse_from(["proxy", "--sidecar-for", "web", "--admin", "0.0.0.0:19000"])
                .expect("parse");
        let err = cli.args.validate().expect_err("non-loopback admin");
        assert!(err.to_string().contains("0.0.0.0:19000"), "{err}");
    }

    #[test]
    fn gateway_requires_mesh_and_address() {
        assert!(Gateway::try_parse_from(["gw", "--address", "127.0.0.1:8443"]).is_err());
        let cli = Gateway::try_parse_from(["gw", "--mesh", "--address", "127.0.0.1:8443"])
            .expect("parse");
        let (options, source) = cli.args.validate().expect("valid");
        assert_eq!(options.max_hello_size, 16 * 1024);
        assert!(
            matches!(source, SnapshotSource::Agent { proxy_id, .. } if proxy_id == "mesh-gateway")
        );
        let cli = Gateway::try_parse_from([
            "gw",
            "--mesh",
            "--address",
            "127.0.0.1:8443",
            "--max-hello-size",
            "10",
        ])
        .expect("parse");
        assert_eq!(
            cli.args.validate().expect_err("tiny"),
            ArgsError::HelloSize(10)
        );
    }
}
