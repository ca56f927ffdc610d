//! The `sd_notify` protocol: a service tells systemd about its state by sending one datagram
//! of `KEY=value` lines to the unix socket named in `$NOTIFY_SOCKET` (a path, or `@name` for a
//! socket in the abstract namespace). Without `$NOTIFY_SOCKET` (not started by systemd, or not
//! `Type=notify`) every call is a no-op, so roles call these unconditionally.
//!
//! States strait sends: `READY=1` once a role is usable (server: API listening and store
//! open; agent: joined and first sync done; proxy: certificate and first snapshot applied),
//! `RELOADING=1` then `READY=1` around a SIGHUP reload, `STOPPING=1` when shutdown begins, and
//! `STATUS=` with a line `systemctl status` shows.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Parses a `$NOTIFY_SOCKET` value: `/path` or `@abstract-name`.
fn socket_addr(value: &OsStr) -> io::Result<SocketAddr> {
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(value),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "${NOTIFY_SOCKET}={}: only unix socket paths (/...) and abstract names (@...) are supported",
                value.to_string_lossy()
            ),
        )),
    }
}

/// Sends `state` to the socket named by `socket` (a `$NOTIFY_SOCKET` value).
pub fn send_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let addr = socket_addr(socket)?;
    let named = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("${NOTIFY_SOCKET}={}: {e}", socket.to_string_lossy()),
        )
    };
    let sock = UnixDatagram::unbound().map_err(named)?;
    sock.send_to_addr(state.as_bytes(), &addr).map_err(named)?;
    Ok(())
}

/// Sends `state` to `$NOTIFY_SOCKET`; `Ok(false)` when it is not set.
pub fn send(state: &str) -> io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(socket) if !socket.is_empty() => send_to(&socket, state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` and logs (does not return) a failure: a service manager that cannot be told
/// is no reason to stop serving.
fn send_logged(state: &str) {
    if let Err(err) = send(state) {
        tracing::warn!(%err, state = state.lines().next().unwrap_or(""), "cannot notify systemd");
    }
}

/// One `STATUS=` line: newlines would start new assignments, so they become spaces.
fn status_line(status: &str) -> String {
    format!("STATUS={}", status.replace('\n', " "))
}

/// `READY=1`: the role is usable (also ends a reload).
pub fn ready(status: &str) {
    send_logged(&format!("READY=1\n{}", status_line(status)));
}

/// `RELOADING=1`: a SIGHUP reload has started; [`ready`] ends it.
pub fn reloading() {
    send_logged("RELOADING=1\nSTATUS=reloading");
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() {
    send_logged("STOPPING=1\nSTATUS=stopping");
}

/// `STATUS=`: a line for `systemctl status`, e.g. why a reload was refused.
pub fn status(status: &str) {
    send_logged(&status_line(status));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1\nSTATUS=ok").unwrap();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=ok");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("strait-systemd-test-{}", std::process::id());
        let sock =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        send_to(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(recv(&sock), "STOPPING=1");
    }

    #[test]
    fn errors_name_the_socket() {
        let err = send_to(OsStr::new("vsock:2:1234"), "READY=1").unwrap_err();
        assert!(err.to_string().contains("vsock:2:1234"), "{err}");
        let err = send_to(OsStr::new("/nonexistent/strait.sock"), "READY=1").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/strait.sock"),
            "{err}"
        );
    }

    #[test]
    fn status_stays_one_assignment() {
        assert_eq!(status_line("a\nb"), "STATUS=a b");
    }
}
