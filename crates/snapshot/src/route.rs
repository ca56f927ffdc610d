//! SNI -> where a mesh gateway forwards the connection. Runs once per connection on the
//! gateway's hot path, after the ClientHello is peeked and before any byte is forwarded, so
//! it only borrows: no allocation unless the connection is refused.
//!
//! Accepted names (case-insensitive, one trailing dot tolerated as DNS allows):
//! - `<service>.<ns>.<dc>.internal.<trust-domain>`: a service's sidecars in `<dc>`;
//! - `server.<dc>.<trust-domain>`: the servers of `<dc>` (federation traffic).
//!
//! strait has a single namespace, so `<ns>` is not used to pick local endpoints.

use crate::types::GatewaySnapshot;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Where to send a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayRoute<'a> {
    /// Healthy sidecars of `service` in this DC (never empty).
    LocalService {
        service: &'a str,
        endpoints: &'a [SocketAddr],
    },
    /// Healthy servers of this DC (never empty).
    LocalServers(&'a [SocketAddr]),
    /// Gateways of another DC (never empty).
    RemoteDc {
        dc: &'a str,
        gateways: &'a [SocketAddr],
    },
}

/// Why a connection is refused. The gateway logs it and counts it by [`RouteError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("SNI {sni:?} is not in this gateway's trust domain")]
    ForeignTrustDomain { sni: String },
    #[error("SNI {sni:?} is neither <service>.<ns>.<dc>.internal.<td> nor server.<dc>.<td>")]
    Malformed { sni: String },
    #[error("service {service:?} has no sidecar registered in datacenter {dc:?}")]
    UnknownService { service: String, dc: String },
    #[error("datacenter {dc:?} is not federated (no known mesh gateways)")]
    UnknownDatacenter { dc: String },
    #[error("SNI {sni:?}: no healthy endpoints")]
    NoHealthyEndpoints { sni: String },
}

impl RouteError {
    /// Stable label for metrics (`reason="..."`).
    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::ForeignTrustDomain { .. } => "foreign_trust_domain",
            RouteError::Malformed { .. } => "malformed",
            RouteError::UnknownService { .. } => "unknown_service",
            RouteError::UnknownDatacenter { .. } => "unknown_datacenter",
            RouteError::NoHealthyEndpoints { .. } => "no_healthy_endpoints",
        }
    }
}

// `server.<dc>.bootstrap.strait` (a server or agent before its first join) is routed like
// `server.<dc>.<td>`; the constant is spelt with the other names in strait-names.
pub use strait_names::BOOTSTRAP_TRUST_DOMAIN;

/// What an SNI names, borrowed from the SNI itself.
enum Target<'s> {
    Service { service: &'s str, dc: &'s str },
    Servers { dc: &'s str },
}

impl GatewaySnapshot {
    /// Decides where a connection with this SNI goes. `trust_domain` and `datacenter` are
    /// the gateway's own.
    pub fn route(
        &self,
        sni: &str,
        trust_domain: &str,
        datacenter: &str,
    ) -> Result<GatewayRoute<'_>, RouteError> {
        let no_healthy = || RouteError::NoHealthyEndpoints {
            sni: sni.to_string(),
        };
        // A new secondary server or agent does not know the trust domain before its first
        // join; it names the servers under the bootstrap domain, and only the servers.
        let target =
            parse(sni, trust_domain).or_else(|e| match parse(sni, BOOTSTRAP_TRUST_DOMAIN) {
                Ok(t @ Target::Servers { .. }) => Ok(t),
                _ => Err(e),
            })?;
        let dc = match target {
            Target::Service { dc, .. } | Target::Servers { dc } => dc,
        };
        if !dc.eq_ignore_ascii_case(datacenter) {
            let (dc, gateways) = lookup(&self.remote_gateways, dc)
                .ok_or_else(|| RouteError::UnknownDatacenter { dc: dc.to_string() })?;
            if gateways.is_empty() {
                return Err(no_healthy());
            }
            return Ok(GatewayRoute::RemoteDc { dc, gateways });
        }
        match target {
            Target::Servers { .. } => {
                if self.local_servers.is_empty() {
                    return Err(no_healthy());
                }
                Ok(GatewayRoute::LocalServers(&self.local_servers))
            }
            Target::Service { service, .. } => {
                let (service, endpoints) =
                    lookup(&self.local_services, service).ok_or_else(|| {
                        RouteError::UnknownService {
                            service: service.to_string(),
                            dc: datacenter.to_string(),
                        }
                    })?;
                if endpoints.is_empty() {
                    return Err(no_healthy());
                }
                Ok(GatewayRoute::LocalService { service, endpoints })
            }
        }
    }
}

/// Exact lookup first (names are normally lowercase already), then a case-insensitive scan.
fn lookup<'a>(
    map: &'a BTreeMap<String, Vec<SocketAddr>>,
    key: &str,
) -> Option<(&'a str, &'a [SocketAddr])> {
    if let Some((k, v)) = map.get_key_value(key) {
        return Some((k.as_str(), v.as_slice()));
    }
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(k, v)| (k.as_str(), v.as_slice()))
}

fn parse<'s>(sni: &'s str, trust_domain: &str) -> Result<Target<'s>, RouteError> {
    let malformed = || RouteError::Malformed {
        sni: sni.to_string(),
    };
    let name = sni.strip_suffix('.').unwrap_or(sni);
    if name.is_empty() || trust_domain.is_empty() {
        return Err(malformed());
    }
    // Compare bytes: slicing a &str at an arbitrary offset could split a UTF-8 character.
    let (bytes, td) = (name.as_bytes(), trust_domain.as_bytes());
    let in_trust_domain = bytes.len() > td.len()
        && bytes[bytes.len() - td.len()..].eq_ignore_ascii_case(td)
        && bytes[bytes.len() - td.len() - 1] == b'.';
    if !in_trust_domain {
        if name.eq_ignore_ascii_case(trust_domain) {
            return Err(malformed());
        }
        return Err(RouteError::ForeignTrustDomain {
            sni: sni.to_string(),
        });
    }
    // The cut is at an ASCII '.', hence on a character boundary.
    let rest = &name[..bytes.len() - td.len() - 1];
    let mut labels = rest.split('.');
    let parts = (
        labels.next(),
        labels.next(),
        labels.next(),
        labels.next(),
        labels.next(),
    );
    let target = match parts {
        (Some(server), Some(dc), None, None, None) if server.eq_ignore_ascii_case("server") => {
            Target::Servers { dc }
        }
        (Some(service), Some(ns), Some(dc), Some(internal), None)
            if internal.eq_ignore_ascii_case("internal") && !ns.is_empty() =>
        {
            Target::Service { service, dc }
        }
        _ => return Err(malformed()),
    };
    match target {
        Target::Service { service: "", .. } | Target::Service { dc: "", .. } => Err(malformed()),
        Target::Servers { dc: "" } => Err(malformed()),
        target => Ok(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD: &str = "a1b2c3d4.strait";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn snapshot() -> GatewaySnapshot {
        GatewaySnapshot {
            lan: addr("10.0.0.20:8443"),
            wan: addr("192.0.2.1:8443"),
            local_services: BTreeMap::from([
                ("counting".into(), vec![addr("10.0.0.5:21000")]),
                ("sick".into(), vec![]),
            ]),
            local_servers: vec![addr("10.0.0.10:8300")],
            remote_gateways: BTreeMap::from([
                ("dc1".into(), vec![addr("192.0.2.9:8443")]),
                ("empty".into(), vec![]),
            ]),
        }
    }

    fn route(sni: &str) -> Result<GatewayRoute<'static>, RouteError> {
        let snap: &'static GatewaySnapshot = Box::leak(Box::new(snapshot()));
        snap.route(sni, TD, "dc2")
    }

    fn reason(sni: &str) -> &'static str {
        route(sni).expect_err(sni).reason()
    }

    #[test]
    fn local_service() {
        let expected = GatewayRoute::LocalService {
            service: "counting",
            endpoints: &[addr("10.0.0.5:21000")][..],
        };
        assert_eq!(
            route("counting.default.dc2.internal.a1b2c3d4.strait"),
            Ok(expected)
        );
        assert_eq!(
            route("COUNTING.Default.DC2.INTERNAL.A1B2C3D4.Strait"),
            Ok(expected)
        );
        assert_eq!(
            route("counting.default.dc2.internal.a1b2c3d4.strait."),
            Ok(expected)
        );
    }

    #[test]
    fn local_servers_and_remote_dc() {
        assert_eq!(
            route("server.dc2.a1b2c3d4.strait"),
            Ok(GatewayRoute::LocalServers(&[addr("10.0.0.10:8300")][..]))
        );
        let remote = GatewayRoute::RemoteDc {
            dc: "dc1",
            gateways: &[addr("192.0.2.9:8443")][..],
        };
        assert_eq!(
            route("web.default.dc1.internal.a1b2c3d4.strait"),
            Ok(remote)
        );
        assert_eq!(route("Server.DC1.a1b2c3d4.STRAIT"), Ok(remote));
        // The remote DC decides whether the service exists there.
        assert_eq!(
            route("anything.default.dc1.internal.a1b2c3d4.strait"),
            Ok(remote)
        );
    }

    #[test]
    fn foreign_trust_domain() {
        for sni in [
            "counting.default.dc2.internal.ffff0000.strait",
            "counting.default.dc2.internal.xa1b2c3d4.strait",
            "counting.default.dc2.internal",
            "a1b2c3d4.strait.evil.example",
            "strait",
            "counting.default.dc2.internal.a1b2c3d4.strait..",
        ] {
            assert_eq!(reason(sni), "foreign_trust_domain", "{sni}");
        }
    }

    #[test]
    fn malformed() {
        for sni in [
            "",
            ".",
            "a1b2c3d4.strait",
            ".a1b2c3d4.strait",
            "dc2.a1b2c3d4.strait",
            "counting.dc2.internal.a1b2c3d4.strait",
            "counting.default.dc2.external.a1b2c3d4.strait",
            "x.counting.default.dc2.internal.a1b2c3d4.strait",
            ".default.dc2.internal.a1b2c3d4.strait",
            "counting..dc2.internal.a1b2c3d4.strait",
            "counting.default..internal.a1b2c3d4.strait",
            "server..a1b2c3d4.strait",
            "servers.dc2.a1b2c3d4.strait",
            "server.dc2.extra.a1b2c3d4.strait",
        ] {
            assert_eq!(reason(sni), "malformed", "{sni:?}");
        }
    }

    #[test]
    fn non_ascii_sni_does_not_panic() {
        assert_eq!(
            reason("é.default.dc2.internal.a1b2c3d4.straié"),
            "foreign_trust_domain"
        );
        assert_eq!(reason("ééééééééééééééé"), "foreign_trust_domain");
        assert_eq!(
            reason("é.default.dc2.internal.a1b2c3d4.strait"),
            "unknown_service"
        );
    }

    #[test]
    fn unknown_and_unhealthy() {
        let err = route("nope.default.dc2.internal.a1b2c3d4.strait").expect_err("unknown");
        assert_eq!(
            err,
            RouteError::UnknownService {
                service: "nope".into(),
                dc: "dc2".into()
            }
        );
        assert_eq!(
            reason("web.default.dc9.internal.a1b2c3d4.strait"),
            "unknown_datacenter"
        );
        assert_eq!(reason("server.dc9.a1b2c3d4.strait"), "unknown_datacenter");
        assert_eq!(
            reason("sick.default.dc2.internal.a1b2c3d4.strait"),
            "no_healthy_endpoints"
        );
        assert_eq!(
            reason("web.default.empty.internal.a1b2c3d4.strait"),
            "no_healthy_endpoints"
        );
        let mut snap = snapshot();
        snap.local_servers.clear();
        let err = snap
            .route("server.dc2.a1b2c3d4.strait", TD, "dc2")
            .expect_err("no servers");
        assert_eq!(err.reason(), "no_healthy_endpoints");
        assert!(err.to_string().contains("server.dc2.a1b2c3d4.strait"));
    }

    #[test]
    fn bootstrap_domain_reaches_servers_only() {
        let g = snapshot();
        assert!(matches!(
            g.route("server.dc1.bootstrap.strait", TD, "dc1"),
            Ok(GatewayRoute::LocalServers(_))
        ));
        assert!(g
            .route("web.default.dc1.internal.bootstrap.strait", TD, "dc1")
            .is_err());
    }
}
