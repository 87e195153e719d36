//! Edits on the message text that the SIP crate's structured edits do not cover (a regex
//! over the whole header section, a header inserted next to another one): the message is
//! written out, changed as bytes and parsed again. Content-Length follows the new body, as
//! Kamailio adjusts it when body lumps change the length.

use bytes::Bytes;
use ferrosip_api::{FnError, MsgContext};
use ferrosip_sip::{ParseError, SipMessage};
use std::ops::Range;

/// The serialized message with where its parts are.
pub struct RawMsg {
    pub bytes: Bytes,
    /// End of the start line (after its CRLF).
    pub start_line_end: usize,
    /// Per header line: the name, and the whole line with its line end.
    pub lines: Vec<(Range<usize>, Range<usize>)>,
    /// Where the empty line ending the header section starts.
    pub head_end: usize,
    /// Where the body starts.
    pub body_start: usize,
}

fn offset(base: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize)
}

fn line_end(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| from + p + 1)
}

impl RawMsg {
    pub fn of(msg: &SipMessage) -> Result<RawMsg, FnError> {
        let bytes = msg.to_bytes();
        let fresh = SipMessage::parse(bytes.clone()).map_err(|e| FnError::new(e.to_string()))?;
        let b: &[u8] = fresh.buffer();
        let start_line_end = line_end(b, 0);
        let mut lines = Vec::new();
        for (name, value) in fresh.headers() {
            let ns = offset(b, name);
            let after = if value.is_empty() {
                ns + name.len()
            } else {
                offset(b, value) + value.len()
            };
            lines.push((ns..ns + name.len(), ns..line_end(b, after)));
        }
        let head_end = lines.last().map_or(start_line_end, |(_, l)| l.end);
        let body_start = b.len() - fresh.body().len();
        Ok(RawMsg {
            bytes,
            start_line_end,
            lines,
            head_end,
            body_start,
        })
    }

    /// The header lines (start line excluded, blank line excluded).
    pub fn head(&self) -> Range<usize> {
        self.start_line_end..self.head_end
    }

    /// Everything after the start line (headers, blank line, body): what Kamailio's
    /// `subst` and `replace` work on.
    pub fn after_start_line(&self) -> Range<usize> {
        self.start_line_end..self.bytes.len()
    }

    /// The message with `range` replaced by `with`.
    pub fn splice(&self, range: Range<usize>, with: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + with.len());
        out.extend_from_slice(&self.bytes[..range.start]);
        out.extend_from_slice(with);
        out.extend_from_slice(&self.bytes[range.end..]);
        out
    }
}

/// Replaces the message with `raw`: the body is what follows the first empty line and
/// Content-Length is set to its length when it no longer matches. On error the message
/// is left as it was.
pub fn reparse(ctx: &mut MsgContext, raw: Vec<u8>) -> Result<(), FnError> {
    let split = find_blank(&raw);
    let (head, body) = match split {
        Some((h, b)) => (raw[..h].to_vec(), raw[b..].to_vec()),
        None => (raw.clone(), Vec::new()),
    };
    let mut text = head;
    text.extend_from_slice(b"\r\n");
    let head_len = text.len();
    text.extend_from_slice(&body);
    let parsed = match SipMessage::parse(Bytes::from(text.clone())) {
        Ok(m) => m,
        Err(ParseError::BodyTruncated {
            declared,
            available,
        }) => {
            // Content-Length counts the old body: parse with room for it, then fix it.
            text.resize(head_len + available.max(declared), b' ');
            SipMessage::parse(Bytes::from(text))
                .map_err(|e| FnError::new(format!("edited message does not parse: {e}")))?
        }
        Err(e) => return Err(FnError::new(format!("edited message does not parse: {e}"))),
    };
    let mut parsed = parsed;
    if parsed.body() != body.as_slice() {
        parsed.set_body(Bytes::from(body));
    }
    ctx.msg = parsed;
    Ok(())
}

/// Where the header section ends: (end of the last header line, start of the body).
fn find_blank(raw: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < raw.len() {
        let rest = &raw[i..];
        if rest.starts_with(b"\r\n") {
            return Some((i, i + 2));
        }
        if rest.starts_with(b"\n") {
            return Some((i, i + 1));
        }
        i = line_end(raw, i);
    }
    None
}
