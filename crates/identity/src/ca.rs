//! The certificate authority: the primary DC's self-signed root, the
//! intermediate CA each secondary DC gets signed by the root, and the
//! short-lived leaves (services, servers, agents) that either CA signs from a
//! CSR. Keys never leave the process that generated them; only CSRs and
//! certificates travel. EC P-256 everywhere.
//!
//! Chain layout: root -> (intermediate per secondary DC) -> leaf. A leaf's
//! chain PEM is the leaf followed by its intermediate, if any
//! (see [`CaCert::leaf_chain_pem`]).

use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

pub use crate::certinfo::{cert_info, cert_info_der, CertInfo};
use crate::certinfo::{first_cert_der, parse_der, uri_sans};
use crate::error::{IdentityError, Result};
use crate::spiffe::{
    parse_trust_domain_uri, trust_domain_uri, validate_name, validate_trust_domain, SpiffeId,
};

/// Clock skew tolerated between machines: certificates start this long ago.
const BACKDATE: time::Duration = time::Duration::minutes(1);

/// A CA (root or intermediate) certificate with its private key.
#[derive(Clone)]
pub struct CaCert {
    pub cert_pem: String,
    /// PKCS#8 PEM; write it with [`crate::files::write_secret`].
    pub key_pem: String,
}

impl std::fmt::Debug for CaCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate a CA just signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub serial_hex: String,
    pub not_after_unix: i64,
}

/// A new self-signed root CA for `trust_domain`, valid for `ttl`.
pub fn generate_root(trust_domain: &str, ttl: Duration) -> Result<CaCert> {
    validate_trust_domain(trust_domain)?;
    let key = new_key()?;
    let (not_before, not_after) = validity(ttl)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(format!("strait root CA {trust_domain}"));
    params.subject_alt_names = vec![uri_san(&trust_domain_uri(trust_domain))?];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial());
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params
        .self_signed(&key)
        .map_err(IdentityError::generate("self-sign the root CA"))?;
    Ok(CaCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new key (PKCS#8 PEM) and a CSR (PEM) asking for `id`.
pub fn generate_key_and_csr(id: &SpiffeId) -> Result<(String, String)> {
    id.validate()?;
    csr_for(id.common_name(), &id.uri())
}

/// A new key and CSR for a secondary DC's intermediate CA.
pub fn generate_intermediate_csr(trust_domain: &str, dc: &str) -> Result<(String, String)> {
    validate_trust_domain(trust_domain)?;
    validate_name("datacenter", dc)?;
    csr_for(intermediate_cn(dc), &trust_domain_uri(trust_domain))
}

impl CaCert {
    /// Loads a CA from PEM, checking that the certificate is a CA and the key is its key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CaCert> {
        let ca = CaCert {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        };
        ca.load()?;
        Ok(ca)
    }

    /// The trust domain named by the CA certificate's `spiffe://<td>` URI SAN.
    pub fn trust_domain(&self) -> Result<String> {
        let der = first_cert_der(&self.cert_pem, "CA certificate")?;
        ca_trust_domain(&der)
    }

    /// True for a root (self-issued) CA, false for an intermediate.
    pub fn is_root(&self) -> Result<bool> {
        let der = first_cert_der(&self.cert_pem, "CA certificate")?;
        let cert = parse_der(&der)?;
        Ok(cert.subject().as_raw() == cert.issuer().as_raw())
    }

    /// The chain PEM to hand out with a leaf this CA signed: the leaf, then
    /// this CA's certificate when it is an intermediate (roots are never sent).
    pub fn leaf_chain_pem(&self, leaf_cert_pem: &str) -> Result<String> {
        let mut chain = leaf_cert_pem.trim_end().to_owned();
        chain.push('\n');
        if !self.is_root()? {
            chain.push_str(self.cert_pem.trim_end());
            chain.push('\n');
        }
        Ok(chain)
    }

    /// Signs a secondary DC's intermediate CA. Result is a CA cert valid for `ttl`, pathlen 0.
    pub fn sign_intermediate(&self, csr_pem: &str, dc: &str, ttl: Duration) -> Result<IssuedCert> {
        validate_name("datacenter", dc)?;
        let issuer = self.load()?;
        if !self.is_root()? {
            return Err(IdentityError::invalid(
                "issuer",
                "only the root CA may sign intermediate CAs (intermediates have pathlen 0)",
            ));
        }
        let mut csr = parse_csr(csr_pem)?;
        let (not_before, not_after) = validity(ttl)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(intermediate_cn(dc));
        params.subject_alt_names = vec![uri_san(&trust_domain_uri(&issuer.trust_domain))?];
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = not_before;
        params.not_after = not_after.min(issuer.not_after);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        csr.params = params;
        let cert = csr
            .signed_by(&issuer.cert, &issuer.key)
            .map_err(IdentityError::generate("sign the intermediate CA"))?;
        issued(cert.pem())
    }

    /// Signs a leaf for exactly `id` (the only URI SAN; ignores any SAN the
    /// CSR asks for), EKU serverAuth+clientAuth, digitalSignature, not CA;
    /// not_before = now-1min; not_after = now+ttl (capped at the CA's own expiry).
    pub fn sign_leaf(&self, csr_pem: &str, id: &SpiffeId, ttl: Duration) -> Result<IssuedCert> {
        let (not_before, not_after) = validity(ttl)?;
        self.sign_leaf_inner(csr_pem, id, not_before, not_after, true)
    }

    /// Same but with explicit validity, for tests of expired certificates.
    pub fn sign_leaf_with_validity(
        &self,
        csr_pem: &str,
        id: &SpiffeId,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<IssuedCert> {
        self.sign_leaf_inner(csr_pem, id, not_before, not_after, false)
    }

    fn sign_leaf_inner(
        &self,
        csr_pem: &str,
        id: &SpiffeId,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        cap_to_ca: bool,
    ) -> Result<IssuedCert> {
        id.validate()?;
        let issuer = self.load()?;
        if id.trust_domain() != issuer.trust_domain {
            return Err(IdentityError::invalid(
                "leaf request",
                format!(
                    "{id} is not in this CA's trust domain {}",
                    issuer.trust_domain
                ),
            ));
        }
        let mut csr = parse_csr(csr_pem)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(id.common_name());
        params.subject_alt_names = vec![uri_san(&id.uri())?];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before;
        params.not_after = if cap_to_ca {
            not_after.min(issuer.not_after)
        } else {
            not_after
        };
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        csr.params = params;
        let cert = csr
            .signed_by(&issuer.cert, &issuer.key)
            .map_err(IdentityError::generate("sign the leaf certificate"))?;
        issued(cert.pem())
    }

    /// Rebuilds an rcgen issuer from the PEMs. rcgen signs with the issuer's
    /// parsed DN and SubjectKeyIdentifier, so the issued certificate's issuer
    /// name and AKI match the real CA certificate byte for byte.
    fn load(&self) -> Result<LoadedCa> {
        let der = first_cert_der(&self.cert_pem, "CA certificate")?;
        let parsed = parse_der(&der)?;
        if !parsed.is_ca() {
            return Err(IdentityError::invalid(
                "CA certificate",
                format!(
                    "{} is not a CA (basicConstraints cA=false)",
                    parsed.subject()
                ),
            ));
        }
        let trust_domain = ca_trust_domain(&der)?;
        let not_after = parsed.validity().not_after.to_datetime();
        let key = KeyPair::from_pem(&self.key_pem).map_err(|e| IdentityError::Pem {
            what: "CA private key",
            reason: e.to_string(),
        })?;
        if key.public_key_der() != parsed.public_key().raw {
            return Err(IdentityError::invalid(
                "CA key",
                format!(
                    "private key does not match the certificate {}",
                    parsed.subject()
                ),
            ));
        }
        let params = CertificateParams::from_ca_cert_der(&der)
            .map_err(IdentityError::generate("read the CA certificate"))?;
        let cert = params
            .self_signed(&key)
            .map_err(IdentityError::generate("rebuild the CA issuer"))?;
        Ok(LoadedCa {
            cert,
            key,
            trust_domain,
            not_after,
        })
    }
}

struct LoadedCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    trust_domain: String,
    not_after: OffsetDateTime,
}

fn ca_trust_domain(der: &[u8]) -> Result<String> {
    let cert = parse_der(der)?;
    match uri_sans(&cert)?.as_slice() {
        [one] => parse_trust_domain_uri(one),
        other => Err(IdentityError::invalid(
            "CA certificate",
            format!("expected one spiffe://<trust-domain> URI SAN, found {other:?}"),
        )),
    }
}

fn csr_for(common_name: String, uri: &str) -> Result<(String, String)> {
    let key = new_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name);
    params.subject_alt_names = vec![uri_san(uri)?];
    let csr = params
        .serialize_request(&key)
        .map_err(IdentityError::generate("create a CSR"))?;
    let csr_pem = csr
        .pem()
        .map_err(IdentityError::generate("encode the CSR"))?;
    Ok((key.serialize_pem(), csr_pem))
}

fn parse_csr(csr_pem: &str) -> Result<CertificateSigningRequestParams> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
        IdentityError::invalid("CSR", format!("cannot parse or verify its signature: {e}"))
    })?;
    // An uncompressed P-256 point is 65 bytes; this also rules out other
    // curves signing with SHA-256.
    if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256
        || csr.public_key.der_bytes().len() != 65
    {
        return Err(IdentityError::invalid("CSR", "key must be EC P-256"));
    }
    Ok(csr)
}

fn issued(cert_pem: String) -> Result<IssuedCert> {
    let info = cert_info(&cert_pem)?;
    Ok(IssuedCert {
        cert_pem,
        serial_hex: info.serial_hex,
        not_after_unix: info.not_after_unix,
    })
}

fn intermediate_cn(dc: &str) -> String {
    format!("strait intermediate CA {dc}")
}

fn new_key() -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(IdentityError::generate("generate a P-256 key"))
}

fn dn(common_name: String) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn uri_san(uri: &str) -> Result<SanType> {
    let ia5 = uri
        .try_into()
        .map_err(|_| IdentityError::invalid("URI SAN", format!("{uri:?} is not ASCII")))?;
    Ok(SanType::URI(ia5))
}

/// 16 random bytes, top bit clear so the DER integer stays positive.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("operating system random number generator failed");
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // no leading zero byte: serial_hex stays 32 chars
    SerialNumber::from_slice(&bytes)
}

fn validity(ttl: Duration) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let ttl = time::Duration::try_from(ttl)
        .map_err(|_| IdentityError::invalid("ttl", format!("{ttl:?} is too long")))?;
    let now = OffsetDateTime::now_utc();
    let not_after = now
        .checked_add(ttl)
        .ok_or_else(|| IdentityError::invalid("ttl", format!("{ttl} is too long")))?;
    Ok((now - BACKDATE, not_after))
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
