//! `kex`: Kamailio core extensions: branch and script flags, destination URI helpers, myself checks, debug level.

use bytes::Bytes;
use ferrosip_api::args::{Flag, PvOut};
use ferrosip_api::registry::FnRow;
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, MsgContext, RouteMask, SetOp, Verdict,
};

/// The `kex` module.
pub struct KexModule;

impl Module for KexModule {
    fn name(&self) -> &'static str {
        "kex"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Kamailio core extensions: branch and script flags, destination URI helpers, myself checks, debug level.");
        const FLAG_BRANCH: &[&str] = &["flag", "branch"];
        const VAR_FORMAT: &[&str] = &["var", "format"];
        let setbflag = |ctx: &mut MsgContext, f: Flag| {
            set_bit(&mut ctx.bflags, f);
            Ok(Verdict::TRUE)
        };
        let resetbflag = |ctx: &mut MsgContext, f: Flag| {
            reset_bit(&mut ctx.bflags, f);
            Ok(Verdict::TRUE)
        };
        let setdsturi = |ctx: &mut MsgContext, uri: Bytes| {
            if uri.is_empty() {
                return Ok(Verdict::FALSE);
            }
            ctx.dst_uri = Some(uri);
            Ok(Verdict::TRUE)
        };
        let resetdsturi = |ctx: &mut MsgContext| {
            ctx.dst_uri = None;
            Ok(Verdict::TRUE)
        };
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<(Flag,)>("setsflag", &["flag"], RouteMask::ANY, "Sets a script flag (kept across the processing of the message in the worker); always 1."),
            FnRow::declared::<(Flag,)>("resetsflag", &["flag"], RouteMask::ANY, "Resets a script flag; always 1."),
            FnRow::declared::<(Flag,)>("issflagset", &["flag"], RouteMask::ANY, "True (1) when the script flag is set; -1 otherwise."),
            FnRow::sync("setbflag", &["flag"], RouteMask::ANY, "Sets a branch flag of the current branch (branch 0: the R-URI); always 1.", setbflag),
            FnRow::declared::<(Flag, i64)>("setbflag", FLAG_BRANCH, RouteMask::ANY, "Sets a branch flag of the given branch index; 1 on success, -1 on a bad index."),
            FnRow::sync("resetbflag", &["flag"], RouteMask::ANY, "Resets a branch flag of the current branch; always 1.", resetbflag),
            FnRow::declared::<(Flag, i64)>("resetbflag", FLAG_BRANCH, RouteMask::ANY, "Resets a branch flag of the given branch index; 1 on success, -1 on a bad index."),
            FnRow::sync("isbflagset", &["flag"], RouteMask::ANY, "True (1) when the branch flag of the current branch is set; -1 otherwise.", |ctx: &mut MsgContext, f: Flag| Ok(Verdict::from(bit_is_set(ctx.bflags, f)))),
            FnRow::declared::<(Flag, i64)>("isbflagset", FLAG_BRANCH, RouteMask::ANY, "True (1) when the branch flag of the given branch is set; -1 otherwise."),
            FnRow::sync("setdsturi", &["uri"], RouteMask::ANY, "Sets the destination URI ($du); 1 on success, -1 on failure.", setdsturi),
            FnRow::sync("resetdsturi", &[], RouteMask::ANY, "Clears the destination URI ($du); always 1.", resetdsturi),
            FnRow::sync("isdsturiset", &[], RouteMask::ANY, "True (1) when the destination URI ($du) is set; -1 otherwise.", |ctx: &mut MsgContext| Ok(Verdict::from(dst_uri_is_set(&ctx.dst_uri)))),
            FnRow::sync("pv_printf", VAR_FORMAT, RouteMask::ANY, "Evaluates the format and assigns it to the variable; 1 on success, -1 on failure.", pv_printf),
            FnRow::sync("avp_printf", VAR_FORMAT, RouteMask::ANY, "Alias of pv_printf(); 1 on success, -1 on failure.", pv_printf),
            FnRow::sync("is_myself", &["uri"], RouteMask::ANY, "True (1) when the URI host and port are local (listen addresses, aliases, local domains); -1 otherwise.", is_myself),
            FnRow::sync("is_myhost", &["uri"], RouteMask::ANY, "True (1) when the URI host is local, ignoring the port; -1 otherwise.", is_myhost),
            FnRow::declared::<(i64,)>("setdebug", &["level"], RouteMask::ANY, "Sets the log level for the rest of this message's processing in this worker; always 1."),
            FnRow::declared::<()>("resetdebug", &[], RouteMask::ANY, "Restores the global log level; always 1."),
        ]);
    }
}

/// Host and port of `uri` (a SIP URI, or a bare `host[:port]`).
fn host_port(uri: &[u8]) -> Result<(Vec<u8>, Option<u16>), FnError> {
    if let Ok(u) = ferrosip_sip::Uri::parse(uri) {
        if let Some(h) = u.host() {
            return Ok((h.to_vec(), u.port()));
        }
    }
    let s = String::from_utf8_lossy(uri);
    let s = s.trim();
    if s.is_empty() || s.contains(['@', ';', ' ']) {
        return Err(FnError::new(format!(
            "\"{s}\" is neither a URI nor host[:port]"
        )));
    }
    // [v6]:port, v4:port, name:port; a bare IPv6 address has several colons.
    let (host, port) = match s.rfind(':') {
        Some(i) if s.starts_with('[') && s[..i].ends_with(']') => {
            (&s[..i], s[i + 1..].parse().ok())
        }
        Some(i) if s.matches(':').count() == 1 => (&s[..i], s[i + 1..].parse().ok()),
        _ => (s, None),
    };
    Ok((host.as_bytes().to_vec(), port))
}

/// `is_myself(uri)`: host and port are this server's (listen addresses, aliases).
fn is_myself(ctx: &mut MsgContext, uri: Bytes) -> FnResult {
    let (host, port) = host_port(&uri)?;
    Ok(Verdict::from(
        ctx.services("is_myself")?.is_myself(&host, port),
    ))
}

/// `is_myhost(uri)`: the host is this server's, whatever the port.
fn is_myhost(ctx: &mut MsgContext, uri: Bytes) -> FnResult {
    let (host, _) = host_port(&uri)?;
    Ok(Verdict::from(
        ctx.services("is_myhost")?.is_myself(&host, None),
    ))
}

/// `pv_printf(var, format)`: the format is already evaluated by the argument fixup.
fn pv_printf(ctx: &mut MsgContext, var: PvOut, text: Bytes) -> FnResult {
    var.0.set(ctx, SetOp::Assign, text.into())?;
    Ok(Verdict::TRUE)
}

fn set_bit(bits: &mut u64, f: Flag) {
    *bits |= 1 << f.0;
}

fn reset_bit(bits: &mut u64, f: Flag) {
    *bits &= !(1 << f.0);
}

fn bit_is_set(bits: u64, f: Flag) -> bool {
    bits & (1 << f.0) != 0
}

/// `isdsturiset()`: a `$du` that was set to an empty string counts as unset.
fn dst_uri_is_set(du: &Option<Bytes>) -> bool {
    du.as_ref().is_some_and(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_bits() {
        let mut bits = 0u64;
        set_bit(&mut bits, Flag(0));
        set_bit(&mut bits, Flag(63));
        assert!(bit_is_set(bits, Flag(0)));
        assert!(bit_is_set(bits, Flag(63)));
        assert!(!bit_is_set(bits, Flag(5)));
        reset_bit(&mut bits, Flag(63));
        assert!(!bit_is_set(bits, Flag(63)));
        assert_eq!(bits, 1);
    }

    #[test]
    fn dst_uri_set_means_non_empty() {
        assert!(!dst_uri_is_set(&None));
        assert!(!dst_uri_is_set(&Some(Bytes::new())));
        assert!(dst_uri_is_set(&Some(Bytes::from_static(b"sip:1.2.3.4"))));
    }
}

#[cfg(test)]
mod tests_ops {
    use super::*;
    use ferrosip_api::{NetInfo, Registry, RouteKind};
    use ferrosip_script::vm::Outcome;
    use ferrosip_sip::SipMessage;
    use ferrosip_tests::{FakeServices, Script};
    use std::sync::Arc;

    fn ctx() -> MsgContext {
        let raw = "OPTIONS sip:bob@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
To: <sip:bob@10.0.0.5>\r\nFrom: <sip:alice@example.com>;tag=9\r\nCall-ID: c@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let msg = SipMessage::parse(Bytes::from_static(raw.as_bytes())).expect("parses");
        let mut c = MsgContext::new(msg, RouteKind::Request, NetInfo::default());
        c.services = Some(Arc::new(FakeServices::new().myself("10.0.0.5", Some(5060))));
        c
    }

    #[test]
    fn myself_checks() {
        let mut c = ctx();
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert_eq!(is_myself(&mut c, b("sip:bob@10.0.0.5")).unwrap().rc(), 1);
        assert_eq!(
            is_myself(&mut c, b("sip:bob@10.0.0.5:5070")).unwrap().rc(),
            -1
        );
        assert_eq!(
            is_myhost(&mut c, b("sip:bob@10.0.0.5:5070")).unwrap().rc(),
            1
        );
        assert_eq!(is_myself(&mut c, b("10.0.0.5:5060")).unwrap().rc(), 1);
        assert_eq!(is_myself(&mut c, b("sip:x@example.com")).unwrap().rc(), -1);
        c.services = None;
        assert!(is_myself(&mut c, b("sip:bob@10.0.0.5")).is_err());
    }

    #[test]
    fn script_uses_kex() {
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&KexModule);
        let cfg = r#"loadmodule "kex.so"
request_route {
    pv_printf("$var(x)", "$rU@$rd");
    if (is_myself("$ru") && !is_myself("$fu")) { $du = "sip:" + $var(x); return(6); }
    return(2);
}
"#;
        let (o, c) = Script::load(&reg, cfg).run(ctx());
        assert!(matches!(o, Outcome::Return(6)), "{o:?}");
        assert_eq!(c.dst_uri.as_deref(), Some(&b"sip:bob@10.0.0.5"[..]));
    }
}
