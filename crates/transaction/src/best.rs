//! Choosing the response a stateful proxy sends upstream when every branch has ended
//! without a 2xx or 6xx having been forwarded at once (RFC 3261 §16.7 steps 6 and 7).
//!
//! # The choice
//!
//! RFC 3261 §16.7 step 6: any 6xx wins; otherwise the lowest class wins. Within a
//! class the RFC lets the proxy pick, and this picks:
//!
//! - 4xx: 401 and 407 first (the client can retry with credentials, and step 7 merges
//!   every branch's challenges into it), then 415, 420 and 484 (also fixable by the
//!   client: §16.7 names these five), then the lowest code;
//! - 5xx: any code but 503 before 503, then the lowest code;
//! - other classes: the lowest code;
//! - within those groups, a received response before one this proxy stands in for a
//!   branch (below), whatever the codes: a real 486 Busy Here tells the caller more
//!   than the 408 of a branch that never answered (Kamailio's `faked_reply_prio`
//!   setting makes the same trade; its default does not);
//! - ties: the earliest branch.
//!
//! A branch that timed out counts as a 408 it never received (§16.7 step 6 and 16.8,
//! as Kamailio's tm fakes one), and a branch whose transport failed as a 503 (§16.9).
//! With no final response at all, the answer is 408.
//!
//! # 503 becomes 500
//!
//! §16.7 step 6 says a proxy SHOULD NOT forward a 503 unless it knows that every
//! request it would proxy would also get one, because upstream reads 503 as "this
//! proxy is out of service" and retries elsewhere; "if the only response that was
//! received is a 503, the proxy SHOULD generate a 500". The ranking above makes 503 the
//! choice only when every branch failed with 503 (or transport errors), and then
//! [`assemble_best`] answers 500 instead, generated here (not the downstream 503 with
//! its code rewritten), which is Kamailio's default (`remap_503_500`) too.

use bytes::Bytes;
use ferrosip_sip::{HeaderName, ParseError, SipMessage};

use crate::build::{local_reply, reason_phrase};

/// How one branch of a response context ended.
#[derive(Debug, Clone, Copy)]
pub enum BranchOutcome<'a> {
    /// A final response (status 200..=699) as received from downstream, this proxy's
    /// Via still on top.
    Response(&'a SipMessage),
    /// The branch timed out (Timer B/F or `fr_timer`): counts as 408.
    TimedOut,
    /// Sending failed: counts as 503 (§16.9).
    TransportError,
    /// No final yet, or the branch was never tried: not considered.
    Pending,
}

impl BranchOutcome<'_> {
    /// The status this outcome competes with.
    pub fn status(&self) -> Option<u16> {
        match self {
            BranchOutcome::Response(m) => m.status().filter(|s| *s >= 200),
            BranchOutcome::TimedOut => Some(408),
            BranchOutcome::TransportError => Some(503),
            BranchOutcome::Pending => None,
        }
    }
}

/// The chosen response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Best {
    /// The branch whose outcome won; `None` when no branch has a final (then 408).
    pub branch: Option<usize>,
    /// The status to send upstream (500 where the winner was a 503).
    pub status: u16,
}

/// Lower ranks win.
fn rank(status: u16, synthesized: bool) -> (u8, u8, bool, u16) {
    let class = match status / 100 {
        6 => 0,
        2 => 1,
        3 => 2,
        4 => 3,
        _ => 4,
    };
    let preference = match status {
        401 | 407 => 0,
        415 | 420 | 484 => 1,
        503 => 3,
        _ => 2,
    };
    (class, preference, synthesized, status)
}

/// Picks the best final response of a response context (see the module docs).
pub fn choose_best(branches: &[BranchOutcome<'_>]) -> Best {
    let winner = branches
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let synthesized = !matches!(b, BranchOutcome::Response(_));
            b.status().map(|s| (i, s, synthesized))
        })
        .min_by_key(|&(i, s, synthesized)| (rank(s, synthesized), i))
        .map(|(i, s, _)| (i, s));
    match winner {
        None => Best {
            branch: None,
            status: 408,
        },
        Some((i, 503)) => Best {
            branch: Some(i),
            status: 500,
        },
        Some((i, s)) => Best {
            branch: Some(i),
            status: s,
        },
    }
}

/// Writes the response to send upstream for `best`.
///
/// A received winner is relayed with this proxy's Via removed (§16.7 step 9); for a
/// 401 or 407, the WWW-Authenticate and Proxy-Authenticate values of every other 401 and
/// 407 are added to it unchanged (step 7), so the client can answer all the challenges
/// of a forked request at once. A synthesized winner (408 for a timeout or no final,
/// 500 in place of 503) is a local reply to `request`, the request as the server
/// transaction received it, with `to_tag` (see [`local_reply`]).
pub fn assemble_best(
    request: &SipMessage,
    branches: &[BranchOutcome<'_>],
    best: &Best,
    to_tag: Option<&[u8]>,
) -> Result<Bytes, ParseError> {
    let received = match best.branch.map(|i| branches.get(i)) {
        Some(Some(BranchOutcome::Response(m))) if m.status() == Some(best.status) => *m,
        _ => return local_reply(request, best.status, reason_phrase(best.status), to_tag),
    };
    let mut out = received.clone();
    out.remove_top_via()?;
    if matches!(best.status, 401 | 407) {
        let this = best.branch;
        for (i, b) in branches.iter().enumerate() {
            let BranchOutcome::Response(m) = b else {
                continue;
            };
            if Some(i) == this || !matches!(m.status(), Some(401 | 407)) {
                continue;
            }
            for kind in [HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate] {
                for v in m.headers_of(kind) {
                    out.add_header(kind.as_str(), v)?;
                }
            }
        }
    }
    Ok(out.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use BranchOutcome::{Pending, Response, TimedOut, TransportError};

    fn resp(status: u16, extra: &str) -> SipMessage {
        SipMessage::parse_slice(
            format!(
                "SIP/2.0 {status} {}\r\nVia: SIP/2.0/UDP proxy.example;branch=z9hG4bKp{status}\r\n\
Via: SIP/2.0/UDP pc.a.example;branch=z9hG4bKa\r\nTo: <sip:b@b.example>;tag=t{status}\r\n\
From: <sip:a@a.example>;tag=f\r\nCall-ID: c@a\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n",
                reason_phrase(status)
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn request() -> SipMessage {
        SipMessage::parse_slice(
            b"INVITE sip:b@b.example SIP/2.0\r\nVia: SIP/2.0/UDP pc.a.example;branch=z9hG4bKa\r\n\
To: <sip:b@b.example>\r\nFrom: <sip:a@a.example>;tag=f\r\nCall-ID: c@a\r\nCSeq: 1 INVITE\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap()
    }

    fn pick(codes: &[u16]) -> Best {
        let msgs: Vec<_> = codes.iter().map(|&c| resp(c, "")).collect();
        let outcomes: Vec<_> = msgs.iter().map(Response).collect();
        choose_best(&outcomes)
    }

    #[test]
    fn ranking() {
        assert_eq!(pick(&[486, 603, 200]).status, 603);
        assert_eq!(pick(&[486, 603, 200]).branch, Some(1));
        assert_eq!(pick(&[486, 302, 500]).status, 302);
        assert_eq!(pick(&[486, 404, 500]).status, 404);
        assert_eq!(pick(&[404, 407, 486]).status, 407);
        assert_eq!(pick(&[404, 401, 407]).status, 401);
        assert_eq!(pick(&[404, 484, 403]).status, 484);
        assert_eq!(pick(&[480, 420]).status, 420);
        assert_eq!(pick(&[486, 415, 401]).status, 401);
        assert_eq!(pick(&[503, 502]).status, 502);
        assert_eq!(pick(&[503, 504, 500]).status, 500);
        assert_eq!(pick(&[503, 504, 500]).branch, Some(2));
        assert_eq!(pick(&[503, 404]).status, 404);
        assert_eq!(pick(&[200, 486]).status, 200);
        assert_eq!(pick(&[301, 302]).branch, Some(0));
        let only503 = pick(&[503, 503]);
        assert_eq!(
            only503,
            Best {
                branch: Some(0),
                status: 500
            }
        );
    }

    #[test]
    fn synthesized_outcomes() {
        assert_eq!(
            choose_best(&[]),
            Best {
                branch: None,
                status: 408
            }
        );
        assert_eq!(choose_best(&[Pending, Pending]).status, 408);
        assert_eq!(
            choose_best(&[Pending, TimedOut]),
            Best {
                branch: Some(1),
                status: 408
            }
        );
        assert_eq!(choose_best(&[TransportError]).status, 500);
        let r486 = resp(486, "");
        assert_eq!(choose_best(&[TimedOut, Response(&r486)]).status, 486);
        let r401 = resp(401, "");
        assert_eq!(choose_best(&[TimedOut, Response(&r401)]).status, 401);
        let r503 = resp(503, "");
        assert_eq!(choose_best(&[Response(&r503), TimedOut]).status, 408);
        assert_eq!(
            choose_best(&[TransportError, Response(&r503)]),
            Best {
                branch: Some(1),
                status: 500
            }
        );
        let r180 = resp(180, "");
        assert_eq!(choose_best(&[Response(&r180)]).status, 408);
    }

    #[test]
    fn assemble_relays_without_our_via() {
        let req = request();
        let r = resp(486, "");
        let outcomes = [TimedOut, Response(&r)];
        let best = choose_best(&outcomes);
        let out = SipMessage::parse(assemble_best(&req, &outcomes, &best, None).unwrap()).unwrap();
        assert_eq!(out.status(), Some(486));
        assert_eq!(out.vias().count(), 1);
        assert_eq!(out.top_via_branch(), Some(&b"z9hG4bKa"[..]));
        assert_eq!(out.to_tag(), Some(&b"t486"[..]));
    }

    #[test]
    fn assemble_synthesizes_408_and_500() {
        let req = request();
        let outcomes = [TimedOut, Pending];
        let best = choose_best(&outcomes);
        let out =
            SipMessage::parse(assemble_best(&req, &outcomes, &best, Some(b"px")).unwrap()).unwrap();
        assert_eq!(out.status(), Some(408));
        assert_eq!(out.reason(), Some(&b"Request Timeout"[..]));
        assert_eq!(out.to_tag(), Some(&b"px"[..]));
        assert_eq!(out.call_id(), Some(&b"c@a"[..]));

        let r = resp(503, "Retry-After: 30\r\n");
        let outcomes = [Response(&r), TransportError];
        let best = choose_best(&outcomes);
        let out = SipMessage::parse(assemble_best(&req, &outcomes, &best, None).unwrap()).unwrap();
        assert_eq!(out.status(), Some(500));
        assert_eq!(out.vias().count(), 1);
        assert!(!out.has_header("Retry-After"));
    }

    #[test]
    fn auth_challenges_are_merged() {
        let req = request();
        let a = resp(401, "WWW-Authenticate: Digest realm=\"a\", nonce=\"1\"\r\n");
        let b = resp(
            407,
            "Proxy-Authenticate: Digest realm=\"b\", nonce=\"2\"\r\nProxy-Authenticate: Digest realm=\"b2\", nonce=\"3\"\r\n",
        );
        let c = resp(404, "WWW-Authenticate: Digest realm=\"ignored\"\r\n");
        let d = resp(401, "WWW-Authenticate: Digest realm=\"d\", nonce=\"4\"\r\n");
        let outcomes = [
            Response(&c),
            Response(&b),
            Response(&a),
            Response(&d),
            TimedOut,
        ];
        let best = choose_best(&outcomes);
        assert_eq!(
            best,
            Best {
                branch: Some(2),
                status: 401
            }
        );
        let out = SipMessage::parse(assemble_best(&req, &outcomes, &best, None).unwrap()).unwrap();
        let www: Vec<_> = out.headers_named("WWW-Authenticate").collect();
        assert_eq!(
            www,
            [
                &b"Digest realm=\"a\", nonce=\"1\""[..],
                b"Digest realm=\"d\", nonce=\"4\""
            ]
        );
        let proxy: Vec<_> = out.headers_named("Proxy-Authenticate").collect();
        assert_eq!(proxy.len(), 2);
        assert_eq!(out.vias().count(), 1);
    }
}
