//! The certificate verifiers behind every strait TLS config: webpki checks the
//! chain (to the federation roots, intermediates from the peer, current time,
//! EKU), then the leaf's single URI SAN must be a SPIFFE ID the caller
//! expects. DNS names are never checked: SNI is a routing key, not an identity.
//! Errors are specific so callers can classify failures with [`failure_reason`].

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::TrustAnchor;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, DistinguishedName, OtherError,
    SignatureScheme,
};
use webpki::{EndEntityCert, KeyUsage};

use crate::certinfo::spiffe_id_of;
use crate::spiffe::SpiffeId;

/// Which peer identities a verifier accepts once the chain is valid.
#[derive(Debug, Clone)]
pub(crate) enum Accept {
    /// Exactly one of these IDs.
    OneOf(Vec<SpiffeId>),
    /// Any `SpiffeId::Server` of one of these trust domains.
    ServerOf(Vec<String>),
    /// Any ID of one of these trust domains.
    TrustDomain(Vec<String>),
}

impl fmt::Display for Accept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Accept::OneOf(ids) if ids.len() == 1 => write!(f, "{}", ids[0]),
            Accept::OneOf(ids) => {
                let uris: Vec<String> = ids.iter().map(SpiffeId::uri).collect();
                write!(f, "one of [{}]", uris.join(", "))
            }
            Accept::ServerOf(tds) => write!(f, "a server of trust domain {}", tds.join(" or ")),
            Accept::TrustDomain(tds) => {
                write!(f, "an identity in trust domain {}", tds.join(" or "))
            }
        }
    }
}

impl Accept {
    fn allows(&self, id: &SpiffeId) -> bool {
        match self {
            Accept::OneOf(ids) => ids.contains(id),
            Accept::ServerOf(tds) => {
                matches!(id, SpiffeId::Server { .. })
                    && tds.iter().any(|td| td == id.trust_domain())
            }
            Accept::TrustDomain(tds) => tds.iter().any(|td| td == id.trust_domain()),
        }
    }
}

/// A peer presented a valid chain but the wrong (or no usable) SPIFFE ID.
#[derive(Debug)]
pub struct BadIdentity(pub String);

impl fmt::Display for BadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadIdentity {}

fn bad_identity(msg: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(BadIdentity(
        msg,
    )))))
}

/// Chain + identity verification shared by the client and server verifiers.
#[derive(Debug)]
pub(crate) struct SpiffeVerifier {
    roots: Arc<[TrustAnchor<'static>]>,
    accept: Accept,
    algs: WebPkiSupportedAlgorithms,
}

impl SpiffeVerifier {
    pub(crate) fn new(roots: Arc<[TrustAnchor<'static>]>, accept: Accept) -> Self {
        SpiffeVerifier {
            roots,
            accept,
            algs: crate::tls::provider().signature_verification_algorithms,
        }
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: KeyUsage,
    ) -> Result<SpiffeId, rustls::Error> {
        let ee = EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        ee.verify_for_usage(
            self.algs.all,
            &self.roots,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(pki_error)?;
        let id =
            spiffe_id_of(end_entity).map_err(|e| bad_identity(format!("peer certificate: {e}")))?;
        if !self.accept.allows(&id) {
            return Err(bad_identity(format!(
                "peer SPIFFE ID {id}, expected {}",
                self.accept
            )));
        }
        Ok(id)
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }
}

/// Verifies the server a client dialed (EKU serverAuth).
#[derive(Debug)]
pub(crate) struct ServerVerifier(pub(crate) SpiffeVerifier);

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .verify(end_entity, intermediates, now, KeyUsage::server_auth())?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algs.supported_schemes()
    }
}

/// Verifies the client certificate a server received (EKU clientAuth).
#[derive(Debug)]
pub(crate) struct ClientVerifier {
    pub(crate) inner: SpiffeVerifier,
    pub(crate) mandatory: bool,
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    /// Empty: clients have exactly one certificate and always send it.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify(end_entity, intermediates, now, KeyUsage::client_auth())?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.algs.supported_schemes()
    }
}

/// Accepts any server certificate but still checks the handshake signature.
/// Only for bootstrap exchanges authenticated by an HMAC over the answer.
#[derive(Debug)]
pub(crate) struct AcceptAnyServer(pub(crate) WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Maps webpki's chain errors to rustls errors much as rustls' own verifier does.
fn pki_error(error: webpki::Error) -> rustls::Error {
    use webpki::Error as W;
    let ce = match error {
        W::BadDer | W::BadDerTime | W::TrailingData(_) => CertificateError::BadEncoding,
        W::CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }
        }
        W::CertExpired { time, not_after } => CertificateError::ExpiredContext { time, not_after },
        W::InvalidCertValidity => CertificateError::Expired,
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::CertRevoked => CertificateError::Revoked,
        // During chain building this means a CA with a trusted CA's *name*
        // but another key signed the certificate (e.g. another cluster that
        // reused a trust domain): for the operator that is an unknown CA.
        // "bad_signature" stays reserved for handshake signatures.
        W::InvalidSignatureForPublicKey => CertificateError::UnknownIssuer,
        W::UnsupportedSignatureAlgorithmContext(cx) => {
            CertificateError::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: cx.signature_algorithm_id,
                supported_algorithms: cx.supported_algorithms,
            }
        }
        W::UnsupportedSignatureAlgorithmForPublicKeyContext(cx) => {
            CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: cx.signature_algorithm_id,
                public_key_algorithm_id: cx.public_key_algorithm_id,
            }
        }
        #[allow(deprecated)]
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => {
            CertificateError::InvalidPurpose
        }
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(ce)
}

/// Why a TLS handshake failed, in the few classes an operator acts on. Proxies count
/// failures by [`TlsFailure::as_str`] (a metric label), the doctor picks its hint by variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// The peer presented no certificate.
    NoCertificate,
    /// The chain does not lead to a root we (or the peer) trust.
    UnknownCa,
    /// A certificate on the chain is expired or not valid yet.
    Expired,
    /// The certificate is valid but names another identity (or is not for this use).
    BadIdentity,
    /// A signature on the chain or in the handshake does not verify.
    BadSignature,
    /// Anything else (protocol errors, unsupported algorithms).
    Other,
}

impl TlsFailure {
    /// The metric label: `no_certificate`, `unknown_ca`, `expired`, `bad_identity`,
    /// `bad_signature` or `other` (stable: dashboards and docs/troubleshooting.md use them).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::NoCertificate => "no_certificate",
            TlsFailure::UnknownCa => "unknown_ca",
            TlsFailure::Expired => "expired",
            TlsFailure::BadIdentity => "bad_identity",
            TlsFailure::BadSignature => "bad_signature",
            TlsFailure::Other => "other",
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies a handshake failure.
///
/// Works for errors detected locally and, as a best guess from the alert,
/// for errors the peer reported (e.g. a server refusing our client cert).
pub fn failure_reason(err: &rustls::Error) -> TlsFailure {
    use rustls::Error as E;
    use TlsFailure as F;
    match err {
        E::NoCertificatesPresented => F::NoCertificate,
        E::InvalidCertificate(ce) => match ce {
            CertificateError::UnknownIssuer => F::UnknownCa,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => F::Expired,
            CertificateError::BadSignature => F::BadSignature,
            CertificateError::NotValidForName
            | CertificateError::NotValidForNameContext { .. }
            | CertificateError::InvalidPurpose
            | CertificateError::InvalidPurposeContext { .. }
            | CertificateError::ApplicationVerificationFailure => F::BadIdentity,
            CertificateError::Other(OtherError(inner))
                if inner.downcast_ref::<BadIdentity>().is_some() =>
            {
                F::BadIdentity
            }
            _ => F::Other,
        },
        E::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => F::NoCertificate,
            AlertDescription::UnknownCA => F::UnknownCa,
            AlertDescription::CertificateExpired => F::Expired,
            AlertDescription::DecryptError => F::BadSignature,
            AlertDescription::CertificateUnknown
            | AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied => F::BadIdentity,
            _ => F::Other,
        },
        _ => F::Other,
    }
}
