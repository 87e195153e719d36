//! Editing the first Contact URI (fix_nated_contact, the alias functions) and the
//! R-URI's `alias` parameter (handle_ruri_alias).

use ferrosip_api::sip::{CommaList, NameAddr, SipMessage, Uri};

/// Where `part` starts inside `whole` (both slices of one buffer).
fn offset(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// The first Contact's URI, unless the request has none or `Contact: *`.
pub fn first_contact_uri(msg: &SipMessage) -> Option<Vec<u8>> {
    let value = msg.headers_named("Contact").next()?;
    let first = CommaList::new(value).next()?.trim_ascii();
    if first == b"*" {
        return None;
    }
    let na = NameAddr::parse(first).ok()?;
    Some(na.uri_bytes().to_vec())
}

/// Replaces the first Contact's URI by `f(uri)`; the Contact headers become one header
/// (same contacts, comma-separated) where the first one was. A contact written without
/// angle brackets gets them, as its URI may now carry parameters. `Ok(false)` when `f`
/// leaves it as it is; `Err` when there is no usable Contact.
pub fn edit_first_contact(
    msg: &mut SipMessage,
    f: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>, String>,
) -> Result<bool, String> {
    let values: Vec<Vec<u8>> = msg.headers_named("Contact").map(<[u8]>::to_vec).collect();
    let Some(first_value) = values.first() else {
        return Err("no Contact header".into());
    };
    let Some(first) = CommaList::new(first_value).next() else {
        return Err("empty Contact header".into());
    };
    if first.trim_ascii() == b"*" {
        return Err("Contact: * has no URI".into());
    }
    let na = NameAddr::parse(first).map_err(|e| format!("bad Contact: {e}"))?;
    let uri = na.uri_bytes();
    let Some(new_uri) = f(uri)? else {
        return Ok(false);
    };
    let start = offset(first_value, uri);
    let end = start + uri.len();
    let mut value = Vec::with_capacity(first_value.len() + new_uri.len() + 32);
    value.extend_from_slice(&first_value[..start]);
    if na.has_angle_brackets() {
        value.extend_from_slice(&new_uri);
    } else {
        value.push(b'<');
        value.extend_from_slice(&new_uri);
        value.push(b'>');
    }
    value.extend_from_slice(&first_value[end..]);
    for other in &values[1..] {
        value.extend_from_slice(b", ");
        value.extend_from_slice(other.trim_ascii());
    }
    msg.set_header("Contact", &value)
        .map_err(|e| format!("cannot write the Contact: {e}"))?;
    Ok(true)
}

/// The parts of a `sip:`/`sips:` URI around its host and port.
struct HostPort<'a> {
    /// `sip:user@` (everything before the host).
    before: &'a [u8],
    /// `;params?headers` (everything after host and port).
    after: &'a [u8],
}

fn split_hostport(uri: &[u8]) -> Result<HostPort<'_>, String> {
    let parsed = Uri::parse(uri).map_err(|e| format!("bad URI: {e}"))?;
    let host = parsed
        .host()
        .ok_or_else(|| "the URI has no host".to_string())?;
    let start = offset(uri, host);
    let mut end = start + host.len();
    if uri.get(end) == Some(&b':') {
        end += 1;
        while uri.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    Ok(HostPort {
        before: &uri[..start],
        after: &uri[end..],
    })
}

/// The URI with `host:port` in place of its host and port.
pub fn with_hostport(uri: &[u8], host: &str, port: u16) -> Result<Vec<u8>, String> {
    let hp = split_hostport(uri)?;
    let mut out = hp.before.to_vec();
    out.extend_from_slice(format!("{host}:{port}").as_bytes());
    out.extend_from_slice(hp.after);
    Ok(out)
}

/// The URI's parameters part split at the `?` of its headers.
fn params_and_headers(after: &[u8]) -> (&[u8], &[u8]) {
    match after.iter().position(|&c| c == b'?') {
        Some(q) => after.split_at(q),
        None => (after, &[]),
    }
}

/// The URI with `;name=value` appended to its parameters (before any `?headers`).
pub fn with_param(uri: &[u8], name: &str, value: &str) -> Result<Vec<u8>, String> {
    let hp = split_hostport(uri)?;
    let (params, headers) = params_and_headers(hp.after);
    let mut out = uri[..uri.len() - hp.after.len()].to_vec();
    out.extend_from_slice(params);
    out.extend_from_slice(format!(";{name}={value}").as_bytes());
    out.extend_from_slice(headers);
    Ok(out)
}

/// The URI without its parameters named `name`, and the values they had (in order).
pub fn without_param(uri: &[u8], name: &str) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
    let hp = split_hostport(uri)?;
    let (params, headers) = params_and_headers(hp.after);
    let mut out = uri[..uri.len() - hp.after.len()].to_vec();
    let mut removed = Vec::new();
    for p in params.split(|&c| c == b';').filter(|p| !p.is_empty()) {
        let (n, v) = match p.iter().position(|&c| c == b'=') {
            Some(e) => (&p[..e], Some(&p[e + 1..])),
            None => (p, None),
        };
        if n.trim_ascii().eq_ignore_ascii_case(name.as_bytes()) {
            removed.push(v.unwrap_or_default().trim_ascii().to_vec());
        } else {
            out.push(b';');
            out.extend_from_slice(p);
        }
    }
    out.extend_from_slice(headers);
    Ok((out, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(contact: &str) -> SipMessage {
        SipMessage::parse(
            format!(
                "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK1\r\n\
                 From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\
                 {contact}\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
            .into(),
        )
        .unwrap()
    }

    #[test]
    fn host_and_port_are_replaced_and_the_rest_kept() {
        assert_eq!(
            with_hostport(
                b"sip:alice@192.168.1.20:5060;transport=udp?x=y",
                "127.0.0.2",
                4000
            )
            .unwrap(),
            b"sip:alice@127.0.0.2:4000;transport=udp?x=y"
        );
        assert_eq!(
            with_hostport(b"sip:[fe80::1];ob", "1.2.3.4", 5).unwrap(),
            b"sip:1.2.3.4:5;ob"
        );
        assert_eq!(
            with_param(b"sip:a@h:1;ob?x=y", "alias", "1.2.3.4~5~1").unwrap(),
            b"sip:a@h:1;ob;alias=1.2.3.4~5~1?x=y"
        );
        let (uri, removed) = without_param(b"sip:a@h;alias=1~2~1;lr;ALIAS=3~4~2", "alias").unwrap();
        assert_eq!(uri, b"sip:a@h;lr");
        assert_eq!(removed, vec![b"1~2~1".to_vec(), b"3~4~2".to_vec()]);
    }

    #[test]
    fn the_first_contact_is_edited_and_the_others_kept() {
        let mut m = msg("Contact: \"A\" <sip:a@192.168.1.20:5060>;expires=60, <sip:b@10.0.0.1>\r\nContact: sip:c@10.0.0.2;q=0.5");
        let changed =
            edit_first_contact(&mut m, |u| with_hostport(u, "127.0.0.2", 7000).map(Some)).unwrap();
        assert!(changed);
        let v: Vec<&[u8]> = m.headers_named("Contact").collect();
        assert_eq!(v.len(), 1);
        assert_eq!(
            std::str::from_utf8(v[0]).unwrap(),
            "\"A\" <sip:a@127.0.0.2:7000>;expires=60, <sip:b@10.0.0.1>, sip:c@10.0.0.2;q=0.5"
        );
        // A bare URI gets brackets, so that a new URI parameter stays in the URI.
        let mut m = msg("Contact: sip:a@192.168.1.20;expires=60");
        edit_first_contact(&mut m, |u| with_param(u, "alias", "1.2.3.4~5~1").map(Some)).unwrap();
        assert_eq!(
            m.headers_named("Contact").next().unwrap(),
            b"<sip:a@192.168.1.20;alias=1.2.3.4~5~1>;expires=60"
        );
        let mut m = msg("Contact: *");
        assert!(edit_first_contact(&mut m, |_| Ok(None)).is_err());
    }
}
