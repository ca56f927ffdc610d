//! The ACL tests' helpers: the real `strait acl` CLI against a server, and the fields of its
//! output.

use crate::common::{request_with, strait_at, Reply};
use std::net::SocketAddr;

/// `strait acl ARGS --token TOKEN` on `server`, which must succeed: its output.
pub fn acl(server: SocketAddr, token: &str, args: &[&str]) -> String {
    let mut all = vec!["acl"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--token", token]);
    let (ok, out) = strait_at(server, &all, &[]);
    assert!(ok, "strait {all:?} on {server}: {out}");
    out
}

/// The value of `Field:` in the CLI's output.
pub fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
}

/// `strait acl bootstrap` on `server`: the management token's secret.
pub fn bootstrap(server: SocketAddr) -> String {
    let (ok, out) = strait_at(server, &["acl", "bootstrap"], &[]);
    assert!(ok, "strait acl bootstrap on {server}: {out}");
    field(&out, "SecretID")
}

/// An HTTP request with `token` as `X-Consul-Token` (none: no header).
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Reply {
    let header = token.map(|t| ("X-Consul-Token", t));
    request_with(method, addr, path, body, header.as_slice())
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}
