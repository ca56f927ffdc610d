//! The one error type of strait-identity: every message names the field,
//! value, certificate or peer that was wrong, so an operator can act on it.

/// Errors from parsing identities, issuing certificates and building TLS configs.
///
/// A cause (rcgen's, rustls's) is shown in `Display` and not chained as `source()`, so it
/// appears once however the error is printed (`%e` in a log, `{:#}` through anyhow).
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
    #[error("cannot {action}: {error}")]
    Generate {
        action: &'static str,
        error: rcgen::Error,
    },

    /// rustls refused a configuration (for example a key it cannot load).
    #[error("cannot build TLS {what}: {error}")]
    Tls { what: String, error: rustls::Error },
}

impl IdentityError {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        IdentityError::Invalid {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn generate(action: &'static str) -> impl FnOnce(rcgen::Error) -> Self {
        move |error| IdentityError::Generate { action, error }
    }
}

/// Result alias used across the crate.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::IdentityError;

    /// rustls's message shows once, alone or at the end of a context chain.
    #[test]
    fn the_cause_appears_once() {
        let err = IdentityError::Tls {
            what: "server config".into(),
            error: rustls::Error::General("cause from rustls".into()),
        };
        assert!(std::error::Error::source(&err).is_none());
        let mut text = String::new();
        let mut cause: Option<&dyn std::error::Error> = Some(&err);
        while let Some(e) = cause {
            text.push_str(&format!("{e}; "));
            cause = e.source();
        }
        assert_eq!(text.matches("cause from rustls").count(), 1, "{text}");
        assert_eq!(
            err.to_string(),
            "cannot build TLS server config: unexpected error: cause from rustls"
        );
    }
}
