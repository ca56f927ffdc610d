//! Reading the TLS ClientHello without terminating TLS: the raw bytes are buffered (they are
//! forwarded verbatim later) and fed to `rustls::server::Acceptor`, which copes with a hello
//! spread over several TCP segments and TLS records. The `Accepted` is dropped at once: the
//! gateway never completes a handshake and holds no key.
//!
//! [`HelloReader`] and [`parse_hello`] are pure (bytes in, outcome out) so they are unit- and
//! fuzz-tested; [`read_hello`] adds the socket, the size cap and nothing else.

use bytes::BufMut;
use rustls::server::Acceptor;
use std::io;
use tokio::net::TcpStream;

/// What the bytes seen so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloOutcome {
    /// The ClientHello is not complete yet.
    NeedMore,
    /// A complete ClientHello naming this server (a DNS name, as rustls validated it).
    ServerName(String),
    /// A complete ClientHello without a (DNS) server name.
    NoSni,
    /// Not a TLS ClientHello.
    Invalid(NotHello),
}

/// Why the first bytes of a connection are not a TLS ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotHello {
    /// A record too long to be a ClientHello (rustls's deframer refuses it).
    TooLarge,
    /// Not parseable as TLS records and handshake messages.
    Malformed,
    /// Valid TLS, but not a ClientHello (an alert, a ServerHello, ...).
    NotClientHello,
    /// A ClientHello rustls cannot answer (no common version or cipher suite).
    Incompatible,
    /// A ClientHello that breaks the protocol's rules.
    Misbehaved,
    /// Any other rustls error.
    Other,
}

impl NotHello {
    /// The metric label (`hello_rejected_total{reason=...}`).
    pub fn as_str(self) -> &'static str {
        match self {
            NotHello::TooLarge => "tls_too_large",
            NotHello::Malformed => "tls_malformed",
            NotHello::NotClientHello => "tls_not_client_hello",
            NotHello::Incompatible => "tls_incompatible",
            NotHello::Misbehaved => "tls_misbehaved",
            NotHello::Other => "tls_invalid",
        }
    }

    fn of(err: &rustls::Error) -> NotHello {
        use rustls::Error as E;
        match err {
            E::InvalidMessage(_) => NotHello::Malformed,
            E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
                NotHello::NotClientHello
            }
            E::PeerIncompatible(_) => NotHello::Incompatible,
            E::PeerMisbehaved(_) => NotHello::Misbehaved,
            _ => NotHello::Other,
        }
    }
}

/// Incremental ClientHello reader: push bytes as they arrive.
#[derive(Default)]
pub struct HelloReader {
    acceptor: Acceptor,
    /// Set once the outcome is final; later pushes return it unchanged.
    done: Option<HelloOutcome>,
}

impl HelloReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the stream.
    pub fn push(&mut self, mut bytes: &[u8]) -> HelloOutcome {
        if let Some(done) = &self.done {
            return done.clone();
        }
        // read_tls takes at most a few KiB per call: loop, looking for the hello each time.
        while !bytes.is_empty() {
            let before = bytes.len();
            if self.acceptor.read_tls(&mut bytes).is_err() {
                return self.finish(HelloOutcome::Invalid(NotHello::TooLarge));
            }
            let outcome = self.poll();
            if outcome != HelloOutcome::NeedMore {
                return outcome;
            }
            if bytes.len() == before {
                // No progress: the deframer refuses more bytes (a record too long to be a hello).
                return self.finish(HelloOutcome::Invalid(NotHello::TooLarge));
            }
        }
        HelloOutcome::NeedMore
    }

    fn poll(&mut self) -> HelloOutcome {
        match self.acceptor.accept() {
            Ok(None) => HelloOutcome::NeedMore,
            Ok(Some(accepted)) => {
                let outcome = match accepted.client_hello().server_name() {
                    Some(name) => HelloOutcome::ServerName(name.to_string()),
                    None => HelloOutcome::NoSni,
                };
                self.finish(outcome)
            }
            Err((err, _alert)) => self.finish(HelloOutcome::Invalid(NotHello::of(&err))),
        }
    }

    fn finish(&mut self, outcome: HelloOutcome) -> HelloOutcome {
        self.done = Some(outcome.clone());
        outcome
    }
}

/// Parses a buffer that starts at the first byte of the connection.
pub fn parse_hello(buf: &[u8]) -> HelloOutcome {
    HelloReader::new().push(buf)
}

/// Why a connection was closed before its hello could be routed.
#[derive(Debug)]
pub enum HelloError {
    /// A complete ClientHello without a server name.
    NoSni,
    /// Not a TLS ClientHello.
    NotHello(NotHello),
    /// Over `--max-hello-size` before the hello was complete.
    TooLarge,
    /// The client closed before the hello was complete.
    Eof,
    Io(io::Error),
}

impl std::fmt::Display for HelloError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelloError::NoSni => f.write_str("ClientHello without a server name (SNI)"),
            HelloError::NotHello(why) => write!(f, "not a TLS ClientHello: {}", why.as_str()),
            HelloError::TooLarge => f.write_str("ClientHello larger than --max-hello-size"),
            HelloError::Eof => f.write_str("client closed before its ClientHello was complete"),
            HelloError::Io(err) => write!(f, "reading the ClientHello: {err}"),
        }
    }
}

impl HelloError {
    /// The metric label (`hello_rejected_total{reason=...}`).
    pub fn as_str(&self) -> &'static str {
        match self {
            HelloError::NoSni => "no_sni",
            HelloError::NotHello(why) => why.as_str(),
            HelloError::TooLarge => "too_large",
            HelloError::Eof => "eof",
            HelloError::Io(_) => "io",
        }
    }
}

/// Reads from `stream` into `buf` until the ClientHello is complete; returns its server name.
/// Every byte read stays in `buf`, to be forwarded. Reads never take `buf` past `max`.
pub(crate) async fn read_hello(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<String, HelloError> {
    let mut reader = HelloReader::new();
    loop {
        let start = buf.len();
        if start >= max {
            return Err(HelloError::TooLarge);
        }
        stream.readable().await.map_err(HelloError::Io)?;
        // Into spare capacity, not zeroed first (zeroing 4 KiB was 6 % of the gateway's
        // instructions per new connection); `limit` keeps the read within `max`.
        let room = (max - start).min(4096);
        buf.reserve(room);
        let n = match stream.try_read_buf(&mut (&mut *buf).limit(room)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(HelloError::Io(e)),
        };
        if n == 0 {
            return Err(HelloError::Eof);
        }
        match reader.push(&buf[start..]) {
            HelloOutcome::NeedMore => {}
            HelloOutcome::ServerName(name) => return Ok(name),
            HelloOutcome::NoSni => return Err(HelloError::NoSni),
            HelloOutcome::Invalid(why) => return Err(HelloError::NotHello(why)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use std::sync::Arc;

    /// The first flight of a real rustls client for `sni` (None: an IP address, so no SNI).
    pub(crate) fn client_hello(sni: Option<&str>) -> Vec<u8> {
        let config = strait_identity::tls::dangerous_unverified_client_config();
        let name = match sni {
            Some(name) => ServerName::try_from(name.to_string()).expect("dns name"),
            None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        };
        let mut conn = rustls::ClientConnection::new(Arc::clone(&config), name).expect("client");
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).expect("write_tls");
        }
        out
    }

    const SNI: &str = "web.default.dc1.internal.td.strait";

    #[test]
    fn whole_hello_gives_server_name() {
        let hello = client_hello(Some(SNI));
        assert_eq!(parse_hello(&hello), HelloOutcome::ServerName(SNI.into()));
    }

    #[test]
    fn hello_without_sni() {
        assert_eq!(parse_hello(&client_hello(None)), HelloOutcome::NoSni);
    }

    #[test]
    fn every_prefix_needs_more_and_every_split_agrees() {
        let hello = client_hello(Some(SNI));
        for cut in 0..hello.len() {
            assert_eq!(
                parse_hello(&hello[..cut]),
                HelloOutcome::NeedMore,
                "cut {cut}"
            );
            let mut reader = HelloReader::new();
            assert_eq!(reader.push(&hello[..cut]), HelloOutcome::NeedMore);
            assert_eq!(
                reader.push(&hello[cut..]),
                HelloOutcome::ServerName(SNI.into())
            );
        }
        let mut reader = HelloReader::new();
        for (i, byte) in hello.iter().enumerate() {
            let outcome = reader.push(std::slice::from_ref(byte));
            if i + 1 < hello.len() {
                assert_eq!(outcome, HelloOutcome::NeedMore, "byte {i}");
            } else {
                assert_eq!(outcome, HelloOutcome::ServerName(SNI.into()));
            }
        }
    }

    #[test]
    fn hello_split_over_two_records() {
        let hello = client_hello(Some(SNI));
        // One handshake record -> two records carrying halves of the same message.
        let body = &hello[5..];
        let (a, b) = body.split_at(body.len() / 2);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend_from_slice(&[0x16, 0x03, 0x01]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        assert_eq!(parse_hello(&split), HelloOutcome::ServerName(SNI.into()));
    }

    #[test]
    fn bytes_after_the_hello_do_not_change_the_outcome() {
        let hello = client_hello(Some(SNI));
        let mut stream = hello.clone();
        stream.extend_from_slice(&[0xff; 9000]);
        for cut in (0..stream.len()).step_by(97) {
            let mut reader = HelloReader::new();
            let first = reader.push(&stream[..cut]);
            let second = reader.push(&stream[cut..]);
            let expected = HelloOutcome::ServerName(SNI.into());
            assert_eq!(
                if cut >= hello.len() { first } else { second },
                expected,
                "cut {cut}"
            );
        }
        assert_eq!(parse_hello(&stream), HelloOutcome::ServerName(SNI.into()));
    }

    #[test]
    fn garbage_is_invalid() {
        let http = parse_hello(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(matches!(http, HelloOutcome::Invalid(_)), "{http:?}");
        // An alert record instead of a handshake.
        let alert = parse_hello(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
        assert_eq!(alert, HelloOutcome::Invalid(NotHello::NotClientHello));
        // A handshake record carrying an empty ServerHello: not decodable.
        let server_hello = parse_hello(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]);
        assert_eq!(server_hello, HelloOutcome::Invalid(NotHello::Malformed));
        // Once final, the outcome sticks.
        let mut reader = HelloReader::new();
        let first = reader.push(b"garbage!");
        assert_eq!(reader.push(&client_hello(Some(SNI))), first);
    }
}
