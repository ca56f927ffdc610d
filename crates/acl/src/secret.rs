//! Token secrets: generated as random UUIDs, stored only as SHA-256 hashes, never printed.
//!
//! Why a plain SHA-256 and no slow KDF (bcrypt, argon2): a KDF protects *low-entropy*
//! secrets (passwords) against offline guessing. A generated `SecretID` is a version-4 UUID,
//! 122 random bits from the OS; guessing one from its hash is a 2^122 search whatever the
//! hash costs, so slowing each guess down buys nothing, while every API request would pay
//! the KDF's cost. Secrets a person types into a config file (`acl.tokens.*`) must be at least
//! [`strait_rpc::config::MIN_TOKEN_LEN`] characters and should be generated the same way
//! (`uuidgen`); the lab and `strait acl` generate them.
//!
//! Lookups go by hash (a map keyed by [`SecretHash`]); the timing of such a lookup can only
//! tell an attacker about the hash of the secret *they* sent, never about a stored one.
//! [`SecretHash::matches`] compares in constant time for the places that hold one hash and
//! one candidate.

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use subtle::ConstantTimeEq;

/// A token's `SecretID`: what a client presents (`X-Consul-Token`). `Debug` and `Display`
/// print `<redacted>`; the only way to the text is [`SecretId::expose`], named so it is
/// visible in review.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretId(String);

impl SecretId {
    /// A new random secret: a version-4 UUID (122 bits from the OS's generator).
    pub fn generate() -> Self {
        SecretId(new_uuid())
    }

    /// A secret as a client or a config file gives it. Not validated here: config tokens
    /// are checked for length by [`crate::AclConfig::validate`], API-supplied ones with
    /// [`is_uuid`] (Consul requires a UUID there).
    pub fn new(text: impl Into<String>) -> Self {
        SecretId(text.into())
    }

    /// The secret's text, for the one place that must send it (an HTTP header, the answer
    /// to the request that created it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored instead of the secret.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for SecretId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretId)
    }
}

/// SHA-256 of a secret: what the replicated state keeps. Serialized as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// The hash of `secret` as a client sent it.
    pub fn of(secret: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
        let mut out = [0; 32];
        out.copy_from_slice(digest.as_ref());
        SecretHash(out)
    }

    /// Whether `secret` is the one this hash was made from; constant time in the hash bytes.
    pub fn matches(&self, secret: &str) -> bool {
        self.0.ct_eq(&SecretHash::of(secret).0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}…", hex8(&self.0))
    }
}

fn hex8(bytes: &[u8]) -> String {
    bytes[..4].iter().map(|b| format!("{b:02x}")).collect()
}

impl Serialize for SecretHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for SecretHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bad = || serde::de::Error::custom("a secret hash is 64 hex digits (SHA-256)");
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad());
        }
        let mut out = [0; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(SecretHash(out))
    }
}

/// A new random version-4 UUID, lowercase `8-4-4-4-12` (accessor IDs, policy and role IDs,
/// secrets).
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Whether `text` is a UUID in its `8-4-4-4-12` hex form (any version, either case), as
/// Consul requires of `AccessorID`s and `SecretID`s a client chooses.
pub fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_v4_uuids_and_differ() {
        let a = SecretId::generate();
        let b = SecretId::generate();
        assert_ne!(a, b);
        assert!(is_uuid(a.expose()), "{}", a.expose());
        assert_eq!(&a.expose()[14..15], "4", "version nibble");
        assert!(matches!(&a.expose()[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn secrets_never_print() {
        let s = SecretId::new("6a1f0c2e-very-secret-value");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            "\"6a1f0c2e-very-secret-value\""
        );
    }

    #[test]
    fn hash_matches_only_its_secret() {
        let s = SecretId::generate();
        let h = s.hash();
        assert!(h.matches(s.expose()));
        assert!(!h.matches(SecretId::generate().expose()));
        assert!(!h.matches(""));
        assert_eq!(h, SecretHash::of(s.expose()));
    }

    #[test]
    fn hash_is_sha256_hex_and_round_trips() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        let h = SecretHash::of("abc");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(
            json,
            "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\""
        );
        assert_eq!(serde_json::from_str::<SecretHash>(&json).unwrap(), h);
        assert_eq!(format!("{h:?}"), "sha256:ba7816bf…");
        let err = serde_json::from_str::<SecretHash>("\"abc\"").unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
        let err = serde_json::from_str::<SecretHash>(&format!("\"{}\"", "zz".repeat(32)));
        assert!(err.is_err());
    }

    #[test]
    fn uuid_shape() {
        assert!(is_uuid("00000000-0000-0000-0000-000000000001"));
        assert!(is_uuid("6A1F0C2E-1111-4222-8333-444455556666"));
        assert!(!is_uuid("6a1f0c2e-1111-4222-8333-44445555666"));
        assert!(!is_uuid("6a1f0c2e11114222833344445555666600"));
        assert!(!is_uuid("6a1f0c2e-1111-4222-8333-44445555666g"));
        assert!(!is_uuid(""));
    }
}
