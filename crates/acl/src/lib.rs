//! Access control in Consul's model: tokens, policies and roles, the rule language, and the
//! [`Authorizer`] a token compiles to. The core only — pure, no I/O and no clock (callers pass
//! `now`); the servers store these types in their replicated state and every agent and server
//! endpoint asks an `Authorizer` before it acts (see docs/architecture.md, "ACLs").
//!
//! Secrets are stored as SHA-256 hashes, never in clear (Consul keeps them in clear); see
//! [`secret`] for why a fast hash is the right one here.

#![forbid(unsafe_code)]

mod rules;
pub mod secret;
mod token;

pub use rules::{Access, Level, Rules, RulesError, Segments, ServiceRule};
pub use secret::{is_uuid, new_uuid, SecretHash, SecretId};
pub use token::{
    InvalidAcl, Link, NodeIdentity, Policy, Role, ServiceIdentity, StoredToken, Token,
    ANONYMOUS_TOKEN_ID, GLOBAL_MANAGEMENT_POLICY_ID,
};
