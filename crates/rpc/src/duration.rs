//! Durations as people write them in Consul's APIs and in strait's flags and definitions:
//! `500ms`, `10s`, `5m`, `1h`, or a bare number of seconds.

use std::time::Duration;

/// Parses `text`; the error names the value and what was expected (callers add the field).
/// Overflow is an error, never a panic.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number followed by ms, s, m or h"))?;
    let millis = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m, h)")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn units_bare_seconds_and_errors() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse("").unwrap_err().contains("expected a number"));
        assert!(parse("5 minutes").unwrap_err().contains("unknown unit"));
        assert!(parse("307445734561825861m")
            .unwrap_err()
            .contains("too large"));
        assert!(parse("-1s").is_err());
    }
}
