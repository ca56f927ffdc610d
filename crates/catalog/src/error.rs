//! Errors of catalog operations. Each names the node, service, check or field at fault so an
//! HTTP 400/404 body tells the caller exactly what to fix.

/// A catalog operation failed; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("{what}: field {field} must not be empty")]
    EmptyField { what: String, field: &'static str },
    /// A registration breaking one of [`crate::rules`]; `reason` names the field.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("unknown node {node:?}")]
    UnknownNode { node: String },
    #[error("unknown service {service:?} on node {node:?}")]
    UnknownService { node: String, service: String },
    #[error("unknown check {check:?} on node {node:?}")]
    UnknownCheck { node: String, check: String },
    #[error("invalid check status {status:?} (expected passing, warning or critical)")]
    InvalidStatus { status: String },
    #[error("service {service:?}: invalid Kind {kind:?} (expected \"\", connect-proxy, mesh-gateway or strait-server)")]
    InvalidKind { service: String, kind: String },
    #[error("{what}: invalid {field} {mode:?} (expected \"\", local, remote or none)")]
    InvalidMode {
        what: String,
        field: &'static str,
        mode: String,
    },
    #[error("{what}: invalid {field} {value:?} (expected ip:port)")]
    InvalidAddress {
        what: String,
        field: &'static str,
        value: String,
    },
    #[error("check {check:?} names node {check_node:?} but is registered with node {node:?}")]
    NodeMismatch {
        node: String,
        check: String,
        check_node: String,
    },
    #[error("invalid config entry {kind:?}/{name:?}: {reason}")]
    InvalidConfigEntry {
        kind: String,
        name: String,
        reason: String,
    },
    #[error("unknown config entry {kind:?}/{name:?}")]
    UnknownConfigEntry { kind: String, name: String },
    /// A check-and-set write (Consul's `?cas=`) whose index is not the entry's `ModifyIndex`
    /// (0: the entry must not exist).
    #[error("config entry {kind:?}/{name:?} changed: check-and-set index {cas}, its ModifyIndex is {actual}")]
    CasMismatch {
        kind: String,
        name: String,
        cas: u64,
        actual: u64,
    },
    #[error("invalid catalog snapshot: {0}")]
    BadSnapshot(String),
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
