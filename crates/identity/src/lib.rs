//! strait-identity: the first crate of the flow. It owns who-is-who in the
//! mesh: SPIFFE IDs and SNI names ([`spiffe`]), the CA that issues roots,
//! intermediates and leaves ([`ca`]), the only rustls configs of the tree and
//! their SPIFFE verifiers ([`tls`]), safe key files ([`files`]) and the
//! token-MAC used to bootstrap trust ([`bootstrap`]).
#![forbid(unsafe_code)]

pub mod bootstrap;
pub mod ca;
mod certinfo;
mod error;
pub mod files;
pub mod spiffe;
pub mod testing;
pub mod tls;
mod verify;

pub use error::{IdentityError, Result};
pub use spiffe::SpiffeId;

#[cfg(test)]
mod tests;
