//! `mTLS handshake`: dial the upstream's first hop with its SNI, present a leaf the agent
//! issues for the source service, and accept only the destination's exact SPIFFE ID, exactly
//! as the sidecar would. The gateways in between only read the SNI, so a completed handshake
//! proves the whole path up to the destination's sidecar.

use crate::report::Report;
use crate::service::Ctx;
use crate::sidecar::Upstream;
use anyhow::Context;
use rustls_pki_types::ServerName;
use serde::Deserialize;
use std::time::Duration;
use strait_identity::tls::{self, Expect, Identity, Roots, TlsFailure};
use strait_identity::SpiffeId;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const NAME: &str = "mTLS handshake";

/// How long to wait after the handshake for the destination to refuse us (a TLS 1.3 server
/// checks the client certificate after the client considers the handshake done).
const REFUSAL_WAIT: Duration = Duration::from_millis(500);

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Leaf {
    #[serde(rename = "CertPEM")]
    cert_pem: String,
    #[serde(rename = "PrivateKeyPEM")]
    private_key_pem: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Root {
    root_cert: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RootList {
    roots: Vec<Root>,
}

pub(crate) async fn check(r: &mut Report, ctx: &Ctx<'_>, service: &str, up: &Upstream) {
    let Some(&first) = up.endpoints.first() else {
        r.fail(
            NAME,
            "not attempted: no endpoint to dial",
            "fix `upstream endpoints` first",
        );
        return;
    };
    let config = match client_config(ctx, service, up).await {
        Ok(c) => c,
        Err(e) => {
            r.fail(NAME, format!("{e:#}"), "the doctor could not get a leaf and roots from the agent; fix the checks above first");
            return;
        }
    };
    let what = format!("{} via {first} (SNI {})", up.spiffe_id, up.sni);
    match handshake(config, first, &up.sni, &up.spiffe_id, ctx.timeout).await {
        Ok(()) => r.pass(
            NAME,
            format!("{what}: peer verified, our certificate accepted"),
        ),
        Err(Failure { detail, reason }) => {
            let hint = match reason {
                Reason::Tls(TlsFailure::UnknownCa) => "the two sides do not share a CA: compare the `roots` check on both services' sidecars (admin /certs) with GET /v1/agent/connect/ca/roots",
                Reason::Tls(TlsFailure::BadIdentity) => "a different service answered this SNI: check the gateways' admin /clusters routes and the destination's registration",
                Reason::Tls(TlsFailure::Expired) => "a certificate on the path is expired: check the destination sidecar's admin /certs and the clocks",
                Reason::Closed => "a gateway or the destination sidecar closed the connection: no healthy instance behind the SNI (health check above), the destination's app is down, or an intention denies this caller (`strait intention check`; destination sidecar log `denied by intentions`)",
                _ => "read the gateways' and the destination sidecar's logs and admin /stats (handshake_failures)",
            };
            r.fail(NAME, format!("{what}: {detail}"), hint);
        }
    }
}

async fn client_config(
    ctx: &Ctx<'_>,
    service: &str,
    up: &Upstream,
) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    let leaf: Leaf = ctx
        .agent
        .json(&format!("/v1/agent/connect/ca/leaf/{service}"))
        .await?;
    let roots: RootList = ctx.agent.json("/v1/agent/connect/ca/roots").await?;
    let identity = Identity::from_pem(&leaf.cert_pem, &leaf.private_key_pem)
        .context("the leaf the agent issued does not parse")?;
    let pems: Vec<String> = roots.roots.into_iter().map(|r| r.root_cert).collect();
    let roots = Roots::from_pems(&pems).context("the agent's roots do not parse")?;
    let expect: SpiffeId = up.spiffe_id.parse().with_context(|| {
        format!(
            "the sidecar's upstream SPIFFE ID {:?} does not parse",
            up.spiffe_id
        )
    })?;
    Ok(tls::client_config(
        Some(&identity),
        &roots,
        Expect::Exact(expect),
    )?)
}

struct Failure {
    detail: String,
    /// Picks the hint.
    reason: Reason,
}

/// Why the doctor's handshake failed.
enum Reason {
    /// rustls's error, classified.
    Tls(TlsFailure),
    /// The other side closed the connection (during or right after the handshake).
    Closed,
    /// The first hop refused the TCP connection.
    Connect,
    Timeout,
    /// Anything else (an I/O error, an SNI that is not a server name).
    Other,
}

fn io_failure(stage: &str, e: &std::io::Error) -> Failure {
    let tls_err = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls_err {
        Some(t) => Failure {
            detail: format!("{stage}: {t}"),
            reason: Reason::Tls(tls::failure_reason(t)),
        },
        None if matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ) =>
        {
            Failure {
                detail: format!("{stage}: connection closed by the other side"),
                reason: Reason::Closed,
            }
        }
        None => Failure {
            detail: format!("{stage}: {e}"),
            reason: Reason::Other,
        },
    }
}

async fn handshake(
    config: std::sync::Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    sni: &str,
    expected: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    let server_name = ServerName::try_from(sni.to_string()).map_err(|_| Failure {
        detail: format!("SNI {sni:?} is not a valid server name"),
        reason: Reason::Other,
    })?;
    let work = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| Failure {
            detail: format!("connect {addr}: {e}"),
            reason: Reason::Connect,
        })?;
        let mut stream = TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|e| io_failure("handshake", &e))?;
        let peer = tls::peer_identity(stream.get_ref().1).map(|id| id.uri());
        if peer.as_deref() != Some(expected) {
            return Err(Failure {
                detail: format!("peer presented {peer:?}, expected {expected}"),
                reason: Reason::Tls(TlsFailure::BadIdentity),
            });
        }
        let mut byte = [0u8; 1];
        match tokio::time::timeout(REFUSAL_WAIT, stream.read(&mut byte)).await {
            // Silence (the app waits for a request) or data: the destination kept us.
            Err(_) | Ok(Ok(1..)) => Ok(()),
            Ok(Ok(_)) => Err(Failure {
                detail: "the destination closed the connection right after the handshake".into(),
                reason: Reason::Closed,
            }),
            Ok(Err(e)) => Err(io_failure("after the handshake", &e)),
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Failure {
            detail: format!("no answer in {}s", timeout.as_secs()),
            reason: Reason::Timeout,
        })?
}
