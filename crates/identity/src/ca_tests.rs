//! Unit tests of the CA: what it signs, what it refuses.

use std::time::Duration;

use super::*;
use crate::testing::{issue_identity, test_ca};
use crate::tls::Identity;

const TD: &str = "abcd1234.strait";

#[test]
fn ca_issues_exactly_the_requested_identity() {
    let ca = test_ca(TD);
    let info = cert_info(&ca.cert_pem).unwrap();
    assert!(info.is_ca);
    assert_eq!(info.spiffe_id.as_deref(), Some("spiffe://abcd1234.strait"));
    assert!(
        info.subject.contains("strait root CA abcd1234.strait"),
        "{}",
        info.subject
    );
    assert_eq!(ca.trust_domain().unwrap(), TD);

    // The CSR asks for "web"; the CA decides "api".
    let (_, csr) = generate_key_and_csr(&SpiffeId::service(TD, "dc1", "web")).unwrap();
    let api = SpiffeId::service(TD, "dc1", "api");
    let issued = ca.sign_leaf(&csr, &api, Duration::from_secs(3600)).unwrap();
    let leaf = cert_info(&issued.cert_pem).unwrap();
    assert_eq!(leaf.spiffe_id, Some(api.uri()));
    assert!(!leaf.is_ca);
    assert_eq!(leaf.serial_hex, issued.serial_hex);
    assert_eq!(leaf.serial_hex.len(), 32);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((leaf.not_after_unix - (now + 3600)).abs() <= 5);
    assert!((leaf.not_before_unix - (now - 60)).abs() <= 5);
    assert_eq!(leaf.not_after_unix, issued.not_after_unix);

    // Another trust domain, a bad CSR, a mismatched key: all refused.
    assert!(ca
        .sign_leaf(
            &csr,
            &SpiffeId::service("x.strait", "dc1", "api"),
            Duration::from_secs(60)
        )
        .is_err());
    assert!(ca
        .sign_leaf("garbage", &api, Duration::from_secs(60))
        .is_err());
    let other = generate_root(TD, Duration::from_secs(60)).unwrap();
    let err = CaCert::from_pem(&ca.cert_pem, &other.key_pem)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match"), "{err}");
    assert!(CaCert::from_pem(&ca.cert_pem, &ca.key_pem).is_ok());
    // A leaf is not a CA and a CA is not an identity.
    let (chain, key) = issue_identity(&ca, &api);
    assert!(CaCert::from_pem(&chain, &key).is_err());
    assert!(Identity::from_pem(&ca.cert_pem, &ca.key_pem).is_err());
    // A key that does not match the leaf.
    let (_, other_key) = issue_identity(&ca, &api);
    assert!(Identity::from_pem(&chain, &other_key).is_err());
}
