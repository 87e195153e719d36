//! HTTP on the SIP stream sockets (Kamailio's `xhttp` and `websocket` modules on a `tcp`
//! or `tls` socket): telling an HTTP request from SIP by its first line, the request
//! made SIP-shaped for `event_route[xhttp:request]`, the URL filters (`url_match`,
//! `url_skip`) and the `101 Switching Protocols` answer of a WebSocket upgrade
//! (RFC 6455 §4.2.2). The connection side (reading the request under the TCP limits,
//! writing the answer, the upgrade in place) is in `tcp.rs`; the WebSocket frames after
//! it in `ws.rs`.

use bytes::{BufMut, Bytes, BytesMut};
use ferrosip_api::Proto;
use ferrosip_sip::SipMessage;
use std::net::SocketAddr;

/// What the stream transports know about HTTP: set when the `xhttp` module is loaded.
pub struct HttpSide {
    /// `url_match`: only URLs matching it run the event route.
    pub url_match: Option<regex::bytes::Regex>,
    /// `url_skip`: URLs matching it do not.
    pub url_skip: Option<regex::bytes::Regex>,
    /// Where an upgraded connection's WebSocket frames go (the `websocket` module is
    /// loaded): WS for a TCP socket, WSS for a TLS one.
    pub ws: Option<std::sync::Arc<super::ws::Carrier>>,
}

impl HttpSide {
    /// Whether the event route runs for `url` (`url_match`, then `url_skip`).
    pub fn handles(&self, url: &[u8]) -> bool {
        self.url_match.as_ref().is_none_or(|re| re.is_match(url))
            && !self.url_skip.as_ref().is_some_and(|re| re.is_match(url))
    }
}

/// One whole HTTP request (head and body) received on a SIP stream socket.
pub struct HttpInbound {
    pub bytes: Bytes,
    /// The request target (`/ws`).
    pub url: Bytes,
    pub source: SocketAddr,
    pub local: SocketAddr,
    /// TCP or TLS.
    pub proto: Proto,
}

/// What the event route decided.
pub enum HttpOutcome {
    /// Send this reply, then close.
    Reply(Bytes),
    /// `ws_handle_handshake()` accepted the upgrade.
    Upgrade,
    /// The route answered nothing: close.
    Nothing,
}

/// The first line of `buf` (whose header section is complete).
fn first_line(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|c| *c == b'\n').unwrap_or(buf.len());
    buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end])
}

/// Whether a stream message starts with an HTTP/1.x request line (`GET /ws HTTP/1.1`)
/// rather than a SIP one: the version at its end says.
pub fn is_request(buf: &[u8]) -> bool {
    let line = first_line(buf);
    let mut parts = line.split(|c| *c == b' ');
    let (Some(method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !method.is_empty()
        && method.iter().all(u8::is_ascii_uppercase)
        && (version == b"HTTP/1.1" || version == b"HTTP/1.0")
}

/// The request target of an HTTP request line.
pub fn url(buf: &[u8]) -> Bytes {
    let line = first_line(buf);
    let target = line.split(|c| *c == b' ').nth(1).unwrap_or_default();
    Bytes::copy_from_slice(target)
}

/// Where the header section of `buf` ends (after its empty line), if it does.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(nl) = buf[at..].iter().position(|c| *c == b'\n') {
        let line = &buf[at..at + nl];
        at += nl + 1;
        if line.is_empty() || line == b"\r" {
            return Some(at);
        }
    }
    None
}

/// The value of the first header `name` (case-insensitive) of a header section.
pub fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head.split(|c| *c == b'\n').skip(1).find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|c| *c == b':')?;
        line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| line[colon + 1..].trim_ascii())
    })
}

/// SIP headers the SIP parser checks on every message: an HTTP request has no business
/// with them (a `Via` an HTTP proxy added has HTTP's syntax), so they are left out of
/// the SIP-shaped message.
const SIP_ONLY: &[&str] = &[
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "call-id",
    "i",
    "cseq",
    "max-forwards",
    "l",
];

/// The HTTP request as a SIP message for the event route: the method and every header
/// line as received (but [`SIP_ONLY`]), the body, and a Request-URI naming the socket
/// it came on (`$hu` has the URL). `None` when it does not parse even so.
pub fn sip_shaped(req: &HttpInbound) -> Option<SipMessage> {
    let head_end = head_len(&req.bytes)?;
    let head = &req.bytes[..head_end];
    let body = &req.bytes[head_end..];
    let method = first_line(head).split(|c| *c == b' ').next()?;
    let mut out = BytesMut::with_capacity(req.bytes.len() + 64);
    out.put_slice(method);
    out.put_slice(b" sip:");
    match req.local.ip() {
        std::net::IpAddr::V6(ip) => out.put_slice(format!("[{ip}]").as_bytes()),
        ip => out.put_slice(ip.to_string().as_bytes()),
    }
    out.put_slice(
        format!(
            ":{};transport={} SIP/2.0\r\n",
            req.local.port(),
            req.proto.name()
        )
        .as_bytes(),
    );
    let mut has_length = false;
    for line in head.split(|c| *c == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let name = line
            .iter()
            .position(|c| *c == b':')
            .map_or(line, |colon| line[..colon].trim_ascii());
        if SIP_ONLY
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
        {
            continue;
        }
        has_length |= name.eq_ignore_ascii_case(b"content-length");
        out.put_slice(line);
        out.put_slice(b"\r\n");
    }
    if !has_length {
        out.put_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    SipMessage::parse(out.freeze()).ok()
}

/// A whole HTTP reply without a body (the connection closes after it).
pub fn plain_reply(code: u16, reason: &str) -> Bytes {
    Bytes::from(format!(
        "HTTP/1.1 {code} {reason}\r\nServer: Ferrosip\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    ))
}

/// The answer accepting a WebSocket upgrade with the `sip` subprotocol (RFC 6455
/// §4.2.2, RFC 7118 §4), for the request's `Sec-WebSocket-Key`.
pub fn switching_protocols(key: &[u8]) -> Bytes {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key);
    Bytes::from(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\nVia: 1.1 proxy\r\n\r\n";

    #[test]
    fn http_is_told_from_sip_by_the_request_line() {
        assert!(is_request(UPGRADE));
        assert!(is_request(b"POST /rpc HTTP/1.0\r\n\r\n"));
        assert!(!is_request(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"));
        assert!(!is_request(b"SIP/2.0 200 OK\r\n\r\n"));
        assert!(!is_request(b"GET / HTTP/2\r\n\r\n"));
        assert_eq!(&url(UPGRADE)[..], b"/ws");
        assert_eq!(head_len(UPGRADE), Some(UPGRADE.len()));
        assert_eq!(header(UPGRADE, "upgrade"), Some(&b"websocket"[..]));
        assert_eq!(header(UPGRADE, "x-none"), None);
    }

    #[test]
    fn the_request_is_sip_shaped_without_sip_only_headers() {
        let req = HttpInbound {
            bytes: Bytes::from_static(UPGRADE),
            url: url(UPGRADE),
            source: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:8080".parse().unwrap(),
            proto: Proto::Tcp,
        };
        let msg = sip_shaped(&req).expect("parses");
        assert_eq!(msg.method_bytes(), Some(&b"GET"[..]));
        assert_eq!(msg.header("Upgrade"), Some(&b"websocket"[..]));
        assert_eq!(msg.header("Via"), None);
        assert_eq!(msg.header("Host"), Some(&b"127.0.0.1:8080"[..]));
    }

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // RFC 6455 §1.3's example.
        let r = switching_protocols(b"dGhlIHNhbXBsZSBub25jZQ==");
        let text = std::str::from_utf8(&r).unwrap();
        assert!(
            text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{text}"
        );
    }

    #[test]
    fn url_filters_match_then_skip() {
        let side = HttpSide {
            url_match: Some(regex::bytes::Regex::new("^/ws").unwrap()),
            url_skip: Some(regex::bytes::Regex::new("secret").unwrap()),
            ws: None,
        };
        assert!(side.handles(b"/ws"));
        assert!(!side.handles(b"/rpc"));
        assert!(!side.handles(b"/ws/secret"));
    }
}
