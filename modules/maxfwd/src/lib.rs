//! `maxfwd`: Max-Forwards processing (RFC 3261 section 16.6 step 3).

use ferrosip_api::registry::FnRow;
use ferrosip_api::services::MaxForwardsDone;
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, MsgContext, ParamType, RouteMask, Verdict,
};

/// The `maxfwd` module.
pub struct MaxfwdModule;

/// The module's state: its `max_limit` parameter, checked.
struct MaxLimit(i64);

/// Kamailio's default for `max_limit`.
const DEFAULT_MAX_LIMIT: i64 = 70;

/// `mf_process_maxfwd_header(max_value)`: 2 when the header was added with `max_value`,
/// 1 when decremented (a value above `max_limit` is first lowered to `max_limit + 1`, so
/// it leaves as `max_limit`), -1 when it is already 0 (the script should reply 483), -2
/// when it cannot be read. A `max_value` outside 0..=255 is an error (-1).
pub fn process_maxfwd(ctx: &mut MsgContext, limit: i64, max_limit: i64) -> FnResult {
    if !(0..=255).contains(&limit) {
        return Err(FnError::new(format!(
            "invalid Max-Forwards value {limit} (0..255)"
        )));
    }
    ctx.ext.insert(MaxForwardsDone);
    match ctx.msg.max_forwards() {
        Err(_) => Ok(Verdict::code(-2)),
        Ok(None) => {
            ctx.msg
                .insert_header_first("Max-Forwards", limit.to_string())
                .map_err(|e| FnError::new(format!("cannot add Max-Forwards: {e}")))?;
            Ok(Verdict::code(2))
        }
        Ok(Some(0)) => Ok(Verdict::FALSE),
        Ok(Some(v)) => {
            let mut v = i64::from(v);
            if v > max_limit {
                v = max_limit + 1;
            }
            ctx.msg.set_max_forwards((v - 1).clamp(0, 255) as u8);
            Ok(Verdict::TRUE)
        }
    }
}

/// `is_maxfwd_lt(max_value)`: 1 when Max-Forwards is lower than `max_value`, -1 when not,
/// -2 when the header is missing, -3 when it cannot be read.
pub fn is_maxfwd_lt(ctx: &mut MsgContext, limit: i64) -> FnResult {
    if !(0..=255).contains(&limit) {
        return Err(FnError::new(format!(
            "invalid Max-Forwards limit {limit} (0..255)"
        )));
    }
    Ok(match ctx.msg.max_forwards() {
        Err(_) => Verdict::code(-3),
        Ok(None) => Verdict::code(-2),
        Ok(Some(v)) if i64::from(v) >= limit => Verdict::FALSE,
        Ok(Some(_)) => Verdict::TRUE,
    })
}

impl Module for MaxfwdModule {
    fn name(&self) -> &'static str {
        "maxfwd"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.example(include_str!("../example.cfg"));
        m.doc("Max-Forwards processing (RFC 3261 section 16.6 step 3).");
        m.param(
            "max_limit",
            ParamType::Int,
            DEFAULT_MAX_LIMIT,
            "Upper limit for Max-Forwards: a larger received value is lowered to it.",
        );
        let max_limit = m.state(|p| {
            let v = p.int("max_limit");
            if !(0..=255).contains(&v) {
                return Err(format!("max_limit {v} is out of range 0..255"));
            }
            Ok(MaxLimit(v))
        });
        let process = max_limit.with(|max: &MaxLimit, ctx: &mut MsgContext, limit: i64| {
            process_maxfwd(ctx, limit, max.0)
        });
        const PROCESS: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        const CHECK: RouteMask = PROCESS.union(RouteMask::FAILURE).union(RouteMask::BRANCH);
        const MAX: &[&str] = &["max_value"];
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("mf_process_maxfwd_header", MAX, PROCESS, "Decrements Max-Forwards or adds it with max_value when absent; 1 when processed, 2 when added, -1 when it was already 0 (reply 483), -2 on error.", process.clone()),
            FnRow::sync("maxfwd_process", MAX, PROCESS, "Alias of mf_process_maxfwd_header(); 1/2 processed or added, -1 when it was 0, -2 on error.", process.clone()),
            FnRow::sync("process_maxfwd", MAX, PROCESS, "Alias of mf_process_maxfwd_header(); 1/2 processed or added, -1 when it was 0, -2 on error.", process),
            FnRow::sync("is_maxfwd_lt", MAX, CHECK, "True (1) when Max-Forwards is lower than max_value; -1 when not lower, -2 when the header is missing, -3 when it is malformed.", is_maxfwd_lt),
            FnRow::sync("maxfwd_at_least", MAX, CHECK, "Alias of is_maxfwd_lt(); 1 when lower, -1 not lower, -2 missing, -3 malformed.", is_maxfwd_lt),
            FnRow::sync("mf_lowlimit", MAX, CHECK, "Alias of is_maxfwd_lt(); 1 when lower, -1 not lower, -2 missing, -3 malformed.", is_maxfwd_lt),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferrosip_api::{NetInfo, Registry, RouteKind};
    use ferrosip_script::vm::Outcome;
    use ferrosip_sip::SipMessage;
    use ferrosip_tests::Script;

    fn msg(mf: &str) -> MsgContext {
        let raw = format!(
            "OPTIONS sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
{mf}To: <sip:bob@example.com>\r\n\
From: <sip:a@example.com>;tag=9\r\n\
Call-ID: c@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let m = SipMessage::parse(Bytes::from(raw)).expect("test message parses");
        MsgContext::new(m, RouteKind::Request, NetInfo::default())
    }

    fn out(ctx: &MsgContext) -> String {
        String::from_utf8_lossy(&ctx.msg.to_bytes()).into_owned()
    }

    #[test]
    fn decrements_adds_and_stops_at_zero() {
        let mut c = msg("Max-Forwards: 10\r\n");
        assert_eq!(process_maxfwd(&mut c, 70, 70).unwrap().rc(), 1);
        assert!(out(&c).contains("\r\nMax-Forwards: 9\r\n"), "{}", out(&c));
        assert!(c.ext.get::<MaxForwardsDone>().is_some());

        let mut c = msg("");
        assert_eq!(process_maxfwd(&mut c, 16, 70).unwrap().rc(), 2);
        assert!(
            out(&c).starts_with("OPTIONS sip:bob@example.com SIP/2.0\r\nMax-Forwards: 16\r\nVia:"),
            "{}",
            out(&c)
        );

        let mut c = msg("Max-Forwards: 0\r\n");
        assert_eq!(process_maxfwd(&mut c, 70, 70).unwrap().rc(), -1);
        assert!(!c.msg.is_modified());

        assert!(process_maxfwd(&mut msg(""), 256, 70).is_err());
    }

    #[test]
    fn max_limit_lowers_large_values() {
        let mut c = msg("Max-Forwards: 200\r\n");
        assert_eq!(process_maxfwd(&mut c, 70, 50).unwrap().rc(), 1);
        assert_eq!(c.msg.max_forwards().unwrap(), Some(50));
        let mut c = msg("Max-Forwards: 50\r\n");
        assert_eq!(process_maxfwd(&mut c, 70, 50).unwrap().rc(), 1);
        assert_eq!(c.msg.max_forwards().unwrap(), Some(49));
    }

    #[test]
    fn lower_than() {
        assert_eq!(
            is_maxfwd_lt(&mut msg("Max-Forwards: 5\r\n"), 10)
                .unwrap()
                .rc(),
            1
        );
        assert_eq!(
            is_maxfwd_lt(&mut msg("Max-Forwards: 10\r\n"), 10)
                .unwrap()
                .rc(),
            -1
        );
        assert_eq!(is_maxfwd_lt(&mut msg(""), 10).unwrap().rc(), -2);
        assert!(is_maxfwd_lt(&mut msg(""), -1).is_err());
    }

    #[test]
    fn script_uses_the_modparam() {
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&MaxfwdModule);
        let cfg = "loadmodule \"maxfwd.so\"\nmodparam(\"maxfwd\", \"max_limit\", 20)\n\
request_route {\n if (!mf_process_maxfwd_header(10)) { exit; }\n if (is_maxfwd_lt(21)) { return(7); }\n return(3);\n}\n";
        let script = Script::load(&reg, cfg);
        let def = reg.module("maxfwd").unwrap();
        for hook in &def.init {
            hook(&script.loaded.modules["maxfwd"]).unwrap();
        }
        let (o, c) = script.run(msg("Max-Forwards: 70\r\n"));
        assert!(matches!(o, Outcome::Return(7)), "{o:?}");
        // 70 is above max_limit 20: lowered to 21, then decremented.
        assert_eq!(c.msg.max_forwards().unwrap(), Some(20));
    }
}
