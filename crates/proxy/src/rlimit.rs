//! Open-file limit at start-up: a gateway connection holds two sockets and two pipes (six
//! descriptors), a sidecar connection two sockets, so the usual soft limit of 1024 would cap
//! a proxy far below `--max-connections`. Raise the soft limit to the hard one.
#![allow(unsafe_code)]

/// Highest soft limit asked for (the kernel's default `nr_open`).
const CEILING: libc::rlim_t = 1 << 20;

/// Raises the soft RLIMIT_NOFILE towards the hard limit; returns the limit now in force.
pub(crate) fn raise_nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit(2) to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let wanted = lim.rlim_max.min(CEILING);
    if lim.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit that setrlimit(2) only reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    // rlim_t is u32 on some 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    Some(lim.rlim_cur as u64)
}

/// Warns when `max_connections` cannot be reached with the open-file limit.
pub(crate) fn check(max_connections: usize, fds_per_connection: u64) {
    match raise_nofile_limit() {
        Some(limit) if limit < max_connections as u64 * fds_per_connection + 64 => {
            tracing::warn!(
                limit,
                max_connections,
                "open-file limit is too low for --max-connections; raise it (LimitNOFILE=)"
            );
        }
        Some(limit) => tracing::debug!(limit, "open-file limit"),
        None => tracing::warn!("cannot read the open-file limit"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn raising_is_idempotent() {
        let first = super::raise_nofile_limit().expect("getrlimit");
        assert_eq!(super::raise_nofile_limit(), Some(first));
        assert!(first >= 1024);
    }
}
