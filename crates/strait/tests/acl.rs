//! ACLs end to end, one test binary (each module a part, each with its own addresses):
//! - [`cli`]: a DC of three servers through the real `strait acl` CLI (bootstrap once,
//!   tokens, policies and roles written through a follower and read everywhere, token files);
//! - [`server`]: every server endpoint checks the caller's token, reads forwarded to the
//!   leader carry it, `initial_management` bootstraps by itself;
//! - [`agent`]: the agent's local API, relayed reads, `tokens.default`, real Consul clients
//!   with a token, Envoy's ADS stream, revocation, `extend-cache`;
//! - [`federation`]: replication from the primary DC to a secondary through the gateways.
//!
//! The lab with ACLs on (default deny) is exercised by the lab, netns, envoy, failover and
//! doctor tests.

mod common;
#[path = "acl/helpers.rs"]
mod helpers;

#[path = "acl/agent.rs"]
mod agent;
#[path = "acl/cli.rs"]
mod cli;
#[path = "acl/federation.rs"]
mod federation;
#[path = "acl/server.rs"]
mod server;
