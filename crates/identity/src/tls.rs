//! rustls configurations for the whole of strait. Nothing else in the tree
//! builds a `ClientConfig`/`ServerConfig`: callers hand over an [`Identity`]
//! (their key and chain), the federation [`Roots`] and what they [`Expect`] of
//! the peer, and get back a config whose handshakes only complete with a peer
//! that proved a SPIFFE ID. After the handshake, [`peer_identity`] says who.

use std::fmt;
use std::sync::{Arc, LazyLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{CipherSuite, ClientConfig, CommonState, ServerConfig};

use crate::certinfo::{
    cert_info_der, certs_from_pem, parse_der, spiffe_id_of, spiffe_id_of_cert, uri_sans,
};
use crate::error::{IdentityError, Result};
use crate::spiffe::{parse_trust_domain_uri, SpiffeId};
use crate::verify::{Accept, AcceptAnyServer, ClientVerifier, ServerVerifier, SpiffeVerifier};

pub use crate::verify::{failure_reason, BadIdentity, TlsFailure};

/// The crypto provider of every strait TLS config: aws-lc-rs (the tree has no other), with
/// TLS 1.3's AES-128-GCM/SHA-256 ahead of its AES-256-GCM/SHA-384. Both ends of a strait
/// connection use this order, so they negotiate AES-128: its HKDF runs on SHA-256, which has
/// CPU instructions (SHA-NI) where SHA-384 does not; a resumed handshake costs about a third
/// less CPU (bench/README.md, "Where the cycles go"). Key exchange stays X25519 first.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: LazyLock<Arc<CryptoProvider>> = LazyLock::new(|| {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        // A stable sort: the other suites keep their order.
        provider
            .cipher_suites
            .sort_by_key(|s| s.suite() != CipherSuite::TLS13_AES_128_GCM_SHA256);
        Arc::new(provider)
    });
    PROVIDER.clone()
}

/// A private key and chain (leaf first, then intermediates), parsed once.
#[derive(Clone)]
pub struct Identity {
    key: Arc<CertifiedKey>,
    id: SpiffeId,
    not_after_unix: i64,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id.uri())
            .field("not_after_unix", &self.not_after_unix)
            .field("chain_len", &self.key.cert.len())
            .finish()
    }
}

impl Identity {
    /// Parses the chain and key, checks the key matches the leaf and the
    /// leaf carries exactly one valid SPIFFE ID and is not a CA.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Identity> {
        let chain = certs_from_pem(chain_pem, "certificate chain")?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| IdentityError::Pem {
                what: "private key",
                reason: e.to_string(),
            })?;
        let leaf = &chain[0];
        let info = cert_info_der(leaf)?;
        if info.is_ca {
            return Err(IdentityError::invalid(
                "identity certificate",
                format!("{} is a CA certificate, not a leaf", info.subject),
            ));
        }
        let id = spiffe_id_of(leaf)?;
        let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|error| {
            IdentityError::Tls {
                what: format!("identity for {id} (does the key match the certificate?)"),
                error,
            }
        })?;
        Ok(Identity {
            key: Arc::new(certified),
            id,
            not_after_unix: info.not_after_unix,
        })
    }

    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }

    /// When the leaf expires (Unix seconds); rotate well before.
    pub fn not_after_unix(&self) -> i64 {
        self.not_after_unix
    }

    /// The chain as sent on the wire (leaf first).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }

    /// The rustls key, for callers building their own cert resolvers (e.g. rotation).
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.key.clone()
    }
}

/// Federation trust anchors, parsed once. Cheap to clone.
#[derive(Clone)]
pub struct Roots {
    anchors: Arc<[TrustAnchor<'static>]>,
    /// Trust domains named by the roots' `spiffe://<td>` URI SANs.
    trust_domains: Vec<String>,
}

impl fmt::Debug for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Roots")
            .field("len", &self.anchors.len())
            .field("trust_domains", &self.trust_domains)
            .finish()
    }
}

impl Roots {
    /// Every certificate of every PEM string becomes a trust anchor.
    pub fn from_pems(pems: &[String]) -> Result<Roots> {
        let mut anchors = Vec::new();
        let mut trust_domains = Vec::new();
        for pem in pems {
            for der in certs_from_pem(pem, "root certificate")? {
                let anchor = webpki::anchor_from_trusted_cert(&der)
                    .map_err(|e| {
                        IdentityError::invalid(
                            "root certificate",
                            format!("not a usable trust anchor: {e}"),
                        )
                    })?
                    .to_owned();
                anchors.push(anchor);
                let cert = parse_der(&der)?;
                for uri in uri_sans(&cert)? {
                    if let Ok(td) = parse_trust_domain_uri(&uri) {
                        if !trust_domains.contains(&td) {
                            trust_domains.push(td);
                        }
                    }
                }
            }
        }
        Ok(Roots {
            anchors: anchors.into(),
            trust_domains,
        })
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Trust domains named by the roots (`spiffe://<td>` URI SANs).
    pub fn trust_domains(&self) -> &[String] {
        &self.trust_domains
    }
}

/// What a TLS client accepts from the server it dials.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Exactly this identity.
    Exact(SpiffeId),
    /// Any `SpiffeId::Server` of the trust domain (the client identity's, or
    /// without one, the roots').
    AnyServer,
    /// Any one of these identities (e.g. the servers of several DCs).
    AnyOf(Vec<SpiffeId>),
}

/// Client config: presents `identity` (if Some), verifies the server chain
/// against `roots` (EKU serverAuth) and the server's URI SAN against
/// `expect`. Does NOT check DNS names (the SNI is a routing key, not an
/// identity). No ALPN.
pub fn client_config(
    identity: Option<&Identity>,
    roots: &Roots,
    expect: Expect,
) -> Result<Arc<ClientConfig>> {
    let accept = match expect {
        Expect::Exact(id) => Accept::OneOf(vec![id]),
        Expect::AnyOf(ids) if ids.is_empty() => {
            return Err(IdentityError::invalid(
                "expected peer",
                "Expect::AnyOf with no identities accepts nobody",
            ))
        }
        Expect::AnyOf(ids) => Accept::OneOf(ids),
        Expect::AnyServer => match identity {
            Some(me) => Accept::ServerOf(vec![me.id.trust_domain().to_owned()]),
            None if !roots.trust_domains.is_empty() => {
                Accept::ServerOf(roots.trust_domains.clone())
            }
            None => return Err(IdentityError::invalid(
                "expected peer",
                "Expect::AnyServer needs a trust domain: no client identity and no root names one",
            )),
        },
    };
    check_roots(roots)?;
    let verifier = ServerVerifier(SpiffeVerifier::new(roots.anchors.clone(), accept));
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| IdentityError::Tls {
            what: "client config".into(),
            error,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match identity {
        Some(me) => {
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(me.key.clone())))
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Client config for bootstrapping (join / federation join) when the client
/// has no roots yet: accepts ANY server certificate. The bootstrap protocol
/// must authenticate the answer itself (see [`crate::bootstrap`]).
pub fn dangerous_unverified_client_config() -> Arc<ClientConfig> {
    let p = provider();
    let verifier = AcceptAnyServer(p.signature_verification_algorithms);
    let config = ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        // The aws-lc-rs provider supports the default versions; failing here is a build bug.
        .expect("aws-lc-rs provider supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}

/// Whether a server demands a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    /// Clients without a certificate are let in; [`peer_identity`] is then None.
    Optional,
}

/// Server config: presents `identity`; verifies client certs against `roots`
/// (EKU clientAuth) and accepts any SPIFFE ID in the server's trust domain.
/// Authorization is the caller's job, via [`peer_identity`].
pub fn server_config(
    identity: &Identity,
    roots: &Roots,
    client_auth: ClientAuth,
) -> Result<Arc<ServerConfig>> {
    check_roots(roots)?;
    let accept = Accept::TrustDomain(vec![identity.id.trust_domain().to_owned()]);
    let verifier = ClientVerifier {
        inner: SpiffeVerifier::new(roots.anchors.clone(), accept),
        mandatory: client_auth == ClientAuth::Required,
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| IdentityError::Tls {
            what: "server config".into(),
            error,
        })?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity.key.clone())));
    Ok(Arc::new(config))
}

fn check_roots(roots: &Roots) -> Result<()> {
    if roots.is_empty() {
        return Err(IdentityError::invalid(
            "roots",
            "no trust anchors: every peer would be refused",
        ));
    }
    Ok(())
}

/// The verified peer's SPIFFE ID after a completed handshake (None when the
/// peer sent no certificate). Only meaningful on connections built from
/// [`client_config`] / [`server_config`], whose verifiers checked it.
pub fn peer_identity(conn: &CommonState) -> Option<SpiffeId> {
    if conn.is_handshaking() {
        return None;
    }
    let leaf = conn.peer_certificates()?.first()?;
    spiffe_id_of(leaf).ok()
}

/// The verified peer's SPIFFE ID and when its certificate expires, after a completed
/// handshake (None when the peer sent no certificate); one parse for both. A resumed
/// session brings the certificate of its first handshake, which rustls does not verify
/// again: a caller of this checks the expiry itself.
pub fn peer_identity_until(conn: &CommonState) -> Option<(SpiffeId, std::time::SystemTime)> {
    if conn.is_handshaking() {
        return None;
    }
    let cert = parse_der(conn.peer_certificates()?.first()?).ok()?;
    let id = spiffe_id_of_cert(&cert).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    Some((
        id,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
    ))
}
