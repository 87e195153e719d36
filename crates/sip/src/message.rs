//! The message: one pass of indexing over the received bytes, typed reads on demand.

use bytes::Bytes;

use crate::chars::{eq_ic, is, is_lws, offset_in, TOKEN};
use crate::error::ParseError;
use crate::header_name::HeaderName;
use crate::list::CommaList;
use crate::method::Method;
use crate::name_addr::NameAddr;
use crate::scalars::{check_call_id, parse_content_length, parse_max_forwards, CSeq};
use crate::uri::Uri;
use crate::via::{via_list, Via};

/// Largest buffer the parser accepts. Offsets are `u32`, and data added by edits is
/// addressed past the end of the buffer, so half the range is kept for it.
pub const MAX_BUFFER: usize = (u32::MAX / 2) as usize;

/// Header lines one message may have. Real requests carry a few dozen (a long Record-Route
/// set, a hundred); the cap bounds what one datagram or stream message costs to index, so
/// a message of thousands of tiny headers is refused (400) instead of indexed.
pub const MAX_HEADERS: usize = 256;

/// A byte range. Offsets below `buf.len()` address the received buffer; offsets at or
/// past it address `extra`, where edits put their bytes. One `u32` pair thus names
/// bytes in either store, keeping a header entry small and its lookups branch-light.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    #[inline]
    pub(crate) fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The span `by` bytes further on.
    #[inline]
    pub(crate) fn shifted(self, by: usize) -> Span {
        Span::new(self.start as usize + by, self.end as usize + by)
    }

    #[inline]
    pub(crate) fn len(self) -> usize {
        (self.end - self.start) as usize
    }
}

/// One header line: the whole line (terminator and folds included) for serialization,
/// the name, and the value with the blanks around it trimmed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hdr {
    pub(crate) line: Span,
    pub(crate) name: Span,
    pub(crate) value: Span,
    pub(crate) kind: HeaderName,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum StartLine {
    Request {
        method: Span,
        uri: Span,
        version: Span,
    },
    Response {
        version: Span,
        status: u16,
        reason: Span,
    },
}

/// A parsed SIP message.
///
/// Holds the received [`Bytes`] and an index of it: the start line pieces and, per
/// header line, the name and value offsets. Typed views ([`Via`], [`NameAddr`],
/// [`CSeq`], [`Uri`]) are parsed from those slices when asked for.
///
/// Edits (see the `set_*`, `add_*`, `remove_*` methods) write new bytes to a side buffer
/// and repoint the index, so every read after an edit sees it, and
/// [`SipMessage::to_bytes`] writes untouched lines exactly as received.
#[derive(Clone, Debug)]
pub struct SipMessage {
    pub(crate) buf: Bytes,
    /// Bytes written by edits, addressed after `buf` (a span at `buf.len() + i` is
    /// `extra[i]`). Inline up to [`INLINE_EDIT_BYTES`]: most received messages get one
    /// small edit (Max-Forwards) and no heap block for it.
    pub(crate) extra: SideBuffer,
    pub(crate) start: StartLine,
    /// The received start line with its terminator; used while `start_dirty` is false.
    pub(crate) start_line: Span,
    pub(crate) start_dirty: bool,
    pub(crate) headers: Vec<Hdr>,
    /// The empty line ending the header section, as received (CRLF or LF).
    pub(crate) blank: Span,
    pub(crate) body: Span,
    pub(crate) new_body: Option<Bytes>,
    /// The message within `buf`: after leading keep-alive CRLFs, up to the body end.
    pub(crate) msg: Span,
    pub(crate) edited: bool,
    pub(crate) hot: Hot,
}

/// How many edited bytes a message holds without a heap block.
pub(crate) const INLINE_EDIT_BYTES: usize = 32;

pub(crate) type SideBuffer = smallvec::SmallVec<[u8; INLINE_EDIT_BYTES]>;

/// Where the fields every proxy reads on every message are, found while `parse` checks
/// their grammar anyway, so reading them costs a slice and no second parse. An edit of
/// one of these headers clears that header's bit in `fresh` only, and reads of that field
/// fall back to parsing on demand: a proxy edits Max-Forwards on nearly every request, and
/// dropping the whole cache for it had the top Via parsed again twice per message.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hot {
    /// Which fields still describe the message: the [`Hot`] bits (`Hot::VIA`, ...).
    pub(crate) fresh: u8,
    /// The top Via, parsed: every layer (transaction matching, reply routing, rport)
    /// reads it, several times per message.
    pub(crate) top_via: Option<crate::via::ViaSpans>,
    pub(crate) from_tag: Option<Option<Span>>,
    pub(crate) to_tag: Option<Option<Span>>,
    pub(crate) call_id: Option<Span>,
    pub(crate) cseq: Option<(u32, Span)>,
    pub(crate) max_forwards: Option<u8>,
    pub(crate) ruri_host: Option<Span>,
}

impl Hot {
    /// `top_via`.
    pub(crate) const VIA: u8 = 1;
    pub(crate) const FROM: u8 = 1 << 1;
    pub(crate) const TO: u8 = 1 << 2;
    pub(crate) const CALL_ID: u8 = 1 << 3;
    pub(crate) const CSEQ: u8 = 1 << 4;
    pub(crate) const MAX_FORWARDS: u8 = 1 << 5;
    pub(crate) const RURI_HOST: u8 = 1 << 6;
    pub(crate) const HEADERS: u8 =
        Hot::VIA | Hot::FROM | Hot::TO | Hot::CALL_ID | Hot::CSEQ | Hot::MAX_FORWARDS;
    pub(crate) const ALL: u8 = Hot::HEADERS | Hot::RURI_HOST;

    /// The bit of the cached field header `kind` holds, 0 for the others.
    pub(crate) fn bit_of(kind: HeaderName) -> u8 {
        match kind {
            HeaderName::Via => Hot::VIA,
            HeaderName::From => Hot::FROM,
            HeaderName::To => Hot::TO,
            HeaderName::CallId => Hot::CALL_ID,
            HeaderName::CSeq => Hot::CSEQ,
            HeaderName::MaxForwards => Hot::MAX_FORWARDS,
            _ => 0,
        }
    }

    #[inline]
    pub(crate) fn is_fresh(&self, bit: u8) -> bool {
        self.fresh & bit != 0
    }
}

/// `part` as [`Bytes`] sharing `owner`'s storage when it is a slice of `owner`, else a
/// copy.
pub fn share_or_copy(owner: &Bytes, part: &[u8]) -> Bytes {
    let start = part.as_ptr() as usize;
    let base = owner.as_ptr() as usize;
    if start >= base && start + part.len() <= base + owner.len() {
        owner.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

#[inline]
pub(crate) fn span_of(buf: &[u8], part: &[u8]) -> Span {
    let s = offset_in(buf, part);
    Span::new(s, s + part.len())
}

pub(crate) struct Index {
    pub(crate) start: StartLine,
    pub(crate) ruri_host: Option<Span>,
    pub(crate) start_line: Span,
    pub(crate) headers: Vec<Hdr>,
    pub(crate) blank: Span,
    pub(crate) content_length: Option<usize>,
    pub(crate) base: usize,
}

/// Number of CR/LF bytes at the start of `buf`: RFC 5626 keep-alives (`CRLFCRLF` ping,
/// `CRLF` pong), which RFC 3261 §7.5 says to ignore before a start line.
pub fn keepalive_len(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count()
}

/// Finds the end of the line starting at `from`: `(content_end, next_line_start)`.
/// `Ok(None)` when the buffer ends first, `Err(offset)` for a CR not followed by LF.
/// A bare LF is accepted as a terminator, as most deployed stacks do.
#[inline]
fn eol(buf: &[u8], from: usize) -> Result<Option<(usize, usize)>, usize> {
    let Some(k) = memchr::memchr2(b'\r', b'\n', buf.get(from..).unwrap_or_default()) else {
        return Ok(None);
    };
    let i = from + k;
    if buf[i] == b'\n' {
        return Ok(Some((i, i + 1)));
    }
    match buf.get(i + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((i, i + 2))),
        Some(_) => Err(i),
    }
}

fn truncated(offset: usize, what: &'static str) -> ParseError {
    ParseError::Truncated { offset, what }
}

fn start_err(offset: usize, what: &'static str) -> ParseError {
    ParseError::StartLine { offset, what }
}

fn check_version(buf: &[u8], s: usize, e: usize) -> Result<(), ParseError> {
    let v = &buf[s..e];
    if eq_ic(v, b"SIP/2.0") {
        return Ok(());
    }
    if v.len() > 4 && eq_ic(&v[..4], b"SIP/") {
        let mut nums = v[4..].splitn(2, |&c| c == b'.');
        let well_formed = nums
            .by_ref()
            .take(2)
            .filter(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
            .count()
            == 2;
        if well_formed && v.contains(&b'.') {
            return Err(ParseError::UnsupportedVersion { offset: s });
        }
    }
    if let Some(sp) = v.iter().position(|&c| c == b' ' || c == b'\t') {
        return Err(start_err(s + sp, "blank after SIP version"));
    }
    Err(start_err(s, "malformed SIP version"))
}

/// Parses the start line; also returns where the Request-URI host is, for the cache.
fn parse_start_line(
    buf: &[u8],
    base: usize,
    le: usize,
) -> Result<(StartLine, Option<Span>), ParseError> {
    let line = &buf[base..le];
    if line.len() >= 4 && eq_ic(&line[..4], b"SIP/") {
        let sp = memchr::memchr(b' ', line)
            .ok_or_else(|| start_err(le, "status line without status code"))?;
        check_version(buf, base, base + sp)?;
        let cs = sp + 1;
        let code = line.get(cs..cs + 3).unwrap_or_default();
        let terminated = line.len() == cs + 3 || line.get(cs + 3) == Some(&b' ');
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) || !terminated {
            return Err(start_err(base + cs, "status code must be three digits"));
        }
        let status = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&status) {
            return Err(start_err(base + cs, "status code out of range"));
        }
        let rs = (cs + 4).min(line.len());
        if let Some(bad) = line[rs..]
            .iter()
            .position(|&c| (c < 0x20 && c != b'\t') || c == 0x7f)
        {
            return Err(start_err(
                base + rs + bad,
                "control character in reason phrase",
            ));
        }
        return Ok((
            StartLine::Response {
                version: Span::new(base, base + sp),
                status,
                reason: Span::new(base + rs, le),
            },
            None,
        ));
    }
    let mut i = 0;
    while i < line.len() && is(line[i], TOKEN) {
        i += 1;
    }
    if i == 0 {
        return Err(start_err(base, "invalid method"));
    }
    if line.get(i) != Some(&b' ') {
        return Err(start_err(base + i, "invalid character in method"));
    }
    let us = i + 1;
    let ulen =
        memchr::memchr(b' ', &line[us..]).ok_or_else(|| start_err(le, "missing SIP version"))?;
    if ulen == 0 {
        return Err(start_err(base + us, "more than one SP in Request-Line"));
    }
    let uri = Uri::parse(&line[us..us + ulen]).map_err(|e| match e {
        ParseError::Syntax { offset, what } => start_err(base + us + offset, what),
        other => other,
    })?;
    let host = uri.host().map(|h| span_of(buf, h));
    let vs = us + ulen + 1;
    check_version(buf, base + vs, le)?;
    Ok((
        StartLine::Request {
            method: Span::new(base, base + i),
            uri: Span::new(base + us, base + us + ulen),
            version: Span::new(base + vs, le),
        },
        host,
    ))
}

/// Indexes the start line and header section of the message at the start of `buf`
/// (after keep-alive CRLFs). Does not look at the body.
pub(crate) fn index(buf: &[u8]) -> Result<Index, ParseError> {
    if buf.len() > MAX_BUFFER {
        return Err(ParseError::TooLarge { max: MAX_BUFFER });
    }
    let base = keepalive_len(buf);
    if base == buf.len() {
        return Err(ParseError::Empty);
    }
    let (le, mut pos) = match eol(buf, base) {
        Ok(Some(x)) => x,
        Ok(None) => return Err(truncated(buf.len(), "start line not terminated")),
        Err(i) => return Err(start_err(i, "CR without LF")),
    };
    let (start, ruri_host) = parse_start_line(buf, base, le)?;
    let start_line = Span::new(base, pos);
    let mut headers = Vec::with_capacity(16);
    let mut content_length = None;
    let blank;
    loop {
        let Some(&c) = buf.get(pos) else {
            return Err(truncated(pos, "header section not ended by an empty line"));
        };
        match c {
            b'\n' => {
                blank = Span::new(pos, pos + 1);
                break;
            }
            b'\r' => match buf.get(pos + 1) {
                Some(b'\n') => {
                    blank = Span::new(pos, pos + 2);
                    break;
                }
                None => return Err(truncated(pos, "header section not ended")),
                Some(_) => {
                    return Err(ParseError::HeaderLine {
                        offset: pos,
                        what: "CR without LF",
                    })
                }
            },
            b' ' | b'\t' => {
                return Err(ParseError::HeaderLine {
                    offset: pos,
                    what: "continuation line without a header",
                })
            }
            _ => {}
        }
        let ns = pos;
        let mut i = pos;
        while i < buf.len() && is(buf[i], TOKEN) {
            i += 1;
        }
        let ne = i;
        while i < buf.len() && (buf[i] == b' ' || buf[i] == b'\t') {
            i += 1;
        }
        match buf.get(i) {
            Some(b':') if ne > ns => {}
            None => return Err(truncated(i, "header line not terminated")),
            Some(b'\r' | b'\n') => {
                return Err(ParseError::HeaderLine {
                    offset: i,
                    what: "header line without colon",
                })
            }
            Some(_) => {
                return Err(ParseError::HeaderLine {
                    offset: i,
                    what: "invalid character in header name",
                })
            }
        }
        let vs = i + 1;
        let mut p = vs;
        let (line_end, next) = loop {
            match eol(buf, p) {
                Ok(Some((e, n))) => match buf.get(n) {
                    Some(b' ' | b'\t') => p = n,
                    // The next byte may fold this line: on a stream it has not arrived
                    // yet, so the line is not judged (a second Content-Length refused)
                    // before it is complete. Framing then decides the same wherever the
                    // stream was cut (found by the `framing` fuzz target).
                    None => return Err(truncated(n, "header section not ended by an empty line")),
                    Some(_) => break (e, n),
                },
                Ok(None) => return Err(truncated(buf.len(), "header line not terminated")),
                Err(at) => {
                    return Err(ParseError::HeaderLine {
                        offset: at,
                        what: "CR without LF",
                    })
                }
            }
        };
        let mut a = vs;
        while a < line_end && is_lws(buf[a]) {
            a += 1;
        }
        let mut b = line_end;
        while b > a && is_lws(buf[b - 1]) {
            b -= 1;
        }
        let kind = HeaderName::from_token(&buf[ns..ne]);
        if kind == HeaderName::ContentLength {
            // Two Content-Length headers frame the body two ways: whichever one a peer
            // believes, the other side can smuggle a message inside the body (RFC 4475
            // §3.3.9 expects an error reply), so the message is refused here, before
            // anything can forward it.
            if content_length.is_some() {
                return Err(ParseError::DuplicateHeader {
                    name: kind,
                    offset: ns,
                });
            }
            content_length = Some(headers.len());
        }
        if headers.len() == MAX_HEADERS {
            return Err(ParseError::TooManyHeaders { max: MAX_HEADERS });
        }
        headers.push(Hdr {
            line: Span::new(ns, next),
            name: Span::new(ns, ne),
            value: Span::new(a, b),
            kind,
        });
        pos = next;
    }
    let content_length = match content_length {
        Some(k) => {
            let v = headers[k].value;
            let raw = &buf[v.start as usize..v.end as usize];
            Some(
                parse_content_length(raw)
                    .map_err(|e| e.in_header(HeaderName::ContentLength, v.start as usize))?,
            )
        }
        None => None,
    };
    Ok(Index {
        start,
        ruri_host,
        start_line,
        headers,
        blank,
        content_length,
        base,
    })
}

/// Checks the grammar of the headers every proxy reads on every message. Also used on
/// edited values, so these headers stay valid for the life of the message.
pub(crate) fn check_hot(kind: HeaderName, v: &[u8], base: usize) -> Result<(), ParseError> {
    let res = match kind {
        HeaderName::Via => via_list(v).try_for_each(|r| r.map(|_| ())),
        HeaderName::From | HeaderName::To => NameAddr::parse(v).map(|_| ()),
        HeaderName::CallId => check_call_id(v),
        HeaderName::CSeq => CSeq::parse(v).map(|_| ()),
        HeaderName::MaxForwards => parse_max_forwards(v).map(|_| ()),
        HeaderName::ContentLength => parse_content_length(v).map(|_| ()),
        _ => Ok(()),
    };
    res.map_err(|e| e.in_header(kind, base))
}

impl SipMessage {
    /// Parses the first message in `buf` (RFC 3261 grammar), skipping leading CRLFs.
    ///
    /// Indexes the start line and every header line, then checks the grammar of the
    /// start line (including the Request-URI), Via, From, To, Call-ID, CSeq,
    /// Max-Forwards and Content-Length. In a response, the URIs of From and To are
    /// checked only for their scheme here ([`NameAddr::tag_of`]), and in full by
    /// [`SipMessage::from`] and [`SipMessage::to`]. The body is `Content-Length` bytes
    /// (an error if fewer follow); without Content-Length it runs to the end of `buf`, as
    /// on UDP.
    /// Bytes after the body (a second message in a datagram) are ignored.
    pub fn parse(buf: Bytes) -> Result<SipMessage, ParseError> {
        SipMessage::parse_or_return(buf).map_err(|(e, _)| e)
    }

    /// [`SipMessage::parse`] that hands `buf` back with the error, for a caller that
    /// answers a malformed message from its raw bytes: no clone of `buf` up front.
    pub fn parse_or_return(buf: Bytes) -> Result<SipMessage, (ParseError, Bytes)> {
        match SipMessage::parse_parts(&buf) {
            Ok(parts) => Ok(SipMessage::from_parts(buf, parts)),
            Err(e) => Err((e, buf)),
        }
    }

    /// A copy made to be edited and sent (a branch, a forwarded request): its index and
    /// side buffer have room for what a proxy adds (Via, Record-Route, a new
    /// Max-Forwards), so those edits do not reallocate them.
    pub fn clone_for_edit(&self) -> SipMessage {
        let mut headers = Vec::with_capacity(self.headers.len() + 4);
        headers.extend_from_slice(&self.headers);
        let mut extra = SideBuffer::with_capacity(self.extra.len() + 256);
        extra.extend_from_slice(&self.extra);
        SipMessage {
            buf: self.buf.clone(),
            extra,
            start: self.start,
            start_line: self.start_line,
            start_dirty: self.start_dirty,
            headers,
            blank: self.blank,
            body: self.body,
            new_body: self.new_body.clone(),
            msg: self.msg,
            edited: self.edited,
            hot: self.hot,
        }
    }

    fn from_parts(buf: Bytes, (idx, hot, body): (Index, Hot, Span)) -> SipMessage {
        SipMessage {
            extra: SideBuffer::new(),
            start: idx.start,
            start_line: idx.start_line,
            start_dirty: false,
            headers: idx.headers,
            blank: idx.blank,
            body,
            new_body: None,
            msg: Span::new(idx.base, body.end as usize),
            edited: false,
            hot,
            buf,
        }
    }

    fn parse_parts(buf: &[u8]) -> Result<(Index, Hot, Span), ParseError> {
        let idx = index(buf)?;
        let mut hot = Hot {
            fresh: Hot::ALL,
            ruri_host: idx.ruri_host,
            ..Hot::default()
        };
        let b: &[u8] = buf;
        let is_response = matches!(idx.start, StartLine::Response { .. });
        for h in &idx.headers {
            let v = &b[h.value.start as usize..h.value.end as usize];
            let base = h.value.start as usize;
            let at = |e: ParseError| e.in_header(h.kind, base);
            match h.kind {
                HeaderName::Via => {
                    for (n, via) in via_list(v).enumerate() {
                        let via = via.map_err(at)?;
                        if n == 0 && hot.top_via.is_none() {
                            hot.top_via = Some(via.spans_in(b));
                        }
                    }
                }
                HeaderName::From | HeaderName::To => {
                    // A response's URIs are checked when something reads them: a proxy
                    // relaying it needs only the tags.
                    let tag = if is_response {
                        NameAddr::tag_of(v).map_err(at)?
                    } else {
                        NameAddr::parse(v).map_err(at)?.tag()
                    };
                    let slot = if h.kind == HeaderName::From {
                        &mut hot.from_tag
                    } else {
                        &mut hot.to_tag
                    };
                    if slot.is_none() {
                        *slot = Some(tag.map(|t| span_of(b, t)));
                    }
                }
                HeaderName::CallId => {
                    check_call_id(v).map_err(at)?;
                    hot.call_id.get_or_insert(h.value);
                }
                HeaderName::CSeq => {
                    let c = CSeq::parse(v).map_err(at)?;
                    hot.cseq
                        .get_or_insert((c.seq, span_of(b, c.method_bytes())));
                }
                HeaderName::MaxForwards => {
                    let n = parse_max_forwards(v).map_err(at)?;
                    hot.max_forwards.get_or_insert(n);
                }
                HeaderName::ContentLength => {
                    parse_content_length(v).map_err(at)?;
                }
                _ => {}
            }
        }
        let body_start = idx.blank.end as usize;
        let body_end = match idx.content_length {
            Some(n) => {
                let available = buf.len() - body_start;
                if n > available {
                    return Err(ParseError::BodyTruncated {
                        declared: n,
                        available,
                    });
                }
                body_start + n
            }
            None => buf.len(),
        };
        Ok((idx, hot, Span::new(body_start, body_end)))
    }

    /// [`SipMessage::parse`] on a copy of `buf`.
    pub fn parse_slice(buf: &[u8]) -> Result<SipMessage, ParseError> {
        SipMessage::parse(Bytes::copy_from_slice(buf))
    }

    #[inline]
    pub(crate) fn get(&self, s: Span) -> &[u8] {
        let b = self.buf.len();
        let (a, e) = (s.start as usize, s.end as usize);
        if a >= b && s.len() > 0 {
            self.extra.get(a - b..e - b).unwrap_or_default()
        } else {
            self.buf.get(a..e).unwrap_or_default()
        }
    }

    /// A refcounted handle on the bytes of `s`, copying only edited data.
    pub(crate) fn share(&self, s: Span) -> Bytes {
        if (s.end as usize) <= self.buf.len() {
            self.buf.slice(s.start as usize..s.end as usize)
        } else {
            Bytes::copy_from_slice(self.get(s))
        }
    }

    /// Turns a slice obtained from this message (a header value, a Via branch, a URI
    /// host...) into [`Bytes`] sharing the received buffer; slices of edited data, or
    /// from elsewhere, are copied.
    pub fn bytes_of(&self, part: &[u8]) -> Bytes {
        share_or_copy(&self.buf, part)
    }

    // ----- start line -----

    /// True for a request, false for a response.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method (`None` for a response).
    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(Method::from_shared(self.share(method))),
            StartLine::Response { .. } => None,
        }
    }

    /// The request method token as received.
    pub fn method_bytes(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Request { method, .. } => Some(self.get(method)),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI (after any `set_request_uri`).
    pub fn request_uri(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Request { uri, .. } => Some(self.get(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI as shared [`Bytes`].
    pub fn request_uri_bytes(&self) -> Option<Bytes> {
        match self.start {
            StartLine::Request { uri, .. } => Some(self.share(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI, parsed. It was checked by `parse`/`set_request_uri`, so this
    /// only fails on a response (`None`).
    pub fn request_uri_parsed(&self) -> Option<Uri<'_>> {
        self.request_uri().and_then(|u| Uri::parse(u).ok())
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response (possibly empty, possibly UTF-8).
    pub fn reason(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Response { reason, .. } => Some(self.get(reason)),
            StartLine::Request { .. } => None,
        }
    }

    /// The SIP version as written (always `SIP/2.0` up to ASCII case).
    pub fn version(&self) -> &[u8] {
        match self.start {
            StartLine::Request { version, .. } | StartLine::Response { version, .. } => {
                self.get(version)
            }
        }
    }

    // ----- headers -----

    /// All headers in order as raw `(name, value)`; values keep any folding (CRLF plus
    /// blanks) as received, and typed parsers treat it as a blank.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.headers
            .iter()
            .map(move |h| (self.get(h.name), self.get(h.value)))
    }

    /// Number of header lines.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    pub(crate) fn entries<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Hdr> + 's {
        let kind = HeaderName::from_bytes(name.as_bytes());
        self.headers.iter().filter(move |h| {
            h.kind == kind
                && (kind != HeaderName::Other || eq_ic(self.get(h.name), name.as_bytes()))
        })
    }

    pub(crate) fn entries_of(&self, kind: HeaderName) -> impl Iterator<Item = &Hdr> + '_ {
        self.headers.iter().filter(move |h| h.kind == kind)
    }

    /// The first value of the header `name` (case-insensitive; `v` and `Via` are the
    /// same header).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.entries(name).next().map(|h| self.get(h.value))
    }

    /// [`SipMessage::header`] as shared [`Bytes`].
    pub fn header_bytes(&self, name: &str) -> Option<Bytes> {
        self.entries(name).next().map(|h| self.share(h.value))
    }

    /// Every header line named `name`, in order (one item per line, not split at
    /// commas; see [`crate::CommaList`]).
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.entries(name).map(move |h| self.get(h.value))
    }

    /// True when a header named `name` is present.
    pub fn has_header(&self, name: &str) -> bool {
        self.entries(name).next().is_some()
    }

    /// The first value of a known header.
    pub fn header_of(&self, kind: HeaderName) -> Option<&[u8]> {
        self.entries_of(kind).next().map(|h| self.get(h.value))
    }

    /// Every value of a known header, one per line.
    pub fn headers_of(&self, kind: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.entries_of(kind).map(move |h| self.get(h.value))
    }

    /// Comma-separated elements of every line of `kind`, with their message offsets.
    fn elements(&self, kind: HeaderName) -> impl Iterator<Item = (&[u8], usize)> + '_ {
        self.entries_of(kind).flat_map(move |h| {
            let v = self.get(h.value);
            let base = h.value.start as usize;
            CommaList::new(v).map(move |e| (e, base + offset_in(v, e)))
        })
    }

    fn name_addrs(
        &self,
        kind: HeaderName,
    ) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.elements(kind)
            .filter(move |(e, _)| !(kind == HeaderName::Contact && *e == b"*"))
            .map(move |(e, off)| NameAddr::parse(e).map_err(|x| x.in_header(kind, off)))
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&[u8]> {
        if self.hot.is_fresh(Hot::CALL_ID) {
            return self.hot.call_id.map(|s| self.get(s));
        }
        self.header_of(HeaderName::CallId)
    }

    /// The Call-ID as shared [`Bytes`] (for transaction and dialog keys).
    pub fn call_id_bytes(&self) -> Option<Bytes> {
        self.entries_of(HeaderName::CallId)
            .next()
            .map(|h| self.share(h.value))
    }

    fn required(&self, kind: HeaderName) -> Result<(&[u8], usize), ParseError> {
        self.entries_of(kind)
            .next()
            .map(|h| (self.get(h.value), h.value.start as usize))
            .ok_or(ParseError::MissingHeader { name: kind })
    }

    /// The (first) CSeq.
    pub fn cseq(&self) -> Result<CSeq<'_>, ParseError> {
        if self.hot.is_fresh(Hot::CSEQ) {
            return match self.hot.cseq {
                Some((seq, m)) => Ok(CSeq::new(seq, self.get(m))),
                None => Err(ParseError::MissingHeader {
                    name: HeaderName::CSeq,
                }),
            };
        }
        let (v, off) = self.required(HeaderName::CSeq)?;
        CSeq::parse(v).map_err(|e| e.in_header(HeaderName::CSeq, off))
    }

    /// The (first) From.
    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        let (v, off) = self.required(HeaderName::From)?;
        NameAddr::parse(v).map_err(|e| e.in_header(HeaderName::From, off))
    }

    /// The (first) To.
    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        let (v, off) = self.required(HeaderName::To)?;
        NameAddr::parse(v).map_err(|e| e.in_header(HeaderName::To, off))
    }

    /// The From tag.
    pub fn from_tag(&self) -> Option<&[u8]> {
        if self.hot.is_fresh(Hot::FROM) {
            return self.hot.from_tag.flatten().map(|s| self.get(s));
        }
        let v = self.header_of(HeaderName::From)?;
        NameAddr::tag_of(v).ok().flatten()
    }

    /// The To tag.
    pub fn to_tag(&self) -> Option<&[u8]> {
        if self.hot.is_fresh(Hot::TO) {
            return self.hot.to_tag.flatten().map(|s| self.get(s));
        }
        let v = self.header_of(HeaderName::To)?;
        NameAddr::tag_of(v).ok().flatten()
    }

    /// The branch of the topmost Via (transaction matching), without building the
    /// whole [`Via`] view.
    pub fn top_via_branch(&self) -> Option<&[u8]> {
        if self.hot.is_fresh(Hot::VIA) {
            return self.hot.top_via.and_then(|v| v.branch).map(|s| self.get(s));
        }
        self.top_via().ok().and_then(|v| v.branch())
    }

    /// The host of the Request-URI (`sip:`/`sips:` only; brackets kept on IPv6).
    pub fn request_uri_host(&self) -> Option<&[u8]> {
        if self.hot.is_fresh(Hot::RURI_HOST) {
            return self.hot.ruri_host.map(|s| self.get(s));
        }
        self.request_uri_parsed().and_then(|u| u.host())
    }

    /// Every Via value, top first, across lines and commas.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> + '_ {
        self.entries_of(HeaderName::Via).flat_map(move |h| {
            let base = h.value.start as usize;
            via_list(self.get(h.value))
                .map(move |r| r.map_err(|e| e.in_header(HeaderName::Via, base)))
        })
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        if self.hot.is_fresh(Hot::VIA) {
            if let Some(spans) = &self.hot.top_via {
                return Ok(Via::from_spans(|s| self.get(s), spans));
            }
        }
        self.vias().next().unwrap_or(Err(ParseError::MissingHeader {
            name: HeaderName::Via,
        }))
    }

    /// Max-Forwards, `None` when absent.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        if self.hot.is_fresh(Hot::MAX_FORWARDS) {
            return Ok(self.hot.max_forwards);
        }
        match self.entries_of(HeaderName::MaxForwards).next() {
            None => Ok(None),
            Some(h) => parse_max_forwards(self.get(h.value))
                .map(Some)
                .map_err(|e| e.in_header(HeaderName::MaxForwards, h.value.start as usize)),
        }
    }

    /// Contact values in order; a `Contact: *` element is skipped (see
    /// [`SipMessage::is_contact_star`]).
    pub fn contacts(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.name_addrs(HeaderName::Contact)
    }

    /// True for `Contact: *` (REGISTER removing all bindings).
    pub fn is_contact_star(&self) -> bool {
        self.elements(HeaderName::Contact).any(|(e, _)| e == b"*")
    }

    /// Route values, topmost first.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.name_addrs(HeaderName::Route)
    }

    /// Record-Route values, topmost first.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.name_addrs(HeaderName::RecordRoute)
    }

    /// The Content-Length value (first header; kept in step with `set_body`).
    pub fn content_length(&self) -> Option<usize> {
        self.header_of(HeaderName::ContentLength)
            .and_then(|v| parse_content_length(v).ok())
    }

    /// The Content-Type value.
    pub fn content_type(&self) -> Option<&[u8]> {
        self.header_of(HeaderName::ContentType)
    }

    /// The User-Agent value.
    pub fn user_agent(&self) -> Option<&[u8]> {
        self.header_of(HeaderName::UserAgent)
    }

    // ----- body and whole message -----

    /// The body (after any `set_body`).
    pub fn body(&self) -> &[u8] {
        match &self.new_body {
            Some(b) => b,
            None => self.get(self.body),
        }
    }

    /// The body as shared [`Bytes`].
    pub fn body_bytes(&self) -> Bytes {
        match &self.new_body {
            Some(b) => b.clone(),
            None => self.share(self.body),
        }
    }

    /// Length of the message as [`SipMessage::to_bytes`] would write it.
    pub fn len(&self) -> usize {
        if !self.edited {
            return self.msg.len();
        }
        self.start_len()
            + self.headers.iter().map(|h| h.line.len()).sum::<usize>()
            + self.blank.len()
            + self.body().len()
    }

    /// Never true for a parsed message; present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message exactly as received (without leading keep-alives or trailing data),
    /// ignoring edits.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf
            .get(self.msg.start as usize..self.msg.end as usize)
            .unwrap_or_default()
    }

    /// The whole receive buffer handed to `parse`.
    pub fn buffer(&self) -> &Bytes {
        &self.buf
    }

    /// True once an edit was made.
    pub fn is_modified(&self) -> bool {
        self.edited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>, \"x, y\" <sip:x@y>;q=0.5\r\n\
v: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKa, SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKb\r\n\
X-Custom: one\r\n\
x-custom: two\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\r\nEXTRA";

    fn msg(b: &[u8]) -> SipMessage {
        SipMessage::parse(Bytes::copy_from_slice(b)).unwrap()
    }

    #[test]
    fn cached_top_via_matches_a_fresh_parse_and_follows_edits() {
        let mut m = msg(INVITE);
        let fresh = m.vias().next().unwrap().unwrap();
        let cached = m.top_via().unwrap();
        assert_eq!(cached, fresh);
        assert_eq!(cached.host(), b"pc33.atlanta.example.com");
        assert_eq!(cached.port(), Some(5060));
        assert_eq!(cached.branch(), Some(&b"z9hG4bK776asdhds"[..]));
        assert!(cached.rport().is_some());
        m.prepend_via("SIP/2.0/TCP 10.0.0.1:5080;branch=z9hG4bKnew")
            .unwrap();
        let top = m.top_via().unwrap();
        assert_eq!(top.host(), b"10.0.0.1");
        assert_eq!(top.transport(), b"TCP");
        assert_eq!(top.branch(), Some(&b"z9hG4bKnew"[..]));
        // Read from the cache the edit filled, and the same as parsing the message again.
        assert!(m.hot.is_fresh(Hot::VIA));
        assert_eq!(top, m.vias().next().unwrap().unwrap());
        assert_eq!(m.top_via_branch(), Some(&b"z9hG4bKnew"[..]));
        let again = SipMessage::parse(m.to_bytes()).unwrap();
        assert_eq!(again.top_via().unwrap(), top);
    }

    #[test]
    fn an_edit_drops_only_its_own_header_from_the_cache() {
        let mut m = msg(INVITE);
        m.set_max_forwards(69);
        assert!(m
            .hot
            .is_fresh(Hot::VIA | Hot::FROM | Hot::TO | Hot::CALL_ID));
        assert_eq!(m.max_forwards().unwrap(), Some(69));
        assert_eq!(m.top_via().unwrap(), m.vias().next().unwrap().unwrap());
        m.set_header("To", "<sip:carol@example.com>;tag=t9")
            .unwrap();
        assert!(!m.hot.is_fresh(Hot::TO));
        assert_eq!(m.to_tag(), Some(&b"t9"[..]));
        m.set_header("CSeq", "7 INVITE").unwrap();
        assert_eq!(m.cseq().unwrap().seq, 7);
        m.set_header("Call-ID", "other@x").unwrap();
        assert_eq!(m.call_id(), Some(&b"other@x"[..]));
        assert_eq!(m.from_tag(), Some(&b"1928301774"[..]));
        assert_eq!(m.top_via_branch(), Some(&b"z9hG4bK776asdhds"[..]));
        m.remove_headers_where(|n, _| n.eq_ignore_ascii_case(b"X-Custom"));
        assert!(m.hot.is_fresh(Hot::VIA | Hot::FROM));
        m.remove_headers_where(|n, _| n.eq_ignore_ascii_case(b"From"));
        assert_eq!(m.from_tag(), None);
        assert!(m.hot.is_fresh(Hot::VIA));
        m.set_request_uri("sip:dave@elsewhere.example.org").unwrap();
        assert_eq!(m.request_uri_host(), Some(&b"elsewhere.example.org"[..]));
    }

    #[test]
    fn header_lines_past_the_cap_refuse_the_message() {
        let with = |n: usize| {
            let mut m = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
                .to_vec();
            for i in 0..n - 5 {
                m.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
            }
            m.extend_from_slice(b"\r\n");
            SipMessage::parse(Bytes::from(m))
        };
        assert_eq!(with(MAX_HEADERS).unwrap().header_count(), MAX_HEADERS);
        let err = with(MAX_HEADERS + 1).unwrap_err();
        assert!(matches!(err, ParseError::TooManyHeaders { .. }), "{err:?}");
        assert_eq!(err.status_code(), 400);
        // Thousands of tiny headers in one datagram: refused at the cap, not indexed.
        assert!(with(20_000).is_err());
    }

    #[test]
    fn parse_or_return_hands_back_the_same_buffer_on_error() {
        let raw = Bytes::from_static(b"INVITE sip:bob@example.com SIP/2.0\r\nVia: ???\r\n\r\n");
        let (err, back) = SipMessage::parse_or_return(raw.clone()).unwrap_err();
        assert!(matches!(err, ParseError::Header { .. }), "{err:?}");
        assert_eq!(back.as_ptr(), raw.as_ptr());
        assert_eq!(back, raw);
        assert!(SipMessage::parse_or_return(Bytes::from_static(INVITE)).is_ok());
    }

    #[test]
    fn an_edit_copy_serializes_and_reads_as_the_original_and_edits_alone() {
        let mut orig = msg(INVITE);
        orig.set_max_forwards(9);
        let mut copy = orig.clone_for_edit();
        assert_eq!(copy.to_bytes(), orig.to_bytes());
        assert_eq!(copy.max_forwards().unwrap(), Some(9));
        copy.prepend_via("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx")
            .unwrap();
        copy.set_max_forwards(8);
        assert_eq!(orig.max_forwards().unwrap(), Some(9));
        assert_eq!(orig.top_via().unwrap().host(), b"pc33.atlanta.example.com");
        assert_eq!(copy.top_via().unwrap().host(), b"10.0.0.1");
    }

    #[test]
    fn edits_that_copy_from_edited_bytes_survive_the_side_buffer_growing() {
        let mut m = msg(INVITE);
        // Inline first (Max-Forwards), then a name longer than the copy chunk, then
        // replacements that copy that name from the side buffer while it grows.
        m.set_max_forwards(69);
        let name = format!("X-{}", "N".repeat(90));
        m.add_header(&name, "first").unwrap();
        for v in ["second", &"v".repeat(300), "last"] {
            m.set_header(&name, v).unwrap();
        }
        let out = SipMessage::parse(m.to_bytes()).unwrap();
        assert_eq!(out.header(&name), Some(&b"last"[..]));
        assert_eq!(out.headers_named(&name).count(), 1);
        assert_eq!(out.max_forwards().unwrap(), Some(69));
    }

    #[test]
    fn reads() {
        let m = msg(INVITE);
        assert!(m.is_request());
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.request_uri(), Some(&b"sip:bob@biloxi.example.com"[..]));
        assert_eq!(m.version(), b"SIP/2.0");
        assert_eq!(m.status(), None);
        assert_eq!(m.header("max-forwards"), Some(&b"70"[..]));
        assert_eq!(m.header("X-CUSTOM"), Some(&b"one"[..]));
        assert_eq!(m.headers_named("x-custom").count(), 2);
        assert_eq!(m.headers_named("v").count(), 2);
        assert!(m.has_header("i"));
        assert!(!m.has_header("Route"));
        assert_eq!(
            m.call_id(),
            Some(&b"a84b4c76e66710@pc33.atlanta.example.com"[..])
        );
        assert_eq!(&m.call_id_bytes().unwrap()[..], m.call_id().unwrap());
        let c = m.cseq().unwrap();
        assert_eq!((c.seq, c.method()), (314159, Method::Invite));
        assert_eq!(m.from_tag(), Some(&b"1928301774"[..]));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.to().unwrap().display_name(), Some(&b"Bob"[..]));
        let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].branch(), Some(&b"z9hG4bK776asdhds"[..]));
        assert_eq!(vias[2].host(), b"[2001:db8::1]");
        assert_eq!(m.top_via().unwrap().port(), Some(5060));
        assert_eq!(m.max_forwards(), Ok(Some(70)));
        let contacts: Vec<_> = m.contacts().map(|c| c.unwrap()).collect();
        assert_eq!(contacts.len(), 2);
        assert_eq!(contacts[1].param("q"), Some(Some(&b"0.5"[..])));
        assert_eq!(m.content_length(), Some(4));
        assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));
        assert_eq!(m.body(), b"v=0\r");
        assert_eq!(m.len(), INVITE.len() - 6);
        assert_eq!(m.as_bytes(), &INVITE[..INVITE.len() - 6]);
        assert_eq!(&m.to_bytes()[..], m.as_bytes());
        let branch = m.top_via().unwrap().branch().unwrap();
        let shared = m.bytes_of(branch);
        assert_eq!(&shared[..], b"z9hG4bK776asdhds");
        assert_eq!(m.headers().count(), 12);
    }

    #[test]
    fn response() {
        let m = msg(b"\r\n\r\nSIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n");
        assert!(!m.is_request());
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), Some(&b"Ringing"[..]));
        assert_eq!(m.method(), None);
        assert_eq!(m.request_uri(), None);
        assert!(m.as_bytes().starts_with(b"SIP/2.0 180"));
        let m = msg(b"SIP/2.0 100\r\n\r\n");
        assert_eq!(m.reason(), Some(&b""[..]));
        let m = msg(b"SIP/2.0 100 \r\n\r\n");
        assert_eq!(m.reason(), Some(&b""[..]));
    }

    #[test]
    fn lf_only_and_folding() {
        let m = msg(b"OPTIONS sip:a@b SIP/2.0\nSubject: a\n  b\nVia: SIP/2.0/UDP h\n\n");
        assert_eq!(m.header("s"), Some(&b"a\n  b"[..]));
        assert_eq!(m.top_via().unwrap().host(), b"h");
    }

    fn err(b: &[u8]) -> ParseError {
        match SipMessage::parse(Bytes::copy_from_slice(b)) {
            Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(b)),
            Err(e) => e,
        }
    }

    #[test]
    fn malformed() {
        assert_eq!(err(b""), ParseError::Empty);
        assert_eq!(err(b"\r\n\r\n"), ParseError::Empty);
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0"),
            ParseError::Truncated { .. }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b"),
            ParseError::Truncated { .. }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b\r\n\r\n"),
            ParseError::StartLine { .. }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n"),
            ParseError::Truncated { .. }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0\r\nCSeq: x INVITE\r\n\r\n"),
            ParseError::Header {
                name: HeaderName::CSeq,
                offset: 30,
                ..
            }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: abc\r\n\r\n"),
            ParseError::Header {
                name: HeaderName::ContentLength,
                ..
            }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0\r\nl: 99999999999999999999999\r\n\r\n"),
            ParseError::Header {
                name: HeaderName::ContentLength,
                ..
            }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0\r\nNoColon\r\n\r\n"),
            ParseError::HeaderLine {
                offset: 31,
                what: "header line without colon"
            }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n"),
            ParseError::HeaderLine { .. }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0\r\n: x\r\n\r\n"),
            ParseError::HeaderLine { .. }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0\r\nX: a\rb\r\n\r\n"),
            ParseError::HeaderLine {
                what: "CR without LF",
                ..
            }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0\r\n folded: x\r\n\r\n"),
            ParseError::HeaderLine { .. }
        ));
        assert!(matches!(
            err(b"INV\0TE sip:a@b SIP/2.0\r\n\r\n"),
            ParseError::StartLine { .. }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0\r\nX\0: y\r\n\r\n"),
            ParseError::HeaderLine { .. }
        ));
        assert!(matches!(
            err(b"INVITE sip:a\0@b SIP/2.0\r\n\r\n"),
            ParseError::StartLine { .. }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP \0\r\n\r\n"),
            ParseError::Header {
                name: HeaderName::Via,
                ..
            }
        ));
        assert!(matches!(
            err(b"INVITE sip:a@b SIP/2.0\r\nl: 10\r\n\r\nabc"),
            ParseError::BodyTruncated {
                declared: 10,
                available: 3
            }
        ));
        assert!(matches!(
            err(b"SIP/2.0 20 OK\r\n\r\n"),
            ParseError::StartLine { .. }
        ));
        assert!(matches!(
            err(b"SIP/2.0 2000 OK\r\n\r\n"),
            ParseError::StartLine { .. }
        ));
        assert!(matches!(
            err(b"SIP/2.0 099 OK\r\n\r\n"),
            ParseError::StartLine { .. }
        ));
        assert!(matches!(
            err(b"SIP/2.0 200 O\x01K\r\n\r\n"),
            ParseError::StartLine { .. }
        ));
        assert!(matches!(
            err(b"SIP/2.0\r\n\r\n"),
            ParseError::StartLine { .. }
        ));
        assert_eq!(err(b"SIP/3.0 200 OK\r\n\r\n").status_code(), 505);
        assert_eq!(err(b"OPTIONS sip:a@b SIP/2.1\r\n\r\n").status_code(), 505);
        assert_eq!(err(b"OPTIONS sip:a@b SIP/x\r\n\r\n").status_code(), 400);
        let e = err(b"INVITE sip:a@b SIP/2.0\r\nMax-Forwards: 300\r\n\r\n");
        assert_eq!(e.status_code(), 400);
        assert!(e.reason_phrase().contains("Max-Forwards"));
        // Non-UTF-8 is fine where the grammar allows it, refused where it does not.
        assert!(SipMessage::parse_slice(b"SIP/2.0 200 \xff\xfe\r\n\r\n").is_ok());
        assert!(matches!(
            err(b"INV\xffTE sip:a@b SIP/2.0\r\n\r\n"),
            ParseError::StartLine { .. }
        ));
    }
}
