//! Unix seconds <-> the local wall-clock DATETIME values Kamailio stores.
//!
//! Kamailio writes DATETIME/TIMESTAMP columns as local time (`localtime()` then
//! `'%Y-%m-%d %H:%M:%S'`) and reads them back with `mktime()`; doing the same keeps rows
//! written by either program meaning the same instant.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone};

const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

pub(crate) fn to_local_naive(unix: i64) -> NaiveDateTime {
    match Local.timestamp_opt(unix, 0).earliest() {
        Some(t) => t.naive_local(),
        None => DateTime::from_timestamp(unix, 0)
            .unwrap_or_default()
            .naive_utc(),
    }
}

pub(crate) fn from_local_naive(t: NaiveDateTime) -> i64 {
    match Local.from_local_datetime(&t).earliest() {
        Some(t) => t.timestamp(),
        // A wall-clock time skipped by a DST change: take it as UTC rather than fail.
        None => t.and_utc().timestamp(),
    }
}

pub(crate) fn format_local(unix: i64) -> String {
    to_local_naive(unix).format(FORMAT).to_string()
}

/// Parses `YYYY-MM-DD HH:MM:SS` (also with `T`, fractional seconds, or a date alone) as
/// local time.
pub(crate) fn parse_local(s: &str) -> Option<i64> {
    let s = s.trim();
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(from_local_naive(t));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(from_local_naive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for t in [0, 1_700_000_000, 1_900_000_000, 946_684_801] {
            assert_eq!(parse_local(&format_local(t)), Some(t));
            assert_eq!(from_local_naive(to_local_naive(t)), t);
        }
        assert!(parse_local("2030-05-28 21:32:15").is_some());
        assert!(parse_local("2030-05-28T21:32:15.25").is_some());
        assert!(parse_local("yesterday").is_none());
    }
}
