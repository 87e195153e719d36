//! The checks of `sanity_check()`, run over a parsed message.
//!
//! Each check either passes or fails with a [`Failure`]: the reply Kamailio would send
//! (code and reason) or none, for the failures Kamailio does not answer (a message
//! without its transaction headers, a broken top Via, size limits, RFC 3261 cookie/lr).

use ferrosip_sip::{CommaList, Method, NameAddr, Scheme, SipMessage, Uri};

/// R-URI SIP version is 2.0 (reply 505).
pub const RURI_SIP_VERSION: i64 = 1;
/// R-URI scheme is supported (reply 400 / 416).
pub const RURI_SCHEME: i64 = 1 << 1;
/// From, To, Call-ID, CSeq and Via present, the first four not repeated (no reply).
pub const REQUIRED_HEADERS: i64 = 1 << 2;
/// Via SIP version (disabled in Kamailio: always passes).
pub const VIA_SIP_VERSION: i64 = 1 << 3;
/// Via transport (disabled in Kamailio: always passes).
pub const VIA_PROTOCOL: i64 = 1 << 4;
/// CSeq method present and equal to the request method (reply 400).
pub const CSEQ_METHOD: i64 = 1 << 5;
/// CSeq number present and below 2^31 (reply 400).
pub const CSEQ_VALUE: i64 = 1 << 6;
/// Content-Length equals the body length (reply 400).
pub const CONTENT_LENGTH: i64 = 1 << 7;
/// Expires is an unsigned 32-bit number (reply 400).
pub const EXPIRES_VALUE: i64 = 1 << 8;
/// Every Proxy-Require option is in the `proxy_require` list (reply 420).
pub const PROXY_REQUIRE: i64 = 1 << 9;
/// The URIs selected by the URI mask parse (reply 400).
pub const PARSE_URIS: i64 = 1 << 10;
/// Authorization / Proxy-Authorization are complete Digest credentials (reply 400).
pub const CHECK_DIGEST: i64 = 1 << 11;
/// From and To carry at most one tag (reply 400).
pub const CHECK_DUPTAGS: i64 = 1 << 12;
/// Like [`CHECK_DIGEST`], but non-Digest credentials pass.
pub const CHECK_AUTHORIZATION: i64 = 1 << 13;
/// The top Via has a host and a branch (no reply).
pub const VIA1_HEADER: i64 = 1 << 14;
/// Top Via branch has the magic cookie, Route/Record-Route URIs have `;lr` (no reply).
pub const RFC3261_COMPLIANCE: i64 = 1 << 15;
/// The size limits of the `size_*` parameters (no reply).
pub const CHECK_SIZES: i64 = 1 << 16;
/// Ferrosip's own bit, past Kamailio's: every header the RFC 3261 grammar covers is
/// checked ([`SipMessage::validate`]: mandatory headers, single-instance headers not
/// repeated, CSeq method, no headers in a `sip:` Request-URI, Contact/Route syntax,
/// Expires, Date). Kamailio's bits leave these to the next hop; RFC 4475 §3.1.2 expects
/// an element to answer them with 400 (reply 400).
pub const RFC3261_GRAMMAR: i64 = 1 << 17;
/// One past the highest message check bit.
pub const MAX_CHECKS: i64 = 1 << 18;
/// Kamailio's `default_checks`.
pub const DEFAULT_CHECKS: i64 = RURI_SIP_VERSION
    | RURI_SCHEME
    | REQUIRED_HEADERS
    | CSEQ_METHOD
    | CSEQ_VALUE
    | CONTENT_LENGTH
    | EXPIRES_VALUE
    | PROXY_REQUIRE
    | CHECK_DIGEST;

/// URI check: the Request-URI.
pub const URI_RURI: i64 = 1;
/// URI check: the From URI.
pub const URI_FROM: i64 = 1 << 1;
/// URI check: the To URI.
pub const URI_TO: i64 = 1 << 2;
/// URI check: the first Contact URI.
pub const URI_CONTACT: i64 = 1 << 3;
/// One past the highest URI check bit.
pub const URI_MAX_CHECKS: i64 = 1 << 4;
/// Kamailio's `uri_checks` default.
pub const DEFAULT_URI_CHECKS: i64 = URI_RURI | URI_FROM | URI_TO;

/// Module settings the checks read.
#[derive(Clone, Debug)]
pub struct Config {
    pub default_checks: i64,
    pub uri_checks: i64,
    pub autodrop: bool,
    pub noreply: bool,
    /// The `size_checks` parameter: when non-zero, size checks always run.
    pub size_checks: i64,
    pub size_message: i64,
    pub size_method: i64,
    pub size_ruri: i64,
    pub size_from_uri: i64,
    pub size_to_uri: i64,
    pub size_contact_uri: i64,
    pub size_route_uri: i64,
    pub size_path_uri: i64,
    pub size_pai_uri: i64,
    pub size_header: i64,
    pub size_headers: i64,
    pub size_body: i64,
    /// Extensions accepted in Proxy-Require.
    pub proxy_require: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            default_checks: DEFAULT_CHECKS,
            uri_checks: DEFAULT_URI_CHECKS,
            autodrop: true,
            noreply: false,
            size_checks: 0,
            size_message: 16384,
            size_method: 32,
            size_ruri: 256,
            size_from_uri: 256,
            size_to_uri: 256,
            size_contact_uri: 256,
            size_route_uri: 256,
            size_path_uri: 256,
            size_pai_uri: 256,
            size_header: 2048,
            size_headers: 8192,
            size_body: 8192,
            proxy_require: Vec::new(),
        }
    }
}

/// Splits a comma-separated list, trimming blanks; empty elements are dropped.
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Why a check failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The reply to send, or `None` when Kamailio sends none for this failure.
    pub reply: Option<(u16, &'static str)>,
    /// The unsupported Proxy-Require option, for an `Unsupported:` reply header.
    pub unsupported: Option<String>,
}

impl Failure {
    fn reply(code: u16, reason: &'static str) -> Failure {
        Failure {
            reply: Some((code, reason)),
            unsupported: None,
        }
    }

    fn silent() -> Failure {
        Failure {
            reply: None,
            unsupported: None,
        }
    }
}

type Check = Result<(), Failure>;

/// Runs the checks of `msg_checks` (URI checks from `uri_checks`) in Kamailio's order,
/// stopping at the first failure.
pub fn run(msg: &SipMessage, msg_checks: i64, uri_checks: i64, cfg: &Config) -> Check {
    if msg_checks & CHECK_SIZES != 0 || cfg.size_checks != 0 {
        check_sizes(msg, cfg)?;
    }
    let steps: [(i64, &dyn Fn() -> Check); 15] = [
        (RURI_SIP_VERSION, &|| check_ruri_version(msg)),
        (RURI_SCHEME, &|| check_ruri_scheme(msg)),
        (REQUIRED_HEADERS, &|| check_required_headers(msg)),
        (VIA1_HEADER, &|| check_via1(msg)),
        (RFC3261_COMPLIANCE, &|| check_rfc3261(msg)),
        // VIA_SIP_VERSION and VIA_PROTOCOL are disabled in Kamailio and always pass.
        (CSEQ_METHOD, &|| check_cseq_method(msg)),
        (CSEQ_VALUE, &|| check_cseq_value(msg)),
        (CONTENT_LENGTH, &|| check_content_length(msg)),
        (EXPIRES_VALUE, &|| check_expires(msg)),
        (PROXY_REQUIRE, &|| {
            check_proxy_require(msg, &cfg.proxy_require)
        }),
        (PARSE_URIS, &|| check_parse_uris(msg, uri_checks)),
        (CHECK_DIGEST, &|| check_digest(msg, false)),
        (CHECK_AUTHORIZATION, &|| check_digest(msg, true)),
        (CHECK_DUPTAGS, &|| check_duptags(msg)),
        (RFC3261_GRAMMAR, &|| check_grammar(msg)),
    ];
    for (bit, step) in steps {
        if msg_checks & bit != 0 {
            step()?;
        }
    }
    Ok(())
}

/// The whole message against the RFC 3261 grammar ([`RFC3261_GRAMMAR`]).
pub fn check_grammar(msg: &SipMessage) -> Check {
    use ferrosip_sip::ParseError;
    msg.validate().map_err(|e| match e {
        // Without its transaction headers a message cannot be answered (as REQUIRED_HEADERS).
        ParseError::MissingHeader { .. } => Failure::silent(),
        ParseError::DuplicateHeader { .. } => Failure::reply(400, "Repeated Header"),
        ParseError::CSeqMethodMismatch { .. } => Failure::reply(400, "CSeq method mismatch"),
        ParseError::HeadersInRequestUri { .. } => Failure::reply(400, "Bad Request URI"),
        _ => Failure::reply(400, "Bad Header"),
    })
}

/// Request-Line version `SIP/2.0` (the part after `/` must be exactly `2.0`).
pub fn check_ruri_version(msg: &SipMessage) -> Check {
    if !msg.is_request() {
        return Ok(());
    }
    let v = msg.version();
    match v.iter().position(|&c| c == b'/') {
        None => Err(Failure::silent()),
        Some(i) if &v[i + 1..] == b"2.0" => Ok(()),
        Some(_) => Err(Failure::reply(505, "Version Not Supported (R-URI)")),
    }
}

/// The Request-URI parses and its scheme is sip, sips, tel, tels or urn.
pub fn check_ruri_scheme(msg: &SipMessage) -> Check {
    let Some(raw) = msg.request_uri() else {
        return Ok(());
    };
    let uri = Uri::parse(raw).map_err(|_| Failure::reply(400, "Bad Request URI"))?;
    let known = match uri.kind() {
        Scheme::Sip | Scheme::Sips | Scheme::Tel => true,
        Scheme::Other => {
            uri.scheme().eq_ignore_ascii_case(b"tels") || uri.scheme().eq_ignore_ascii_case(b"urn")
        }
    };
    if known {
        Ok(())
    } else {
        Err(Failure::reply(416, "Unsupported URI Scheme in Request URI"))
    }
}

/// From, To, Call-ID, CSeq and a Via are present; From, To, Call-ID and CSeq appear once.
pub fn check_required_headers(msg: &SipMessage) -> Check {
    for name in ["From", "To", "Call-ID", "CSeq", "Via"] {
        if !msg.has_header(name) {
            return Err(Failure::silent());
        }
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if msg.headers_named(name).nth(1).is_some() {
            return Err(Failure::silent());
        }
    }
    Ok(())
}

/// The top Via parses and has a host and a non-empty branch.
pub fn check_via1(msg: &SipMessage) -> Check {
    let via = msg.top_via().map_err(|_| Failure::silent())?;
    if via.host().is_empty() || via.branch().is_none_or(<[u8]>::is_empty) {
        return Err(Failure::silent());
    }
    Ok(())
}

/// The top Via branch starts with `z9hG4bK`; every Route and Record-Route URI has `;lr`.
pub fn check_rfc3261(msg: &SipMessage) -> Check {
    let via = msg.top_via().map_err(|_| Failure::silent())?;
    if !via.branch().is_some_and(|b| b.starts_with(b"z9hG4bK")) {
        return Err(Failure::silent());
    }
    for r in msg.record_routes().chain(msg.routes()) {
        let r = r.map_err(|_| Failure::silent())?;
        if r.uri().param("lr").is_none() {
            return Err(Failure::silent());
        }
    }
    Ok(())
}

/// CSeq has a method, equal to the request method.
pub fn check_cseq_method(msg: &SipMessage) -> Check {
    let cseq = msg.cseq().map_err(|_| Failure::silent())?;
    if cseq.method_bytes().is_empty() {
        return Err(Failure::reply(400, "Missing method in CSeq header"));
    }
    match msg.method_bytes() {
        Some(m) if m != cseq.method_bytes() => Err(Failure::reply(
            400,
            "CSeq method does not match request method",
        )),
        _ => Ok(()),
    }
}

/// CSeq number below 2^31 (RFC 3261 §8.1.1.5).
pub fn check_cseq_value(msg: &SipMessage) -> Check {
    let cseq = msg.cseq().map_err(|_| Failure::silent())?;
    if cseq.seq >= 1 << 31 {
        return Err(Failure::reply(400, "CSeq number is illegal"));
    }
    Ok(())
}

/// Content-Length, when present, is a number equal to the length of what follows the
/// header section in the received buffer.
pub fn check_content_length(msg: &SipMessage) -> Check {
    if !msg.has_header("Content-Length") {
        return Ok(());
    }
    let Some(cl) = msg.content_length() else {
        return Err(Failure::reply(400, "Content-Length Failure"));
    };
    let body_len = if msg.is_modified() {
        msg.body().len()
    } else {
        // The parser cuts the body at Content-Length; bytes left after it in the buffer
        // (a longer datagram) are a mismatch too.
        let buf = msg.buffer();
        let end = msg.as_bytes().as_ptr() as usize - buf.as_ptr() as usize + msg.as_bytes().len();
        msg.body().len() + (buf.len() - end)
    };
    if body_len != cl {
        return Err(Failure::reply(400, "Content-Length mis-match"));
    }
    Ok(())
}

/// The first Expires header is a number within 32 bits.
pub fn check_expires(msg: &SipMessage) -> Check {
    let Some(v) = msg.header("Expires") else {
        return Ok(());
    };
    let v = v.trim_ascii();
    if v.is_empty() {
        return Err(Failure::reply(400, "Missing number in Expires header"));
    }
    let valid = v.len() <= 10
        && v.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|n| n <= u64::from(u32::MAX));
    if !valid {
        return Err(Failure::reply(400, "Expires value is illegal"));
    }
    Ok(())
}

/// Every option of every Proxy-Require header is one of `supported` (exact match).
pub fn check_proxy_require(msg: &SipMessage, supported: &[String]) -> Check {
    for value in msg.headers_named("Proxy-Require") {
        let Ok(value) = std::str::from_utf8(value) else {
            return Err(Failure::reply(400, "Bad Proxy Require Header"));
        };
        let options = parse_list(value);
        if options.is_empty() {
            return Err(Failure::reply(400, "Bad Proxy Require Header"));
        }
        if let Some(o) = options.into_iter().find(|o| !supported.contains(o)) {
            return Err(Failure {
                reply: Some((420, "Bad Proxy Require Extension")),
                unsupported: Some(o),
            });
        }
    }
    Ok(())
}

/// The URIs selected by `checks` ([`URI_RURI`], [`URI_FROM`], [`URI_TO`],
/// [`URI_CONTACT`]) parse.
pub fn check_parse_uris(msg: &SipMessage, checks: i64) -> Check {
    if checks & URI_RURI != 0 {
        if let Some(raw) = msg.request_uri() {
            Uri::parse(raw).map_err(|_| Failure::reply(400, "Bad Request URI"))?;
        }
    }
    if checks & URI_FROM != 0 {
        if !msg.has_header("From") {
            return Err(Failure::silent());
        }
        msg.from()
            .map_err(|_| Failure::reply(400, "Invalid From Header"))?;
    }
    if checks & URI_TO != 0 {
        if !msg.has_header("To") {
            return Err(Failure::silent());
        }
        msg.to()
            .map_err(|_| Failure::reply(400, "Invalid To Header"))?;
    }
    if checks & URI_CONTACT != 0 {
        let mut first = true;
        for c in msg.contacts() {
            let c = c.map_err(|_| Failure::reply(400, "Bad Contact Header"))?;
            if first {
                Uri::parse(c.uri_bytes()).map_err(|_| Failure::reply(400, "Bad Contact URI"))?;
                first = false;
            }
        }
    }
    Ok(())
}

/// Digest parameters as lower-case name and unquoted value.
type DigestParams = Vec<(String, Vec<u8>)>;

/// Digest parameters of one credentials value; `None` for a scheme other than Digest,
/// `Some(Err(()))` when the parameter list is malformed.
fn digest_params(value: &[u8]) -> Option<Result<DigestParams, ()>> {
    let v = value.trim_ascii();
    let split = v
        .iter()
        .position(|c| c.is_ascii_whitespace())
        .unwrap_or(v.len());
    if !v[..split].eq_ignore_ascii_case(b"Digest") {
        return None;
    }
    let mut out = Vec::new();
    for p in CommaList::new(&v[split..]) {
        let Some(eq) = p.iter().position(|&c| c == b'=') else {
            return Some(Err(()));
        };
        let name = p[..eq].trim_ascii();
        let mut val = p[eq + 1..].trim_ascii();
        if val.first() == Some(&b'"') {
            if val.len() < 2 || val.last() != Some(&b'"') {
                return Some(Err(()));
            }
            val = &val[1..val.len() - 1];
        }
        if name.is_empty() {
            return Some(Err(()));
        }
        out.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            val.to_vec(),
        ));
    }
    Some(Ok(out))
}

/// Authorization (then Proxy-Authorization) credentials are complete Digest credentials:
/// username, realm, nonce, uri and response present (cnonce and nc too with qop=auth or
/// auth-int), username, nonce and response not empty. A non-Digest scheme fails without
/// a reply, unless `other_schemes_pass` (the `authorization` check).
pub fn check_digest(msg: &SipMessage, other_schemes_pass: bool) -> Check {
    let values = msg
        .headers_named("Authorization")
        .chain(msg.headers_named("Proxy-Authorization"));
    for value in values {
        let params = match digest_params(value) {
            None if other_schemes_pass => return Ok(()),
            None => return Err(Failure::silent()),
            Some(Err(())) => return Err(Failure::reply(400, "Bad Auth Header")),
            Some(Ok(p)) => p,
        };
        let get = |n: &str| {
            params
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_slice())
        };
        let mut required = vec!["username", "realm", "nonce", "uri", "response"];
        if get("qop")
            .is_some_and(|q| q.eq_ignore_ascii_case(b"auth") || q.eq_ignore_ascii_case(b"auth-int"))
        {
            required.extend(["cnonce", "nc"]);
        }
        if required.iter().any(|n| get(n).is_none()) {
            return Err(Failure::reply(400, "Bad Auth Credentials"));
        }
        for (n, reason) in [
            ("username", "Auth Empty User"),
            ("nonce", "Auth Empty Nonce"),
            ("response", "Auth Empty Response"),
        ] {
            if get(n).is_some_and(<[u8]>::is_empty) {
                return Err(Failure::reply(400, reason));
            }
        }
    }
    Ok(())
}

fn tag_count(na: &NameAddr<'_>) -> usize {
    na.params()
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"tag"))
        .count()
}

/// From and To each carry at most one `tag` parameter.
pub fn check_duptags(msg: &SipMessage) -> Check {
    let from = msg.from().map_err(|_| Failure::silent())?;
    let to = msg.to().map_err(|_| Failure::silent())?;
    if tag_count(&from) > 1 {
        return Err(Failure::reply(400, "Many From Tag Params"));
    }
    if tag_count(&to) > 1 {
        return Err(Failure::reply(400, "Many To Tag Params"));
    }
    Ok(())
}

fn over(len: usize, limit: i64) -> bool {
    limit > 0 && len as u64 > limit as u64
}

fn uris_over<'a>(
    items: impl Iterator<Item = Result<NameAddr<'a>, ferrosip_sip::ParseError>>,
    limit: i64,
) -> Check {
    if limit <= 0 {
        return Ok(());
    }
    for i in items {
        let i = i.map_err(|_| Failure::silent())?;
        if over(i.uri_bytes().len(), limit) {
            return Err(Failure::silent());
        }
    }
    Ok(())
}

fn listed<'a>(
    msg: &'a SipMessage,
    name: &'a str,
) -> impl Iterator<Item = Result<NameAddr<'a>, ferrosip_sip::ParseError>> + 'a {
    msg.headers_named(name)
        .flat_map(CommaList::new)
        .map(NameAddr::parse)
}

/// The `size_*` limits (a limit of 0 or less is off). Header lengths count
/// `name:value` plus CRLF. Failures are not replied to.
pub fn check_sizes(msg: &SipMessage, cfg: &Config) -> Check {
    let fail = Err(Failure::silent());
    if over(msg.len(), cfg.size_message) {
        return fail;
    }
    if msg
        .request_uri()
        .is_some_and(|u| over(u.len(), cfg.size_ruri))
    {
        return fail;
    }
    let method_len = match msg.method_bytes() {
        Some(m) => m.len(),
        None => msg.cseq().map_or(0, |c| c.method_bytes().len()),
    };
    if over(method_len, cfg.size_method) {
        return fail;
    }
    let mut total = 0;
    for (n, v) in msg.headers() {
        let len = n.len() + 1 + v.len() + 2;
        if over(len, cfg.size_header) {
            return fail;
        }
        total += len;
    }
    if cfg.size_from_uri > 0 {
        let f = msg.from().map_err(|_| Failure::silent())?;
        if over(f.uri_bytes().len(), cfg.size_from_uri) {
            return fail;
        }
    }
    if cfg.size_to_uri > 0 {
        let t = msg.to().map_err(|_| Failure::silent())?;
        if over(t.uri_bytes().len(), cfg.size_to_uri) {
            return fail;
        }
    }
    if over(msg.body().len(), cfg.size_body) || over(total, cfg.size_headers) {
        return fail;
    }
    uris_over(msg.contacts(), cfg.size_contact_uri)?;
    uris_over(msg.routes().chain(msg.record_routes()), cfg.size_route_uri)?;
    uris_over(listed(msg, "Path"), cfg.size_path_uri)?;
    uris_over(listed(msg, "P-Asserted-Identity"), cfg.size_pai_uri)?;
    Ok(())
}

/// Whether Kamailio would answer this message at all (not a reply, not an ACK).
pub fn replyable(msg: &SipMessage) -> bool {
    msg.is_request() && msg.method() != Some(Method::Ack)
}
