//! strait-names: the one place that spells strait's names — the SPIFFE IDs certificates
//! carry (*who*) and the TLS SNI names connections are routed by (*where*).
//!
//! Every crate that formats one of these names calls this crate, so the spelling cannot
//! drift between the CA, the snapshot builder, the proxies, the Envoy renderer and the
//! doctor. It has no dependencies so that the pure snapshot builder (which must not pull in
//! rustls or ring) and `strait-identity` (which parses and validates these names, and
//! re-exports this crate from `strait_identity::spiffe`) can both depend on it.
//!
//! Builders do not validate: `strait_identity::spiffe::SpiffeId` parses and checks names.

#![forbid(unsafe_code)]

/// Scheme of every SPIFFE ID.
pub const SPIFFE_SCHEME: &str = "spiffe://";

/// Namespace used when none is given (strait has a single namespace today).
pub const DEFAULT_NAMESPACE: &str = "default";

/// The trust domain in `server.<dc>.bootstrap.strait`, the SNI a server or agent uses before
/// it has learnt the federation's trust domain (its first join). Gateways route it like
/// `server.<dc>.<td>`.
pub const BOOTSTRAP_TRUST_DOMAIN: &str = "bootstrap.strait";

/// SNI of a service's sidecars in `dc`: `<service>.<ns>.<dc>.internal.<td>`.
pub fn service_sni(service: &str, namespace: &str, dc: &str, td: &str) -> String {
    format!("{service}.{namespace}.{dc}.internal.{td}")
}

/// SNI of one subset of a service's sidecars (a `service-resolver` subset), as Consul spells
/// it: `<subset>.<service>.<ns>.<dc>.internal.<td>`.
pub fn subset_sni(subset: &str, service: &str, namespace: &str, dc: &str, td: &str) -> String {
    format!("{subset}.{}", service_sni(service, namespace, dc, td))
}

/// SNI pattern for every service of `dc`: `*.<dc>.internal.<td>` (an Envoy `server_names`
/// wildcard, used by gateways to send another DC's services to that DC's gateways).
pub fn datacenter_sni_wildcard(dc: &str, td: &str) -> String {
    format!("*.{dc}.internal.{td}")
}

/// SNI of a datacenter's servers: `server.<dc>.<td>`.
pub fn server_sni(dc: &str, td: &str) -> String {
    format!("server.{dc}.{td}")
}

/// SPIFFE ID of a service: `spiffe://<td>/ns/<ns>/dc/<dc>/svc/<service>`.
pub fn service_uri(td: &str, namespace: &str, dc: &str, service: &str) -> String {
    format!("{SPIFFE_SCHEME}{td}/ns/{namespace}/dc/{dc}/svc/{service}")
}

/// What every SPIFFE ID of `service` ends with, whatever its trust domain, namespace or
/// datacenter: `/svc/<service>`.
pub fn service_uri_suffix(service: &str) -> String {
    format!("/svc/{service}")
}

/// SPIFFE ID shared by a datacenter's servers: `spiffe://<td>/server/dc/<dc>`.
pub fn server_uri(td: &str, dc: &str) -> String {
    format!("{SPIFFE_SCHEME}{td}/server/dc/{dc}")
}

/// SPIFFE ID of one node's agent: `spiffe://<td>/agent/dc/<dc>/node/<node>`.
pub fn agent_uri(td: &str, dc: &str, node: &str) -> String {
    format!("{SPIFFE_SCHEME}{td}/agent/dc/{dc}/node/{node}")
}

/// The URI naming a whole trust domain (`spiffe://<td>`), carried by CA certificates.
pub fn trust_domain_uri(td: &str) -> String {
    format!("{SPIFFE_SCHEME}{td}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snis() {
        assert_eq!(
            service_sni("web", DEFAULT_NAMESPACE, "dc1", "t.strait"),
            "web.default.dc1.internal.t.strait"
        );
        assert_eq!(server_sni("dc2", "t.strait"), "server.dc2.t.strait");
        assert_eq!(
            server_sni("dc2", BOOTSTRAP_TRUST_DOMAIN),
            "server.dc2.bootstrap.strait"
        );
        assert_eq!(
            datacenter_sni_wildcard("dc2", "t.strait"),
            "*.dc2.internal.t.strait"
        );
    }

    #[test]
    fn spiffe_ids() {
        assert_eq!(
            service_uri("t.strait", "team-a", "dc1", "web"),
            "spiffe://t.strait/ns/team-a/dc/dc1/svc/web"
        );
        assert!(service_uri("t.strait", DEFAULT_NAMESPACE, "dc2", "web")
            .ends_with(&service_uri_suffix("web")));
        assert_eq!(
            server_uri("t.strait", "dc1"),
            "spiffe://t.strait/server/dc/dc1"
        );
        assert_eq!(
            agent_uri("t.strait", "dc1", "vm-3"),
            "spiffe://t.strait/agent/dc/dc1/node/vm-3"
        );
        assert_eq!(trust_domain_uri("t.strait"), "spiffe://t.strait");
    }
}
