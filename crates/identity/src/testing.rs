//! Helpers for other crates' tests to mint a CA and identities quickly.
//! They panic on failure: they only ever see inputs the test itself built.

use std::time::Duration;

use crate::ca::{generate_intermediate_csr, generate_key_and_csr, generate_root, CaCert};
use crate::spiffe::SpiffeId;

/// A root CA for `td`, valid one day.
pub fn test_ca(td: &str) -> CaCert {
    generate_root(td, Duration::from_secs(24 * 3600)).expect("test root CA")
}

/// An intermediate CA for a secondary `dc`, signed by `root`, valid one day.
pub fn test_intermediate(root: &CaCert, dc: &str) -> CaCert {
    let td = root.trust_domain().expect("root trust domain");
    let (key_pem, csr_pem) = generate_intermediate_csr(&td, dc).expect("intermediate CSR");
    let issued = root
        .sign_intermediate(&csr_pem, dc, Duration::from_secs(24 * 3600))
        .expect("sign intermediate");
    CaCert::from_pem(&issued.cert_pem, &key_pem).expect("load intermediate")
}

/// A one-hour leaf for `id` from `ca`: (chain PEM incl. intermediate, key PEM).
pub fn issue_identity(ca: &CaCert, id: &SpiffeId) -> (String, String) {
    let (key_pem, csr_pem) = generate_key_and_csr(id).expect("leaf CSR");
    let issued = ca
        .sign_leaf(&csr_pem, id, Duration::from_secs(3600))
        .expect("sign leaf");
    let chain = ca.leaf_chain_pem(&issued.cert_pem).expect("leaf chain");
    (chain, key_pem)
}
