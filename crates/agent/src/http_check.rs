//! HTTP and HTTPS health checks as Consul runs them: `Method` (default GET), `Header` (a map
//! of lists), `Body`, and for `https://` the system's roots (`SSL_CERT_FILE`, else the
//! distribution's bundle) plus the agent's `ca_file` / `ca_path` ([`Trust`]),
//! `TLSServerName` and `TLSSkipVerify`. 2xx is passing, 429 warning, anything else (or no
//! answer) critical.

use anyhow::{bail, Result};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use strait_catalog::CheckStatus;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// An HTTP check, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// The URL as written (for the check's output).
    pub url: String,
    pub addr: SocketAddr,
    /// `host[:port]` of the URL: the `Host` header unless `Header` sets one.
    pub authority: String,
    pub path: String,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: String,
    /// Set for `https://`.
    pub tls: Option<Tls>,
}

/// How an `https://` check verifies the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// `TLSServerName`, else the URL's host: sent as SNI and verified against the certificate.
    pub server_name: ServerName<'static>,
    /// `TLSSkipVerify`: any certificate is accepted.
    pub skip_verify: bool,
}

/// The HTTP fields of a check definition; `prefix` (`Check.`, `Checks[1].`, ...) is named in
/// errors.
pub struct Fields<'a> {
    pub prefix: &'a str,
    pub url: &'a str,
    pub method: &'a str,
    pub header: &'a BTreeMap<String, Vec<String>>,
    pub body: &'a str,
    pub tls_server_name: &'a str,
    pub tls_skip_verify: bool,
}

impl HttpCheck {
    pub fn parse(f: Fields<'_>) -> Result<HttpCheck> {
        let p = f.prefix;
        let url = f.url;
        let bad = |why: &str| anyhow::anyhow!("field {p}HTTP = {url:?}: {why}");
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("expected an http:// or https:// URL")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let ip: IpAddr = match host {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            h => h
                .parse()
                .map_err(|_| bad("the host must be an IP address or localhost"))?,
        };
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let method = match f.method {
            "" => Method::GET,
            m => Method::from_bytes(m.as_bytes())
                .map_err(|_| anyhow::anyhow!("field {p}Method = {m:?}: not an HTTP method"))?,
        };
        let mut headers = vec![];
        for (name, values) in f.header {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| anyhow::anyhow!("field {p}Header key {name:?}: not a header name"))?;
            for v in values {
                let v = HeaderValue::from_str(v).map_err(|_| {
                    anyhow::anyhow!("field {p}Header.{name} = {v:?}: not a header value")
                })?;
                headers.push((n.clone(), v));
            }
        }
        let tls = if https {
            let name = match f.tls_server_name {
                "" => host.to_string(),
                n => n.to_string(),
            };
            let server_name = ServerName::try_from(name.clone()).map_err(|_| {
                anyhow::anyhow!("field {p}TLSServerName = {name:?}: not a DNS name or IP address")
            })?;
            Some(Tls {
                server_name,
                skip_verify: f.tls_skip_verify,
            })
        } else {
            for (field, set) in [
                ("TLSServerName", !f.tls_server_name.is_empty()),
                ("TLSSkipVerify", f.tls_skip_verify),
            ] {
                if set {
                    bail!("field {p}{field}: only for https:// checks");
                }
            }
            None
        };
        Ok(HttpCheck {
            url: url.to_string(),
            addr: SocketAddr::new(ip, port),
            authority: authority.as_str().to_string(),
            path: uri.path_and_query().map_or("/", |q| q.as_str()).to_string(),
            method,
            headers,
            body: f.body.to_string(),
            tls,
        })
    }

    /// One probe: the status and the check's output; `https://` servers are verified
    /// against `trust`.
    pub async fn probe(&self, trust: &Trust) -> (CheckStatus, String) {
        let what = format!("HTTP {} {}", self.method, self.url);
        match self.exchange(trust).await {
            Ok(s) if s.is_success() => (CheckStatus::Passing, format!("{what}: {s}")),
            Ok(s) if s.as_u16() == 429 => (CheckStatus::Warning, format!("{what}: {s}")),
            Ok(s) => (CheckStatus::Critical, format!("{what}: {s}")),
            Err(e) => (CheckStatus::Critical, format!("{what}: {e}")),
        }
    }

    async fn exchange(&self, trust: &Trust) -> Result<http::StatusCode, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return self.send(tcp).await;
        };
        let config = if tls.skip_verify {
            strait_identity::tls::dangerous_unverified_client_config()
        } else {
            trust.0.clone()?
        };
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(tls.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        self.send(stream).await
    }

    async fn send<S>(&self, stream: S) -> Result<http::StatusCode, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let _driver = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(conn));
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .body(Full::new(Bytes::from(self.body.clone())))
            .map_err(|e| e.to_string())?;
        let h = req.headers_mut();
        for (name, value) in &self.headers {
            h.append(name, value.clone());
        }
        // Consul's defaults, each unless the check sets it.
        for (name, value) in [
            (http::header::HOST, self.authority.as_str()),
            (http::header::USER_AGENT, "Consul Health Check"),
            (http::header::ACCEPT, "text/plain, text/*, */*"),
        ] {
            if !h.contains_key(&name) {
                h.insert(
                    name,
                    HeaderValue::from_str(value).map_err(|e| e.to_string())?,
                );
            }
        }
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        Ok(resp.status())
    }
}

/// What verified `https://` checks trust, loaded once at start-up: the roots of
/// `SSL_CERT_FILE`, else of the first bundle found among the usual paths (as Go, hence
/// Consul, does), plus the agent's own CA as Consul's agent adds it: `ca_file`, and every
/// `*.pem` / `*.crt` file of `ca_path`. Without any root, verified checks fail with the reason.
#[derive(Clone)]
pub struct Trust(Result<Arc<ClientConfig>, String>);

impl Trust {
    /// The system's roots plus `ca_file` and `ca_path`; a CA file that cannot be read or
    /// holds no certificate is an error naming the setting and the file.
    pub fn load(ca_file: Option<&Path>, ca_path: Option<&Path>) -> Result<Trust> {
        let mut roots = rustls::RootCertStore::empty();
        let system = match std::env::var_os("SSL_CERT_FILE") {
            Some(p) => Some(std::path::PathBuf::from(p)),
            None => [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/ca-bundle.pem",
                "/etc/ssl/cert.pem",
            ]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists()),
        };
        // The system's bundle is best effort (Go skips what it cannot parse too).
        let mut why_none = "no CA bundle found (set SSL_CERT_FILE, or the agent's ca_file)".into();
        if let Some(path) = &system {
            if let Err(e) = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|pem| add_roots(&mut roots, &pem))
            {
                why_none = format!("{}: {e}", path.display());
            }
        }
        let mut own = Vec::new();
        if let Some(file) = ca_file {
            own.push(("ca_file", file.to_path_buf()));
        }
        if let Some(dir) = ca_path {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| anyhow::anyhow!("field `ca_path` = {}: {e}", dir.display()))?;
            let mut files: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "crt"))
                .collect();
            files.sort();
            own.extend(files.into_iter().map(|f| ("ca_path", f)));
        }
        for (field, file) in own {
            std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|pem| add_roots(&mut roots, &pem))
                .map_err(|e| anyhow::anyhow!("field `{field}`: {}: {e}", file.display()))?;
        }
        if roots.is_empty() {
            return Ok(Trust(Err(why_none)));
        }
        Ok(Trust(Ok(config_with_roots(roots)?)))
    }
}

/// Adds the CA certificates of `pem`; none is an error.
fn add_roots(roots: &mut rustls::RootCertStore, pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("no CA certificate".into());
    }
    Ok(())
}

/// A client config trusting `roots`.
fn config_with_roots(roots: rustls::RootCertStore) -> Result<Arc<ClientConfig>> {
    let config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// A test CA and a leaf for `localhost` and 127.0.0.1 it signed: (CA PEM, leaf DER, key DER).
    fn test_pki() -> &'static (String, Vec<u8>, Vec<u8>) {
        static PKI: std::sync::OnceLock<(String, Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
        PKI.get_or_init(|| {
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let ca = ca.self_signed(&ca_key).unwrap();
            let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
            (ca.pem(), leaf.der().to_vec(), key.serialize_der())
        })
    }

    /// The system's roots and the test CA, given as `ca_file` (`ca_path` when `dir`).
    fn test_trust(dir: bool) -> Trust {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("ca.pem");
        std::fs::write(&file, &test_pki().0).unwrap();
        std::fs::write(tmp.path().join("notes.txt"), "not a certificate").unwrap();
        if dir {
            Trust::load(None, Some(tmp.path())).unwrap()
        } else {
            Trust::load(Some(&file), None).unwrap()
        }
    }

    fn system() -> Trust {
        Trust::load(None, None).unwrap()
    }

    /// A server answering `status` to every request and sending each request's head and body
    /// on the channel; TLS with the test leaf when `tls`.
    async fn server(tls: bool, status: u16) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let acceptor = tls.then(|| {
            let (_, cert, key) = test_pki();
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.clone().into()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(key.clone()).into(),
            )
            .unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                match &acceptor {
                    Some(a) => {
                        if let Ok(s) = a.accept(tcp).await {
                            tokio::spawn(answer(s, status, tx));
                        }
                    }
                    None => {
                        tokio::spawn(answer(tcp, status, tx));
                    }
                }
            }
        });
        (addr, rx)
    }

    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
        mut s: S,
        status: u16,
        tx: mpsc::UnboundedSender<String>,
    ) {
        let mut buf = vec![];
        let mut chunk = [0u8; 1024];
        let request = loop {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "request cut short");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break text;
                }
            }
        };
        tx.send(request).unwrap();
        let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        s.write_all(resp.as_bytes()).await.unwrap();
        let _ = s.shutdown().await;
    }

    fn check(url: &str, json: &str) -> Result<HttpCheck> {
        let d: crate::definition::CheckDefinition = crate::decode::json(json.as_bytes()).unwrap();
        HttpCheck::parse(Fields {
            prefix: "Check.",
            url,
            method: &d.method,
            header: &d.header,
            body: &d.body,
            tls_server_name: &d.tls_server_name,
            tls_skip_verify: d.tls_skip_verify,
        })
    }

    #[tokio::test]
    async fn sends_method_headers_and_body() {
        let (addr, mut requests) = server(false, 200).await;
        let c = check(
            &format!("http://{addr}/health?x=1"),
            r#"{"method": "POST", "header": {"X-Token": ["a", "b"], "Content-Type": ["text/plain"]}, "body": "ping"}"#,
        )
        .unwrap();
        let (s, out) = c.probe(&system()).await;
        assert_eq!(s, CheckStatus::Passing, "{out}");
        assert!(
            out.starts_with(&format!("HTTP POST http://{addr}/health?x=1: 200")),
            "{out}"
        );
        let req = requests.recv().await.unwrap().to_ascii_lowercase();
        assert!(req.starts_with("post /health?x=1 http/1.1\r\n"), "{req}");
        for line in [
            "x-token: a\r\n",
            "x-token: b\r\n",
            "content-type: text/plain\r\n",
            "user-agent: consul health check\r\n",
            &format!("host: {addr}\r\n"),
        ] {
            assert!(req.contains(line), "{line:?} missing in {req}");
        }
        assert!(req.ends_with("\r\n\r\nping"), "{req}");
    }

    #[tokio::test]
    async fn statuses_map_as_consul() {
        for (code, want) in [(429, CheckStatus::Warning), (503, CheckStatus::Critical)] {
            let (addr, _requests) = server(false, code).await;
            let c = check(&format!("http://{addr}/"), "{}").unwrap();
            assert_eq!(c.probe(&system()).await.0, want, "{code}");
        }
    }

    #[tokio::test]
    async fn https_verifies_the_server_unless_told_to_skip() {
        let (addr, _requests) = server(true, 200).await;
        let port = addr.port();
        // Verified against the roots, by IP and by a TLSServerName the certificate has.
        let by_ip = check(&format!("https://127.0.0.1:{port}/"), "{}").unwrap();
        assert_eq!(
            by_ip.probe(&test_trust(false)).await.0,
            CheckStatus::Passing
        );
        let by_name = check(
            &format!("https://127.0.0.1:{port}/"),
            r#"{"tls_server_name": "localhost"}"#,
        )
        .unwrap();
        assert_eq!(
            by_name.probe(&test_trust(true)).await.0,
            CheckStatus::Passing
        );
        // A name the certificate lacks, or roots that do not hold its CA, fail.
        let wrong = check(
            &format!("https://localhost:{port}/"),
            r#"{"TLSServerName": "other.example"}"#,
        )
        .unwrap();
        let (s, out) = wrong.probe(&test_trust(false)).await;
        assert_eq!(s, CheckStatus::Critical);
        assert!(out.contains("TLS handshake"), "{out}");
        let (s, out) = by_ip.probe(&system()).await;
        assert_eq!(
            s,
            CheckStatus::Critical,
            "the system roots hold no test CA: {out}"
        );
        // TLSSkipVerify accepts it anyway.
        let skip = check(
            &format!("https://localhost:{port}/"),
            r#"{"TLSSkipVerify": true, "TLSServerName": "other.example"}"#,
        )
        .unwrap();
        assert_eq!(skip.probe(&system()).await.0, CheckStatus::Passing);
        // Plain HTTP to a TLS server is refused by it.
        let plain = check(&format!("http://127.0.0.1:{port}/"), "{}").unwrap();
        assert_eq!(plain.probe(&system()).await.0, CheckStatus::Critical);
    }

    #[test]
    fn unreadable_ca_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.pem");
        let e = Trust::load(Some(&missing), None).err().unwrap().to_string();
        assert!(e.contains("ca_file") && e.contains("missing.pem"), "{e}");
        let junk = tmp.path().join("junk.crt");
        std::fs::write(&junk, "junk").unwrap();
        let e = Trust::load(None, Some(tmp.path()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("ca_path") && e.contains("junk.crt") && e.contains("no CA certificate"),
            "{e}"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        for (url, json, want) in [
            ("ftp://127.0.0.1/", "{}", "Check.HTTP"),
            ("http://example.com/", "{}", "IP address or localhost"),
            ("http://127.0.0.1/", r#"{"Method": "GE T"}"#, "Check.Method"),
            (
                "http://127.0.0.1/",
                r#"{"Header": {"a b": ["x"]}}"#,
                "Check.Header key \"a b\"",
            ),
            (
                "http://127.0.0.1/",
                r#"{"Header": {"a": ["x\ny"]}}"#,
                "Check.Header.a",
            ),
            (
                "http://127.0.0.1/",
                r#"{"TLSSkipVerify": true}"#,
                "Check.TLSSkipVerify",
            ),
            (
                "https://127.0.0.1/",
                r#"{"TLSServerName": "a b"}"#,
                "Check.TLSServerName",
            ),
        ] {
            let err = check(url, json).unwrap_err().to_string();
            assert!(err.contains(want), "{url} {json}: {err}");
        }
        let c = check("https://[::1]/", "{}").unwrap();
        assert_eq!(c.addr, "[::1]:443".parse().unwrap());
    }
}
