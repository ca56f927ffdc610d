//! Access control in Consul's model: tokens, policies and roles ([`token`]), the rule
//! language ([`Rules`]), the [`Authorizer`] a token compiles to, the ACL part of the servers'
//! replicated state ([`AclState`], changed by [`AclCommand`]s), and the `[acl]` config table
//! ([`AclConfig`]). The core only — pure, no I/O and no clock (callers pass `now`); every
//! agent and server endpoint is to ask an `Authorizer` before it acts (docs/architecture.md,
//! "ACLs (core only so far)").
//!
//! Where it sits: beside the catalog. The servers store tokens, policies and roles; agents,
//! servers and the ADS server resolve the token of each request into an `Authorizer`; a
//! refusal is a [`Denied`], whose message is Consul's, answered with 403.
//!
//! Secrets are stored as SHA-256 hashes, never in clear (Consul keeps them in clear); see
//! [`secret`] for why a fast hash is the right one here, and never printed: [`SecretId`]'s
//! `Debug` and `Display` are `<redacted>`, logs name a token by its `AccessorID`.

#![forbid(unsafe_code)]

mod authorizer;
mod config;
mod rules;
pub mod secret;
mod state;
pub mod token;

pub use authorizer::{Authorizer, Context, Denied, Resource, Store};
pub use config::{AclConfig, AclConfigError, AclTokens, DefaultPolicy, DownPolicy, Side};
pub use rules::{Access, Level, Rules, RulesError, Segments, ServiceRule};
pub use secret::{is_uuid, new_uuid, SecretHash, SecretId};
pub use state::{
    prepare_bootstrap, prepare_policy, prepare_role, AclCommand, AclRefused, AclState, Replica,
    ResolveError,
};
pub use token::{
    Grants, InvalidAcl, Link, NodeIdentity, Policy, Revision, Role, ServiceIdentity, StoredToken,
    Token, ANONYMOUS_SECRET, ANONYMOUS_TOKEN_ID, GLOBAL_MANAGEMENT_POLICY_ID,
};
