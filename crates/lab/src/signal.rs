//! `kill(2)` on the process groups the lab started (with `netns::enter`, the lab's only
//! unsafe code).
//! Every lab process runs in its own group (`process_group(0)`), so signalling
//! `-pgid` also reaches anything the process spawned.
#![allow(unsafe_code)]

use std::io;

/// The signals the lab sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Polite: drain and exit.
    Term,
    /// For stragglers after the grace period, and `lab kill`.
    Kill,
    /// `lab pause`.
    Stop,
    /// `lab resume`.
    Cont,
}

impl Signal {
    fn raw(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }
}

fn to_pid(id: u32) -> io::Result<libc::pid_t> {
    match libc::pid_t::try_from(id) {
        Ok(pid) if pid > 1 => Ok(pid),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal pid {id}"),
        )),
    }
}

/// Sends `signal` to every process of group `pgid`. Returns `Ok(false)` when
/// the group no longer exists.
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<bool> {
    let pid = to_pid(pgid)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a
    // negative pid addresses the process group `pgid` (> 1, checked above, so
    // never "all processes" (-1) nor our own group (0)).
    let rc = unsafe { libc::kill(-pid, signal.raw()) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Whether a process with this pid exists (zombies included); used where
/// /proc is not available.
pub fn pid_exists(id: u32) -> bool {
    let Ok(pid) = to_pid(id) else { return false };
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether any process of group `pgid` exists (zombies included).
pub fn group_exists(pgid: u32) -> bool {
    let Ok(pid) = to_pid(pgid) else { return false };
    // SAFETY: as in `signal_group`, with signal 0 (existence check only).
    let rc = unsafe { libc::kill(-pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn refuses_special_pids() {
        assert!(signal_group(0, Signal::Term).is_err());
        assert!(signal_group(1, Signal::Term).is_err());
        assert!(!pid_exists(0));
    }

    #[test]
    fn terminates_a_whole_group() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30"])
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let pgid = child.id();
        assert!(pid_exists(pgid));
        assert!(signal_group(pgid, Signal::Term).expect("signal"));
        let status = child.wait().expect("wait");
        assert!(!status.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while group_exists(pgid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // The backgrounded sleep got SIGTERM too (it is reaped by init, not us).
        assert!(!group_exists(pgid) || crate::procfs::group_members(pgid).is_empty());
    }
}
