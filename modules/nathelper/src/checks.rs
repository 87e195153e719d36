//! nat_uac_test(): the heuristics that tell a UA behind NAT.

use crate::addr::{is_private, is_private_host, parse_ip, AddrMode};
use crate::contact::first_contact_uri;
use ferrosip_api::args::{value_to_int, Fixable};
use ferrosip_api::sip::Uri;
use ferrosip_api::{
    ArgKind, ArgType, CallEnv, FixupEnv, FnError, MsgContext, Proto, RawArg, Value,
};

/// Contact URI host is a private address.
pub const CONTACT_PRIVATE: u32 = 0x01;
/// Top Via host differs from the source IP.
pub const VIA_RECEIVED: u32 = 0x02;
/// Top Via host is a private address.
pub const VIA_PRIVATE: u32 = 0x04;
/// An SDP c= address is private.
pub const SDP_PRIVATE: u32 = 0x08;
/// Top Via port (5060 when absent) differs from the source port.
pub const VIA_PORT: u32 = 0x10;
/// The source address is private.
pub const SOURCE_PRIVATE: u32 = 0x20;
/// Received over WebSocket (ws or wss).
pub const WEBSOCKET: u32 = 0x40;
/// Contact URI port (5060 when absent) differs from the source port.
pub const CONTACT_PORT: u32 = 0x80;
const ALL: u32 = 0xff;

/// nat_uac_test()'s bit mask, checked when the script loads.
pub struct TestFlags(pub u32);

fn check(n: i64) -> Result<TestFlags, String> {
    if n <= 0 || n > i64::from(ALL) {
        return Err(format!(
            "nat_uac_test flags {n}: expected a sum of 1, 2, 4, 8, 16, 32, 64 and 128 (1..255)"
        ));
    }
    Ok(TestFlags(n as u32))
}

impl ArgType for TestFlags {
    type Fixed = Fixable<i64>;
    const KIND: ArgKind = ArgKind::Custom("test bit mask (1..255)");

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        let fixed = i64::fixup(raw, env)?;
        if let Fixable::Const(n) = fixed {
            check(n)?;
        }
        Ok(fixed)
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        check(i64::eval(fixed, ctx)?).map_err(FnError::new)
    }

    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<Self, FnError> {
        check(value_to_int(&value)?).map_err(FnError::new)
    }
}

/// Whether any test of `flags` says the sender is behind NAT.
pub fn nat_uac_test(ctx: &MsgContext, flags: u32, mode: AddrMode) -> bool {
    let src = ctx.net.source;
    if flags & SOURCE_PRIVATE != 0 && is_private(src.ip(), mode) {
        return true;
    }
    if flags & WEBSOCKET != 0 && matches!(ctx.net.proto, Proto::Ws | Proto::Wss) {
        return true;
    }
    if flags & (VIA_RECEIVED | VIA_PRIVATE | VIA_PORT) != 0 {
        if let Ok(via) = ctx.msg.top_via() {
            if flags & VIA_RECEIVED != 0 && parse_ip(via.host()) != Some(src.ip()) {
                return true;
            }
            if flags & VIA_PRIVATE != 0 && is_private_host(via.host(), mode) {
                return true;
            }
            if flags & VIA_PORT != 0 && via.port().unwrap_or(5060) != src.port() {
                return true;
            }
        }
    }
    if flags & (CONTACT_PRIVATE | CONTACT_PORT) != 0 {
        if let Some(uri) = first_contact_uri(&ctx.msg) {
            if let Ok(uri) = Uri::parse(&uri) {
                if flags & CONTACT_PRIVATE != 0
                    && uri.host().is_some_and(|h| is_private_host(h, mode))
                {
                    return true;
                }
                if flags & CONTACT_PORT != 0 && uri.port().unwrap_or(5060) != src.port() {
                    return true;
                }
            }
        }
    }
    flags & SDP_PRIVATE != 0 && sdp_has_private(ctx.msg.body(), mode)
}

/// The address of an SDP `c=` line (`c=IN IP4 192.168.1.20[/ttl]`).
pub fn connection_address(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"c=")?;
    let addr = rest
        .split(|c| c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
        .nth(2)?;
    Some(addr.split(|&c| c == b'/').next().unwrap_or(addr))
}

fn sdp_has_private(body: &[u8], mode: AddrMode) -> bool {
    body.split(|&c| c == b'\n')
        .filter_map(|l| connection_address(l.trim_ascii()))
        .any(|a| is_private_host(a, mode))
}
