//! Reading certificates back: PEM decoding and the few X.509 facts strait
//! needs (SPIFFE URI SAN, serial, validity, CA flag). Used by the CA when it
//! signs, by the TLS verifiers after webpki has checked the chain, and by
//! admin/doctor output.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::error::{IdentityError, Result};
use crate::spiffe::SpiffeId;

/// What `cert_info` reports about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The URI SAN when the certificate has exactly one (leaf: a SpiffeId URI; CA: `spiffe://<td>`).
    pub spiffe_id: Option<String>,
    /// Serial number, lowercase hex, big-endian without leading zero bytes.
    pub serial_hex: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    /// Subject DN in RFC 4514-ish text form.
    pub subject: String,
    pub is_ca: bool,
}

/// Facts about the first certificate in `cert_pem`.
pub fn cert_info(cert_pem: &str) -> Result<CertInfo> {
    let der = first_cert_der(cert_pem, "certificate")?;
    cert_info_der(&der)
}

/// Same as [`cert_info`] for a DER certificate.
pub fn cert_info_der(der: &[u8]) -> Result<CertInfo> {
    let cert = parse_der(der)?;
    let uris = uri_sans(&cert)?;
    Ok(CertInfo {
        spiffe_id: match uris.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        },
        serial_hex: hex::encode(cert.serial.to_bytes_be()),
        not_before_unix: cert.validity().not_before.timestamp(),
        not_after_unix: cert.validity().not_after.timestamp(),
        subject: cert.subject().to_string(),
        is_ca: cert.is_ca(),
    })
}

/// All certificates of a PEM bundle, in order; at least one.
pub(crate) fn certs_from_pem(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(IdentityError::Pem {
            what,
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

pub(crate) fn first_cert_der(pem: &str, what: &'static str) -> Result<CertificateDer<'static>> {
    let mut certs = certs_from_pem(pem, what)?;
    Ok(certs.swap_remove(0))
}

pub(crate) fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| IdentityError::invalid("certificate", format!("X.509 parse error: {e}")))?;
    if !rest.is_empty() {
        return Err(IdentityError::invalid(
            "certificate",
            "trailing bytes after the certificate",
        ));
    }
    Ok(cert)
}

/// Every URI SAN of the certificate, in order.
pub(crate) fn uri_sans(cert: &X509Certificate<'_>) -> Result<Vec<String>> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::invalid("certificate", format!("bad SAN extension: {e}")))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The leaf's identity: exactly one URI SAN, and it must be a valid SpiffeId.
pub(crate) fn spiffe_id_of(der: &[u8]) -> Result<SpiffeId> {
    spiffe_id_of_cert(&parse_der(der)?)
}

/// [`spiffe_id_of`] of a parsed certificate.
pub(crate) fn spiffe_id_of_cert(cert: &X509Certificate<'_>) -> Result<SpiffeId> {
    let uris = uri_sans(cert)?;
    match uris.as_slice() {
        [one] => one.parse(),
        [] => Err(IdentityError::invalid(
            "certificate identity",
            "no URI SAN (expected one spiffe:// ID)",
        )),
        many => Err(IdentityError::invalid(
            "certificate identity",
            format!(
                "{} URI SANs ({}), expected exactly one",
                many.len(),
                many.join(", ")
            ),
        )),
    }
}
