//! `sanity`: Sanity checks of incoming messages (versions, schemes, CSeq, Content-Length, URIs, sizes, ...).

pub mod checks;

use ferrosip_api::services::ReplyHeaders;
use ferrosip_api::{FnResult, Module, ModuleBuilder, MsgContext, ParamType, RouteMask, Verdict};

pub use checks::Config;
use checks::{Failure, MAX_CHECKS, URI_MAX_CHECKS};

/// The reply a failed check left for `sanity_reply()` (with `noreply` set), kept with
/// the message it belongs to.
#[derive(Clone, Debug)]
pub struct PendingReply(pub Failure);

/// `sanity_check(msg_checks, uri_checks)`: 1 when every check passed. On a failure the
/// check's error reply is sent (or, with `noreply`, kept for `sanity_reply()`), and the
/// result is 0 (stop) with `autodrop`, -1 without. A mask out of range is -1.
pub fn sanity_check(
    ctx: &mut MsgContext,
    msg_checks: i64,
    uri_checks: i64,
    cfg: &Config,
) -> FnResult {
    if !(1..MAX_CHECKS).contains(&msg_checks) || !(1..URI_MAX_CHECKS).contains(&uri_checks) {
        return Ok(Verdict::FALSE);
    }
    ctx.ext.remove::<PendingReply>();
    let Err(failure) = checks::run(&ctx.msg, msg_checks, uri_checks, cfg) else {
        return Ok(Verdict::TRUE);
    };
    if cfg.noreply {
        ctx.ext.insert(PendingReply(failure));
    } else {
        // As in Kamailio, a reply that cannot be sent does not change the result.
        let _ = send(ctx, &failure);
    }
    Ok(if cfg.autodrop {
        Verdict::STOP
    } else {
        Verdict::FALSE
    })
}

/// Sends the reply of `failure` when there is one, the message is a request other than
/// ACK, and a server is running (nothing is sent in tests or `ferrosip check`).
fn send(ctx: &mut MsgContext, failure: &Failure) -> Result<(), ferrosip_api::FnError> {
    let Some((code, reason)) = failure.reply else {
        return Ok(());
    };
    if !checks::replyable(&ctx.msg) || ctx.services.is_none() {
        return Ok(());
    }
    if let Some(opt) = &failure.unsupported {
        let h = ctx.ext.get_or_insert_with(ReplyHeaders::default);
        h.0.extend_from_slice(format!("Unsupported: {opt}\r\n").as_bytes());
    }
    ctx.services("sanity_check")?
        .reply(ctx, code, reason.as_bytes())
}

/// `sanity_reply()`: with `noreply` set, sends the reply the last failed
/// `sanity_check()` of this message prepared (500 "Server Sanity Failure" when there is
/// none). Always 1 (nothing is sent for replies, ACKs, or failures Kamailio does not
/// answer); -1 when sending fails.
pub fn sanity_reply(ctx: &mut MsgContext, cfg: &Config) -> FnResult {
    if !cfg.noreply || !checks::replyable(&ctx.msg) {
        return Ok(Verdict::TRUE);
    }
    let failure = match ctx.ext.remove::<PendingReply>() {
        Some(PendingReply(f)) => f,
        None => Failure {
            reply: Some((500, "Server Sanity Failure")),
            unsupported: None,
        },
    };
    if ctx.services.is_none() {
        return Ok(Verdict::TRUE);
    }
    Ok(match send(ctx, &failure) {
        Ok(()) => Verdict::TRUE,
        Err(_) => Verdict::FALSE,
    })
}

/// The configuration, or the first parameter with a negative value (masks and sizes).
fn load_config(p: &ferrosip_api::ModuleParams) -> Result<Config, String> {
    for name in [
        "default_checks",
        "uri_checks",
        "size_checks",
        "size_message",
        "size_method",
        "size_ruri",
        "size_from_uri",
        "size_to_uri",
        "size_contact_uri",
        "size_route_uri",
        "size_path_uri",
        "size_pai_uri",
        "size_header",
        "size_headers",
        "size_body",
    ] {
        let v = p.int(name);
        if v < 0 {
            return Err(format!("{name} must not be negative, not {v}"));
        }
    }
    Ok(Config {
        default_checks: p.int("default_checks"),
        uri_checks: p.int("uri_checks"),
        autodrop: p.int("autodrop") != 0,
        noreply: p.int("noreply") != 0,
        size_checks: p.int("size_checks"),
        size_message: p.int("size_message"),
        size_method: p.int("size_method"),
        size_ruri: p.int("size_ruri"),
        size_from_uri: p.int("size_from_uri"),
        size_to_uri: p.int("size_to_uri"),
        size_contact_uri: p.int("size_contact_uri"),
        size_route_uri: p.int("size_route_uri"),
        size_path_uri: p.int("size_path_uri"),
        size_pai_uri: p.int("size_pai_uri"),
        size_header: p.int("size_header"),
        size_headers: p.int("size_headers"),
        size_body: p.int("size_body"),
        proxy_require: checks::parse_list(&p.string("proxy_require")),
    })
}

/// The `sanity` module.
pub struct SanityModule;

impl Module for SanityModule {
    fn name(&self) -> &'static str {
        "sanity"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.example(include_str!("../example.cfg"));
        m.doc("Sanity checks of incoming messages (versions, schemes, CSeq, Content-Length, URIs, sizes, ...).");
        m.param(
            "default_checks",
            ParamType::Int,
            3047_i64,
            "Bit mask of the checks sanity_check() runs without arguments.",
        );
        m.param("uri_checks", ParamType::Int, 7_i64, "Bit mask of the URIs checked when URI checks are on (1 R-URI, 2 From, 4 To, 8 Contact).");
        m.param(
            "size_checks",
            ParamType::Int,
            0_i64,
            "Bit mask of size checks enabled against the size_* limits.",
        );
        m.param(
            "size_message",
            ParamType::Int,
            16384_i64,
            "Maximum message size in bytes for size checks.",
        );
        m.param(
            "size_method",
            ParamType::Int,
            32_i64,
            "Maximum method length for size checks.",
        );
        m.param(
            "size_ruri",
            ParamType::Int,
            256_i64,
            "Maximum R-URI length for size checks.",
        );
        m.param(
            "size_from_uri",
            ParamType::Int,
            256_i64,
            "Maximum From URI length for size checks.",
        );
        m.param(
            "size_to_uri",
            ParamType::Int,
            256_i64,
            "Maximum To URI length for size checks.",
        );
        m.param(
            "size_contact_uri",
            ParamType::Int,
            256_i64,
            "Maximum Contact URI length for size checks.",
        );
        m.param(
            "size_route_uri",
            ParamType::Int,
            256_i64,
            "Maximum Route URI length for size checks.",
        );
        m.param(
            "size_path_uri",
            ParamType::Int,
            256_i64,
            "Maximum Path URI length for size checks.",
        );
        m.param(
            "size_pai_uri",
            ParamType::Int,
            256_i64,
            "Maximum P-Asserted-Identity URI length for size checks.",
        );
        m.param(
            "size_header",
            ParamType::Int,
            2048_i64,
            "Maximum length of one header for size checks.",
        );
        m.param(
            "size_headers",
            ParamType::Int,
            8192_i64,
            "Maximum length of all headers for size checks.",
        );
        m.param(
            "size_body",
            ParamType::Int,
            8192_i64,
            "Maximum body length for size checks.",
        );
        m.param(
            "proxy_require",
            ParamType::Str,
            "",
            "Comma-separated extensions this proxy supports when checking Proxy-Require.",
        );
        m.param("autodrop", ParamType::Int, 1_i64, "When 1, a failed check stops the script (return 0) after replying; when 0 it returns -1 instead.");
        m.param(
            "noreply",
            ParamType::Int,
            0_i64,
            "When 1, no error reply is sent on a failed check (use sanity_reply()).",
        );
        let cfg = m.state(load_config);
        m.function("sanity_check")
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Runs the default_checks; 1 when the message passed, 0 (stop) or -1 (autodrop off) when it failed.")
            .handler(cfg.with(|c: &Config, ctx: &mut MsgContext| {
                sanity_check(ctx, c.default_checks, c.uri_checks, c)
            }));
        m.function("sanity_check")
            .args(&["msg_checks"])
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Runs the checks of the bit mask (Kamailio's bits, plus 131072: the RFC 3261 grammar of every header, answered 400 as RFC 4475 expects); 1 passed, 0 or -1 failed.")
            .handler(cfg.with(|c: &Config, ctx: &mut MsgContext, msg_checks: i64| {
                sanity_check(ctx, msg_checks, c.uri_checks, c)
            }));
        m.function("sanity_check")
            .args(&["msg_checks", "uri_checks"])
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Runs the checks and URI checks of the bit masks; 1 passed, 0 or -1 failed.")
            .handler(cfg.with(
                |c: &Config, ctx: &mut MsgContext, msg_checks: i64, uri_checks: i64| {
                    sanity_check(ctx, msg_checks, uri_checks, c)
                },
            ));
        m.function("sanity_reply")
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends the error reply prepared by a failed sanity_check() when noreply is set; 1 on success, -1 on failure.")
            .handler(cfg.with(|c: &Config, ctx: &mut MsgContext| sanity_reply(ctx, c)));
    }
}

#[cfg(test)]
mod tests_checks;
