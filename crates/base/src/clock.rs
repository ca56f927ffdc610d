//! The wall clock. Pure code (the snapshot builder, the route table) takes time as an
//! argument; these are for the edges that read it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 if the clock is set before 1970. Signed because
/// certificate validity (`not_after_unix`) is signed and the two are subtracted.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Milliseconds since the Unix epoch; 0 if the clock is set before 1970.
pub fn unix_now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_agree_and_are_after_2024() {
        let (s, ms) = (unix_now(), unix_now_millis());
        assert!(s > 1_704_067_200, "{s}");
        let ms_s = i64::try_from(ms / 1000).expect("fits");
        assert!((ms_s - s).abs() <= 1, "{s} vs {ms}");
    }
}
