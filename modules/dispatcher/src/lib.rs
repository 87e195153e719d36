//! `dispatcher`: load balancing and failover over destination sets, with OPTIONS
//! probing of destinations (Kamailio's module of the same name).
//!
//! - [`list`]: the list file and attributes; [`db`]: the `dispatcher` table;
//! - [`sets`]: destinations in memory with their live state;
//! - [`algorithm`]: one small type per selection algorithm; [`select`]: the shared
//!   selection walk and the failover list kept in AVPs (so it reaches `failure_route`);
//! - [`health`]: the keepalive check (a trait; OPTIONS) and the state machine;
//! - [`state`]: the running module (reload, prober, call-load table, events);
//! - [`funcs`]: the script functions.

pub mod algorithm;
pub mod db;
pub mod funcs;
pub mod health;
pub mod list;
pub mod select;
pub mod sets;
pub mod state;

use bytes::Bytes;
use ferrosip_api::{
    apply_result, FnError, FnResult, Module, ModuleBuilder, MsgContext, ParamType, RouteMask,
    RpcValue, StateSlot, Value, Verdict,
};

use funcs::{AlgArg, Mode};
use state::{Config, Dispatcher};

const COLUMN_DOC: &str =
    "Column of the dispatcher table (setid_col, destination_col, flags_col, priority_col, attrs_col: set id, URI, flags, priority, attributes).";

/// The module state, built from the parameters when the script is loaded and shared by
/// every handler; the runtime and the server's services reach it through the start and
/// ready hooks.
pub type Shared = StateSlot<Dispatcher>;

/// The `dispatcher` module.
pub struct DispatcherModule;

const SELECT_ROUTES: RouteMask = RouteMask::REQUEST.union(RouteMask::FAILURE);
const ANY_BUT_REPLY: RouteMask = RouteMask::REQUEST
    .union(RouteMask::FAILURE)
    .union(RouteMask::BRANCH)
    .union(RouteMask::EVENT);

impl Module for DispatcherModule {
    fn name(&self) -> &'static str {
        "dispatcher"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Load balancing and failover over destination sets, with OPTIONS probing of destinations.\n\n\
               Sets come from `list_file` (`setid uri [flags [priority [attrs]]]`, `#` comments) or the `dispatcher` table \
               (`db_url`). Within a set, destinations are ordered by priority, highest first (equal priorities: the later line first), \
               as Kamailio orders them. Algorithms: 0 Call-ID hash, 1 From-URI hash, 2 To-URI hash, 3 R-URI hash, 4 round-robin, \
               5 auth-username hash (round-robin without credentials), 6 random, 7 hash of `hash_pvar`, 8 priority order, \
               9 `weight`, 10 call load (`duid`, `maxload`, `ds_load_update`/`ds_load_unset`), 11 `rweight`, 12 parallel to all. \
               13 (latency), 14, 15 and 64 are not built: a constant one is a load-time error, a variable one an error return.\n\n\
               With `flags` bit 2 the other destinations are kept in AVPs (`xavp_dst` names them) that travel with the \
               transaction, so `ds_next_dst()` in `failure_route` tries the next one. With `ds_ping_interval` the server probes \
               destinations with OPTIONS (`ds_probing_mode`); `ds_probing_threshold` failures make one inactive (skipped by \
               selection), `ds_inactive_threshold` answers bring it back; `event_route[dispatcher:dst-down]` and `[dispatcher:dst-up]` \
               run on each change with $ru/$du set to the destination.");
        m.example(include_str!("../example.cfg"));
        m.param(
            "list_file",
            ParamType::Str,
            "/etc/kamailio/dispatcher.list",
            "File with the destination sets, used when db_url is not set.",
        );
        m.param(
            "db_url",
            ParamType::Str,
            Value::Null,
            "Database holding the destination sets (unset: use list_file).",
        );
        m.param(
            "table_name",
            ParamType::Str,
            "dispatcher",
            "Database table with the destinations.",
        );
        for (name, default, what) in [
            ("setid_col", "setid", "set id"),
            ("destination_col", "destination", "destination URI"),
            ("flags_col", "flags", "flags"),
            ("priority_col", "priority", "priority"),
            ("attrs_col", "attrs", "attributes"),
        ] {
            let _ = what;
            m.param(name, ParamType::Str, default, COLUMN_DOC);
        }
        m.param(
            "dst_avp",
            ParamType::Str,
            Value::Null,
            "AVP ($avp(name)) holding the failover URIs, current first (older Kamailio name; default: AVP \"<xavp_dst>.uri\").",
        );
        m.param(
            "grp_avp",
            ParamType::Str,
            Value::Null,
            "AVP holding the set id of each failover destination (default: \"<xavp_dst>.grp\").",
        );
        m.param(
            "attrs_avp",
            ParamType::Str,
            Value::Null,
            "AVP holding the attributes of each failover destination (default: \"<xavp_dst>.attrs\").",
        );
        m.param(
            "cnt_avp",
            ParamType::Str,
            Value::Null,
            "AVP holding how many destinations were selected (default: \"<xavp_ctx>.cnt\").",
        );
        m.param(
            "force_dst",
            ParamType::Int,
            1_i64,
            "When 1, ds_select_dst() overwrites an already set destination URI.",
        );
        m.param("flags", ParamType::Int, 0_i64, "Bit mask: 1 URI hashes use the user part only, 2 failover (the other destinations are kept for ds_next_dst()).");
        m.param(
            "use_default",
            ParamType::Int,
            0_i64,
            "When 1, the last destination of a set is a default used only when all others fail.",
        );
        m.param(
            "xavp_dst",
            ParamType::Str,
            "_dsdst_",
            "Base name of the failover list: AVPs \"<name>.uri\", \".grp\", \".attrs\", \".dstid\" hold one value per destination, the current one first.",
        );
        m.param(
            "xavp_dst_mode",
            ParamType::Int,
            0_i64,
            "Bit mask: 1 leaves the attributes out of the failover list.",
        );
        m.param(
            "xavp_ctx",
            ParamType::Str,
            "_dsctx_",
            "Base name of the selection context: AVP \"<name>.cnt\" holds the number of destinations selected.",
        );
        m.param(
            "xavp_ctx_mode",
            ParamType::Int,
            0_i64,
            "Bit mask of fields left out of xavp_ctx.",
        );
        m.param(
            "hash_pvar",
            ParamType::Str,
            Value::Null,
            "Format hashed by algorithm 7 (e.g. \"$fU@$ci\").",
        );
        m.param(
            "setid_pvname",
            ParamType::Str,
            Value::Null,
            "AVP ($avp(name)) receiving the set id matched by ds_is_from_list().",
        );
        m.param(
            "attrs_pvname",
            ParamType::Str,
            Value::Null,
            "AVP ($avp(name)) receiving the attributes of the destination matched by ds_is_from_list().",
        );
        m.param(
            "ds_probing_threshold",
            ParamType::Int,
            1_i64,
            "Failed probes before a destination is marked inactive.",
        );
        m.param(
            "ds_inactive_threshold",
            ParamType::Int,
            1_i64,
            "Successful probes before an inactive destination is marked active again.",
        );
        m.param(
            "ds_ping_method",
            ParamType::Str,
            "OPTIONS",
            "Method of the probing requests.",
        );
        m.param(
            "ds_ping_from",
            ParamType::Str,
            "sip:dispatcher@localhost",
            "From URI of the probing requests.",
        );
        m.param(
            "event_callback",
            ParamType::Str,
            Value::Null,
            "With `cfgengine \"lua\"` (app_lua): the Lua function run for the dst-down/dst-up events, given the event name (`dispatcher:dst-down`); native configs use event_route[dispatcher:...].",
        );
        m.param(
            "ds_ping_interval",
            ParamType::Int,
            0_i64,
            "Seconds between probes (0: probing off).",
        );
        m.param(
            "ds_ping_fr_timer",
            ParamType::Int,
            0_i64,
            "Final-response timeout in ms for probes (0: 30 s, tm's default fr_timer).",
        );
        m.param(
            "ds_ping_latency_stats",
            ParamType::Int,
            0_i64,
            "When 1, keeps latency statistics from probe replies (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_retain_latency_stats",
            ParamType::Int,
            0_i64,
            "When 1, latency statistics survive a reload (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_latency_estimator_alpha",
            ParamType::Int,
            100_i64,
            "Weight (per mille) of a new sample in the latency moving average (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_ping_reply_codes",
            ParamType::Str,
            Value::Null,
            "Reply codes that count as a successful probe besides 200 (\"code=404;class=3\").",
        );
        m.param("ds_probing_mode", ParamType::Int, 0_i64, "Which destinations are probed: 0 only those flagged for probing, 1 all, 2 only inactive, 3 only those flagged, active or not.");
        m.param(
            "ds_hash_size",
            ParamType::Int,
            0_i64,
            "Power of two of the call-load table size in Kamailio; Ferrosip's table grows as needed, so algorithm 10 works whatever the value.",
        );
        m.param(
            "ds_hash_expire",
            ParamType::Int,
            7200_i64,
            "Seconds an established call is kept in the call-load table.",
        );
        m.param(
            "ds_hash_initexpire",
            ParamType::Int,
            7200_i64,
            "Seconds an unconfirmed call is kept in the call-load table.",
        );
        m.param(
            "ds_hash_check_interval",
            ParamType::Int,
            30_i64,
            "Seconds between expiry checks of the call-load table.",
        );
        m.param(
            "outbound_proxy",
            ParamType::Str,
            Value::Null,
            "Outbound proxy for probing requests.",
        );
        m.param(
            "ds_default_socket",
            ParamType::Str,
            Value::Null,
            "Local socket used for probing and for destinations without one (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_default_sockname",
            ParamType::Str,
            Value::Null,
            "Local socket name used like ds_default_socket (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_ping_socket",
            ParamType::Str,
            Value::Null,
            "Local socket used for probing requests (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_timer_mode",
            ParamType::Int,
            0_i64,
            "Which timer runs the probing: 0 main timer, 1 secondary timer (accepted for compatibility; no effect yet).",
        );
        m.param(
            "event_callback",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of the dispatcher event routes (accepted for compatibility; no effect yet).",
        );
        m.param(
            "event_callback_mode",
            ParamType::Int,
            0_i64,
            "Bit mask selecting when event_callback runs (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_attrs_none",
            ParamType::Int,
            0_i64,
            "When 1, destinations without attributes get \"none=yes\" (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_db_extra_attrs",
            ParamType::Str,
            Value::Null,
            "Extra database columns added to the attributes (\"name=column;...\") (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_load_mode",
            ParamType::Int,
            0_i64,
            "When 1, a reload keeps the state of destinations that are still present.",
        );
        m.param(
            "reload_delta",
            ParamType::Int,
            0_i64,
            "Minimum seconds between two reloads (0: no limit) (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_dns_mode",
            ParamType::Int,
            1_i64,
            "When destination hostnames are resolved: 1 at load, 2 always, 4 by timer, 8 none (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_dns_interval",
            ParamType::Int,
            600_i64,
            "Seconds between DNS re-resolutions in timer mode (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_dns_ttl",
            ParamType::Int,
            0_i64,
            "Override of DNS TTL in seconds (0: use the record's TTL) (accepted for compatibility; no effect yet).",
        );
        m.param(
            "ds_dns_match_all",
            ParamType::Int,
            0_i64,
            "When 1, ds_is_from_list() matches any address a destination hostname resolves to (accepted for compatibility; no effect yet).",
        );
        let avps = m.registry().avp_names();
        let shared: Shared =
            m.state(move |params| Ok(Dispatcher::new(Config::from_params(params, &avps)?)));
        {
            let shared = shared.clone();
            m.on_start(move |env| {
                let d = shared.get();
                let runtime = env.runtime.clone();
                async move {
                    let d = d.map_err(|e| e.message)?;
                    d.set_runtime(runtime);
                    d.reload().await.map(|_| ())
                }
            });
        }
        {
            let shared = shared.clone();
            m.on_ready(move |services| {
                if let Ok(d) = shared.get() {
                    d.start_background(services.clone());
                }
            });
        }
        {
            let shared = shared.clone();
            m.on_stop(move |_| {
                if let Ok(d) = shared.get() {
                    d.stop_background();
                }
            });
        }
        declare_functions(m, &shared);
        rpc::declare(m, &shared);
    }
}

fn select_fn(
    m: &mut ModuleBuilder<'_>,
    shared: &Shared,
    name: &'static str,
    mode: Mode,
    routes: RouteMask,
    doc2: &'static str,
    doc3: &'static str,
) {
    let s = shared.clone();
    m.function(name)
        .args(&["set", "alg"])
        .routes(routes)
        .doc(doc2)
        .handler(move |ctx: &mut MsgContext, set: i64, alg: AlgArg| {
            s.get()?.select(ctx, set, &alg, 0, mode)
        });
    let s = shared.clone();
    m.function(name)
        .args(&["set", "alg", "limit"])
        .routes(routes)
        .doc(doc3)
        .handler(
            move |ctx: &mut MsgContext, set: i64, alg: AlgArg, limit: i64| {
                s.get()?.select(ctx, set, &alg, limit, mode)
            },
        );
}

fn declare_functions(m: &mut ModuleBuilder<'_>, shared: &Shared) {
    select_fn(
        m,
        shared,
        "ds_select_dst",
        Mode::DstUri,
        SELECT_ROUTES,
        "Selects a destination of the set with the algorithm and sets $du to it (with flags bit 2, the others are kept for ds_next_dst()); 1 on success, -1 when none is usable, the set is unknown, or $du is set and force_dst is 0.",
        "As ds_select_dst(set, alg), keeping at most limit destinations (the selected one and the default included); 1 on success, -1 otherwise.",
    );
    select_fn(
        m,
        shared,
        "ds_select_domain",
        Mode::RequestUri,
        SELECT_ROUTES,
        "Selects a destination and writes its host and port into the R-URI; 1 on success, -1 when none is usable.",
        "As ds_select_domain(set, alg) keeping at most limit destinations; 1 on success, -1 otherwise.",
    );
    select_fn(
        m,
        shared,
        "ds_select",
        Mode::None,
        RouteMask::ANY,
        "Selects destinations into the failover AVPs without touching the R-URI or $du (use ds_set_dst()/ds_next_dst()); 1 on success, -1 when none is usable.",
        "As ds_select(set, alg) keeping at most limit destinations; 1 on success, -1 otherwise.",
    );
    for (args, with_limit) in [
        (&["rules", "mode"][..], false),
        (&["rules", "mode", "limit"][..], true),
    ] {
        let s = shared.clone();
        let b = m
            .function("ds_select_routes")
            .args(args)
            .routes(RouteMask::ANY);
        // hash_pvar is not resolved for rules (the algorithm is only known per call):
        // algorithm 7 in a rule hashes an empty value.
        if with_limit {
            b.doc("As ds_select_routes(rules, mode) with at most limit destinations in all; 1 on success, -1 otherwise.")
                .handler(move |ctx: &mut MsgContext, rules: Bytes, mode: Bytes, limit: i64| {
                    s.get()?.select_routes(ctx, &rules, &mode, limit, None)
                });
        } else {
            b.doc("Selects over several sets at once: rules \"set=alg;set=alg\" (variables allowed), mode d/0 sets $du, r/1 the R-URI, x/2 only the failover AVPs; the destinations of all rules form one failover list. 1 on success, -1 when nothing was selected.")
                .handler(move |ctx: &mut MsgContext, rules: Bytes, mode: Bytes| {
                    s.get()?.select_routes(ctx, &rules, &mode, 0, None)
                });
        }
    }
    let nexts: [(&'static str, Mode, bool, &'static str); 4] = [
        ("ds_next_dst", Mode::DstUri, true, "Drops the destination in use and sets $du to the next usable one of the failover list (flags bit 2); 1 on success, -1 when none is left."),
        ("ds_next_domain", Mode::RequestUri, true, "As ds_next_dst() writing the R-URI's host and port; 1 on success, -1 when none is left."),
        ("ds_set_dst", Mode::DstUri, false, "Sets $du to the destination in use of the failover list; 1 on success, -1 when there is none."),
        ("ds_set_domain", Mode::RequestUri, false, "Writes the host and port of the destination in use into the R-URI; 1 on success, -1 when there is none."),
    ];
    for (name, mode, next, doc) in nexts {
        let s = shared.clone();
        m.function(name)
            .routes(ANY_BUT_REPLY)
            .doc(doc)
            .handler(move |ctx: &mut MsgContext| {
                let d = s.get()?;
                if next {
                    d.next(ctx, mode)
                } else {
                    d.set_current(ctx, mode)
                }
            });
    }
    let s = shared.clone();
    m.function("ds_mark_dst")
        .routes(RouteMask::ANY)
        .doc("Marks the destination in use inactive (as \"i\"); 1 on success, -1 when there is none.")
        .handler(move |ctx: &mut MsgContext| s.get()?.mark_current(ctx, b"i"));
    let s = shared.clone();
    m.function("ds_mark_dst")
        .args(&["state"])
        .routes(RouteMask::ANY)
        .doc("Sets the state of the destination in use: \"a\" active (failure count reset), \"i\" inactive, \"t\" trying (a failure; inactive at ds_probing_threshold), \"d\" disabled; \"p\" after a, i or t also probes it. 1 on success, -1 when there is none.")
        .handler(move |ctx: &mut MsgContext, state: Bytes| s.get()?.mark_current(ctx, &state));
    let s = shared.clone();
    m.function("ds_mark_addr")
        .args(&["state", "setid", "uri"])
        .routes(RouteMask::ANY)
        .doc("Sets the state (as ds_mark_dst) of the destination uri of set setid; 1 on success, -1 when not found.")
        .handler(move |_ctx: &mut MsgContext, state: Bytes, setid: i64, uri: Bytes| {
            let setid = i32::try_from(setid).map_err(|_| FnError::new("bad set id"))?;
            Ok(Verdict::from(s.get()?.mark_addr(&state, setid, &uri)?))
        });
    let from_doc: [(&[&'static str], &'static str); 4] = [
        (&[], "True (1) when the source IP and port are those of a destination of any set (protocol ignored); -1 otherwise. On a match setid_pvname/attrs_pvname get the set id and attributes."),
        (&["groupid"], "As ds_is_from_list() within one set (-1: any set); 1 on a match, -1 otherwise."),
        (&["groupid", "mode"], "As ds_is_from_list(groupid) with mode bits: 1 ignore the port, 2 ignore the protocol, 4 only active destinations (0: IP, port and protocol must match); 1 on a match, -1 otherwise."),
        (&["groupid", "mode", "uri"], "As ds_is_from_list(groupid, mode) matching the address of a SIP URI instead of the source; 1 on a match, -1 otherwise."),
    ];
    for (args, doc) in from_doc {
        let s = shared.clone();
        let b = m
            .function("ds_is_from_list")
            .args(args)
            .routes(RouteMask::ANY)
            .doc(doc);
        match args.len() {
            0 => b.handler(move |ctx: &mut MsgContext| s.get()?.is_from_list(ctx, -1, 2, None)),
            1 => b.handler(move |ctx: &mut MsgContext, g: i64| {
                s.get()?.is_from_list(ctx, g, 2, None)
            }),
            2 => b.handler(move |ctx: &mut MsgContext, g: i64, mode: i64| {
                s.get()?.is_from_list(ctx, g, mode, None)
            }),
            _ => b.handler(move |ctx: &mut MsgContext, g: i64, mode: i64, uri: Bytes| {
                s.get()?.is_from_list(ctx, g, mode, Some(&uri))
            }),
        }
    }
    for (name, doc) in [
        (
            "ds_list_exists",
            "True (1) when the destination set exists; -1 otherwise.",
        ),
        (
            "ds_list_exist",
            "Alias of ds_list_exists(); 1 when the set exists, -1 otherwise.",
        ),
    ] {
        let s = shared.clone();
        m.function(name)
            .args(&["groupid"])
            .routes(RouteMask::ANY)
            .doc(doc)
            .handler(move |_ctx: &mut MsgContext, g: i64| {
                let sets = s.get()?.sets();
                Ok(Verdict::from(
                    i32::try_from(g).is_ok_and(|g| sets.get(g).is_some()),
                ))
            });
    }
    let s = shared.clone();
    m.function("ds_is_active")
        .args(&["groupid"])
        .routes(RouteMask::ANY)
        .doc("True (1) when the set has a usable (active or trying) destination; -1 otherwise.")
        .handler(move |_ctx: &mut MsgContext, g: i64| s.get()?.is_active(g, None));
    let s = shared.clone();
    m.function("ds_is_active")
        .args(&["groupid", "uri"])
        .routes(RouteMask::ANY)
        .doc("True (1) when destination uri of the set is usable; -1 otherwise.")
        .handler(move |_ctx: &mut MsgContext, g: i64, uri: Bytes| {
            s.get()?.is_active(g, Some(&uri))
        });
    let s = shared.clone();
    m.function("ds_load_update")
        .routes(RouteMask::ANY)
        .doc("Call load (algorithm 10): a BYE or CANCEL removes the call's load, a 2xx reply to the INVITE confirms it (kept for ds_hash_expire instead of ds_hash_initexpire); 1 when the call was known, -1 otherwise.")
        .handler(move |ctx: &mut MsgContext| s.get()?.load_update(ctx));
    let s = shared.clone();
    m.function("ds_load_unset")
        .routes(RouteMask::ANY)
        .doc("Call load (algorithm 10): removes the call's load from the destination it went to (a failed INVITE); 1 when the call was known, -1 otherwise.")
        .handler(move |ctx: &mut MsgContext| {
            let d = s.get()?;
            let known = ctx.msg.call_id().is_some_and(|c| d.load_remove(c));
            Ok(Verdict::from(known))
        });
    let s = shared.clone();
    m.function("ds_reload")
        .routes(RouteMask::ANY)
        .doc("Reloads the sets from the list file or the database; calls in flight keep their failover lists. 1 on success, -1 on failure (the old sets stay).")
        .async_handler(move |_ctx: &mut MsgContext| {
            let d = s.get();
            async move {
                let result = match d {
                    Ok(d) => d.reload().await,
                    Err(e) => Err(e.message),
                };
                apply_result(move |_ctx| -> FnResult {
                    match result {
                        Ok(_) => Ok(Verdict::TRUE),
                        Err(e) => {
                            tracing::error!("ds_reload: {e}");
                            Ok(Verdict::FALSE)
                        }
                    }
                })
            }
        });
    m.function("ds_oc_set_attrs")
        .args(&["setid", "uri", "rval", "tval", "sval"])
        .routes(RouteMask::ANY)
        .doc("Sets overload-control attributes (rate, validity, sequence) of a destination (not built yet: algorithm 64 is not supported).")
        .declared::<(i64, Bytes, i64, i64, i64)>();
    m.function("ds_dsg_fetch")
        .args(&["setid"])
        .routes(RouteMask::ANY)
        .doc("Fills the $dsg() variable with the state of a set (not built yet).")
        .declared::<(i64,)>();
    m.function("ds_dsg_fetch_uri")
        .args(&["setid", "uri"])
        .routes(RouteMask::ANY)
        .doc("Fills $dsg() with the state of one destination of a set (not built yet).")
        .declared::<(i64, Bytes)>();
}

mod rpc {
    use super::*;

    fn text(v: &Value) -> String {
        v.to_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `dispatcher.list`'s answer, in Kamailio's shape.
    pub fn list(d: &Dispatcher) -> RpcValue {
        let sets = d.sets();
        let records = sets
            .sets
            .values()
            .map(|set| {
                let targets = set
                    .dests
                    .iter()
                    .map(|t| {
                        let a = &t.attrs;
                        RpcValue::Struct(vec![(
                            "DEST".into(),
                            RpcValue::Struct(vec![
                                (
                                    "URI".into(),
                                    RpcValue::Str(String::from_utf8_lossy(&t.uri).into_owned()),
                                ),
                                ("FLAGS".into(), RpcValue::Str(t.state_letters())),
                                ("PRIORITY".into(), RpcValue::Int(i64::from(t.priority))),
                                (
                                    "ATTRS".into(),
                                    RpcValue::Struct(vec![
                                        (
                                            "BODY".into(),
                                            RpcValue::Str(
                                                String::from_utf8_lossy(&t.attrs_raw).into_owned(),
                                            ),
                                        ),
                                        (
                                            "DUID".into(),
                                            RpcValue::Str(
                                                a.duid
                                                    .as_ref()
                                                    .map(|b| {
                                                        String::from_utf8_lossy(b).into_owned()
                                                    })
                                                    .unwrap_or_default(),
                                            ),
                                        ),
                                        ("MAXLOAD".into(), RpcValue::Int(i64::from(a.maxload))),
                                        ("WEIGHT".into(), RpcValue::Int(i64::from(a.weight))),
                                        ("RWEIGHT".into(), RpcValue::Int(i64::from(a.rweight))),
                                    ]),
                                ),
                                (
                                    "LOAD".into(),
                                    RpcValue::Int(i64::from(
                                        t.load.load(std::sync::atomic::Ordering::Relaxed),
                                    )),
                                ),
                            ]),
                        )])
                    })
                    .collect();
                RpcValue::Struct(vec![(
                    "SET".into(),
                    RpcValue::Struct(vec![
                        ("ID".into(), RpcValue::Int(i64::from(set.id))),
                        ("TARGETS".into(), RpcValue::Array(targets)),
                    ]),
                )])
            })
            .collect();
        RpcValue::Struct(vec![
            ("NRSETS".into(), RpcValue::Int(sets.sets.len() as i64)),
            ("RECORDS".into(), RpcValue::Array(records)),
        ])
    }

    /// `dispatcher.set_state state group address|all`.
    pub fn set_state(d: &Dispatcher, args: &[Value]) -> Result<RpcValue, String> {
        let [state, group, address] = args else {
            return Err("usage: dispatcher.set_state <state> <group> <address|all>".into());
        };
        let group = group
            .as_int()
            .and_then(|g| i32::try_from(g).ok())
            .ok_or("group is not a number")?;
        let address = text(address);
        let state = text(state);
        let sets = d.sets();
        let set = sets
            .get(group)
            .ok_or_else(|| format!("no destination set {group}"))?;
        let targets: Vec<_> = if address == "all" {
            set.dests.iter().collect()
        } else {
            set.find(address.as_bytes()).into_iter().collect()
        };
        if targets.is_empty() {
            return Err(format!("no destination {address} in set {group}"));
        }
        for t in targets {
            let uri = t.uri.clone();
            d.mark_addr(state.as_bytes(), group, &uri)
                .map_err(|e| e.message)?;
        }
        Ok(RpcValue::Null)
    }

    pub fn declare(m: &mut ModuleBuilder<'_>, shared: &Shared) {
        let s = shared.clone();
        m.rpc(
            "dispatcher.list",
            "Lists the sets with each destination's URI, state (FLAGS: A active, I inactive, T trying, D disabled; then P probed or X not), priority, attributes and active calls.",
            move |_args| Ok(list(&*s.get().map_err(|e| e.message)?)),
        );
        let s = shared.clone();
        m.rpc(
            "dispatcher.set_state",
            "Sets the state of a destination (or of \"all\" of a set): dispatcher.set_state <a|i|t|d[p]> <group> <address|all>.",
            move |args| set_state(&*s.get().map_err(|e| e.message)?, args),
        );
        let s = shared.clone();
        m.rpc_async(
            "dispatcher.reload",
            "Reloads the sets from the list file or the database; calls in flight keep their failover lists. Answers the number of destinations.",
            move |_args| {
                let d = s.get().map_err(|e| e.message);
                async move { d?.reload().await.map(|n| RpcValue::Int(n as i64)) }
            },
        );
    }
}

#[cfg(test)]
mod tests;
