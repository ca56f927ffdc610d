//! The one error type of strait-identity: every message names the field,
//! value, certificate or peer that was wrong, so an operator can act on it.

/// Errors from parsing identities, issuing certificates and building TLS configs.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A SPIFFE ID (URI) that does not have one of strait's three shapes.
    #[error("invalid SPIFFE ID {uri:?}: {reason}")]
    InvalidSpiffeId { uri: String, reason: String },

    /// A name component (trust domain, namespace, DC, service, node) with bad syntax.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidName {
        field: String,
        value: String,
        reason: &'static str,
    },

    /// PEM text that could not be decoded.
    #[error("cannot parse {what} PEM: {reason}")]
    Pem { what: &'static str, reason: String },

    /// A certificate, key or CSR that parses but is unusable for the stated purpose.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    /// rcgen refused to generate or sign.
    #[error("cannot {action}: {source}")]
    Generate {
        action: &'static str,
        #[source]
        source: rcgen::Error,
    },

    /// rustls refused a configuration (for example a key it cannot load).
    #[error("cannot build TLS {what}: {source}")]
    Tls {
        what: String,
        #[source]
        source: rustls::Error,
    },
}

impl IdentityError {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        IdentityError::Invalid {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn generate(action: &'static str) -> impl FnOnce(rcgen::Error) -> Self {
        move |source| IdentityError::Generate { action, source }
    }
}

/// Result alias used across the crate.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;
