//! `rr`: Record-Route and Route handling (RFC 3261 loose routing, with strict-router compatibility).

use bytes::Bytes;
use ferrosip_api::pv::{Binder, FnPv, Pv, PvClass, PvError, PvIndex, PvParamRule};
use ferrosip_api::rr::Direction;
use ferrosip_api::{Module, ModuleBuilder, MsgContext, ParamType, RouteMask, Value};
use regex::bytes::Regex;
use std::sync::Arc;

pub mod ops;
pub mod record;
pub use ops::RrConfig;

#[cfg(test)]
mod tests;

/// The `rr` module.
pub struct RrModule;

impl Module for RrModule {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.example(include_str!("../example.cfg"));
        m.doc("Record-Route and Route handling (RFC 3261 loose routing, with strict-router compatibility).");
        m.param(
            "enable_full_lr",
            ParamType::Int,
            0_i64,
            "When 1, writes \";lr=on\" instead of \";lr\" for broken parsers.",
        );
        m.param(
            "append_fromtag",
            ParamType::Int,
            1_i64,
            "Adds the From tag as \";ftag=\" to Record-Route so is_direction() works.",
        );
        m.param("enable_double_rr", ParamType::Int, 1_i64, "0: one Record-Route; 1: two (both with r2=on, the outbound socket's on top) when the inbound and outbound sockets differ in transport, address or port; 2: always two, each with its transport.");
        m.param(
            "add_username",
            ParamType::Int,
            0_i64,
            "When 1, puts the R-URI user part into the Record-Route URI.",
        );
        m.param(
            "enable_socket_mismatch_warning",
            ParamType::Int,
            1_i64,
            "When 1, logs a warning when loose_route() finds that the entry after this proxy's r2=on Route entry is not this proxy.",
        );
        m.param(
            "custom_user_avp",
            ParamType::Str,
            Value::Null,
            "Accepted for compatibility but not applied yet: with add_username the R-URI user is always used.",
        );
        m.param(
            "force_send_socket",
            ParamType::Int,
            0_i64,
            "When 1, loose_route() asks to send from the local socket named by this proxy's Route entry also without double record-routing (with r2=on the second entry always names it).",
        );
        m.param(
            "ignore_sips",
            ParamType::Int,
            0_i64,
            "When 1, always uses \"sip:\" in Record-Route even if the R-URI is sips.",
        );
        m.param("sockname_mode", ParamType::Int, 0_i64, "When 1, Record-Route URIs carry the socket name as \";sn=\" and loose_route() asks to send from the socket of that name.");
        m.param(
            "loose_route_mode",
            ParamType::Int,
            0_i64,
            "Mode of loose_route() and loose_route_preloaded(): 1 skips the strict-router handling of an R-URI that is this proxy, as loose_route_mode(1).",
        );
        // Record-Route is written on each branch as it leaves (the outbound socket is
        // known only then).
        m.on_branch(record::branch_hook, record::keep_plan);
        let cfg = m.state(RrConfig::from_params);
        m.function("loose_route")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Routes by the Route header set (RFC 3261 16.4/16.12, strict routers included): removes this proxy's top Route entry (two with r2=on) and sets $du from the next loose-router entry (or the R-URI for a strict router); 1 when routed by Route headers, -1 when there is no Route header, -3 when an initial request had only this proxy's Route entries (removed; route by the R-URI).")
            .handler(cfg.with(|cfg: &RrConfig, ctx: &mut MsgContext| {
                ops::loose_route(ctx, cfg, cfg.loose_route_mode)
            }));
        m.function("loose_route_preloaded")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Runs loose_route(); 1 when the request is initial (no To-tag) and its Route entries were only this proxy's (loose_route() gives -3), -1 otherwise.")
            .handler(cfg.with(|cfg: &RrConfig, ctx: &mut MsgContext| ops::loose_route_preloaded(ctx, cfg)));
        m.function("loose_route_mode")
            .args(&["vmode"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("loose_route() with a mode: 1 skips the strict-router handling of an R-URI that is this proxy (for application servers using the proxy address as Contact), 0 is loose_route(); same return codes.")
            .handler(cfg.with(|cfg: &RrConfig, ctx: &mut MsgContext, mode: i64| ops::loose_route(ctx, cfg, mode)));
        m.function("record_route")
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds a Record-Route header (on top of any others) with the address of the inbound socket, written when the request is forwarded; two headers with r2=on when double record-routing applies. 1 on success, -1 on failure (also when the request is already record-routed).")
            .handler(cfg.with(|cfg: &RrConfig, ctx: &mut MsgContext| ops::record_route(ctx, cfg, None)));
        m.function("record_route")
            .args(&["sparams"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Like record_route() with extra URI parameters (\";name=value\", may hold pseudo-variables) in the Record-Route URI; 1 on success, -1 on failure.")
            .handler(cfg.with(|cfg: &RrConfig, ctx: &mut MsgContext, p: Bytes| ops::record_route(ctx, cfg, Some(&p))));
        m.function("record_route_preset")
            .args(&["address"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds a Record-Route whose URI is sip:address (\"host[:port][;params]\", no scheme) with ftag and lr added; 1 on success, -1 on failure.")
            .handler(cfg.with(|cfg: &RrConfig, ctx: &mut MsgContext, a: Bytes| ops::record_route_preset(ctx, cfg, &a, None)));
        m.function("record_route_preset")
            .args(&["address", "second_address"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds two Record-Route headers: address for the outbound interface, second_address for the inbound one (add \";r2=on\" to both); needs enable_double_rr; 1 on success, -1 on failure.")
            .handler(cfg.with(|cfg: &RrConfig, ctx: &mut MsgContext, a: Bytes, b: Bytes| {
                ops::record_route_preset(ctx, cfg, &a, Some(&b))
            }));
        m.function("record_route_advertised_address")
            .args(&["address"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds a Record-Route with the given address (\"host[:port]\") instead of the socket's; two headers with the sockets' transports when double record-routing is on and the transport changes. 1 on success, -1 on failure.")
            .handler(cfg.with(|cfg: &RrConfig, ctx: &mut MsgContext, a: Bytes| {
                ops::record_route_advertised_address(ctx, cfg, &a)
            }));
        m.function("add_rr_param")
            .args(&["param"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Appends a URI parameter (\";name=value\") to the Record-Route this proxy adds, before or after record_route(); 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, p: Bytes| ops::add_rr_param(ctx, &p));
        m.function("check_route_param")
            .args(&["re"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Matches the URI parameters of this proxy's Route entry (\";lr;ftag=...;nat=yes\", as loose_route() found it) against a regex; 1 on match, -1 otherwise.")
            .handler(|ctx: &mut MsgContext, re: Arc<Regex>| ops::check_route_param(ctx, &re));
        m.function("is_direction")
            .args(&["dir"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Checks the direction of an in-dialog request after loose_route(): \"downstream\" (caller to callee) or \"upstream\", from the ftag of this proxy's Route entry versus the From tag; 1 on match, -1 otherwise.")
            .handler(cfg.with(|cfg: &RrConfig, ctx: &mut MsgContext, dir: Bytes| ops::is_direction(ctx, cfg, &dir)));
        m.function("remove_record_route")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Cancels the Record-Route this proxy was going to add (and its add_rr_param() parameters); always 1.")
            .handler(ops::remove_record_route);
        m.function("rr_next_hop_route")
            .routes(RouteMask::ANY)
            .doc("True (1) when loose_route() took the next hop from a Route header after this proxy's own; -1 otherwise.")
            .handler(ops::rr_next_hop_route);
        m.pv_fixed(
            "route_uri",
            "URI of the top Route header (after loose_route(): the next hop's); null when none.",
            FnPv::<_> {
                name: "route_uri",
                get: |ctx: &MsgContext| {
                    ops::top_route_uri(&ctx.msg).map_or(Value::Null, Value::Str)
                },
                set: None,
            },
        );
        m.pv_fixed(
            "fti",
            "From tag of the request that created the dialog (the To tag of an upstream in-dialog request).",
            FnPv::<_> {
                name: "fti",
                get: |ctx: &MsgContext| initial_tag(ctx, true),
                set: None,
            },
        );
        m.pv_fixed(
            "tti",
            "To tag of the dialog as the callee set it (the From tag of an upstream in-dialog request).",
            FnPv::<_> {
                name: "tti",
                get: |ctx: &MsgContext| initial_tag(ctx, false),
                set: None,
            },
        );
        m.pv("rdir", RdirClass);
    }
}

/// `$fti` (`from_side`) or `$tti`: the tags as the dialog-creating request had them.
fn initial_tag(ctx: &MsgContext, from_side: bool) -> Value {
    let upstream = ops::direction(ctx) == Direction::Upstream;
    let tag = if from_side != upstream {
        ctx.msg.from_tag()
    } else {
        ctx.msg.to_tag()
    };
    tag.filter(|t| !t.is_empty())
        .map_or(Value::Null, |t| Value::Str(Bytes::copy_from_slice(t)))
}

/// `$rdir(id)` (1 downstream, 2 upstream) and `$rdir(name)`.
struct RdirClass;

struct RdirPv {
    name: bool,
}

impl Pv for RdirPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        let d = ops::direction(ctx);
        Ok(match (self.name, d) {
            (true, Direction::Downstream) => Value::from_static("downstream"),
            (true, Direction::Upstream) => Value::from_static("upstream"),
            (false, Direction::Downstream) => Value::Int(1),
            (false, Direction::Upstream) => Value::Int(2),
        })
    }
}

impl PvClass for RdirClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, _binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        match param.map(str::trim) {
            Some("id") => Ok(Arc::new(RdirPv { name: false })),
            Some("name") => Ok(Arc::new(RdirPv { name: true })),
            other => Err(format!(
                "unknown $rdir key \"{}\": use id or name",
                other.unwrap_or("")
            )),
        }
    }

    fn doc(&self) -> &str {
        "Direction of an in-dialog request from the ftag of this proxy's Route: $rdir(id) is 1 downstream, 2 upstream; $rdir(name) \"downstream\" or \"upstream\"."
    }
}
