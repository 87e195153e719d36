//! Edits a proxy makes, and serialization.
//!
//! An edit appends its new bytes to `SipMessage::extra` and repoints the index (the
//! start-line spans or a header entry); removing a header drops its entry. Nothing is
//! re-parsed and no received byte moves, so an edit costs a small copy, reads see it at
//! once, and `to_bytes` is one pass of copies over the index.

use bytes::{Bytes, BytesMut};

use crate::chars::{is_token, offset_in};
use crate::error::ParseError;
use crate::header_name::HeaderName;
use crate::list::CommaList;
use crate::message::{check_hot, Hdr, Hot, SipMessage, Span, StartLine};
use crate::uri::Uri;
use crate::via::via_list;

fn edit_err(what: &'static str) -> ParseError {
    ParseError::Edit { what }
}

/// Refuses what would break the framing of the message or smuggle a header in, and
/// returns the value without leading and trailing blanks: a parser drops them, so a
/// value kept with them would read differently before and after sending (found by the
/// `message` fuzz target).
fn check_value(kind: HeaderName, value: &[u8]) -> Result<&[u8], ParseError> {
    let value = check_framing(value)?;
    check_hot(kind, value, 0)?;
    Ok(value)
}

/// The part of [`check_value`] every header gets, before its own grammar.
fn check_framing(value: &[u8]) -> Result<&[u8], ParseError> {
    if value.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0) {
        return Err(edit_err("header value contains CR, LF or NUL"));
    }
    Ok(crate::chars::trim_lws(value))
}

/// Checks a name for the generic header edits. Content-Length is refused there: it
/// frames the message and only `set_body` keeps it equal to the body.
fn check_name(name: &str) -> Result<HeaderName, ParseError> {
    if !is_token(name.as_bytes()) {
        return Err(edit_err("header name is not a token"));
    }
    match HeaderName::from_bytes(name.as_bytes()) {
        HeaderName::ContentLength => Err(edit_err("Content-Length follows the body; use set_body")),
        kind => Ok(kind),
    }
}

impl SipMessage {
    fn mark(&mut self) {
        self.edited = true;
    }

    /// Drops the parse-time cache of the field header `kind` holds, if it is one.
    fn touch(&mut self, kind: HeaderName) {
        self.hot.fresh &= !Hot::bit_of(kind);
    }

    /// Makes room for `n` more bytes in the side buffer. Small edits (a new
    /// Max-Forwards, a short R-URI) fit in its inline part; past that, a forwarded
    /// request typically gets a Via, a Record-Route and more: one allocation sized for
    /// them beats growing the buffer edit by edit.
    fn make_room(&mut self, n: usize) {
        let len = self.extra.len();
        if len + n + 4 > self.extra.capacity() {
            self.extra.reserve((n + 4).max(256));
        }
    }

    fn append(&mut self, bytes: &[u8]) -> Span {
        self.make_room(bytes.len());
        let start = self.buf.len() + self.extra.len();
        self.extra.extend_from_slice(bytes);
        Span::new(start, start + bytes.len())
    }

    /// Copies bytes the message already holds (received or edited) to the side buffer.
    fn append_span(&mut self, s: Span) -> Span {
        self.make_room(s.len());
        let b = self.buf.len();
        let start = b + self.extra.len();
        let (a, e) = (s.start as usize, s.end as usize);
        if a >= b && e > a {
            // From the side buffer itself: copied through the stack, as it may move.
            let mut at = a - b;
            let end = e - b;
            let mut chunk = [0u8; 64];
            while at < end {
                let n = (end - at).min(chunk.len());
                chunk[..n].copy_from_slice(&self.extra[at..at + n]);
                self.extra.extend_from_slice(&chunk[..n]);
                at += n;
            }
        } else if let Some(src) = self.buf.get(a..e) {
            self.extra.extend_from_slice(src);
        }
        Span::new(start, start + s.len())
    }

    /// Writes `name: value CRLF` to the side buffer; `name` is a span so that a
    /// replaced header keeps the name (and compact form) it was received with.
    fn line_with_name(&mut self, name: Span, value: Span, kind: HeaderName) -> Hdr {
        self.make_room(name.len() + value.len() + 4);
        let ls = self.buf.len() + self.extra.len();
        let n = self.append_span(name);
        self.extra.extend_from_slice(b": ");
        let v = self.append_span(value);
        self.extra.extend_from_slice(b"\r\n");
        Hdr {
            line: Span::new(ls, v.end as usize + 2),
            name: n,
            value: v,
            kind,
        }
    }

    fn new_line(&mut self, name: &[u8], value: &[u8], kind: HeaderName) -> Hdr {
        self.make_room(name.len() + value.len() + 4);
        let ls = self.buf.len() + self.extra.len();
        let n = self.append(name);
        self.extra.extend_from_slice(b": ");
        let v = self.append(value);
        self.extra.extend_from_slice(b"\r\n");
        Hdr {
            line: Span::new(ls, v.end as usize + 2),
            name: n,
            value: v,
            kind,
        }
    }

    /// Replaces the Request-URI. The new URI must parse ([`Uri::parse`]); a response
    /// has no Request-URI to set.
    pub fn set_request_uri(&mut self, uri: impl AsRef<[u8]>) -> Result<(), ParseError> {
        let uri = uri.as_ref();
        if !self.is_request() {
            return Err(edit_err("a response has no Request-URI"));
        }
        let host = Uri::parse(uri)?
            .host()
            .map(|h| offset_in(uri, h)..offset_in(uri, h) + h.len());
        let span = self.append(uri);
        self.hot.ruri_host =
            host.map(|r| Span::new(span.start as usize + r.start, span.start as usize + r.end));
        if let StartLine::Request { uri, .. } = &mut self.start {
            *uri = span;
        }
        self.start_dirty = true;
        self.mark();
        Ok(())
    }

    /// Appends `name: value` after the last header.
    pub fn add_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<(), ParseError> {
        let kind = check_name(name)?;
        let value = value.as_ref();
        let value = check_value(kind, value)?;
        let h = self.new_line(name.as_bytes(), value, kind);
        self.headers.push(h);
        self.touch(kind);
        self.mark();
        Ok(())
    }

    /// Inserts `name: value` right after the start line.
    pub fn insert_header_first(
        &mut self,
        name: &str,
        value: impl AsRef<[u8]>,
    ) -> Result<(), ParseError> {
        let kind = check_name(name)?;
        let value = value.as_ref();
        let value = check_value(kind, value)?;
        let h = self.new_line(name.as_bytes(), value, kind);
        self.headers.insert(0, h);
        self.touch(kind);
        self.mark();
        Ok(())
    }

    /// Removes every header named `name` (compact and long forms alike); returns how
    /// many lines went.
    pub fn remove_headers(&mut self, name: &str) -> usize {
        let kind = HeaderName::from_bytes(name.as_bytes());
        let (buf, extra) = (&self.buf, &self.extra);
        let before = self.headers.len();
        self.headers.retain(|h| {
            let n = slice(buf, extra, h.name);
            !(h.kind == kind
                && (kind != HeaderName::Other || n.eq_ignore_ascii_case(name.as_bytes())))
        });
        let removed = before - self.headers.len();
        if removed > 0 {
            self.touch(kind);
            self.mark();
        }
        removed
    }

    /// Removes every header for which `pred(name, value)` is true (for regex or prefix
    /// matches on names, such as `X-*`); returns how many lines went.
    pub fn remove_headers_where(&mut self, mut pred: impl FnMut(&[u8], &[u8]) -> bool) -> usize {
        let (buf, extra) = (&self.buf, &self.extra);
        let before = self.headers.len();
        let mut stale = 0;
        self.headers.retain(|h| {
            let remove = pred(slice(buf, extra, h.name), slice(buf, extra, h.value));
            if remove {
                stale |= Hot::bit_of(h.kind);
            }
            !remove
        });
        let removed = before - self.headers.len();
        if removed > 0 {
            self.hot.fresh &= !stale;
            self.mark();
        }
        removed
    }

    /// Adds a Via line on top of the existing ones (just before the first Via line, or
    /// after the start line when there is none). `value` is one Via value, checked.
    pub fn prepend_via(&mut self, value: impl AsRef<[u8]>) -> Result<(), ParseError> {
        let value = check_framing(value.as_ref())?;
        // The grammar check parses the new top Via anyway: keep it, as every layer reads
        // the top Via of a request it sends (client transaction key, branch, sent-by).
        let mut top = None;
        for via in via_list(value) {
            let via = via.map_err(|e| e.in_header(HeaderName::Via, 0))?;
            top.get_or_insert_with(|| via.spans_in(value));
        }
        let at = self
            .headers
            .iter()
            .position(|h| h.kind == HeaderName::Via)
            .unwrap_or(0);
        let h = self.new_line(b"Via", value, HeaderName::Via);
        self.headers.insert(at, h);
        self.hot.top_via = top.map(|t| t.shifted(h.value.start as usize));
        self.hot.fresh |= Hot::VIA;
        self.mark();
        Ok(())
    }

    /// The first Via line and what stays of it once its first value goes (`None` when
    /// nothing does).
    fn top_via_split(&self) -> Result<(usize, Option<Span>), ParseError> {
        let k = self
            .headers
            .iter()
            .position(|h| h.kind == HeaderName::Via)
            .ok_or(ParseError::MissingHeader {
                name: HeaderName::Via,
            })?;
        let h = self.headers[k];
        let v = self.get(h.value);
        let mut list = CommaList::new(v);
        list.next();
        let rest = list
            .remainder()
            .map(crate::chars::trim_lws)
            .filter(|r| !r.is_empty())
            .map(|r| {
                let s = h.value.start as usize + offset_in(v, r);
                Span::new(s, s + r.len())
            });
        Ok((k, rest))
    }

    /// Removes the topmost Via value (what a proxy does before forwarding a response).
    /// When that line holds several comma-separated values only the first goes.
    pub fn remove_top_via(&mut self) -> Result<(), ParseError> {
        let (k, rest) = self.top_via_split()?;
        let h = self.headers[k];
        match rest {
            Some(r) => {
                let line = self.line_with_name(h.name, r, HeaderName::Via);
                self.headers[k] = line;
            }
            _ => {
                self.headers.remove(k);
            }
        }
        self.touch(HeaderName::Via);
        self.mark();
        Ok(())
    }

    /// The message as [`SipMessage::remove_top_via`] then [`SipMessage::to_bytes`] would
    /// give it, written in one pass without editing (or cloning) the message: what a
    /// proxy does to every response it relays.
    pub fn to_bytes_without_top_via(&self) -> Result<Bytes, ParseError> {
        let (k, rest) = self.top_via_split()?;
        let h = self.headers[k];
        let mut out = BytesMut::with_capacity(self.len());
        self.write_start_line(&mut out);
        for (i, line) in self.headers.iter().enumerate() {
            if i != k {
                out.extend_from_slice(self.get(line.line));
            } else if let Some(rest) = rest {
                out.extend_from_slice(self.get(h.name));
                out.extend_from_slice(b": ");
                out.extend_from_slice(self.get(rest));
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(self.get(self.blank));
        out.extend_from_slice(self.body());
        Ok(out.freeze())
    }

    /// Replaces the value of the first header `kind`, dropping later ones, or appends
    /// the header when absent.
    fn set_kind(&mut self, kind: HeaderName, name: &str, value: &[u8]) -> Result<(), ParseError> {
        let value = check_value(kind, value)?;
        let name_b = name.as_bytes();
        let (buf, extra) = (&self.buf, &self.extra);
        let matches = |h: &Hdr| {
            h.kind == kind
                && (kind != HeaderName::Other
                    || slice(buf, extra, h.name).eq_ignore_ascii_case(name_b))
        };
        match self.headers.iter().position(matches) {
            Some(k) => {
                let mut i = k + 1;
                while i < self.headers.len() {
                    let h = &self.headers[i];
                    let same = h.kind == kind
                        && (kind != HeaderName::Other
                            || slice(&self.buf, &self.extra, h.name).eq_ignore_ascii_case(name_b));
                    if same {
                        self.headers.remove(i);
                    } else {
                        i += 1;
                    }
                }
                let v = self.append(value);
                let line = self.line_with_name(self.headers[k].name, v, kind);
                self.headers[k] = line;
            }
            None => {
                let h = self.new_line(name_b, value, kind);
                self.headers.push(h);
            }
        }
        self.touch(kind);
        self.mark();
        Ok(())
    }

    /// Sets a header: replaces the value of the first `name` header (keeping the name
    /// as received), removes any others, or appends it when absent.
    pub fn set_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<(), ParseError> {
        let kind = check_name(name)?;
        self.set_kind(kind, name, value.as_ref())
    }

    /// Sets Max-Forwards (adding the header when absent, as RFC 3261 §16.6 asks).
    pub fn set_max_forwards(&mut self, n: u8) {
        let mut b = [0u8; 3];
        let s = fmt_u64(&mut b, u64::from(n));
        // A number always passes the Max-Forwards grammar.
        if self
            .set_kind(HeaderName::MaxForwards, "Max-Forwards", s)
            .is_ok()
        {
            self.hot.max_forwards = Some(n);
            self.hot.fresh |= Hot::MAX_FORWARDS;
        }
    }

    /// Replaces the body and sets Content-Length to match (adding it when absent).
    pub fn set_body(&mut self, body: impl Into<Bytes>) {
        let body = body.into();
        let mut b = [0u8; 20];
        let s = fmt_u64(&mut b, body.len() as u64);
        let _ = self.set_kind(HeaderName::ContentLength, "Content-Length", s);
        self.new_body = Some(body);
        self.mark();
    }

    pub(crate) fn start_len(&self) -> usize {
        match self.start {
            StartLine::Request {
                method,
                uri,
                version,
            } if self.start_dirty => method.len() + uri.len() + version.len() + 4,
            _ => self.start_line.len(),
        }
    }

    /// The start line as it stands (rebuilt when the R-URI was set).
    fn write_start_line(&self, out: &mut impl bytes::BufMut) {
        match self.start {
            StartLine::Request {
                method,
                uri,
                version,
            } if self.start_dirty => {
                out.put_slice(self.get(method));
                out.put_u8(b' ');
                out.put_slice(self.get(uri));
                out.put_u8(b' ');
                out.put_slice(self.get(version));
                out.put_slice(b"\r\n");
            }
            _ => out.put_slice(self.get(self.start_line)),
        }
    }

    /// Appends the message as it stands (edits applied) to `out`.
    pub fn write_to(&self, out: &mut impl bytes::BufMut) {
        self.write_start_line(out);
        for h in &self.headers {
            out.put_slice(self.get(h.line));
        }
        out.put_slice(self.get(self.blank));
        out.put_slice(self.body());
    }

    /// The message as it stands. Without edits this shares the received buffer; with
    /// edits, untouched lines are copied byte for byte (folding, case, spacing kept).
    pub fn to_bytes(&self) -> Bytes {
        if !self.edited {
            return self
                .buf
                .slice(self.msg.start as usize..self.msg.end as usize);
        }
        let mut out = BytesMut::with_capacity(self.len());
        self.write_to(&mut out);
        out.freeze()
    }
}

fn slice<'a>(buf: &'a [u8], extra: &'a [u8], s: Span) -> &'a [u8] {
    let b = buf.len();
    let (a, e) = (s.start as usize, s.end as usize);
    if a >= b && e > a {
        extra.get(a - b..e - b).unwrap_or_default()
    } else {
        buf.get(a..e).unwrap_or_default()
    }
}

pub(crate) fn fmt_u64(b: &mut [u8], mut n: u64) -> &[u8] {
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    &b[i..]
}

#[cfg(test)]
mod tests {
    use crate::{HeaderName, ParseError, SipMessage};
    use bytes::Bytes;

    const REQ: &[u8] = b"INVITE sip:bob@b.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP c.example.com;branch=z9hG4bK0\r\n\
v: SIP/2.0/TCP d.example.com;branch=z9hG4bKd\r\n\
max-forwards:   70\r\n\
To: <sip:bob@b.example.com>\r\n\
f: <sip:alice@a.example.com>;tag=1\r\n\
Call-ID: x@y\r\n\
CSeq: 1 INVITE\r\n\
Subject: folded\r\n  line\r\n\
X-A: 1\r\n\
x-b: 2\r\n\
l: 3\r\n\
\r\n\
abc";

    fn msg() -> SipMessage {
        SipMessage::parse(Bytes::from_static(REQ)).unwrap()
    }

    #[test]
    fn request_uri_and_headers() {
        let mut m = msg();
        m.set_request_uri(b"sip:carol@c.example.com;transport=tcp")
            .unwrap();
        assert_eq!(
            m.request_uri(),
            Some(&b"sip:carol@c.example.com;transport=tcp"[..])
        );
        assert!(m.set_request_uri(b"not a uri").is_err());
        assert!(m.set_request_uri(b"sip:a@b\r\nX: y").is_err());
        m.add_header("X-Added", "yes").unwrap();
        m.insert_header_first("X-First", "1").unwrap();
        assert_eq!(m.header("x-added"), Some(&b"yes"[..]));
        assert_eq!(m.headers().next().unwrap().0, b"X-First");
        assert!(m.add_header("Bad Name", "x").is_err());
        assert!(m.add_header("X-Inject", "a\r\nVia: evil").is_err());
        assert!(m.add_header("CSeq", "oops").is_err());
        assert!(m.add_header("l", "5").is_err());
        assert!(m.set_header("Content-Length", "5").is_err());
        let out = m.to_bytes();
        assert!(out.starts_with(
            b"INVITE sip:carol@c.example.com;transport=tcp SIP/2.0\r\nX-First: 1\r\nVia:"
        ));
        assert!(out.ends_with(b"l: 3\r\nX-Added: yes\r\n\r\nabc"));
        assert_eq!(out.len(), m.len());
        let again = SipMessage::parse(out).unwrap();
        assert_eq!(again.header("Subject"), Some(&b"folded\r\n  line"[..]));
    }

    #[test]
    fn remove() {
        let mut m = msg();
        assert_eq!(m.remove_headers("via"), 2);
        assert!(m.top_via().is_err());
        assert_eq!(m.remove_headers("X-A"), 1);
        assert_eq!(m.remove_headers("X-A"), 0);
        assert_eq!(
            m.remove_headers_where(|n, _| n.len() > 2 && n[..2].eq_ignore_ascii_case(b"x-")),
            1
        );
        assert!(!m.has_header("x-b"));
        let out = m.to_bytes();
        assert!(!out.windows(4).any(|w| w == b"Via:"));
        assert!(out.windows(4).all(|w| w != b"X-A:"));
    }

    #[test]
    fn vias() {
        let mut m = msg();
        m.prepend_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bKnew")
            .unwrap();
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bKnew"[..]));
        assert_eq!(m.vias().count(), 4);
        assert!(m.prepend_via("garbage").is_err());
        m.remove_top_via().unwrap();
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bK1"[..]));
        m.remove_top_via().unwrap();
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bK0"[..]));
        m.remove_top_via().unwrap();
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bKd"[..]));
        m.remove_top_via().unwrap();
        assert!(matches!(
            m.remove_top_via(),
            Err(ParseError::MissingHeader {
                name: HeaderName::Via
            })
        ));
        let out = m.to_bytes();
        assert!(SipMessage::parse(out).is_ok());
    }

    #[test]
    fn remove_top_via_keeps_rest_of_line() {
        let mut m = msg();
        let one_pass = m.to_bytes_without_top_via().unwrap();
        m.remove_top_via().unwrap();
        let out = m.to_bytes();
        assert_eq!(one_pass, out);
        let s = String::from_utf8_lossy(&out);
        assert!(
            s.contains("\r\nVia: SIP/2.0/UDP c.example.com;branch=z9hG4bK0\r\nv: SIP/2.0/TCP"),
            "{s}"
        );
    }

    #[test]
    fn max_forwards_body_and_set() {
        let mut m = msg();
        m.set_max_forwards(69);
        assert_eq!(m.max_forwards(), Ok(Some(69)));
        assert!(m.to_bytes().windows(17).any(|w| w == b"max-forwards: 69\r"));
        m.set_body(Bytes::from_static(b"v=0\r\n"));
        assert_eq!(m.body(), b"v=0\r\n");
        assert_eq!(m.content_length(), Some(5));
        let out = m.to_bytes();
        let again = SipMessage::parse(out.clone()).unwrap();
        assert_eq!(again.body(), b"v=0\r\n");
        assert!(out.windows(6).any(|w| w == b"l: 5\r\n"));
        m.set_header("Subject", "plain").unwrap();
        assert_eq!(m.header("s"), Some(&b"plain"[..]));
        m.set_header("X-New", "n").unwrap();
        assert_eq!(m.header("X-New"), Some(&b"n"[..]));
        let mut no_mf =
            SipMessage::parse(Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n")).unwrap();
        no_mf.set_max_forwards(70);
        no_mf.set_body(Bytes::new());
        assert_eq!(
            &no_mf.to_bytes()[..],
            b"OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn untouched_is_shared() {
        let m = msg();
        assert!(!m.is_modified());
        assert_eq!(&m.to_bytes()[..], REQ);
        let resp = SipMessage::parse(Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n")).unwrap();
        let mut r = resp.clone();
        assert!(r.set_request_uri("sip:a@b").is_err());
    }
}
