//! strait-base: the two std-level helpers every strait crate needs, written once.
//!
//! - [`clock`]: the wall clock as Unix seconds (certificate lifetimes, lab timestamps) or
//!   milliseconds (snapshot versions that keep increasing across restarts).
//! - [`sync`]: locking a `std::sync::Mutex`/`RwLock` without `unwrap()`. A panic while a
//!   guard is held poisons the lock; strait's guarded values are maps and caches that stay
//!   consistent between statements, so the next user takes the value as it is instead of
//!   panicking in turn (one panicked task must not take every later request down with it).
//!
//! No dependencies: the catalog, the snapshot builder's neighbours and the binary can all
//! depend on it.

#![forbid(unsafe_code)]

pub mod clock;
pub mod sync;

pub use clock::{unix_now, unix_now_millis};
