//! SIP message model for Ferrosip: a lazy, offset-based parser over [`bytes::Bytes`],
//! typed views parsed on demand, the edits a proxy makes, stream framing and reply
//! construction.
//!
//! # Parsing
//!
//! [`SipMessage::parse`] makes one pass over the start line and header section: it
//! records, per header line, where the name and value are (no per-header allocation;
//! values are handed out as `&[u8]` slices of the received buffer, or as [`Bytes`]
//! sharing it through `*_bytes` accessors and [`SipMessage::bytes_of`]). Header names are
//! matched case-insensitively and compact forms (`v`, `f`, `t`, `i`, `m`, `l`, `c`, `k`,
//! `s`, `e`, `o`, `u`, `r`, `x`, `b`, ...) equal their long forms ([`HeaderName`]).
//! Folded values keep their CRLF and blanks; typed parsers read them as LWS.
//!
//! While checking the hot headers, `parse` notes where the top Via branch, the From
//! and To tags, Call-ID, CSeq, Max-Forwards and the Request-URI host are, so
//! [`SipMessage::top_via_branch`], [`SipMessage::from_tag`], [`SipMessage::to_tag`],
//! [`SipMessage::call_id`], [`SipMessage::cseq`], [`SipMessage::max_forwards`] and
//! [`SipMessage::request_uri_host`] are slice lookups. Full views ([`Via`],
//! [`NameAddr`], [`Uri`]) are built on demand from the raw value.
//!
//! # What `parse` rejects and what `validate` rejects
//!
//! `parse` enforces the RFC 3261 grammar of everything a proxy reads on every message:
//!
//! - the start line: one SP between the three Request-Line elements, a method token, a
//!   Request-URI that parses ([`Uri::parse`]; `<>`, blanks and bad escapes are
//!   refused), `SIP/2.0` (another well-formed version is
//!   [`ParseError::UnsupportedVersion`], answer 505), a three-digit status code;
//! - header lines: a token name, a colon, CRLF (or bare LF) termination, no bare CR, an
//!   empty line ending the header section;
//! - Via (every value), From, To, Call-ID, CSeq (number within 32 bits), Max-Forwards
//!   (0..=255), Content-Length (one only: a second one is refused, as it would frame
//!   the body a second way; a body shorter than it is refused).
//!
//! [`SipMessage::validate`] adds the checks a proxy makes on demand: mandatory headers
//! present, single-instance headers not repeated, CSeq method equal to the request
//! method, no headers in a `sip:` Request-URI, Contact/Route/Record-Route syntax
//! (quotes, display names, `<>` around URIs with `;`, `,` or `?`), 32-bit Expires and
//! Retry-After, and the Date format. Every error carries the byte offset and header,
//! and maps to a reply through [`ParseError::status_code`] and
//! [`ParseError::reason_phrase`].
//!
//! Deliberate leniencies, as deployed stacks show them: bare LF line ends, a status
//! line without the SP before an empty reason phrase, `#` in a URI user part and `_`
//! in host names. The header-value bytes of headers `parse` does not check are not
//! inspected beyond line structure.
//!
//! # Editing
//!
//! Edits ([`SipMessage::set_request_uri`], [`SipMessage::add_header`],
//! [`SipMessage::insert_header_first`], [`SipMessage::remove_headers`],
//! [`SipMessage::remove_headers_where`], [`SipMessage::prepend_via`],
//! [`SipMessage::remove_top_via`], [`SipMessage::set_max_forwards`],
//! [`SipMessage::set_header`], [`SipMessage::set_body`]) write their bytes to a side
//! buffer and repoint the index, so reads see them at once and nothing is re-parsed.
//! [`SipMessage::to_bytes`] copies untouched lines byte for byte (folding, spacing,
//! case kept) and returns the received buffer itself when nothing changed. Values put
//! in by edits are checked (no CR/LF/NUL; hot headers must parse), so an edited
//! message always parses again.
//!
//! # Streams
//!
//! [`frame_len`] finds the length of the first complete message in a TCP buffer;
//! [`keepalive_len`] measures leading CRLF keep-alives.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use ferrosip_sip::SipMessage;
//!
//! let raw = Bytes::from_static(b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
//! Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\nFrom: <sip:a@example.com>;tag=9\r\n\
//! Call-ID: c@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
//! let mut msg = SipMessage::parse(raw)?;
//! assert_eq!(msg.top_via()?.branch(), Some(&b"z9hG4bK1"[..]));
//! assert_eq!(msg.from()?.tag(), Some(&b"9"[..]));
//! msg.set_request_uri("sip:bob@192.0.2.7:5060")?;
//! msg.prepend_via("SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2")?;
//! msg.set_max_forwards(69);
//! let out = msg.to_bytes();
//! assert!(out.starts_with(b"OPTIONS sip:bob@192.0.2.7:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2"));
//! let reply = msg.reply(200, "OK").build()?;
//! assert!(reply.starts_with(b"SIP/2.0 200 OK\r\n"));
//! # Ok::<(), ferrosip_sip::ParseError>(())
//! ```

mod chars;
mod edit;
mod error;
mod frame;
mod header_name;
mod list;
mod message;
mod method;
mod name_addr;
mod params;
mod reply;
mod scalars;
mod uri;
mod validate;
mod via;

pub use bytes::Bytes;
pub use error::ParseError;
pub use frame::{frame_len, frame_total};
pub use header_name::HeaderName;
pub use list::CommaList;
pub use message::{keepalive_len, share_or_copy, SipMessage, MAX_BUFFER, MAX_HEADERS};
pub use method::Method;
pub use name_addr::NameAddr;
pub use params::{ParamIter, Params};
pub use reply::ReplyBuilder;
pub use scalars::CSeq;
pub use uri::{Scheme, Uri};
pub use via::Via;
