//! Framing on stream transports (TCP, TLS, WebSocket-less streams).

use crate::error::ParseError;
use crate::message::{index, keepalive_len};

/// Length of the first complete message at the start of a stream buffer.
///
/// Returns `Ok(Some(n))` when `buf[..n]` holds a whole message (leading keep-alive
/// CRLFs, which RFC 3261 §7.5 says to ignore, are counted in `n`; [`crate::SipMessage::parse`]
/// skips them too), `Ok(None)` when more bytes are needed, and an error when the start
/// line or a header line is malformed, Content-Length is missing or invalid (it is
/// mandatory on streams, RFC 3261 §18.3), or the message would exceed `max` bytes.
/// A buffer of nothing but CRLFs needs more bytes; answer pings with [`keepalive_len`]
/// first if the transport does RFC 5626 keep-alives.
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, ParseError> {
    Ok(frame_total(buf, max)?.filter(|&total| buf.len() >= total))
}

/// Length the first message at the start of a stream buffer will have, known as soon as
/// its header section is complete (the body may still be on its way): a reader that
/// keeps it waits for that many bytes without indexing the headers again on each read.
/// `Ok(None)` while the header section is incomplete; errors as [`frame_len`].
pub fn frame_total(buf: &[u8], max: usize) -> Result<Option<usize>, ParseError> {
    let idx = match index(buf) {
        Ok(idx) => idx,
        Err(ParseError::Truncated { .. }) | Err(ParseError::Empty) => {
            let pending = buf.len() - keepalive_len(buf);
            return if pending > max {
                Err(ParseError::TooLarge { max })
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(e),
    };
    let head_end = idx.blank.end as usize;
    let cl = idx.content_length.ok_or(ParseError::MissingContentLength)?;
    let total = head_end
        .checked_add(cl)
        .ok_or(ParseError::TooLarge { max })?;
    if total - idx.base > max {
        return Err(ParseError::TooLarge { max });
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nl: 3\r\n\r\nabc";

    #[test]
    fn a_second_content_length_is_refused_not_framed() {
        // Smuggling: one reader frames 0 body bytes, another 40 and finds a request inside.
        let two =
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nl: 0\r\nContent-Length: 40\r\n\r\n";
        assert!(matches!(
            frame_len(two, 1000),
            Err(ParseError::DuplicateHeader { .. })
        ));
    }

    #[test]
    fn frames() {
        for cut in 0..MSG.len() {
            assert_eq!(frame_len(&MSG[..cut], 1000), Ok(None), "cut {cut}");
        }
        assert_eq!(frame_len(MSG, 1000), Ok(Some(MSG.len())));
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        assert_eq!(frame_len(&two, 1000), Ok(Some(MSG.len())));
        let mut ka = b"\r\n\r\n".to_vec();
        ka.extend_from_slice(MSG);
        assert_eq!(keepalive_len(&ka), 4);
        assert_eq!(frame_len(&ka, 1000), Ok(Some(MSG.len() + 4)));
        assert_eq!(frame_len(b"\r\n\r\n", 1000), Ok(None));
    }

    #[test]
    fn the_total_is_known_once_the_headers_are_in() {
        let head = MSG.len() - 3;
        for cut in 0..head {
            assert_eq!(frame_total(&MSG[..cut], 1000), Ok(None), "cut {cut}");
        }
        for cut in head..=MSG.len() {
            assert_eq!(
                frame_total(&MSG[..cut], 1000),
                Ok(Some(MSG.len())),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn errors() {
        assert_eq!(frame_len(MSG, 10), Err(ParseError::TooLarge { max: 10 }));
        assert_eq!(
            frame_len(&[b'A'; 100], 50),
            Err(ParseError::TooLarge { max: 50 })
        );
        assert_eq!(
            frame_len(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", 1000),
            Err(ParseError::MissingContentLength)
        );
        assert!(frame_len(b"OPTIONS sip:a@b SIP/2.0\r\nl: x\r\n\r\n", 1000).is_err());
        assert!(frame_len(b"garbage line\r\n", 1000).is_err());
        assert!(frame_len(b"OPTIONS sip:a@b SIP/2.0\r\nno colon\r\n", 1000).is_err());
        assert_eq!(
            frame_len(b"OPTIONS sip:a@b SIP/2.0\r\nl: 4294967295\r\n\r\n", 1 << 20),
            Err(ParseError::TooLarge { max: 1 << 20 })
        );
    }
}
