//! ring vs aws-lc-rs (bench/README.md, "Where the cycles go"): the primitives a TLS 1.3 mTLS
//! handshake uses, and whole in-memory rustls handshakes (mutual, ECDSA P-256 leaves as
//! strait's CA issues, one request and answer after the handshake) with each provider. A crate
//! of its own, outside the workspace: strait itself builds with aws-lc-rs only.
//!   CARGO_TARGET_DIR=/tmp/crypto-providers cargo run --release -- prim ring|aws N
//!   CARGO_TARGET_DIR=/tmp/crypto-providers cargo run --release -- hs ring|aws full|resumed N [aes128first]
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

macro_rules! prims {
    ($m:ident, $n:expr, $from_pkcs8:expr, $agree:expr) => {{
        use $m::{aead, agreement, rand, signature};
        use signature::KeyPair;
        let n: u32 = $n;
        let rng = rand::SystemRandom::new();
        let pkcs8 =
            signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .unwrap();
        let kp = $from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng);
        let msg = [7u8; 130];
        let t = Instant::now();
        let mut sig = None;
        for _ in 0..n {
            sig = Some(kp.sign(&rng, &msg).unwrap());
        }
        let sign = t.elapsed() / n;
        let sig = sig.unwrap();
        let pk = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, kp.public_key().as_ref().to_vec());
        let t = Instant::now();
        for _ in 0..n {
            pk.verify(&msg, sig.as_ref()).unwrap();
        }
        let verify = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n {
            let a = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng).unwrap();
            let b = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng).unwrap();
            let bp = b.compute_public_key().unwrap();
            let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, bp.as_ref().to_vec());
            $agree(a, &peer);
        }
        let x25519 = t.elapsed() / n; // two keygens + one agreement: one side's share of a handshake plus a keygen
        let mut out = Vec::new();
        for (name, alg) in [("aes128gcm", &aead::AES_128_GCM), ("aes256gcm", &aead::AES_256_GCM), ("chacha20", &aead::CHACHA20_POLY1305)] {
            let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, &vec![1u8; alg.key_len()]).unwrap());
            for size in [64usize, 16384] {
                let mut buf = vec![0u8; size];
                let iters = if size > 1000 { n * 10 } else { n * 100 };
                let t = Instant::now();
                for i in 0..iters {
                    let mut nonce = [0u8; 12];
                    nonce[..4].copy_from_slice(&i.to_be_bytes());
                    let tag = key
                        .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::empty(), &mut buf)
                        .unwrap();
                    let _ = std::hint::black_box(tag);
                }
                let per = t.elapsed() / iters;
                out.push(format!("{name}/{size}B {:?} ({:.2} GB/s)", per, size as f64 / per.as_secs_f64() / 1e9));
            }
        }
        println!("sign {sign:?} verify {verify:?} x25519(2 keygen+1 agree) {x25519:?}");
        for line in out {
            println!("  {line}");
        }
    }};
}

fn provider(name: &str, aes128_first: bool) -> CryptoProvider {
    let mut p = match name {
        "ring" => rustls::crypto::ring::default_provider(),
        "aws" => rustls::crypto::aws_lc_rs::default_provider(),
        _ => panic!("ring|aws"),
    };
    if name == "aws" {
        // aws-lc-rs's default has X25519MLKEM768 first; strait's peers would offer it too.
        // Keep the comparison on X25519 unless PQ=1.
        if std::env::var("PQ").is_err() {
            p.kx_groups
                .retain(|g| g.name() == rustls::NamedGroup::X25519);
        }
    }
    if aes128_first {
        p.cipher_suites
            .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    }
    p
}

fn certs() -> (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    CertificateDer<'static>,
) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let params = CertificateParams::new(vec![name.to_string()]).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    };
    let (sc, sk) = leaf("server.test");
    let (cc, ck) = leaf("client.test");
    (sc, sk, cc, ck, ca.der().clone())
}

fn pump(c: &mut ClientConnection, s: &mut ServerConnection) {
    let mut buf = Vec::new();
    loop {
        let mut moved = false;
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            let mut r = &buf[..];
            while !r.is_empty() {
                s.read_tls(&mut r).unwrap();
                s.process_new_packets().unwrap();
            }
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            let mut r = &buf[..];
            while !r.is_empty() {
                c.read_tls(&mut r).unwrap();
                c.process_new_packets().unwrap();
            }
        }
        if !moved {
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    match args[1].as_str() {
        "prim" => match args[2].as_str() {
            "ring" => prims!(
                ring,
                n,
                |a, k: &[u8], r: &ring::rand::SystemRandom| {
                    ring::signature::EcdsaKeyPair::from_pkcs8(a, k, r).unwrap()
                },
                |a, p: &ring::agreement::UnparsedPublicKey<Vec<u8>>| {
                    ring::agreement::agree_ephemeral(a, p, |k| {
                        std::hint::black_box(k);
                    })
                    .unwrap()
                }
            ),
            "aws" => prims!(
                aws_lc_rs,
                n,
                |a, k: &[u8], _r: &aws_lc_rs::rand::SystemRandom| {
                    aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(a, k).unwrap()
                },
                |a, p: &aws_lc_rs::agreement::UnparsedPublicKey<Vec<u8>>| {
                    aws_lc_rs::agreement::agree_ephemeral(a, p, (), |k| {
                        std::hint::black_box(k);
                        Ok(())
                    })
                    .unwrap()
                }
            ),
            _ => panic!(),
        },
        "hs" => {
            let n: u32 = args[4].parse().unwrap();
            let resumed = args[3] == "resumed";
            let aes128 = args.get(5).is_some_and(|a| a == "aes128first");
            let p = Arc::new(provider(&args[2], aes128));
            let (sc, sk, cc, ck, ca) = certs();
            let mut roots = RootCertStore::empty();
            roots.add(ca).unwrap();
            let roots = Arc::new(roots);
            let cv = WebPkiClientVerifier::builder_with_provider(roots.clone(), p.clone())
                .build()
                .unwrap();
            let server = Arc::new(
                ServerConfig::builder_with_provider(p.clone())
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_client_cert_verifier(cv)
                    .with_single_cert(sc, sk)
                    .unwrap(),
            );
            let client_base = ClientConfig::builder_with_provider(p.clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_client_auth_cert(cc, ck)
                .unwrap();
            let mut client = client_base.clone();
            if !resumed {
                client.resumption = rustls::client::Resumption::disabled();
            }
            let client = Arc::new(client);
            let name = ServerName::try_from("server.test").unwrap();
            let mut resumed_count = 0;
            let mut one = |count: bool| {
                let mut c = ClientConnection::new(client.clone(), name.clone()).unwrap();
                let mut s = ServerConnection::new(server.clone()).unwrap();
                pump(&mut c, &mut s);
                c.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
                pump(&mut c, &mut s);
                let mut b = [0u8; 64];
                let k = s.reader().read(&mut b).unwrap();
                s.writer().write_all(&b[..k]).unwrap();
                pump(&mut c, &mut s);
                let k2 = c.reader().read(&mut b).unwrap();
                assert_eq!(k, k2);
                if count && matches!(c.handshake_kind(), Some(rustls::HandshakeKind::Resumed)) {
                    resumed_count += 1;
                }
                (
                    c.negotiated_cipher_suite().unwrap().suite(),
                    c.negotiated_key_exchange_group().map(|g| g.name()),
                )
            };
            let info = one(false); // warm-up (and first ticket)
            let t = Instant::now();
            for _ in 0..n {
                one(true);
            }
            let per = t.elapsed() / n;
            println!("{} {} handshake+1 round trip: {per:?} per connection (both sides), resumed {resumed_count}/{n}, {info:?}", args[2], args[3]);
        }
        _ => panic!(),
    }
}
