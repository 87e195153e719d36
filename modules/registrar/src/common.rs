//! Address-of-record extraction and small parsers shared by save() and lookup().

use ferrosip_sip::Uri;

/// The address of record of a URI as usrloc keys it: the (unescaped) user part, with
/// `@domain` when `use_domain` is on (without `realm_prefix`), lower-cased unless
/// `case_sensitive`. `None` when the URI does not parse or has no user part.
pub fn extract_aor(
    uri: &[u8],
    use_domain: bool,
    case_sensitive: bool,
    realm_prefix: &[u8],
) -> Option<Vec<u8>> {
    let parsed = Uri::parse(uri).ok()?;
    let user = parsed.user().filter(|u| !u.is_empty())?;
    let mut aor = unescape(user)?;
    if use_domain {
        let mut host = parsed.host().unwrap_or_default();
        if !realm_prefix.is_empty()
            && host.len() > realm_prefix.len()
            && host[..realm_prefix.len()].eq_ignore_ascii_case(realm_prefix)
        {
            host = &host[realm_prefix.len()..];
        }
        aor.push(b'@');
        aor.extend_from_slice(host);
    }
    if !case_sensitive {
        aor.make_ascii_lowercase();
    }
    Some(aor)
}

/// `%XX` unescaping of a URI user part; `None` for a broken escape.
pub fn unescape(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// A q value (`0`, `0.5`, `1.000`) in thousandths; `None` when out of 0..1 or malformed.
pub fn parse_q(v: &[u8]) -> Option<i16> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || frac.len() > 3 || !int.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let int: i64 = int.parse().ok()?;
    let mut thousandths = 0i64;
    for (i, c) in frac.bytes().enumerate() {
        thousandths += i64::from(c - b'0') * [100, 10, 1][i];
    }
    let q = int * 1000 + thousandths;
    (0..=1000).contains(&q).then_some(q as i16)
}

/// A q value as written in a reply or a branch (`0.5`, `1`).
pub fn format_q(q: i16) -> String {
    if q >= 1000 {
        "1".to_string()
    } else if q <= 0 {
        "0".to_string()
    } else {
        let s = format!("0.{q:03}");
        s.trim_end_matches('0').to_string()
    }
}

/// An unsigned number of seconds; values past `u32::MAX` saturate (a phone asking for
/// "forever" gets `max_expires`).
pub fn parse_seconds(v: &[u8]) -> Option<u32> {
    let s = v.trim_ascii();
    if s.is_empty() || !s.iter().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(s.iter().fold(0u64, |acc, c| {
        (acc * 10 + u64::from(c - b'0')).min(u64::from(u32::MAX))
    }) as u32)
}

/// An HTTP/SIP date (RFC 1123, as the Date header wants it) for a Unix time.
pub fn http_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aor_from_uris() {
        let aor = |u: &str, d| {
            extract_aor(u.as_bytes(), d, false, b"sip.").map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(
            aor("sip:Alice@Example.com", false).as_deref(),
            Some("alice")
        );
        assert_eq!(
            aor("sip:alice@sip.example.com;transport=tcp", true).as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(aor("sip:al%69ce@h", false).as_deref(), Some("alice"));
        assert_eq!(aor("sip:example.com", false), None);
        assert_eq!(aor("not a uri", false), None);
        assert_eq!(
            extract_aor(b"sip:Bob@h", false, true, b"").as_deref(),
            Some(b"Bob".as_slice())
        );
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q(b"0.5"), Some(500));
        assert_eq!(parse_q(b"1"), Some(1000));
        assert_eq!(parse_q(b"1.000"), Some(1000));
        assert_eq!(parse_q(b"0.123"), Some(123));
        assert_eq!(parse_q(b"0"), Some(0));
        assert_eq!(parse_q(b"1.5"), None);
        assert_eq!(parse_q(b"0.1234"), None);
        assert_eq!(parse_q(b"abc"), None);
        assert_eq!(parse_q(b".5"), None);
        assert_eq!(format_q(500), "0.5");
        assert_eq!(format_q(1000), "1");
        assert_eq!(format_q(5), "0.005");
    }

    #[test]
    fn seconds_saturate() {
        assert_eq!(parse_seconds(b" 3600 "), Some(3600));
        assert_eq!(parse_seconds(b"99999999999999"), Some(u32::MAX));
        assert_eq!(parse_seconds(b"-1"), None);
        assert_eq!(parse_seconds(b""), None);
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_289_690_940), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
