//! The one error type of the crate.

use crate::HeaderName;

/// Why a message (or a piece of one) was refused, and where.
///
/// Offsets count bytes from the start of the buffer handed to the parser (for standalone
/// typed parsers such as [`crate::Uri::parse`], from the start of their input). Offsets
/// inside data added by an edit lie past the end of the received buffer.
///
/// Every variant maps to a reply with [`ParseError::status_code`] and
/// [`ParseError::reason_phrase`], so a stateless reply can be built without matching.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Nothing but (optional) keep-alive CRLFs.
    #[error("empty message")]
    Empty,
    /// The input ended inside the start line or header section. On a stream this means
    /// "read more"; [`crate::frame_len`] turns it into `Ok(None)`.
    #[error("message truncated at byte {offset}: {what}")]
    Truncated { offset: usize, what: &'static str },
    /// The Request-Line or Status-Line breaks the RFC 3261 grammar.
    #[error("malformed start line at byte {offset}: {what}")]
    StartLine { offset: usize, what: &'static str },
    /// A well-formed `SIP/x.y` other than `SIP/2.0`: answer 505.
    #[error("unsupported SIP version at byte {offset}")]
    UnsupportedVersion { offset: usize },
    /// A header line that is not `name HCOLON value` (no colon, bad name, bare CR...).
    #[error("malformed header line at byte {offset}: {what}")]
    HeaderLine { offset: usize, what: &'static str },
    /// A header whose value breaks its grammar.
    #[error("invalid {name} header at byte {offset}: {what}")]
    Header {
        name: HeaderName,
        offset: usize,
        what: &'static str,
    },
    /// A standalone typed parse (URI, name-addr, Via, CSeq) failed.
    #[error("syntax error at byte {offset}: {what}")]
    Syntax { offset: usize, what: &'static str },
    /// Content-Length promises more bytes than the datagram holds.
    #[error("Content-Length is {declared} but only {available} body bytes follow")]
    BodyTruncated { declared: usize, available: usize },
    /// Over the caller's size limit (stream framing).
    #[error("message exceeds the limit of {max} bytes")]
    TooLarge { max: usize },
    /// A stream message without Content-Length (RFC 3261 §18.3 makes it mandatory).
    #[error("Content-Length is required on stream transports")]
    MissingContentLength,
    /// A header the operation (or `validate`) requires is absent.
    #[error("missing {name} header")]
    MissingHeader { name: HeaderName },
    /// A header that may appear once appears again (`validate`).
    #[error("{name} header repeated at byte {offset}")]
    DuplicateHeader { name: HeaderName, offset: usize },
    /// The CSeq method differs from the request method (`validate`).
    #[error("CSeq method does not match the request method (byte {offset})")]
    CSeqMethodMismatch { offset: usize },
    /// The Request-URI carries a header component (RFC 3261 §19.1.1, `validate`).
    #[error("Request-URI must not contain headers (byte {offset})")]
    HeadersInRequestUri { offset: usize },
    /// More header lines than [`crate::MAX_HEADERS`].
    #[error("more than {max} header lines")]
    TooManyHeaders { max: usize },
    /// An edit was refused (bad name or value, or it does not apply to this message).
    #[error("invalid edit: {what}")]
    Edit { what: &'static str },
}

impl ParseError {
    /// The status code a UAS or proxy should answer with: 505 for a bad version, 513 for
    /// an oversized message, 400 otherwise.
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::UnsupportedVersion { .. } => 505,
            ParseError::TooLarge { .. } => 513,
            _ => 400,
        }
    }

    /// A reason phrase for the reply. It says what is wrong without echoing peer bytes,
    /// so it is always safe to put on a status line.
    pub fn reason_phrase(&self) -> String {
        match self {
            ParseError::UnsupportedVersion { .. } => "Version Not Supported".into(),
            ParseError::TooLarge { .. } => "Message Too Large".into(),
            ParseError::Header { name, what, .. } => format!("Bad {name} header: {what}"),
            ParseError::MissingHeader { name } => format!("Missing {name} header"),
            ParseError::DuplicateHeader { name, .. } => format!("Repeated {name} header"),
            ParseError::StartLine { what, .. } => format!("Bad start line: {what}"),
            ParseError::HeaderLine { what, .. } => format!("Bad header line: {what}"),
            ParseError::BodyTruncated { .. } => "Bad Content-Length: body too short".into(),
            ParseError::MissingContentLength => "Missing Content-Length".into(),
            ParseError::CSeqMethodMismatch { .. } => "CSeq method mismatch".into(),
            ParseError::HeadersInRequestUri { .. } => "Bad Request-URI: headers".into(),
            ParseError::Truncated { .. } | ParseError::Empty => "Truncated message".into(),
            ParseError::Syntax { what, .. } => format!("Bad Request: {what}"),
            ParseError::Edit { what } => format!("Bad Request: {what}"),
            ParseError::TooManyHeaders { .. } => "Too Many Headers".into(),
        }
    }

    /// The byte offset the error points at, when it has one.
    pub fn offset(&self) -> Option<usize> {
        match *self {
            ParseError::Truncated { offset, .. }
            | ParseError::StartLine { offset, .. }
            | ParseError::UnsupportedVersion { offset }
            | ParseError::HeaderLine { offset, .. }
            | ParseError::Header { offset, .. }
            | ParseError::Syntax { offset, .. }
            | ParseError::DuplicateHeader { offset, .. }
            | ParseError::CSeqMethodMismatch { offset }
            | ParseError::HeadersInRequestUri { offset } => Some(offset),
            _ => None,
        }
    }

    /// Re-homes a standalone `Syntax` error into a header of a message at `base`.
    pub(crate) fn in_header(self, name: HeaderName, base: usize) -> ParseError {
        match self {
            ParseError::Syntax { offset, what } => ParseError::Header {
                name,
                offset: base + offset,
                what,
            },
            other => other,
        }
    }
}

pub(crate) fn syntax(offset: usize, what: &'static str) -> ParseError {
    ParseError::Syntax { offset, what }
}
