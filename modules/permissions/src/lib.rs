//! `permissions` (Kamailio's module of the same name): who may send what.
//!
//! - [`address`]: the `address` table (groups of IP addresses and subnets with ports);
//! - [`trusted`]: the `trusted` table (peers by source address, protocol and From/R-URI
//!   patterns);
//! - [`rules`]: the `permissions.allow`/`.deny` files of `allow_routing()` and friends;
//! - [`state`]: parameters, the table snapshots and their reloads; [`funcs`]: the
//!   functions.

pub mod address;
pub mod funcs;
pub mod rules;
pub mod state;
pub mod trusted;

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, MsgContext, ParamType, RouteMask, RpcValue, Value};
use state::{Config, RulePair, State};
use std::path::PathBuf;

/// The `permissions` module.
pub struct PermissionsModule;

impl Module for PermissionsModule {
    fn name(&self) -> &'static str {
        "permissions"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Access control: routing/registration rules from files, trusted peers and address groups (IP addresses and subnets) from the database.");
        m.param(
            "default_allow_file",
            ParamType::Str,
            "permissions.allow",
            "Rules file of allowed From/R-URI pairs for allow_routing(), read at load (a relative name is taken from the server's working directory). A missing file is an empty rule set.",
        );
        m.param(
            "default_deny_file",
            ParamType::Str,
            "permissions.deny",
            "Rules file of denied From/R-URI pairs for allow_routing(), read at load. A missing file is an empty rule set.",
        );
        m.param(
            "check_all_branches",
            ParamType::Int,
            1_i64,
            "When 1, allow_routing() also checks every branch added with append_branch() (or lookup()) against the rules, and denies when one is denied.",
        );
        m.param(
            "allow_suffix",
            ParamType::Str,
            ".allow",
            "Suffix appended to a basename to form the allow file.",
        );
        m.param(
            "deny_suffix",
            ParamType::Str,
            ".deny",
            "Suffix appended to a basename to form the deny file.",
        );
        m.param(
            "db_url",
            ParamType::Str,
            Value::Null,
            "Database holding the address and trusted tables (sqlite://, mysql://, postgres://, text://); unset: only the rule-file functions work.",
        );
        m.param(
            "db_mode",
            ParamType::Int,
            0_i64,
            "0: allow_trusted() reads the trusted rows of the source address for each call; 1: the trusted table is kept in memory (reload with permissions.trustedReload). The address table is always kept in memory.",
        );
        m.param(
            "trusted_table",
            ParamType::Str,
            "trusted",
            "Table of trusted peers for allow_trusted().",
        );
        m.param(
            "source_col",
            ParamType::Str,
            "src_ip",
            "Trusted table column holding the source IP address.",
        );
        m.param(
            "proto_col",
            ParamType::Str,
            "proto",
            "Trusted table column holding the transport (any, udp, tcp, tls, sctp, ws, wss).",
        );
        m.param(
            "from_col",
            ParamType::Str,
            "from_pattern",
            "Trusted table column holding the regular expression the From URI must match (NULL: any).",
        );
        m.param(
            "ruri_col",
            ParamType::Str,
            "ruri_pattern",
            "Trusted table column holding the regular expression the R-URI must match (NULL: any).",
        );
        m.param(
            "tag_col",
            ParamType::Str,
            "tag",
            "Trusted and address table column holding the tag given to peer_tag_avp.",
        );
        m.param(
            "priority_col",
            ParamType::Str,
            "priority",
            "Trusted table column holding the priority (higher entries are matched first).",
        );
        m.param(
            "peer_tag_avp",
            ParamType::Str,
            Value::Null,
            "AVP receiving the tag of a matched trusted peer or address (e.g. \"$avp(s:peer_tag)\"); unset: tags are not stored.",
        );
        m.param(
            "peer_tag_mode",
            ParamType::Int,
            0_i64,
            "0: allow_trusted() stops at the first matching entry; 1: every matching entry adds its tag, and the return code is the number of matches.",
        );
        m.param(
            "address_table",
            ParamType::Str,
            "address",
            "Table of address groups for allow_address()/allow_source_address().",
        );
        m.param(
            "grp_col",
            ParamType::Str,
            "grp",
            "Address table column holding the group id.",
        );
        m.param(
            "ip_addr_col",
            ParamType::Str,
            "ip_addr",
            "Address table column holding the IP address.",
        );
        m.param(
            "mask_col",
            ParamType::Str,
            "mask",
            "Address table column holding the network mask length (32/128: one address; less: a subnet).",
        );
        m.param(
            "port_col",
            ParamType::Str,
            "port",
            "Address table column holding the port (0: any port).",
        );
        m.param(
            "address_file",
            ParamType::Str,
            Value::Null,
            "File with address groups instead of address_table: not supported, setting it is a load error.",
        );
        m.param(
            "max_subnets",
            ParamType::Int,
            512_i64,
            "Maximum number of subnets in the address table; a load or reload with more fails.",
        );
        m.param(
            "subnet_match_mode",
            ParamType::Int,
            0_i64,
            "Which subnet answers when several hold an address: 0 the lowest group, 1 the longest mask. Exact addresses always come first.",
        );
        m.param(
            "load_backends",
            ParamType::Int,
            65535_i64,
            "Bit mask of the tables loaded at start: 1 address, 2 trusted.",
        );
        m.param(
            "reload_delta",
            ParamType::Int,
            5_i64,
            "Minimum seconds between two RPC reloads of the same table; a reload sooner is refused.",
        );
        m.param(
            "trusted_cleanup_interval",
            ParamType::Int,
            60_i64,
            "Accepted for compatibility: a reloaded table is freed when the last call using it ends, without a timer.",
        );

        let state = {
            let names = m.registry().avp_names();
            m.state(move |p| {
                let config = Config::from_params(p, &names)?;
                let rules = RulePair::load(
                    &PathBuf::from(p.string("default_allow_file")),
                    &PathBuf::from(p.string("default_deny_file")),
                )?;
                Ok(State::new(config, rules))
            })
        };
        {
            let st = state.clone();
            m.on_start(move |_env| {
                let st = st.get();
                async move { st.map_err(|e| e.message)?.start().await }
            });
        }
        for (name, which, doc) in [
            ("permissions.addressReload", "address", "Reads the address table again and swaps it in at once (calls in progress keep the old one); refused within reload_delta of the previous reload, and on an error the loaded table stays."),
            ("permissions.trustedReload", "trusted", "Reads the trusted table again (db_mode 1) and swaps it in at once; refused within reload_delta of the previous reload, and on an error the loaded table stays."),
        ] {
            let st = state.clone();
            m.rpc_async(name, doc, move |_| {
                let st = st.get().map_err(|e| e.message);
                async move { st?.rpc_reload(which).await.map(RpcValue::Str) }
            });
        }
        {
            let st = state.clone();
            m.rpc(
                "permissions.addressDump",
                "Lists the exact addresses of the address table: group, address, port, tag.",
                move |_| Ok(rpc::address_dump(&*st.get().map_err(|e| e.message)?, false)),
            );
            let st = state.clone();
            m.rpc(
                "permissions.subnetDump",
                "Lists the subnets of the address table: group, network address, mask, port, tag.",
                move |_| Ok(rpc::address_dump(&*st.get().map_err(|e| e.message)?, true)),
            );
            let st = state.clone();
            m.rpc(
                "permissions.trustedDump",
                "Lists the cached trusted table: source address, proto, from_pattern, ruri_pattern, tag, priority.",
                move |_| Ok(rpc::trusted_dump(&*st.get().map_err(|e| e.message)?)),
            );
        }

        const REQ_FAIL: RouteMask = RouteMask::REQUEST.union(RouteMask::FAILURE);
        const FILES: &[&str] = &["allow_file", "deny_file"];
        let s = &state;
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("allow_routing", &[], RouteMask::ANY,
                "Checks the From URI and the R-URI (as sip:user@host) against the default allow and deny files: 1 when an allow rule matches (and, with check_all_branches, no branch is denied) or when no rule matches, -1 when a deny rule matches or the message has no From/R-URI.",
                s.with(|st: &State, ctx: &mut MsgContext| funcs::allow_routing(st, ctx, &st.default_rules))),
            FnRow::sync("allow_routing", &["basename"], RouteMask::ANY,
                "As allow_routing() with the files basename.allow and basename.deny (allow_suffix/deny_suffix), read at first use.",
                s.with(|st: &State, ctx: &mut MsgContext, base: Bytes| {
                    let pair = funcs::basename_pair(st, &base)?;
                    funcs::allow_routing(st, ctx, &pair)
                })),
            FnRow::sync("allow_routing", FILES, RouteMask::ANY,
                "As allow_routing() with the given allow and deny files.",
                s.with(|st: &State, ctx: &mut MsgContext, allow: Bytes, deny: Bytes| {
                    let pair = funcs::file_pair(st, &allow, &deny)?;
                    funcs::allow_routing(st, ctx, &pair)
                })),
            FnRow::sync("allow_register", &["basename"], REQ_FAIL,
                "Checks each Contact URI of a REGISTER (as sip:user@host) paired with the To URI against basename.allow/.deny: -1 when a pair is denied and not allowed, else 1 (also with no Contact or Contact: *).",
                s.with(|st: &State, ctx: &mut MsgContext, base: Bytes| {
                    let pair = funcs::basename_pair(st, &base)?;
                    funcs::allow_register(ctx, &pair, false)
                })),
            FnRow::sync("allow_register", FILES, REQ_FAIL,
                "As allow_register(basename) with the given allow and deny files.",
                s.with(|st: &State, ctx: &mut MsgContext, allow: Bytes, deny: Bytes| {
                    let pair = funcs::file_pair(st, &allow, &deny)?;
                    funcs::allow_register(ctx, &pair, false)
                })),
            FnRow::sync("allow_register_include_port", &["basename"], REQ_FAIL,
                "As allow_register(basename) with the Contact port in the URI matched (sip:user@host:port).",
                s.with(|st: &State, ctx: &mut MsgContext, base: Bytes| {
                    let pair = funcs::basename_pair(st, &base)?;
                    funcs::allow_register(ctx, &pair, true)
                })),
            FnRow::sync("allow_register_include_port", FILES, REQ_FAIL,
                "As allow_register(allow_file, deny_file) with the Contact port in the URI matched.",
                s.with(|st: &State, ctx: &mut MsgContext, allow: Bytes, deny: Bytes| {
                    let pair = funcs::file_pair(st, &allow, &deny)?;
                    funcs::allow_register(ctx, &pair, true)
                })),
            FnRow::sync("allow_uri", &["basename", "uri"], REQ_FAIL,
                "Checks the From URI paired with the given URI (e.g. \"$avp(uri)\") against basename.allow/.deny: 1 allowed or no rule, -1 denied or an invalid URI.",
                s.with(|st: &State, ctx: &mut MsgContext, base: Bytes, uri: Bytes| {
                    let pair = funcs::basename_pair(st, &base)?;
                    funcs::allow_uri(ctx, &pair, &uri)
                })),
            FnRow::asynchronous("allow_trusted", &[], RouteMask::ANY,
                "True (1) when the source address and transport match a trusted row whose from_pattern (if any) matches the From URI and ruri_pattern (if any) the R-URI; the tag goes to peer_tag_avp. -1 otherwise (and on a database error in db_mode 0). With peer_tag_mode 1, the number of matching rows.",
                s.with(|st: &State, ctx: &mut MsgContext| funcs::allow_trusted(st, ctx, None))),
            FnRow::asynchronous("allow_trusted", &["src_ip", "proto"], RouteMask::ANY,
                "As allow_trusted() for the given address and transport name (e.g. \"$si\", \"$proto\"; \"any\" matches only rows of any transport).",
                s.with(|st: &State, ctx: &mut MsgContext, ip: Bytes, proto: Bytes| {
                    funcs::allow_trusted(st, ctx, Some((ip, proto, None)))
                })),
            FnRow::asynchronous("allow_trusted", &["src_ip", "proto", "uri"], RouteMask::ANY,
                "As allow_trusted(src_ip, proto) with from_pattern matched against the given URI instead of the From URI.",
                s.with(|st: &State, ctx: &mut MsgContext, ip: Bytes, proto: Bytes, uri: Bytes| {
                    funcs::allow_trusted(st, ctx, Some((ip, proto, Some(uri))))
                })),
            FnRow::sync("allow_address", &["group_id", "ip_addr", "port"], RouteMask::ANY,
                "True (1) when the address and port belong to the address group (an exact address, or a subnet; a row with port 0 admits any port); its tag goes to peer_tag_avp. -1 otherwise or for an address that is not an IP.",
                s.with(|st: &State, ctx: &mut MsgContext, grp: i64, ip: Bytes, port: i64| {
                    funcs::allow_address(st, ctx, Some(grp), &ip, port).map(|g| funcs::group_verdict(g, false))
                })),
            FnRow::sync("allow_source_address", &[], RouteMask::ANY,
                "As allow_address(1, $si, $sp): 1 when the source address and port belong to group 1, -1 otherwise.",
                s.with(|st: &State, ctx: &mut MsgContext| funcs::allow_source(st, ctx, Some(1)).map(|g| funcs::group_verdict(g, false)))),
            FnRow::sync("allow_source_address", &["group_id"], RouteMask::ANY,
                "As allow_address(group_id, $si, $sp): 1 or -1.",
                s.with(|st: &State, ctx: &mut MsgContext, grp: i64| funcs::allow_source(st, ctx, Some(grp)).map(|g| funcs::group_verdict(g, false)))),
            FnRow::sync("allow_source_address_group", &[], RouteMask::ANY,
                "The group the source address and port belong to (as the return code, so $rc holds it), -1 when none; the tag goes to peer_tag_avp.",
                s.with(|st: &State, ctx: &mut MsgContext| funcs::allow_source(st, ctx, None).map(|g| funcs::group_verdict(g, true)))),
            FnRow::sync("allow_address_group", &["addr", "port"], RouteMask::ANY,
                "The group the address and port belong to (as the return code), -1 when none.",
                s.with(|st: &State, ctx: &mut MsgContext, ip: Bytes, port: i64| {
                    funcs::allow_address(st, ctx, None, &ip, port).map(|g| funcs::group_verdict(g, true))
                })),
        ]);
    }
}

/// The RPC commands' answers.
mod rpc {
    use super::*;

    fn s(v: impl Into<String>) -> RpcValue {
        RpcValue::Str(v.into())
    }

    pub fn address_dump(st: &State, subnets: bool) -> RpcValue {
        let table = st.address();
        let entries = if subnets {
            table.subnet_entries()
        } else {
            table.exact_entries()
        };
        RpcValue::Array(
            entries
                .into_iter()
                .map(|e| {
                    let mut fields = vec![
                        ("group".into(), RpcValue::Int(i64::from(e.grp))),
                        ("ip".into(), s(e.ip.to_string())),
                    ];
                    if subnets {
                        fields.push(("mask".into(), RpcValue::Int(i64::from(e.mask))));
                    }
                    fields.push(("port".into(), RpcValue::Int(i64::from(e.port))));
                    fields.push(("tag".into(), s(e.tag.as_deref().unwrap_or(""))));
                    RpcValue::Struct(fields)
                })
                .collect(),
        )
    }

    pub fn trusted_dump(st: &State) -> RpcValue {
        let table = st.trusted();
        let re = |r: &Option<regex::Regex>| s(r.as_ref().map(|r| r.as_str()).unwrap_or(""));
        RpcValue::Array(
            table
                .entries()
                .into_iter()
                .map(|e| {
                    RpcValue::Struct(vec![
                        ("src_ip".into(), s(e.src_ip.clone())),
                        ("proto".into(), s(e.proto.name())),
                        ("from_pattern".into(), re(&e.from_pattern)),
                        ("ruri_pattern".into(), re(&e.ruri_pattern)),
                        ("tag".into(), s(e.tag.as_deref().unwrap_or(""))),
                        ("priority".into(), RpcValue::Int(e.priority)),
                    ])
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests;
