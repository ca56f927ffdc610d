//! glibc's malloc thresholds for a proxy process. By default glibc gives the free memory at
//! the top of its heap back to the kernel once it exceeds 128 KiB, and serves allocations of
//! 128 KiB or more with a fresh mapping each. A server sidecar reading a tunnel reallocates
//! HTTP/2's frame buffer (64 KiB frames) at the top of the heap over and over: each time the
//! heap shrank and grew again, the kernel mapped and zeroed the pages anew (`brk` ~1,100
//! times per GB carried, ~10 % of that sidecar's CPU in page faults; bench/README.md,
//! "Tunnels"). Keeping up to [`TRIM_THRESHOLD`] of free heap, and serving allocations below
//! [`MMAP_THRESHOLD`] from the heap, lets those buffers be reused instead. An idle proxy keeps
//! nothing more: the heap grows only with what was used.
#![allow(unsafe_code)]

/// Free memory at the top of the heap kept for reuse rather than returned to the kernel.
const TRIM_THRESHOLD: libc::c_int = 4 << 20;
/// Allocations this large or larger get a mapping of their own.
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Sets the thresholds; false if glibc refused one (the defaults then stay).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn tune() -> bool {
    // SAFETY: mallopt only sets glibc's malloc parameters from two plain integers (valid
    // parameter numbers from libc, values within their documented ranges); it takes malloc's
    // own lock, so it is safe while other threads allocate, and it touches no memory of ours.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    }
}

/// Other C libraries keep their own allocator policy.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn tune() -> bool {
    true
}

#[cfg(test)]
mod tests {
    /// glibc accepts both values (mallopt answers 1 on success, 0 on a refused value).
    #[test]
    fn glibc_takes_the_thresholds() {
        assert!(super::tune());
    }
}
