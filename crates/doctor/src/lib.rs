//! strait-doctor: `strait doctor` checks the mesh hop by hop, from where it runs, and names the
//! first broken hop with a hint. It sits at the end of the flow and only reads: the local
//! agent's HTTP API (which forwards to the servers, and with `?dc=` through the gateways to
//! other DCs), a sidecar's admin endpoint (strait's built-in proxy or Envoy, told apart by
//! Envoy's `server: envoy` header; for Envoy also the agent's snapshot for its node id), TCP connects to gateways, and one real mTLS
//! handshake with a leaf the agent issues for the source service.
//!
//! Order: local agent -> server -> federation (each DC's gateways, its servers through them)
//! -> with `--service`: registration and health, sidecar ready (at `--admin`, or the admin
//! address the sidecar registered with the agent), certificates, roots -> with `--upstream`:
//! endpoints, destination health, local and remote gateway, mTLS handshake.
#![forbid(unsafe_code)]

mod acl;
mod client;
mod envoy;
mod handshake;
mod mesh;
pub mod report;
mod service;
mod sidecar;

pub use report::{Check, Report};

use std::net::SocketAddr;
use std::time::Duration;

/// `strait doctor`.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// The agent's HTTP API. Default: in a lab directory (./.strait-lab or $STRAIT_LAB_DIR)
    /// the agent of the lab VM running `--service` (else the primary DC's first agent), else
    /// 127.0.0.1:8500 (this VM's agent). The binary finds it; see [`Agent`].
    #[arg(long = "http-addr", env = "STRAIT_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Also check this service registered with the local agent: health, its sidecar, its
    /// certificates and roots.
    #[arg(long)]
    pub service: Option<String>,
    /// Also check the path from `--service` to this upstream: endpoints, the destination's
    /// health, the gateways on the way and a real mTLS handshake with its identity.
    #[arg(long, requires = "service")]
    pub upstream: Option<String>,
    /// The admin endpoint of `--service`'s sidecar, strait's built-in proxy or Envoy,
    /// whichever answers. Default: the address the sidecar registered with the agent.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Deadline of each check, e.g. 10s.
    #[arg(long, default_value = "10", value_parser = parse_secs, value_name = "SECONDS")]
    pub timeout: Duration,
}

fn parse_secs(v: &str) -> Result<Duration, String> {
    let n: u64 = v
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{v:?} is not a number of seconds (e.g. 10 or 10s)"))?;
    if n == 0 {
        return Err("must be at least 1 second".into());
    }
    Ok(Duration::from_secs(n))
}

/// The agent the doctor asks, as the caller found it (`--http-addr`, a lab's record, or the
/// default), and how, for the hint when it does not answer.
#[derive(Debug, Clone)]
pub struct Agent {
    pub addr: SocketAddr,
    pub found: String,
    /// The ACL token to send the agent (`--token`, `--token-file`, ...); none: the agent's
    /// `default` token or the anonymous token answers.
    pub token: Option<SentToken>,
}

/// An ACL token and where it came from; `Debug` shows only where.
#[derive(Clone)]
pub struct SentToken {
    pub secret: String,
    /// Where it came from, for hints: `--token or STRAIT_HTTP_TOKEN`, `the token file ...`.
    pub from: String,
}

impl std::fmt::Debug for SentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SentToken(<redacted>, from {})", self.from)
    }
}

/// Runs every check, printing each line as it completes; the report says whether all passed.
/// Errors only for problems of the doctor itself, never for a failed check.
pub async fn run(args: DoctorArgs, agent: Agent) -> anyhow::Result<Report> {
    let sent = match &agent.token {
        Some(t) => format!("the token from {}", t.from),
        None => "no token, so the agent's `default` token or the anonymous token".to_owned(),
    };
    let mut report = Report::new(true).with_sent_token(sent);
    run_into(&args, &agent, &mut report).await;
    Ok(report)
}

async fn run_into(args: &DoctorArgs, found: &Agent, r: &mut Report) {
    if !found.addr.ip().is_loopback() {
        // The doctor asks the agent for a leaf (with its private key) over plain HTTP.
        r.fail(
            "local agent",
            format!("{} is not a loopback address ({})", found.addr, found.found),
            "run the doctor on the VM whose agent you check, with the agent's loopback http_addr",
        );
        return;
    }
    let token = found.token.as_ref().map(|t| t.secret.as_str());
    let agent = client::Http::new(found.addr, args.timeout).with_token(token);
    r.section("control plane");
    let Some(local) = mesh::local_agent(r, &agent, &found.found).await else {
        return;
    };
    mesh::server(r, &agent).await;
    r.section("federation");
    let states = mesh::federation(r, &agent, &local, args.timeout).await;
    if let Some(service) = &args.service {
        r.section(&format!("service {service}"));
        let ctx = service::Ctx {
            agent: &agent,
            admin: args.admin.map(|a| client::Http::new(a, args.timeout)),
            local: &local,
            states: &states,
            timeout: args.timeout,
        };
        service::check(r, &ctx, service, args.upstream.as_deref()).await;
    }
}
