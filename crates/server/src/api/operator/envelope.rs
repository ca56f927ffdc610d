//! The file `strait snapshot save` writes and `strait snapshot restore` reads: the server's
//! image (the catalog and the CA, its key included) wrapped so that a server can tell, before touching anything, what the file is, which
//! datacenter it came from and that no byte of it changed.
//!
//! ```text
//! strait-snapshot 2                      <- magic and format version
//! {"datacenter":"dc1",...,"size":1234}   <- the header: one line of JSON
//! sha256 <64 hex digits>                 <- over the two lines above (with their newlines) and the body
//! <body: `size` bytes, the server image (JSON: the catalog and the CA)>
//! ```
//!
//! Pure: no I/O, no clock (the caller passes the time); every way a file can be wrong is a
//! [`EnvelopeError`] that says what is wrong with it.

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

/// The first word of every snapshot file.
const MAGIC: &str = "strait-snapshot";
/// The format this code writes and reads. Format 1 (the catalog alone, without the CA) was
/// never released.
pub const FORMAT: u32 = 2;

/// What the file says about its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The datacenter the snapshot was taken in: restored only into the same one.
    pub datacenter: String,
    /// The federation's trust domain when the snapshot was taken (absent if the CA was not up).
    /// Recorded for people reading the file, not checked: a restore brings the body's CA back,
    /// whatever trust domain the cluster had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    /// A Raft log index the snapshot includes: every write committed up to it.
    pub raft_index: u64,
    /// When it was taken (seconds since the Unix epoch).
    pub created_unix: i64,
    /// The strait that took it (`CARGO_PKG_VERSION`).
    pub strait_version: String,
    /// The length of the body in bytes.
    pub size: u64,
}

/// Why a file is not a snapshot this server can restore.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the file is empty")]
    Empty,
    #[error("not a strait snapshot: the file does not begin with `{MAGIC}` (only files written by `strait snapshot save` can be restored)")]
    NotASnapshot,
    #[error("snapshot format {found:?} is not supported: this strait reads format {FORMAT}")]
    Format { found: String },
    #[error("the file is truncated: it ends inside its header (line {line})")]
    TruncatedHeader { line: usize },
    #[error("the header (line 2) is not valid: {0}")]
    Header(String),
    #[error("line 3 is not `sha256 <64 lowercase hex digits>`: the file is corrupt")]
    ChecksumLine,
    #[error(
        "the file is truncated: the header says the body has {expected} bytes, it has {found}"
    )]
    Truncated { expected: u64, found: u64 },
    #[error("the file has {extra} bytes after the body the header describes ({expected} bytes)")]
    TrailingBytes { expected: u64, extra: u64 },
    #[error("checksum mismatch (the file says sha256 {expected}, its contents hash to {computed}): the file is corrupt")]
    Checksum { expected: String, computed: String },
}

/// A snapshot file whose checksum and size verified.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    pub header: Header,
    /// The server image.
    pub body: &'a [u8],
}

/// Wraps `body` (a server image) described by `header` (whose `size` is set here).
pub fn seal(mut header: Header, body: &[u8]) -> Vec<u8> {
    header.size = body.len() as u64;
    let head = format!(
        "{MAGIC} {FORMAT}\n{}\n",
        serde_json::to_string(&header).expect("a header always serialises")
    );
    let sum = checksum(head.as_bytes(), body);
    let mut out = Vec::with_capacity(head.len() + 72 + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(format!("sha256 {sum}\n").as_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads and verifies a file [`seal`] wrote; checks in the order that names the real fault
/// (what the file is, then its format, then whether it is whole, then whether it changed).
pub fn open(file: &[u8]) -> Result<Opened<'_>, EnvelopeError> {
    if file.is_empty() {
        return Err(EnvelopeError::Empty);
    }
    let (first, rest) = line(file);
    let first = first.ok_or_else(|| {
        if file.starts_with(MAGIC.as_bytes()) {
            EnvelopeError::TruncatedHeader { line: 1 }
        } else {
            EnvelopeError::NotASnapshot
        }
    })?;
    let first = std::str::from_utf8(first).map_err(|_| EnvelopeError::NotASnapshot)?;
    let version = match first.split_once(' ') {
        Some((MAGIC, version)) => version,
        _ => return Err(EnvelopeError::NotASnapshot),
    };
    if version != FORMAT.to_string() {
        return Err(EnvelopeError::Format {
            found: version.to_string(),
        });
    }
    let (header_line, rest) = line(rest);
    let header_line = header_line.ok_or(EnvelopeError::TruncatedHeader { line: 2 })?;
    let head_len = file.len() - rest.len();
    let (sum_line, body) = line(rest);
    let sum_line = sum_line.ok_or(EnvelopeError::TruncatedHeader { line: 3 })?;
    let header: Header =
        serde_json::from_slice(header_line).map_err(|e| EnvelopeError::Header(e.to_string()))?;
    let expected = std::str::from_utf8(sum_line)
        .ok()
        .and_then(|l| l.strip_prefix("sha256 "))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or(EnvelopeError::ChecksumLine)?
        .to_string();
    let found = body.len() as u64;
    if found < header.size {
        return Err(EnvelopeError::Truncated {
            expected: header.size,
            found,
        });
    }
    if found > header.size {
        return Err(EnvelopeError::TrailingBytes {
            expected: header.size,
            extra: found - header.size,
        });
    }
    let computed = checksum(&file[..head_len], body);
    if computed != expected {
        return Err(EnvelopeError::Checksum { expected, computed });
    }
    Ok(Opened { header, body })
}

/// Splits off the first line (without its `\n`); `None` if there is no newline.
fn line(bytes: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (Some(&bytes[..i]), &bytes[i + 1..]),
        None => (None, bytes),
    }
}

fn checksum(head: &[u8], body: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(head);
    ctx.update(body);
    hex::encode(ctx.finish().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            datacenter: "dc1".into(),
            trust_domain: Some("abc.strait".into()),
            raft_index: 42,
            created_unix: 1_700_000_000,
            strait_version: "0.1.0".into(),
            size: 0,
        }
    }

    const BODY: &[u8] = br#"{"index":7,"nodes":[],"config_entries":[],"federation_states":[]}"#;

    #[test]
    fn seal_then_open_gives_back_header_and_body() {
        let file = seal(header(), BODY);
        let opened = open(&file).expect("opens");
        assert_eq!(opened.body, BODY);
        assert_eq!(
            opened.header,
            Header {
                size: BODY.len() as u64,
                ..header()
            }
        );
        let text = String::from_utf8(file).expect("utf-8");
        assert!(
            text.starts_with("strait-snapshot 2\n{\"datacenter\":\"dc1\""),
            "{text}"
        );
    }

    #[test]
    fn an_empty_body_and_no_trust_domain_are_fine() {
        let h = Header {
            trust_domain: None,
            ..header()
        };
        let file = seal(h.clone(), b"");
        assert_eq!(open(&file).expect("opens").header, h);
    }

    /// Every single flipped bit anywhere in the file is refused (never a silent success).
    #[test]
    fn every_flipped_bit_is_refused() {
        let file = seal(header(), BODY);
        for i in 0..file.len() {
            for bit in 0..8 {
                let mut bad = file.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    open(&bad).is_err(),
                    "byte {i} bit {bit} flipped was accepted"
                );
            }
        }
    }

    #[test]
    fn a_flipped_body_byte_is_a_checksum_mismatch() {
        let mut file = seal(header(), BODY);
        let last = file.len() - 3;
        file[last] ^= 0x20;
        let err = open(&file).expect_err("corrupt");
        assert!(matches!(err, EnvelopeError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn a_changed_header_value_is_a_checksum_mismatch() {
        let file = seal(header(), BODY);
        let text = String::from_utf8(file)
            .expect("utf-8")
            .replace("dc1", "dc2");
        let err = open(text.as_bytes()).expect_err("tampered");
        assert!(matches!(err, EnvelopeError::Checksum { .. }), "{err}");
    }

    /// Every prefix of a file is refused, and says "truncated" once past the magic.
    #[test]
    fn every_truncation_is_refused() {
        let file = seal(header(), BODY);
        for len in 0..file.len() {
            let err = open(&file[..len]).expect_err("truncated");
            if len >= MAGIC.len() {
                assert!(err.to_string().contains("truncated"), "cut at {len}: {err}");
            }
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut file = seal(header(), BODY);
        file.extend_from_slice(b"\n");
        assert_eq!(
            open(&file),
            Err(EnvelopeError::TrailingBytes {
                expected: BODY.len() as u64,
                extra: 1
            })
        );
    }

    #[test]
    fn foreign_files_say_what_they_are_not() {
        assert_eq!(open(b""), Err(EnvelopeError::Empty));
        // A Consul snapshot is a gzipped tar.
        assert_eq!(
            open(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\n\x03"),
            Err(EnvelopeError::NotASnapshot)
        );
        assert_eq!(open(BODY), Err(EnvelopeError::NotASnapshot));
        let future = String::from_utf8(seal(header(), BODY))
            .expect("utf-8")
            .replacen("strait-snapshot 2", "strait-snapshot 3", 1);
        let err = open(future.as_bytes()).expect_err("format 3");
        assert_eq!(err, EnvelopeError::Format { found: "3".into() });
        assert!(err.to_string().contains("reads format 2"), "{err}");
    }

    #[test]
    fn a_header_with_unknown_or_missing_fields_is_refused() {
        let body = b"{}";
        for head in [
            r#"{"datacenter":"dc1"}"#,
            r#"{"datacenter":"dc1","raft_index":1,"created_unix":1,"strait_version":"x","size":2,"extra":1}"#,
        ] {
            let head = format!("{MAGIC} {FORMAT}\n{head}\n");
            let mut file = head.clone().into_bytes();
            file.extend_from_slice(
                format!("sha256 {}\n", checksum(head.as_bytes(), body)).as_bytes(),
            );
            file.extend_from_slice(body);
            let err = open(&file).expect_err("bad header");
            assert!(matches!(err, EnvelopeError::Header(_)), "{err}");
        }
    }
}
