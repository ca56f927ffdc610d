//! Passive health (outlier detection) of an upstream target's endpoints, as Envoy's
//! consecutive-failure detector with Consul's `PassiveHealthCheck` settings: an endpoint (a
//! sidecar or a gateway) whose connections fail `max_failures` times in a row (connect or
//! TLS handshake), the streak starting within `interval`, is ejected: new connections skip
//! it, so a dead endpoint costs no attempt until the catalog notices. An ejection lasts
//! `base_ejection` times the endpoint's ejection multiplier, which grows by one per
//! ejection and decays by one per `interval` spent not ejected (capped at
//! [`PassiveHealth::MAX_EJECTION_MS`], or the base time if longer). At most
//! `max_ejection_percent` of a target's endpoints are ejected at once, and at least one may
//! be (Envoy's rule), so a target whose only endpoint is dead is passed over too. When no
//! endpoint of the whole chain answers, the ejected ones are tried as a last resort (as
//! Envoy's panic routing would), and one that completes a handshake is back at once.
//!
//! The state of each endpoint is a few atomics, found once per snapshot (kept across
//! snapshots in [`TargetMetrics`](crate::metrics::TargetMetrics)); a connection reads them
//! and writes them without a lock and without allocating. Concurrent failures may race on
//! the streak counter; an ejection itself happens once (a compare-and-swap).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;
use strait_snapshot::PassiveHealth;

/// Milliseconds on a monotonic clock, from the first call in this process; never 0 (0 means
/// "never" in [`EndpointHealth`]).
pub(crate) fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    base.elapsed().as_millis() as u64 + 1
}

/// The passive health state of one endpoint of one target.
#[derive(Debug, Default)]
pub struct EndpointHealth {
    /// Failures in the current streak.
    failures: AtomicU32,
    /// [`now_ms`] of the streak's first failure.
    streak_start: AtomicU64,
    /// Ejected until this [`now_ms`] (0: never ejected). Stays set after it passes: the
    /// multiplier decays from there.
    ejected_until: AtomicU64,
    /// Envoy's ejection time multiplier.
    multiplier: AtomicU32,
}

impl EndpointHealth {
    /// Whether new connections skip this endpoint at `now`.
    pub(crate) fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Relaxed) > now
    }

    /// Milliseconds of ejection left at `now` (0: not ejected), for the admin.
    pub fn ejected_for_ms(&self, now: u64) -> u64 {
        self.ejected_until.load(Relaxed).saturating_sub(now)
    }

    /// A connection through this endpoint completed its handshake at `now`: the streak
    /// ends, and so does an ejection (it answered when tried as a last resort).
    pub(crate) fn success(&self, now: u64) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
        if self.is_ejected(now) {
            self.ejected_until.fetch_min(now, Relaxed);
        }
    }
}

/// The endpoints of one target under one [`PassiveHealth`] configuration.
pub(crate) struct Outlier<'a> {
    pub config: &'a PassiveHealth,
    /// Every endpoint of the target (for the ejection percentage).
    pub endpoints: &'a [std::sync::Arc<EndpointHealth>],
}

impl Outlier<'_> {
    /// Records a failed connect or handshake of endpoint `i` at `now`; true when this
    /// failure ejected it.
    pub(crate) fn failure(&self, i: usize, now: u64) -> bool {
        let c = self.config;
        let e = &self.endpoints[i];
        let start = e.streak_start.load(Relaxed);
        let failures = if e.failures.load(Relaxed) == 0 || now.saturating_sub(start) > c.interval_ms
        {
            e.streak_start.store(now, Relaxed);
            e.failures.store(1, Relaxed);
            1
        } else {
            e.failures.fetch_add(1, Relaxed) + 1
        };
        if failures < c.max_failures.max(1) {
            return false;
        }
        let previous = e.ejected_until.load(Relaxed);
        if previous > now || !self.may_eject(now) {
            return false;
        }
        // Envoy: the multiplier drops by one per interval the endpoint was not ejected.
        let idle = if previous == 0 {
            u64::MAX
        } else {
            now - previous
        };
        let decay = u32::try_from(idle / c.interval_ms.max(1)).unwrap_or(u32::MAX);
        let multiplier = e.multiplier.load(Relaxed).saturating_sub(decay) + 1;
        let cap = PassiveHealth::MAX_EJECTION_MS.max(c.base_ejection_ms);
        let length = c
            .base_ejection_ms
            .saturating_mul(u64::from(multiplier))
            .min(cap);
        if e.ejected_until
            .compare_exchange(previous, now + length, Relaxed, Relaxed)
            .is_err()
        {
            return false; // another connection ejected it first
        }
        e.multiplier.store(multiplier, Relaxed);
        e.failures.store(0, Relaxed);
        true
    }

    /// Whether one more endpoint may be ejected: fewer than `max_ejection_percent` of them
    /// are, or none is.
    fn may_eject(&self, now: u64) -> bool {
        let ejected = self.endpoints.iter().filter(|e| e.is_ejected(now)).count();
        let allowed = self.endpoints.len() * self.config.max_ejection_percent as usize / 100;
        ejected < allowed.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const CONFIG: PassiveHealth = PassiveHealth {
        interval_ms: 1_000,
        max_failures: 3,
        max_ejection_percent: 50,
        base_ejection_ms: 10_000,
        enforcing_consecutive_5xx: None,
    };

    /// Three failures of endpoint `i` from `at` on, 1 ms apart: whether the last ejected it.
    fn three_failures(o: &Outlier<'_>, i: usize, at: u64) -> bool {
        o.failure(i, at);
        o.failure(i, at + 1);
        o.failure(i, at + 2)
    }

    fn endpoints(n: usize) -> Vec<Arc<EndpointHealth>> {
        (0..n).map(|_| Arc::default()).collect()
    }

    #[test]
    fn ejects_after_max_failures_in_a_row_within_the_interval() {
        let eps = endpoints(2);
        let o = Outlier {
            config: &CONFIG,
            endpoints: &eps,
        };
        assert!(!o.failure(0, 100));
        assert!(!o.failure(0, 200));
        // A success ends the streak.
        eps[0].success(250);
        assert!(!o.failure(0, 300));
        assert!(!o.failure(0, 400));
        // A streak older than the interval starts over.
        assert!(!o.failure(0, 1_500));
        assert!(!o.failure(0, 1_600));
        assert!(o.failure(0, 1_700), "third failure in a row ejects");
        assert!(eps[0].is_ejected(1_701));
        assert_eq!(eps[0].ejected_for_ms(1_700), 10_000);
        assert!(
            !eps[0].is_ejected(11_700),
            "back after the base ejection time"
        );
        assert!(!eps[1].is_ejected(1_701));
        // An ejected endpoint that answers (tried as a last resort) is back at once.
        eps[0].success(2_000);
        assert!(!eps[0].is_ejected(2_000));
    }

    #[test]
    fn ejection_time_grows_with_repeated_ejections_and_decays() {
        let eps = endpoints(1);
        let o = Outlier {
            config: &CONFIG,
            endpoints: &eps,
        };
        let eject = |at: u64| three_failures(&o, 0, at);
        assert!(eject(0));
        assert_eq!(eps[0].ejected_for_ms(2), 10_000);
        // Failing again right after it comes back: twice as long.
        assert!(eject(10_002));
        assert_eq!(eps[0].ejected_for_ms(10_004), 20_000);
        // After 2 intervals healthy the multiplier is back to 0: base time again.
        let back = 10_004 + 20_000;
        assert!(eject(back + 2_000));
        assert_eq!(eps[0].ejected_for_ms(back + 2_002), 10_000);
        // Failures while ejected do not extend it.
        assert!(!eject(back + 3_000));
    }

    #[test]
    fn never_more_than_max_ejection_percent_but_at_least_one() {
        let eps = endpoints(4);
        let o = Outlier {
            config: &CONFIG,
            endpoints: &eps,
        };
        let eject = |i: usize| three_failures(&o, i, 10);
        assert!(eject(0));
        assert!(eject(1));
        assert!(!eject(2), "50% of 4 endpoints are ejected already");
        assert!(!eps[2].is_ejected(11));
        let one = endpoints(1);
        let o = Outlier {
            config: &PassiveHealth {
                max_ejection_percent: 10,
                ..CONFIG
            },
            endpoints: &one,
        };
        assert!(three_failures(&o, 0, 10));
    }
}
