//! Times people type: ISO 8601 / RFC 3339, shared by the CLI (`--to-datetime`) and the
//! broker's console (the message browser's "from time").

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// ISO 8601 / RFC 3339 to Unix milliseconds. Without a zone the time is taken as UTC; a bare
/// date means its midnight UTC.
pub fn parse_datetime(s: &str) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Ok(t.timestamp_millis());
        }
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    Err(format!(
        "`{s}` is not an ISO 8601 date-time; use e.g. 2026-01-02T03:04:05Z or 2026-01-02T03:04:05+01:00"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iso8601() {
        let z = parse_datetime("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(z, 1_767_323_045_000);
        assert_eq!(parse_datetime("2026-01-02T04:04:05+01:00").unwrap(), z);
        assert_eq!(parse_datetime("2026-01-02T04:04:05+0100").unwrap(), z);
        assert_eq!(parse_datetime("2026-01-02T03:04:05").unwrap(), z);
        assert_eq!(parse_datetime("2026-01-02T03:04:05.250Z").unwrap(), z + 250);
        assert_eq!(
            parse_datetime("2026-01-02").unwrap(),
            z - 3 * 3_600_000 - 4 * 60_000 - 5_000
        );
        assert!(parse_datetime("yesterday").is_err());
    }
}
