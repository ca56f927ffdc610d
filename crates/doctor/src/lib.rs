//! strait-doctor: `strait doctor` checks the mesh hop by hop, from where it runs, and names the
//! first broken hop with a hint. It sits at the end of the flow and only reads: the local
//! agent's HTTP API (which forwards to the servers, and with `?dc=` through the gateways to
//! other DCs), a sidecar's admin endpoint (strait's built-in proxy or Envoy, told apart by
//! Envoy's `server: envoy` header; for Envoy also the agent's snapshot for its node id), TCP connects to gateways, and one real mTLS
//! handshake with a leaf the agent issues for the source service.
//!
//! Order: local agent -> server -> federation (each DC's gateways, its servers through them)
//! -> with `--service`: registration and health, sidecar ready, certificates, roots -> with
//! `--upstream`: endpoints, destination health, local and remote gateway, mTLS handshake.
#![forbid(unsafe_code)]

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
    /// The local agent's HTTP API.
    #[arg(
        long = "http-addr",
        env = "STRAIT_HTTP_ADDR",
        default_value = "127.0.0.1:8500"
    )]
    pub http_addr: SocketAddr,
    /// Also check this service registered with the local agent: health, its sidecar, its
    /// certificates and roots.
    #[arg(long)]
    pub service: Option<String>,
    /// Also check the path from `--service` to this upstream: endpoints, the destination's
    /// health, the gateways on the way and a real mTLS handshake with its identity.
    #[arg(long, requires = "service")]
    pub upstream: Option<String>,
    /// The admin endpoint of `--service`'s sidecar (the `--admin` it was started with;
    /// `strait proxy` and `strait envoy run` default to the same address): strait's built-in
    /// proxy or Envoy, whichever answers.
    #[arg(long, default_value = "127.0.0.1:19000", value_name = "ADDR")]
    pub admin: SocketAddr,
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

/// Runs every check, printing each line as it completes; the report says whether all passed.
/// Errors only for problems of the doctor itself, never for a failed check.
pub async fn run(args: DoctorArgs) -> anyhow::Result<Report> {
    let mut report = Report::new(true);
    run_into(&args, &mut report).await;
    Ok(report)
}

async fn run_into(args: &DoctorArgs, r: &mut Report) {
    if !args.http_addr.ip().is_loopback() {
        // The doctor asks the agent for a leaf (with its private key) over plain HTTP.
        r.fail(
            "local agent",
            format!("--http-addr {} is not a loopback address", args.http_addr),
            "run the doctor on the VM whose agent you check, with the agent's loopback http_addr",
        );
        return;
    }
    let agent = client::Http::new(args.http_addr, args.timeout);
    r.section("control plane");
    let Some(local) = mesh::local_agent(r, &agent).await else {
        return;
    };
    mesh::server(r, &agent).await;
    r.section("federation");
    let states = mesh::federation(r, &agent, &local, args.timeout).await;
    if let Some(service) = &args.service {
        r.section(&format!("service {service}"));
        let ctx = service::Ctx {
            agent: &agent,
            admin: client::Http::new(args.admin, args.timeout),
            local: &local,
            states: &states,
            timeout: args.timeout,
        };
        service::check(r, &ctx, service, args.upstream.as_deref()).await;
    }
}
