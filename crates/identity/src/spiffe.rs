//! SPIFFE IDs and SNI names: the vocabulary every other part of strait uses to
//! say *who* a certificate belongs to (`SpiffeId`) and *where* a connection is
//! routed (`service_sni`, `server_sni`). Pure string logic, no crypto except
//! the random trust-domain generator.
//!
//! The spelling of every name lives in `strait-names` (re-exported here); this module adds
//! the typed [`SpiffeId`], its parser and the validation of name components.

use std::fmt;
use std::str::FromStr;

use crate::error::{IdentityError, Result};

use strait_names::SPIFFE_SCHEME as SCHEME;
pub use strait_names::{
    agent_uri, datacenter_sni_wildcard, server_sni, server_uri, service_sni, service_uri,
    service_uri_suffix, trust_domain_uri, BOOTSTRAP_TRUST_DOMAIN, DEFAULT_NAMESPACE,
};

/// The identity carried as the only URI SAN of every strait certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpiffeId {
    /// `spiffe://<td>/ns/<ns>/dc/<dc>/svc/<service>`
    Service {
        trust_domain: String,
        namespace: String,
        datacenter: String,
        service: String,
    },
    /// `spiffe://<td>/server/dc/<dc>`
    Server {
        trust_domain: String,
        datacenter: String,
    },
    /// `spiffe://<td>/agent/dc/<dc>/node/<node>`
    Agent {
        trust_domain: String,
        datacenter: String,
        node: String,
    },
}

impl SpiffeId {
    /// A service in the default namespace.
    pub fn service(td: &str, dc: &str, svc: &str) -> Self {
        Self::service_in(td, DEFAULT_NAMESPACE, dc, svc)
    }

    /// A service in an explicit namespace.
    pub fn service_in(td: &str, ns: &str, dc: &str, svc: &str) -> Self {
        SpiffeId::Service {
            trust_domain: td.to_owned(),
            namespace: ns.to_owned(),
            datacenter: dc.to_owned(),
            service: svc.to_owned(),
        }
    }

    /// The servers of a datacenter (one identity shared by the DC's servers).
    pub fn server(td: &str, dc: &str) -> Self {
        SpiffeId::Server {
            trust_domain: td.to_owned(),
            datacenter: dc.to_owned(),
        }
    }

    /// The agent of one node.
    pub fn agent(td: &str, dc: &str, node: &str) -> Self {
        SpiffeId::Agent {
            trust_domain: td.to_owned(),
            datacenter: dc.to_owned(),
            node: node.to_owned(),
        }
    }

    pub fn trust_domain(&self) -> &str {
        match self {
            SpiffeId::Service { trust_domain, .. }
            | SpiffeId::Server { trust_domain, .. }
            | SpiffeId::Agent { trust_domain, .. } => trust_domain,
        }
    }

    pub fn datacenter(&self) -> &str {
        match self {
            SpiffeId::Service { datacenter, .. }
            | SpiffeId::Server { datacenter, .. }
            | SpiffeId::Agent { datacenter, .. } => datacenter,
        }
    }

    /// The `spiffe://` URI.
    pub fn uri(&self) -> String {
        match self {
            SpiffeId::Service {
                trust_domain,
                namespace,
                datacenter,
                service,
            } => service_uri(trust_domain, namespace, datacenter, service),
            SpiffeId::Server {
                trust_domain,
                datacenter,
            } => server_uri(trust_domain, datacenter),
            SpiffeId::Agent {
                trust_domain,
                datacenter,
                node,
            } => agent_uri(trust_domain, datacenter, node),
        }
    }

    /// Checks every component; constructors do not, parsing does.
    pub fn validate(&self) -> Result<()> {
        validate_trust_domain(self.trust_domain())?;
        validate_name("datacenter", self.datacenter())?;
        match self {
            SpiffeId::Service {
                namespace, service, ..
            } => {
                validate_name("namespace", namespace)?;
                validate_name("service", service)
            }
            SpiffeId::Server { .. } => Ok(()),
            SpiffeId::Agent { node, .. } => validate_name("node", node),
        }
    }

    /// A short human name used as the certificate subject CN.
    pub(crate) fn common_name(&self) -> String {
        match self {
            SpiffeId::Service { service, .. } => service.clone(),
            SpiffeId::Server { datacenter, .. } => format!("server.{datacenter}"),
            SpiffeId::Agent { node, .. } => format!("agent.{node}"),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;

    fn from_str(uri: &str) -> Result<Self> {
        let bad = |reason: String| IdentityError::InvalidSpiffeId {
            uri: uri.to_owned(),
            reason,
        };
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("scheme must be spiffe://".into()))?;
        let (td, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no path after the trust domain".into()))?;
        validate_trust_domain(td).map_err(|e| bad(e.to_string()))?;
        let segs: Vec<&str> = path.split('/').collect();
        let id = match segs.as_slice() {
            ["ns", ns, "dc", dc, "svc", svc] => SpiffeId::service_in(td, ns, dc, svc),
            ["server", "dc", dc] => SpiffeId::server(td, dc),
            ["agent", "dc", dc, "node", node] => SpiffeId::agent(td, dc, node),
            _ => {
                return Err(bad(
                    "path must be /ns/<ns>/dc/<dc>/svc/<service>, /server/dc/<dc> \
                     or /agent/dc/<dc>/node/<node>"
                        .into(),
                ))
            }
        };
        id.validate().map_err(|e| bad(e.to_string()))?;
        Ok(id)
    }
}

/// Parses `spiffe://<td>` (no path, as on CA certificates) into the trust domain.
pub fn parse_trust_domain_uri(uri: &str) -> Result<String> {
    let bad = |reason: String| IdentityError::InvalidSpiffeId {
        uri: uri.to_owned(),
        reason,
    };
    let td = uri
        .strip_prefix(SCHEME)
        .ok_or_else(|| bad("scheme must be spiffe://".into()))?;
    let td = td.strip_suffix('/').unwrap_or(td);
    validate_trust_domain(td).map_err(|e| bad(e.to_string()))?;
    Ok(td.to_owned())
}

/// A fresh trust domain, `<8 random hex>.strait`, chosen once by the primary DC.
pub fn new_trust_domain() -> String {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 4];
    // SystemRandom only fails when the OS has no entropy source at all; a
    // process that cannot get randomness cannot run a CA either.
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("operating system random number generator failed");
    format!("{}.strait", hex::encode(bytes))
}

/// A name component (namespace, DC, service, node): `[a-z0-9-]`, 1..=63 chars.
pub fn validate_name(field: &str, value: &str) -> Result<()> {
    let bad = |reason| IdentityError::InvalidName {
        field: field.to_owned(),
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if value.len() > 63 {
        return Err(bad("must be at most 63 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("may only contain a-z, 0-9 and '-'"));
    }
    Ok(())
}

/// A trust domain: dot-separated labels, each a valid name; at most 255 chars.
pub fn validate_trust_domain(td: &str) -> Result<()> {
    let bad = |reason| IdentityError::InvalidName {
        field: "trust domain".to_owned(),
        value: td.to_owned(),
        reason,
    };
    if td.is_empty() {
        return Err(bad("must not be empty"));
    }
    if td.len() > 255 {
        return Err(bad("must be at most 255 characters"));
    }
    for label in td.split('.') {
        validate_name("trust domain label", label)
            .map_err(|_| bad("must be dot-separated labels of a-z, 0-9 and '-'"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_all_shapes() {
        for id in [
            SpiffeId::service("abc.strait", "dc1", "web"),
            SpiffeId::service_in("abc.strait", "team-a", "dc2", "api"),
            SpiffeId::server("abc.strait", "dc1"),
            SpiffeId::agent("abc.strait", "dc2", "vm-3"),
        ] {
            let uri = id.uri();
            assert_eq!(uri, id.to_string());
            assert_eq!(uri.parse::<SpiffeId>().unwrap(), id);
        }
        assert_eq!(
            SpiffeId::service("td", "dc1", "web").uri(),
            "spiffe://td/ns/default/dc/dc1/svc/web"
        );
        assert_eq!(
            SpiffeId::agent("td", "dc1", "n1").uri(),
            "spiffe://td/agent/dc/dc1/node/n1"
        );
    }

    #[test]
    fn rejects_malformed() {
        for uri in [
            "spiffe://td/ns/a",
            "https://td/ns/default/dc/dc1/svc/web",
            "spiffe://td",
            "spiffe://td/",
            "spiffe://td/ns/default/dc/dc1/svc/web/",
            "spiffe://td/ns/default/dc/dc1/svc/Web",
            "spiffe://td/ns//dc/dc1/svc/web",
            "spiffe://td:443/server/dc/dc1",
            "spiffe://user@td/server/dc/dc1",
            "spiffe://td/server/dc/dc1?x=1",
            "spiffe://TD/server/dc/dc1",
            "spiffe://td/server/dc/dc%31",
            "spiffe://td/svc/web",
        ] {
            let err = uri.parse::<SpiffeId>().unwrap_err().to_string();
            assert!(err.contains(uri), "{err} should name {uri}");
        }
    }

    #[test]
    fn names_and_snis() {
        assert!(validate_name("service", "web-1").is_ok());
        assert!(validate_name("service", "").is_err());
        assert!(validate_name("service", &"a".repeat(64)).is_err());
        assert!(validate_name("service", "a_b").is_err());
        let err = validate_name("datacenter", "DC1").unwrap_err().to_string();
        assert!(err.contains("datacenter") && err.contains("DC1"), "{err}");
        assert_eq!(
            service_sni("web", "default", "dc1", "t.strait"),
            "web.default.dc1.internal.t.strait"
        );
        assert_eq!(server_sni("dc2", "t.strait"), "server.dc2.t.strait");
        assert_eq!(
            parse_trust_domain_uri("spiffe://t.strait").unwrap(),
            "t.strait"
        );
        assert!(parse_trust_domain_uri("spiffe://t.strait/x").is_err());
    }

    #[test]
    fn trust_domains_are_random_and_valid() {
        let a = new_trust_domain();
        let b = new_trust_domain();
        assert_ne!(a, b);
        assert_eq!(a.len(), 8 + ".strait".len());
        assert!(a.ends_with(".strait"));
        validate_trust_domain(&a).unwrap();
    }
}
