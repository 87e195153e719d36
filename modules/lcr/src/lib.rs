//! `lcr`: least-cost routing (Kamailio's module of the same name): gateways, rules and
//! rule targets from the database, several instances, ordered by longest prefix, priority
//! and randomized weight; serial failover with `next_gw()`.
//!
//! - [`data`]: the in-memory tables and the matching; [`load`]: reading them from the
//!   database; [`gwuri`]: the per-message gateway list kept in AVPs;
//! - [`state`]: parameters, the current snapshot and reload; [`funcs`]: the functions;
//! - [`import`]: the carrier rate sheet import behind `ferrosip lcr import`.

pub mod data;
pub mod funcs;
pub mod gwuri;
pub mod import;
pub mod load;
pub mod state;

use bytes::Bytes;
use ferrosip_api::{Module, ModuleBuilder, MsgContext, ParamType, RouteMask, RpcValue, Value};
use funcs::Probe;
use state::{Config, State};

/// The `lcr` module.
pub struct LcrModule;

impl Module for LcrModule {
    fn name(&self) -> &'static str {
        "lcr"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Least-cost routing: picks gateways by R-URI prefix, From URI and priority/weight rules from the database.");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailioro:kamailioro@localhost/kamailio",
            "Database holding the lcr_gw, lcr_rule and lcr_rule_target tables (sqlite://, mysql://, postgres://, text://).",
        );
        m.param(
            "lcr_rule_table",
            ParamType::Str,
            "lcr_rule",
            "Table of routing rules.",
        );
        m.param(
            "lcr_rule_target_table",
            ParamType::Str,
            "lcr_rule_target",
            "Table linking rules to gateways.",
        );
        m.param(
            "lcr_gw_table",
            ParamType::Str,
            "lcr_gw",
            "Table of gateways.",
        );
        m.param(
            "lcr_id_column",
            ParamType::Str,
            "lcr_id",
            "Database column holding the LCR instance id.",
        );
        m.param(
            "id_column",
            ParamType::Str,
            "id",
            "Database column holding the row id.",
        );
        m.param(
            "prefix_column",
            ParamType::Str,
            "prefix",
            "Database column holding the R-URI user prefix of a rule.",
        );
        m.param(
            "from_uri_column",
            ParamType::Str,
            "from_uri",
            "Database column holding the From URI regex of a rule.",
        );
        m.param(
            "mt_tvalue_column",
            ParamType::Str,
            "mt_tvalue",
            "Database column holding the mtree value of a rule (read only with mt_pv_values, which needs the mtree module Ferrosip does not have: the column is ignored).",
        );
        m.param(
            "request_uri_column",
            ParamType::Str,
            "request_uri",
            "Database column holding the R-URI regex of a rule.",
        );
        m.param(
            "stopper_column",
            ParamType::Str,
            "stopper",
            "Database column holding the flag that stops matching of shorter prefixes.",
        );
        m.param(
            "enabled_column",
            ParamType::Str,
            "enabled",
            "Database column holding the enabled flag of a rule.",
        );
        m.param(
            "rule_id_column",
            ParamType::Str,
            "rule_id",
            "Database column holding the rule id in the target table.",
        );
        m.param(
            "priority_column",
            ParamType::Str,
            "priority",
            "Database column holding the priority of a rule target.",
        );
        m.param(
            "gw_id_column",
            ParamType::Str,
            "gw_id",
            "Database column holding the gateway id in the target table.",
        );
        m.param(
            "weight_column",
            ParamType::Str,
            "weight",
            "Database column holding the weight of a rule target.",
        );
        m.param(
            "gw_name_column",
            ParamType::Str,
            "gw_name",
            "Database column holding the gateway name.",
        );
        m.param(
            "ip_addr_column",
            ParamType::Str,
            "ip_addr",
            "Database column holding the gateway IP address.",
        );
        m.param(
            "port_column",
            ParamType::Str,
            "port",
            "Database column holding the gateway port.",
        );
        m.param(
            "uri_scheme_column",
            ParamType::Str,
            "uri_scheme",
            "Database column holding the gateway URI scheme.",
        );
        m.param(
            "transport_column",
            ParamType::Str,
            "transport",
            "Database column holding the gateway transport.",
        );
        m.param(
            "params_column",
            ParamType::Str,
            "params",
            "Database column holding the gateway URI parameters.",
        );
        m.param(
            "hostname_column",
            ParamType::Str,
            "hostname",
            "Database column holding the gateway hostname.",
        );
        m.param(
            "strip_column",
            ParamType::Str,
            "strip",
            "Database column holding the number of user digits to strip for a gateway.",
        );
        m.param(
            "tag_column",
            ParamType::Str,
            "tag",
            "Database column holding the gateway tag (prefix added to the user).",
        );
        m.param(
            "flags_column",
            ParamType::Str,
            "flags",
            "Database column holding the gateway flags.",
        );
        m.param(
            "defunct_column",
            ParamType::Str,
            "defunct",
            "Database column holding the time until which a gateway is defunct.",
        );
        m.param(
            "gw_uri_avp",
            ParamType::Str,
            Value::Null,
            "AVP where load_gws() stores the matched gateways for next_gw() (required). It is kept with the transaction, so failure_route sees the gateways left.",
        );
        m.param(
            "ruri_user_avp",
            ParamType::Str,
            Value::Null,
            "AVP where next_gw() keeps the original R-URI user for its later calls (required).",
        );
        m.param(
            "tag_avp",
            ParamType::Str,
            Value::Null,
            "AVP receiving the tag of the gateway next_gw() selected or from_gw() matched.",
        );
        m.param(
            "flags_avp",
            ParamType::Str,
            Value::Null,
            "AVP receiving the flags of the gateway next_gw() selected or from_gw() matched.",
        );
        m.param(
            "rule_id_avp",
            ParamType::Str,
            Value::Null,
            "AVP receiving the id of the lcr_rule that brought in the gateway next_gw() selected.",
        );
        m.param(
            "defunct_capability",
            ParamType::Int,
            0_i64,
            "When 1, defunct_gw() may take gateways out of use for a while (needs defunct_gw_avp and lcr_id_avp).",
        );
        m.param(
            "defunct_gw_avp",
            ParamType::Str,
            Value::Null,
            "AVP where next_gw() stores the index of the gateway it selected, for defunct_gw().",
        );
        m.param(
            "lcr_id_avp",
            ParamType::Str,
            Value::Null,
            "AVP where load_gws() stores the instance id, for defunct_gw().",
        );
        m.param(
            "mt_pv_values",
            ParamType::Str,
            Value::Null,
            "AVP the mtree module fills with the values matched for the caller; needs the mtree module, which Ferrosip does not have: setting it is a load error.",
        );
        m.param(
            "mtree",
            ParamType::Str,
            "lcr",
            "Name of the mtree used with mt_pv_values (unused without the mtree module).",
        );
        m.param(
            "lcr_count",
            ParamType::Int,
            1_i64,
            "Number of LCR instances: lcr_id 1..lcr_count are loaded (gateways with lcr_id 0 belong to all).",
        );
        m.param(
            "lcr_rule_hash_size",
            ParamType::Int,
            128_i64,
            "Accepted for compatibility: rules are kept in one sorted table per prefix length, which needs no sizing.",
        );
        m.param(
            "lcr_gw_count",
            ParamType::Int,
            128_i64,
            "Maximum number of gateways per instance, counting those of instance 0 (a load with more fails, as in Kamailio: the limit is lcr_gw_count - 1).",
        );
        m.param(
            "dont_strip_or_prefix_flag",
            ParamType::Int,
            -1_i64,
            "Message flag that makes next_gw() keep the R-URI user as it is (no strip, no prefix); -1: none.",
        );
        m.param(
            "priority_ordering",
            ParamType::Int,
            0_i64,
            "How load_gws() orders gateways: 0 by prefix length, then priority, then randomized weight; 1 by priority, then randomized weight.",
        );
        m.param(
            "fetch_rows",
            ParamType::Int,
            1024_i64,
            "Accepted for compatibility: each table is read with one query per instance.",
        );
        m.param(
            "ping_interval",
            ParamType::Int,
            0_i64,
            "Seconds between OPTIONS probes of inactivated gateways; only 0 (off) is supported, a positive value is a load error.",
        );
        m.param(
            "ping_inactivate_threshold",
            ParamType::Int,
            1_i64,
            "Failed probes before a gateway is inactivated (unused: probing is not implemented).",
        );
        m.param(
            "ping_valid_reply_codes",
            ParamType::Str,
            "",
            "Reply codes counted as a successful probe besides 2xx (unused: probing is not implemented).",
        );
        m.param(
            "ping_from",
            ParamType::Str,
            "sip:pinger@localhost",
            "From URI of the probing requests (unused: probing is not implemented).",
        );
        m.param(
            "ping_socket",
            ParamType::Str,
            "",
            "Local socket for probing requests (unused: probing is not implemented).",
        );
        m.example(include_str!("../example.cfg"));

        let state = {
            let names = m.registry().avp_names();
            m.state(move |p| Ok(State::new(Config::from_params(p, &names)?)))
        };
        {
            let st = state.clone();
            m.on_start(move |env| {
                let (st, runtime) = (st.get(), env.runtime.clone());
                async move {
                    let st = st.map_err(|e| e.message)?;
                    st.start(&runtime).await?;
                    st.reload_on_sighup(&runtime);
                    Ok(())
                }
            });
        }
        {
            let st = state.clone();
            m.rpc_async(
                "lcr.reload",
                "Reads the LCR tables again and swaps them in at once; calls in progress keep the gateways they loaded. On an error the loaded tables stay. SIGHUP does the same.",
                move |_| {
                    let st = st.get().map_err(|e| e.message);
                    async move { st?.reload_started().await.map(RpcValue::Str) }
                },
            );
        }
        {
            let st = state.clone();
            m.rpc(
                "lcr.dump_gws",
                "Lists the gateways of every instance with their defunct time.",
                move |_| Ok(rpc::dump_gws(&*st.get().map_err(|e| e.message)?)),
            );
        }
        {
            let st = state.clone();
            m.rpc(
                "lcr.dump_rules",
                "Lists the rules of every instance with their targets.",
                move |_| Ok(rpc::dump_rules(&*st.get().map_err(|e| e.message)?)),
            );
        }
        {
            let st = state.clone();
            m.rpc(
                "lcr.defunct_gw",
                "Parameters lcr_id gw_id period: the gateway is skipped for period seconds (the database is not changed).",
                move |args| rpc::defunct_gw(&*st.get().map_err(|e| e.message)?, args),
            );
        }

        const SELECT: RouteMask = RouteMask::REQUEST.union(RouteMask::FAILURE);
        const CHECK: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::ONREPLY);
        const LOAD_DOC: &str = "Finds the gateways of instance lcr_id whose rules match the R-URI user (longest prefix first), an empty caller URI and the R-URI; orders them by prefix length, priority (lower first) and randomized weight (or priority only, see priority_ordering), skips defunct ones, and stores them in gw_uri_avp for next_gw(). 1 when some were found, 2 when none, -1 on error (invalid lcr_id, R-URI without user).";
        m.function("load_gws")
            .args(&["lcr_id"])
            .routes(SELECT)
            .doc(LOAD_DOC)
            .handler(state.with(|st: &State, ctx: &mut MsgContext, lcr_id: i64| {
                funcs::load_gws(st, ctx, lcr_id, None, None)
            }));
        m.function("load_gws")
            .args(&["lcr_id", "uri_user"])
            .routes(SELECT)
            .doc("As load_gws(lcr_id), matching uri_user instead of the R-URI user; same return codes.")
            .handler(state.with(|st: &State, ctx: &mut MsgContext, lcr_id: i64, user: Bytes| {
                funcs::load_gws(st, ctx, lcr_id, Some(user), None)
            }));
        m.function("load_gws")
            .args(&["lcr_id", "uri_user", "caller_uri"])
            .routes(SELECT)
            .doc("As load_gws(lcr_id, uri_user), matching caller_uri against the rules' from_uri regexes (Kamailio matches an empty caller URI when it is not given); same return codes.")
            .handler(
                state.with(|st: &State, ctx: &mut MsgContext, lcr_id: i64, user: Bytes, caller: Bytes| {
                    funcs::load_gws(st, ctx, lcr_id, Some(user), Some(caller))
                },
            ));
        m.function("next_gw")
            .routes(SELECT)
            .doc("Takes the next gateway from gw_uri_avp and rewrites the R-URI: the user (from the R-URI the first time, saved in ruri_user_avp for the next calls) loses the gateway's strip count and gains its prefix (neither when dont_strip_or_prefix_flag is set), the host is the gateway's IP address or hostname with its port, transport and params; a gateway with both sets the hostname in the R-URI and the address in $du. Sets tag_avp, flags_avp and rule_id_avp when defined. 1 on success, -1 when no gateway is left or on error.")
            .handler(state.with(|st: &State, ctx: &mut MsgContext| funcs::next_gw(st, ctx)));
        m.function("defunct_gw")
            .args(&["period"])
            .routes(SELECT)
            .doc("Skips the gateway the last next_gw() chose for period seconds (in memory; the database is not changed). Needs defunct_capability. 1 on success, -1 on error.")
            .handler(state.with(|st: &State, ctx: &mut MsgContext, period: i64| {
                funcs::defunct_gw(st, ctx, period)
            }));
        m.function("inactivate_gw")
            .routes(SELECT)
            .doc("Marks the current gateway inactive until it answers OPTIONS probes (needs ping_interval, which is not implemented: use defunct_gw()); 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("from_gw")
            .args(&["lcr_id"])
            .routes(CHECK)
            .doc("1 when the message comes from a gateway of instance lcr_id: its source IP address and port are a gateway's address and port, and its transport is the gateway's (a gateway without transport matches only calls that give proto 0, as in Kamailio); the gateway's tag and flags go to tag_avp/flags_avp. -1 otherwise, and always when a gateway of the instance has no IP address.")
            .handler(state.with(|st: &State, ctx: &mut MsgContext, lcr_id: i64| {
                let probe = Probe::source(ctx);
                funcs::is_gw(st, ctx, lcr_id, probe, true)
            }));
        m.function("from_gw")
            .args(&["lcr_id", "ip_addr", "proto"])
            .routes(CHECK)
            .doc("As from_gw(lcr_id) for the given address (port not compared) and proto (0 any, 1 udp, 2 tcp, 3 tls, 4 sctp); 1 or -1.")
            .handler(
                state.with(|st: &State, ctx: &mut MsgContext, lcr_id: i64, ip: Bytes, proto: i64| {
                    funcs::is_gw(st, ctx, lcr_id, Probe::given(&ip, proto, 0), true)
                },
            ));
        m.function("from_gw")
            .args(&["lcr_id", "ip_addr", "proto", "src_port"])
            .routes(CHECK)
            .doc("As from_gw(lcr_id, ip_addr, proto) with the port compared too (0: not compared); 1 or -1.")
            .handler(
                state.with(|st: &State, ctx: &mut MsgContext, lcr_id: i64, ip: Bytes, proto: i64, port: i64| {
                    funcs::is_gw(st, ctx, lcr_id, Probe::given(&ip, proto, port), true)
                },
            ));
        m.function("from_any_gw")
            .routes(CHECK)
            .doc("As from_gw() over every instance (those with a gateway without IP address are left out): the instance id of the first match, -1 when none.")
            .handler(state.with(|st: &State, ctx: &mut MsgContext| {
                let probe = Probe::source(ctx);
                funcs::is_any_gw(st, ctx, probe, true)
            }));
        m.function("from_any_gw")
            .args(&["ip_addr", "proto"])
            .routes(CHECK)
            .doc("As from_any_gw() for the given address and proto (port not compared); the instance id or -1.")
            .handler(state.with(|st: &State, ctx: &mut MsgContext, ip: Bytes, proto: i64| {
                funcs::is_any_gw(st, ctx, Probe::given(&ip, proto, 0), true)
            }));
        m.function("from_any_gw")
            .args(&["ip_addr", "proto", "src_port"])
            .routes(CHECK)
            .doc("As from_any_gw(ip_addr, proto) with the port compared too (0: not compared); the instance id or -1.")
            .handler(
                state.with(|st: &State, ctx: &mut MsgContext, ip: Bytes, proto: i64, port: i64| {
                    funcs::is_any_gw(st, ctx, Probe::given(&ip, proto, port), true)
                },
            ));
        m.function("to_gw")
            .args(&["lcr_id"])
            .routes(CHECK)
            .doc("1 when the R-URI host is the IP address of a gateway of instance lcr_id (and its transport parameter, when there is one, the gateway's transport); -1 otherwise, when the host is not an IP address, or when a gateway of the instance has no IP address.")
            .handler(state.with(|st: &State, ctx: &mut MsgContext, lcr_id: i64| {
                let probe = Probe::request_uri(ctx);
                funcs::is_gw(st, ctx, lcr_id, probe, false)
            }));
        m.function("to_gw")
            .args(&["lcr_id", "ip_addr", "proto"])
            .routes(CHECK)
            .doc("As to_gw(lcr_id) for the given address and proto (0 any, 1 udp, 2 tcp, 3 tls, 4 sctp); 1 or -1.")
            .handler(
                state.with(|st: &State, ctx: &mut MsgContext, lcr_id: i64, ip: Bytes, proto: i64| {
                    funcs::is_gw(st, ctx, lcr_id, Probe::given(&ip, proto, 0), false)
                },
            ));
        m.function("to_any_gw")
            .routes(CHECK)
            .doc(
                "As to_gw() over every instance: the instance id of the first match, -1 when none.",
            )
            .handler(state.with(|st: &State, ctx: &mut MsgContext| {
                let probe = Probe::request_uri(ctx);
                funcs::is_any_gw(st, ctx, probe, false)
            }));
        m.function("to_any_gw")
            .args(&["ip_addr", "proto"])
            .routes(CHECK)
            .doc("As to_any_gw() for the given address and proto; the instance id or -1.")
            .handler(
                state.with(|st: &State, ctx: &mut MsgContext, ip: Bytes, proto: i64| {
                    funcs::is_any_gw(st, ctx, Probe::given(&ip, proto, 0), false)
                }),
            );
    }
}

/// The RPC commands' answers.
mod rpc {
    use super::*;
    use std::sync::atomic::Ordering;

    fn s(v: impl Into<String>) -> RpcValue {
        RpcValue::Str(v.into())
    }

    fn i(v: impl Into<i64>) -> RpcValue {
        RpcValue::Int(v.into())
    }

    pub fn dump_gws(st: &State) -> RpcValue {
        let snap = st.snapshot();
        let mut out = Vec::new();
        for (lcr_id, inst) in snap.instances.iter().enumerate().skip(1) {
            for (k, g) in inst.gateways.iter().enumerate() {
                out.push(RpcValue::Struct(vec![
                    ("lcr_id".into(), i(lcr_id as i64)),
                    ("gw_index".into(), i(k as i64 + 1)),
                    ("gw_id".into(), i(g.id)),
                    ("gw_name".into(), s(g.name.clone())),
                    ("uri".into(), s(g.uri())),
                    ("hostname".into(), s(g.hostname.clone())),
                    ("params".into(), s(g.params.clone())),
                    ("strip".into(), i(g.strip)),
                    ("prefix".into(), s(g.prefix.clone())),
                    ("tag".into(), s(g.tag.clone())),
                    ("flags".into(), i(g.flags)),
                    (
                        "defunct_until".into(),
                        i(g.defunct_until.load(Ordering::Relaxed) as i64),
                    ),
                ]));
            }
        }
        RpcValue::Array(out)
    }

    pub fn dump_rules(st: &State) -> RpcValue {
        let snap = st.snapshot();
        let mut out = Vec::new();
        for (lcr_id, inst) in snap.instances.iter().enumerate().skip(1) {
            for (prefix, r) in inst.rules_with_prefixes() {
                let (a, b) = r.targets;
                let targets = inst.targets[a as usize..b as usize]
                    .iter()
                    .map(|t| {
                        RpcValue::Struct(vec![
                            ("gw_id".into(), i(inst.gateways[t.gw as usize].id)),
                            ("priority".into(), i(t.priority)),
                            ("weight".into(), i(t.weight)),
                        ])
                    })
                    .collect();
                let re = |r: &Option<regex::bytes::Regex>| {
                    s(r.as_ref()
                        .map(|r| r.as_str().to_string())
                        .unwrap_or_default())
                };
                let filter = inst.filter(r);
                out.push(RpcValue::Struct(vec![
                    ("lcr_id".into(), i(lcr_id as i64)),
                    ("rule_id".into(), i(r.id)),
                    (
                        "prefix".into(),
                        s(String::from_utf8_lossy(&prefix).into_owned()),
                    ),
                    ("from_uri".into(), re(&filter.from_uri)),
                    ("request_uri".into(), re(&filter.request_uri)),
                    ("stopper".into(), i(i64::from(r.stopper))),
                    ("targets".into(), RpcValue::Array(targets)),
                ]));
            }
        }
        RpcValue::Array(out)
    }

    pub fn defunct_gw(st: &State, args: &[Value]) -> Result<RpcValue, String> {
        let num = |k: usize, name: &str| {
            args.get(k)
                .and_then(|v| {
                    v.as_int().or_else(|| {
                        v.to_bytes()
                            .and_then(|b| ferrosip_api::value::parse_int(&b))
                    })
                })
                .ok_or_else(|| format!("{name} (a number) is missing"))
        };
        let (lcr_id, gw_id, period) = (num(0, "lcr_id")?, num(1, "gw_id")?, num(2, "period")?);
        if period < 0 {
            return Err("period must not be negative".into());
        }
        let snap = st.snapshot();
        let inst = snap
            .instance(lcr_id)
            .ok_or_else(|| format!("no lcr instance {lcr_id}"))?;
        let gw = inst
            .gateways
            .iter()
            .find(|g| i64::from(g.id) == gw_id)
            .ok_or_else(|| format!("no gateway {gw_id} in instance {lcr_id}"))?;
        gw.defunct_until
            .store(load::now().saturating_add(period as u64), Ordering::Relaxed);
        Ok(RpcValue::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Gateway, Instance, RuleRow, Snapshot, Target};
    use ferrosip_api::{ModuleParams, NetInfo, Registry, RouteKind};
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    fn state(extra: &[(&str, Value)]) -> (Arc<State>, Config) {
        let mut reg = Registry::new();
        reg.register(&LcrModule);
        let mut p = reg.module("lcr").unwrap().default_params();
        p.push("gw_uri_avp", Value::from_static("$avp(gw)"));
        p.push("ruri_user_avp", Value::from_static("$avp(ru)"));
        p.push("tag_avp", Value::from_static("$avp(tag)"));
        p.push("rule_id_avp", Value::from_static("$avp(rule)"));
        p.push("defunct_capability", Value::Int(1));
        p.push("lcr_id_avp", Value::from_static("$avp(lcr)"));
        p.push("defunct_gw_avp", Value::from_static("$avp(dgw)"));
        for (k, v) in extra {
            p.push(k, v.clone());
        }
        let cfg = Config::from_params(&p, &reg.avp_names()).unwrap();
        (Arc::new(State::new(cfg.clone())), cfg)
    }

    fn gw(id: u32, ip: &str, strip: u32, prefix: &str, tag: &str) -> Gateway {
        Gateway {
            id,
            name: tag.into(),
            scheme: "sip:",
            ip: ip.parse().ok(),
            hostname: String::new(),
            port: 5060,
            params: String::new(),
            transport: None,
            strip,
            prefix: prefix.into(),
            tag: tag.into(),
            flags: 0,
            defunct_until: AtomicU64::new(0),
        }
    }

    fn install(st: &State) {
        let inst = Instance::build(
            vec![
                gw(10, "192.0.2.1", 0, "", "alpha"),
                Gateway {
                    transport: Some(crate::data::GwTransport::Udp),
                    ..gw(11, "192.0.2.2", 2, "0049", "beta")
                },
            ],
            vec![RuleRow {
                id: 5,
                prefix: "49".into(),
                from_uri: None,
                request_uri: None,
                stopper: false,
            }],
            vec![
                (
                    5,
                    Target {
                        gw: 1,
                        priority: 0,
                        weight: 1,
                    },
                ),
                (
                    5,
                    Target {
                        gw: 0,
                        priority: 1,
                        weight: 1,
                    },
                ),
            ],
        );
        st.install(Snapshot {
            instances: vec![Instance::default(), inst],
            loaded_at: 0,
        });
    }

    fn invite(ruri: &str) -> MsgContext {
        let raw = format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
             From: <sip:alice@example.com>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let msg = ferrosip_sip::SipMessage::parse(Bytes::from(raw)).unwrap();
        MsgContext::new(msg, RouteKind::Request, NetInfo::default())
    }

    fn ruri(ctx: &MsgContext) -> String {
        String::from_utf8_lossy(ctx.msg.request_uri().unwrap()).into_owned()
    }

    #[test]
    fn load_then_next_gw_walks_the_gateways() {
        let (st, cfg) = state(&[]);
        install(&st);
        let mut ctx = invite("sip:49301234@proxy.example.com;user=phone");
        assert_eq!(
            funcs::load_gws(&st, &mut ctx, 1, None, None).unwrap().rc(),
            1
        );
        assert_eq!(ctx.avps.count(cfg.avps.gw_uri), 2);
        assert_eq!(funcs::next_gw(&st, &mut ctx).unwrap().rc(), 1);
        // beta: strip 2, prefix 0049
        assert_eq!(ruri(&ctx), "sip:0049301234@192.0.2.2:5060;transport=udp");
        let tag = ctx.avps.get(cfg.avps.tag.unwrap(), 0).cloned();
        assert_eq!(tag, Some(Value::from_static("beta")));
        assert_eq!(
            ctx.avps.get(cfg.avps.rule_id.unwrap(), 0),
            Some(&Value::Int(5))
        );
        // The failure route gets the AVPs; the user comes from ruri_user_avp.
        assert_eq!(funcs::next_gw(&st, &mut ctx).unwrap().rc(), 1);
        assert_eq!(ruri(&ctx), "sip:49301234@192.0.2.1:5060");
        // Take alpha out of use: the next load skips it.
        assert_eq!(funcs::defunct_gw(&st, &mut ctx, 60).unwrap().rc(), 1);
        assert_eq!(funcs::next_gw(&st, &mut ctx).unwrap().rc(), -1, "none left");
        let mut again = invite("sip:49301234@proxy.example.com");
        assert_eq!(
            funcs::load_gws(&st, &mut again, 1, None, None)
                .unwrap()
                .rc(),
            1
        );
        assert_eq!(again.avps.count(cfg.avps.gw_uri), 1);
        // No match, bad instance, no user.
        let mut other = invite("sip:3312@proxy.example.com");
        assert_eq!(
            funcs::load_gws(&st, &mut other, 1, None, None)
                .unwrap()
                .rc(),
            2
        );
        assert_eq!(
            funcs::load_gws(&st, &mut other, 2, None, None)
                .unwrap()
                .rc(),
            -1
        );
        let mut nouser = invite("sip:proxy.example.com");
        assert_eq!(
            funcs::load_gws(&st, &mut nouser, 1, None, None)
                .unwrap()
                .rc(),
            -1
        );
        assert_eq!(
            funcs::load_gws(&st, &mut nouser, 1, Some(Bytes::from_static(b"4912")), None)
                .unwrap()
                .rc(),
            1
        );
    }

    #[test]
    fn dont_strip_flag_keeps_the_user() {
        let (st, _) = state(&[("dont_strip_or_prefix_flag", Value::Int(3))]);
        install(&st);
        let mut ctx = invite("sip:49301234@proxy.example.com");
        ctx.flags |= 1 << 3;
        funcs::load_gws(&st, &mut ctx, 1, None, None).unwrap();
        funcs::next_gw(&st, &mut ctx).unwrap();
        assert_eq!(ruri(&ctx), "sip:49301234@192.0.2.2:5060;transport=udp");
    }

    #[test]
    fn from_and_to_gateway_checks() {
        let (st, _) = state(&[]);
        install(&st);
        let mut ctx = invite("sip:123@192.0.2.1");
        ctx.net.source = "192.0.2.2:5060".parse().unwrap();
        let src = Probe::source(&ctx);
        assert_eq!(funcs::is_gw(&st, &mut ctx, 1, src, true).unwrap().rc(), 1);
        ctx.net.source = "192.0.2.2:5099".parse().unwrap();
        let src = Probe::source(&ctx);
        assert_eq!(
            funcs::is_gw(&st, &mut ctx, 1, src, true).unwrap().rc(),
            -1,
            "port"
        );
        let given = Probe::given(b"192.0.2.2", 1, 0);
        assert_eq!(
            funcs::is_any_gw(&st, &mut ctx, given, true).unwrap().rc(),
            1
        );
        assert!(Probe::given(b"192.0.2.2", 7, 0).is_none(), "bad proto");
        let to = Probe::request_uri(&ctx);
        assert_eq!(funcs::is_gw(&st, &mut ctx, 1, to, false).unwrap().rc(), 1);
        // As in Kamailio, a transport to compare must be the gateway's: alpha has none.
        let mut tcp = invite("sip:123@192.0.2.1;transport=tcp");
        let to = Probe::request_uri(&tcp);
        assert_eq!(funcs::is_gw(&st, &mut tcp, 1, to, false).unwrap().rc(), -1);
        let mut by_name = invite("sip:123@gw.example.com");
        let to = Probe::request_uri(&by_name);
        assert_eq!(
            funcs::is_any_gw(&st, &mut by_name, to, false).unwrap().rc(),
            -1
        );
    }

    #[test]
    fn a_bad_parameter_fails_init_and_reload_is_async() {
        let mut reg = Registry::new();
        reg.register(&LcrModule);
        let def = reg.module("lcr").unwrap();
        let init_error = |p: &ModuleParams| def.init.iter().find_map(|h| h(p).err());
        let mut p = def.default_params();
        let e = init_error(&p).unwrap();
        assert!(e.contains("gw_uri_avp"), "{e}");
        p.push("gw_uri_avp", Value::from_static("$avp(a)"));
        p.push("ruri_user_avp", Value::from_static("$avp(b)"));
        assert_eq!(init_error(&p), None);
        let reload = reg.rpc("lcr.reload").unwrap();
        assert!(reload.is_async());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Initialised but not started: no database to read yet.
        let e = rt.block_on(reload.call(vec![])).unwrap_err();
        assert!(e.contains("not started"), "{e}");
        let gws = rt.block_on(reg.rpc("lcr.dump_gws").unwrap().call(vec![]));
        assert_eq!(gws, Ok(RpcValue::Array(vec![])));
    }

    #[test]
    fn parameters_checked_at_load() {
        let mut reg = Registry::new();
        reg.register(&LcrModule);
        let p = reg.module("lcr").unwrap().default_params();
        let e = Config::from_params(&p, &reg.avp_names()).unwrap_err();
        assert!(e.contains("gw_uri_avp"), "{e}");
        let mut p2 = p.clone();
        p2.push("gw_uri_avp", Value::from_static("$avp(a)"));
        p2.push("ruri_user_avp", Value::from_static("$avp(b)"));
        p2.push("ping_interval", Value::Int(10));
        assert!(Config::from_params(&p2, &reg.avp_names()).is_err());
    }
}
