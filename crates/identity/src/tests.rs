//! In-memory handshake tests of the CA and the TLS configs together: no
//! sockets, the two rustls engines exchange bytes through Vecs.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::ca::{cert_info, generate_key_and_csr, CaCert};
use crate::testing::{issue_identity, test_ca, test_intermediate};
use crate::tls::{
    client_config, dangerous_unverified_client_config, failure_reason, peer_identity,
    peer_identity_until, server_config, ClientAuth, Expect, Identity, Roots, TlsFailure,
};
use crate::SpiffeId;

const TD: &str = "abcd1234.strait";

fn ident(ca: &CaCert, id: &SpiffeId) -> Identity {
    let (chain, key) = issue_identity(ca, id);
    Identity::from_pem(&chain, &key).unwrap()
}

fn roots(cas: &[&CaCert]) -> Roots {
    Roots::from_pems(&cas.iter().map(|c| c.cert_pem.clone()).collect::<Vec<_>>()).unwrap()
}

#[derive(Debug, Default)]
struct Outcome {
    client: Option<rustls::Error>,
    server: Option<rustls::Error>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.client.is_none() && self.server.is_none()
    }
}

/// Moves pending TLS bytes from `from` to `to`; records `to`'s first error.
fn transfer(from: &mut Connection, to: &mut Connection, err: &mut Option<rustls::Error>) -> bool {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    if buf.is_empty() || err.is_some() {
        return !buf.is_empty() && err.is_none();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        if let Err(e) = to.process_new_packets() {
            *err = Some(e);
            break;
        }
    }
    true
}

fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
) -> (Outcome, Connection, Connection) {
    let sni = ServerName::try_from("web.default.dc1.internal.abcd1234.strait").unwrap();
    let mut c = Connection::from(ClientConnection::new(client, sni).unwrap());
    let mut s = Connection::from(ServerConnection::new(server).unwrap());
    let mut out = Outcome::default();
    for _ in 0..20 {
        let a = transfer(&mut c, &mut s, &mut out.server);
        let b = transfer(&mut s, &mut c, &mut out.client);
        if !a && !b {
            break;
        }
    }
    if out.ok() {
        assert!(
            !c.is_handshaking() && !s.is_handshaking(),
            "handshake stalled"
        );
    }
    (out, c, s)
}

#[test]
fn root_signed_mutual_tls_and_peer_identity() {
    let ca = test_ca(TD);
    let web = SpiffeId::service(TD, "dc1", "web");
    let api = SpiffeId::service(TD, "dc1", "api");
    let r = roots(&[&ca]);
    let server = server_config(&ident(&ca, &web), &r, ClientAuth::Required).unwrap();
    let client = client_config(Some(&ident(&ca, &api)), &r, Expect::Exact(web.clone())).unwrap();
    let (out, c, s) = handshake(client, server);
    assert!(out.ok(), "{out:?}");
    assert_eq!(peer_identity(&s), Some(api));
    assert_eq!(peer_identity(&c), Some(web));
    // Each side knows until when the other's certificate holds: the leaf's not_after.
    let chain = |conn: &rustls::CommonState| conn.peer_certificates().unwrap()[0].clone();
    for conn in [&*s, &*c] {
        let not_after = crate::certinfo::cert_info_der(&chain(conn))
            .unwrap()
            .not_after_unix;
        let (id, at) = peer_identity_until(conn).unwrap();
        assert_eq!(Some(id), peer_identity(conn));
        let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs as i64, not_after);
        assert!(at > std::time::SystemTime::now());
    }
    // provider(): AES-128-GCM/SHA-256 first on both ends, X25519 first.
    let suite = c.negotiated_cipher_suite().map(|s| s.suite());
    assert_eq!(suite, Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
    let group = c.negotiated_key_exchange_group().map(|g| g.name());
    assert_eq!(group, Some(rustls::NamedGroup::X25519));
}

#[test]
fn resumed_sessions_keep_peer_identities() {
    let ca = test_ca(TD);
    let web = SpiffeId::service(TD, "dc1", "web");
    let api = SpiffeId::service(TD, "dc1", "api");
    let r = roots(&[&ca]);
    let server = server_config(&ident(&ca, &web), &r, ClientAuth::Required).unwrap();
    let client = client_config(Some(&ident(&ca, &api)), &r, Expect::Exact(web.clone())).unwrap();
    for _ in 0..3 {
        let (out, c, s) = handshake(client.clone(), server.clone());
        assert!(out.ok(), "{out:?}");
        assert_eq!(peer_identity(&s), Some(api.clone()));
        assert_eq!(peer_identity(&c), Some(web.clone()));
    }
}

#[test]
fn intermediate_chain_verifies_both_ways() {
    let root = test_ca(TD);
    let dc2 = test_intermediate(&root, "dc2");
    let web2 = SpiffeId::service(TD, "dc2", "web");
    let (chain, key) = issue_identity(&dc2, &web2);
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let server_id = Identity::from_pem(&chain, &key).unwrap();
    assert_eq!(server_id.chain().len(), 2);
    let client_id = ident(&root, &SpiffeId::agent(TD, "dc1", "n1"));
    let r = roots(&[&root]);

    let server = server_config(&server_id, &r, ClientAuth::Required).unwrap();
    let client = client_config(Some(&client_id), &r, Expect::Exact(web2.clone())).unwrap();
    let (out, _, s) = handshake(client, server);
    assert!(out.ok(), "{out:?}");
    assert_eq!(peer_identity(&s), Some(SpiffeId::agent(TD, "dc1", "n1")));

    // Reverse roles: client in dc2 presents the intermediate chain.
    let server = server_config(&client_id, &r, ClientAuth::Required).unwrap();
    let client = client_config(
        Some(&server_id),
        &r,
        Expect::AnyOf(vec![SpiffeId::agent(TD, "dc1", "n1")]),
    )
    .unwrap();
    let (out, _, s) = handshake(client, server);
    assert!(out.ok(), "{out:?}");
    assert_eq!(peer_identity(&s), Some(web2));

    // An intermediate cannot sign another CA.
    let (_, csr) = crate::ca::generate_intermediate_csr(TD, "dc3").unwrap();
    assert!(dc2
        .sign_intermediate(&csr, "dc3", Duration::from_secs(60))
        .is_err());
}

#[test]
fn wrong_identity_is_refused_with_reason() {
    let ca = test_ca(TD);
    let r = roots(&[&ca]);
    let server = server_config(
        &ident(&ca, &SpiffeId::service(TD, "dc1", "web")),
        &r,
        ClientAuth::Optional,
    )
    .unwrap();
    let want = SpiffeId::service(TD, "dc1", "db");
    let client = client_config(None, &r, Expect::Exact(want)).unwrap();
    let (out, _, _) = handshake(client, server);
    let err = out.client.expect("client must refuse");
    assert_eq!(failure_reason(&err), TlsFailure::BadIdentity);
    let msg = err.to_string();
    assert!(
        msg.contains("spiffe://abcd1234.strait/ns/default/dc/dc1/svc/web")
            && msg.contains("spiffe://abcd1234.strait/ns/default/dc/dc1/svc/db"),
        "{msg}"
    );
    assert_eq!(
        failure_reason(&out.server.expect("server sees the alert")),
        TlsFailure::BadIdentity
    );
}

#[test]
fn any_server_accepts_servers_only() {
    let ca = test_ca(TD);
    let r = roots(&[&ca]);
    let server_ident = ident(&ca, &SpiffeId::server(TD, "dc2"));
    let agent = ident(&ca, &SpiffeId::agent(TD, "dc1", "n1"));
    for me in [Some(&agent), None] {
        let client = client_config(me, &r, Expect::AnyServer).unwrap();
        let server = server_config(&server_ident, &r, ClientAuth::Optional).unwrap();
        let (out, c, _) = handshake(client, server);
        assert!(out.ok(), "{out:?}");
        assert_eq!(peer_identity(&c), Some(SpiffeId::server(TD, "dc2")));
    }
    let client = client_config(Some(&agent), &r, Expect::AnyServer).unwrap();
    let server = server_config(
        &ident(&ca, &SpiffeId::service(TD, "dc1", "web")),
        &r,
        ClientAuth::Optional,
    )
    .unwrap();
    let (out, _, _) = handshake(client, server);
    assert_eq!(
        failure_reason(&out.client.unwrap()),
        TlsFailure::BadIdentity
    );
}

#[test]
fn other_root_is_refused_as_unknown_ca() {
    let ca = test_ca(TD);
    let rogue = test_ca(TD);
    let web = SpiffeId::service(TD, "dc1", "web");
    let server = server_config(
        &ident(&rogue, &web),
        &roots(&[&rogue]),
        ClientAuth::Required,
    )
    .unwrap();
    let client = client_config(
        Some(&ident(&ca, &SpiffeId::service(TD, "dc1", "api"))),
        &roots(&[&ca]),
        Expect::Exact(web),
    )
    .unwrap();
    let (out, _, _) = handshake(client, server);
    assert_eq!(failure_reason(&out.client.unwrap()), TlsFailure::UnknownCa);
    assert_eq!(failure_reason(&out.server.unwrap()), TlsFailure::UnknownCa);

    // A root of another trust domain (different issuer name).
    let stranger = test_ca("other.strait");
    let server = server_config(
        &ident(&ca, &SpiffeId::server(TD, "dc1")),
        &roots(&[&ca]),
        ClientAuth::Required,
    )
    .unwrap();
    let client_id = ident(&stranger, &SpiffeId::agent("other.strait", "dc1", "n1"));
    let client = client_config(
        Some(&client_id),
        &roots(&[&ca]),
        Expect::Exact(SpiffeId::server(TD, "dc1")),
    )
    .unwrap();
    let (out, _, _) = handshake(client, server);
    assert_eq!(failure_reason(&out.server.unwrap()), TlsFailure::UnknownCa);
}

#[test]
fn server_refuses_client_of_another_trust_domain() {
    let ca = test_ca(TD);
    let other = test_ca("other.strait");
    let r = roots(&[&ca, &other]);
    let web = SpiffeId::service(TD, "dc1", "web");
    let server = server_config(&ident(&ca, &web), &r, ClientAuth::Required).unwrap();
    let stranger = ident(&other, &SpiffeId::service("other.strait", "dc1", "api"));
    let client = client_config(Some(&stranger), &r, Expect::Exact(web)).unwrap();
    let (out, _, _) = handshake(client, server);
    let err = out.server.expect("server must refuse");
    assert_eq!(failure_reason(&err), TlsFailure::BadIdentity);
    assert!(err.to_string().contains("other.strait"), "{err}");
}

#[test]
fn expired_leaf_is_refused() {
    let ca = test_ca(TD);
    let web = SpiffeId::service(TD, "dc1", "web");
    let (key, csr) = generate_key_and_csr(&web).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let issued = ca
        .sign_leaf_with_validity(
            &csr,
            &web,
            now - time::Duration::hours(2),
            now - time::Duration::hours(1),
        )
        .unwrap();
    let expired = Identity::from_pem(&issued.cert_pem, &key).unwrap();
    let r = roots(&[&ca]);
    // As a server certificate.
    let server = server_config(&expired, &r, ClientAuth::Optional).unwrap();
    let (out, _, _) = handshake(
        client_config(None, &r, Expect::Exact(web.clone())).unwrap(),
        server,
    );
    assert_eq!(failure_reason(&out.client.unwrap()), TlsFailure::Expired);
    // As a client certificate.
    let server = server_config(
        &ident(&ca, &SpiffeId::server(TD, "dc1")),
        &r,
        ClientAuth::Required,
    )
    .unwrap();
    let (out, _, _) = handshake(
        client_config(Some(&expired), &r, Expect::AnyServer).unwrap(),
        server,
    );
    assert_eq!(failure_reason(&out.server.unwrap()), TlsFailure::Expired);
}

#[test]
fn missing_client_cert_required_vs_optional() {
    let ca = test_ca(TD);
    let r = roots(&[&ca]);
    let id = ident(&ca, &SpiffeId::server(TD, "dc1"));
    let (out, _, _) = handshake(
        client_config(None, &r, Expect::AnyServer).unwrap(),
        server_config(&id, &r, ClientAuth::Required).unwrap(),
    );
    assert_eq!(
        failure_reason(&out.server.unwrap()),
        TlsFailure::NoCertificate
    );
    assert_eq!(
        failure_reason(&out.client.unwrap()),
        TlsFailure::NoCertificate
    );

    let (out, _, s) = handshake(
        client_config(None, &r, Expect::AnyServer).unwrap(),
        server_config(&id, &r, ClientAuth::Optional).unwrap(),
    );
    assert!(out.ok(), "{out:?}");
    assert_eq!(peer_identity(&s), None);
}

#[test]
fn two_uri_sans_are_refused() {
    let ca = test_ca(TD);
    // Mint a leaf with two URI SANs behind the CA's back.
    let issuer_key = rcgen::KeyPair::from_pem(&ca.key_pem).unwrap();
    let issuer = rcgen::CertificateParams::from_ca_cert_pem(&ca.cert_pem)
        .unwrap()
        .self_signed(&issuer_key)
        .unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    for uri in [
        "spiffe://abcd1234.strait/server/dc/dc1",
        "spiffe://abcd1234.strait/ns/default/dc/dc1/svc/web",
    ] {
        params
            .subject_alt_names
            .push(rcgen::SanType::URI(uri.try_into().unwrap()));
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer, &issuer_key).unwrap();
    let err = Identity::from_pem(&cert.pem(), &key.serialize_pem())
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 URI SANs"), "{err}");
    assert_eq!(cert_info(&cert.pem()).unwrap().spiffe_id, None);

    let server = Arc::new(
        ServerConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap(),
    );
    let (out, _, _) = handshake(
        client_config(None, &roots(&[&ca]), Expect::AnyServer).unwrap(),
        server,
    );
    let err = out.client.unwrap();
    assert_eq!(failure_reason(&err), TlsFailure::BadIdentity);
    assert!(err.to_string().contains("URI SANs"), "{err}");
}

#[test]
fn unverified_bootstrap_client_accepts_any_server() {
    let rogue = test_ca("rogue.strait");
    let server = server_config(
        &ident(&rogue, &SpiffeId::server("rogue.strait", "dc1")),
        &roots(&[&rogue]),
        ClientAuth::Optional,
    )
    .unwrap();
    let (out, c, _) = handshake(dangerous_unverified_client_config(), server);
    assert!(out.ok(), "{out:?}");
    assert!(peer_identity(&c).is_some());
}

#[test]
fn failure_reason_labels() {
    use rustls::{AlertDescription, CertificateError, Error};
    assert_eq!(
        failure_reason(&Error::NoCertificatesPresented),
        TlsFailure::NoCertificate
    );
    assert_eq!(
        failure_reason(&Error::InvalidCertificate(CertificateError::BadSignature)),
        TlsFailure::BadSignature
    );
    assert_eq!(
        failure_reason(&Error::InvalidCertificate(CertificateError::Expired)),
        TlsFailure::Expired
    );
    assert_eq!(
        failure_reason(&Error::AlertReceived(AlertDescription::UnknownCA)),
        TlsFailure::UnknownCa
    );
    assert_eq!(
        failure_reason(&Error::InvalidCertificate(CertificateError::BadEncoding)),
        TlsFailure::Other
    );
    assert_eq!(failure_reason(&Error::DecryptError), TlsFailure::Other);
    // The labels are a public interface (metrics, docs/troubleshooting.md).
    let labels = [
        TlsFailure::NoCertificate,
        TlsFailure::UnknownCa,
        TlsFailure::Expired,
        TlsFailure::BadIdentity,
        TlsFailure::BadSignature,
        TlsFailure::Other,
    ]
    .map(TlsFailure::as_str);
    assert_eq!(
        labels,
        [
            "no_certificate",
            "unknown_ca",
            "expired",
            "bad_identity",
            "bad_signature",
            "other"
        ]
    );
    assert_eq!(TlsFailure::UnknownCa.to_string(), "unknown_ca");
}

#[test]
fn config_builders_refuse_useless_inputs() {
    let ca = test_ca(TD);
    let empty = Roots::from_pems(&[]).unwrap();
    assert!(empty.is_empty());
    assert!(client_config(None, &empty, Expect::AnyServer).is_err());
    assert!(client_config(None, &roots(&[&ca]), Expect::AnyOf(vec![])).is_err());
    assert!(Roots::from_pems(&["not pem".to_owned()]).is_err());
    let r = roots(&[&ca, &test_ca("b.strait")]);
    assert_eq!(r.len(), 2);
    assert_eq!(r.trust_domains(), [TD.to_owned(), "b.strait".to_owned()]);
}
