//! Authenticates join / federation-join exchanges with a shared token without
//! ever sending the token: each side MACs the values it sends (nonces, CSR,
//! roots...) with the token as key, and the other side checks the MAC. This
//! is what makes [`crate::tls::dangerous_unverified_client_config`] safe to
//! use for the first contact.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

fn message(parts: &[&[u8]]) -> Vec<u8> {
    // Length-prefixing makes ["ab","c"] and ["a","bc"] different messages.
    let mut msg = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        msg.extend_from_slice(&(part.len() as u64).to_be_bytes());
        msg.extend_from_slice(part);
    }
    msg
}

/// Hex HMAC-SHA256, keyed by `token`, over the length-prefixed `parts`.
pub fn mac(token: &str, parts: &[&[u8]]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
    hex::encode(hmac::sign(&key, &message(parts)).as_ref())
}

/// Constant-time check of a MAC produced by [`mac`]. False on malformed hex.
pub fn verify_mac(token: &str, parts: &[&[u8]], mac_hex: &str) -> bool {
    let Ok(tag) = hex::decode(mac_hex) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
    hmac::verify(&key, &message(parts), &tag).is_ok()
}

/// 32 random hex characters (128 bits), for challenge/response freshness.
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("operating system random number generator failed");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_roundtrip_and_rejections() {
        let parts: &[&[u8]] = &[b"nonce", b"csr"];
        let m = mac("tok", parts);
        assert_eq!(m.len(), 64);
        assert!(verify_mac("tok", parts, &m));
        assert!(!verify_mac("other", parts, &m));
        assert!(!verify_mac("tok", &[b"nonce", b"csx"], &m));
        assert!(!verify_mac("tok", &[b"nonc", b"ecsr"], &m));
        assert!(!verify_mac("tok", parts, &m[..62]));
        assert!(!verify_mac("tok", parts, "zz"));
        assert!(!verify_mac("tok", parts, ""));
    }

    #[test]
    fn nonces_are_fresh_hex() {
        let a = nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, nonce());
    }
}
