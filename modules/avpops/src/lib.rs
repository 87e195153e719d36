//! `avpops` (Kamailio's module of the same name): operations on AVPs that carrier
//! configs use to move values around: `is_avp_set`, `avp_delete`, `avp_copy`,
//! `avp_check`, `avp_pushto`, and the database functions (`avp_db_load`, `avp_db_store`,
//! `avp_db_delete`, `avp_db_query`, module db.rs), `avp_op`, `avp_subst`, `avp_subst_pv`
//! and `avp_print` (module ops.rs).

mod db;
mod ops;

use bytes::Bytes;
use ferrosip_api::args::{PvOut, Spec};
use ferrosip_api::pv::Binder;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, MsgContext, ParamType, PvRef, RouteMask, SetOp,
    Value, Verdict,
};
use std::sync::Arc;

/// An AVP named as avpops writes it: `$avp(name)` (or `$avp(s:name)`), optionally
/// followed by `/flags` (`g`: every value, `d`: delete the source after copying).
#[derive(Clone, Debug)]
pub struct AvpName {
    pub slot: u32,
    pub all: bool,
    pub delete: bool,
}

impl Spec for AvpName {
    const KIND: &'static str = "an AVP ($avp(name)[/flags])";

    fn parse(text: &str, binder: &Binder<'_>) -> Result<AvpName, String> {
        let t = text.trim();
        let (name, flags) = match t.rfind(')') {
            Some(i) => (&t[..=i], t[i + 1..].trim()),
            None => (t, ""),
        };
        let inner = name
            .strip_prefix("$avp(")
            .and_then(|n| n.strip_suffix(')'))
            .ok_or_else(|| format!("\"{t}\" is not an AVP ($avp(name)[/flags])"))?
            .trim();
        if inner.is_empty() || inner.starts_with('$') {
            return Err(format!("\"{t}\": the AVP needs a fixed name"));
        }
        let flags = flags.strip_prefix('/').unwrap_or(flags);
        let mut out = AvpName {
            slot: binder.avp_slot(inner),
            all: false,
            delete: false,
        };
        for f in flags.chars() {
            match f {
                'g' | 'G' => out.all = true,
                'd' | 'D' => out.delete = true,
                other => return Err(format!("\"{t}\": unknown flag {other} (g, d)")),
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CheckOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Re,
}

#[derive(Clone)]
enum Operand {
    Lit(Value),
    Pv(PvRef),
    Regex(Arc<regex::bytes::Regex>),
}

/// `avp_check`'s "op/value[/flags]".
#[derive(Clone)]
pub struct Check {
    op: CheckOp,
    operand: Operand,
    all: bool,
    icase: bool,
}

impl Spec for Check {
    const KIND: &'static str = "op/value[/flags]";

    fn parse(text: &str, binder: &Binder<'_>) -> Result<Check, String> {
        let (op, rest) = text
            .split_once('/')
            .ok_or_else(|| format!("\"{text}\" is not op/value[/flags]"))?;
        let op = match op.trim() {
            "eq" => CheckOp::Eq,
            "ne" => CheckOp::Ne,
            "lt" => CheckOp::Lt,
            "le" => CheckOp::Le,
            "gt" => CheckOp::Gt,
            "ge" => CheckOp::Ge,
            "re" => CheckOp::Re,
            o @ ("fm" | "and" | "or" | "xor") => {
                return Err(format!(
                    "avp_check operation {o} is declared but not implemented yet (eq, ne, lt, le, gt, ge, re)"
                ))
            }
            o => return Err(format!("unknown avp_check operation {o}")),
        };
        let (value, flags) = match rest.rfind('/') {
            Some(i) if rest[i + 1..].chars().all(|c| "gGiI".contains(c)) => {
                (&rest[..i], &rest[i + 1..])
            }
            _ => (rest, ""),
        };
        let all = flags.contains(['g', 'G']);
        let icase = flags.contains(['i', 'I']);
        let operand = if op == CheckOp::Re {
            let re = regex::bytes::RegexBuilder::new(value)
                .case_insensitive(icase)
                .build()
                .map_err(|e| format!("bad regular expression {value:?}: {e}"))?;
            Operand::Regex(Arc::new(re))
        } else if value.starts_with('$') {
            Operand::Pv(
                binder
                    .parse_pv(value)
                    .map_err(|e| format!("{value}: {}", e.message))?,
            )
        } else if let Some(i) = value.strip_prefix("i:").and_then(|v| v.parse::<i64>().ok()) {
            Operand::Lit(Value::Int(i))
        } else {
            let v = value.strip_prefix("s:").unwrap_or(value);
            Operand::Lit(Value::from_string(v.to_string()))
        };
        Ok(Check {
            op,
            operand,
            all,
            icase,
        })
    }
}

impl Check {
    fn matches(&self, ctx: &MsgContext, v: &Value) -> Result<bool, FnError> {
        let other = match &self.operand {
            Operand::Regex(re) => {
                return Ok(re.is_match(&v.to_bytes().unwrap_or_default()));
            }
            Operand::Lit(l) => l.clone(),
            Operand::Pv(p) => p.get(ctx)?,
        };
        let ord = match (v.as_int(), other.as_int(), v, &other) {
            (Some(a), Some(b), Value::Int(_), _) | (Some(a), Some(b), _, Value::Int(_)) => {
                a.cmp(&b)
            }
            _ => {
                let a = v.to_bytes().unwrap_or_default();
                let b = other.to_bytes().unwrap_or_default();
                if self.icase {
                    a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase())
                } else {
                    a.cmp(&b)
                }
            }
        };
        use std::cmp::Ordering::*;
        Ok(match self.op {
            CheckOp::Eq => ord == Equal,
            CheckOp::Ne => ord != Equal,
            CheckOp::Lt => ord == Less,
            CheckOp::Le => ord != Greater,
            CheckOp::Gt => ord == Greater,
            CheckOp::Ge => ord != Less,
            CheckOp::Re => false,
        })
    }
}

fn verdict(b: bool) -> FnResult {
    Ok(if b { Verdict::TRUE } else { Verdict::FALSE })
}

fn is_avp_set(ctx: &mut MsgContext, avp: AvpName) -> FnResult {
    verdict(ctx.avps.count(avp.slot) > 0)
}

/// Kamailio deletes the newest value, or every value with `/g`.
fn avp_delete(ctx: &mut MsgContext, avp: AvpName) -> FnResult {
    if ctx.avps.count(avp.slot) == 0 {
        return Ok(Verdict::FALSE);
    }
    if avp.all {
        ctx.avps.remove_all(avp.slot);
    } else {
        ctx.avps.pop(avp.slot);
    }
    Ok(Verdict::TRUE)
}

fn avp_copy(ctx: &mut MsgContext, from: AvpName, to: AvpName) -> FnResult {
    let values: Vec<Value> = if to.all {
        ctx.avps.all(from.slot).cloned().collect()
    } else {
        ctx.avps.get(from.slot, 0).cloned().into_iter().collect()
    };
    if values.is_empty() {
        return Ok(Verdict::FALSE);
    }
    // `all` lists newest first; pushing oldest first keeps the order in the copy.
    for v in values.iter().rev() {
        ctx.avps.push(to.slot, v.clone());
    }
    if to.delete {
        if to.all {
            ctx.avps.remove_all(from.slot);
        } else {
            ctx.avps.pop(from.slot);
        }
    }
    Ok(Verdict::TRUE)
}

fn avp_check(ctx: &mut MsgContext, avp: AvpName, check: Check) -> FnResult {
    let values: Vec<Value> = if check.all || avp.all {
        ctx.avps.all(avp.slot).cloned().collect()
    } else {
        ctx.avps.get(avp.slot, 0).cloned().into_iter().collect()
    };
    for v in &values {
        if check.matches(ctx, v)? {
            return Ok(Verdict::TRUE);
        }
    }
    Ok(Verdict::FALSE)
}

fn avp_pushto(ctx: &mut MsgContext, dest: PvOut, avp: AvpName) -> FnResult {
    let Some(v) = ctx.avps.get(avp.slot, 0).cloned() else {
        return Ok(Verdict::FALSE);
    };
    dest.0.set(ctx, SetOp::Assign, v)?;
    Ok(Verdict::TRUE)
}

/// The `avpops` module.
pub struct AvpopsModule;

impl Module for AvpopsModule {
    fn name(&self) -> &'static str {
        "avpops"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Operations on AVPs: test, delete, copy, compare and push them into the request; load, store and delete a user's AVPs in Kamailio's usr_preferences table (avp_db_load/store/delete) and fill AVPs from an SQL query (avp_db_query); arithmetic (avp_op), substitutions (avp_subst, avp_subst_pv) and avp_print.");
        m.param(
            "db_url",
            ParamType::Str,
            "",
            "Database of the AVP table (avp_db_* functions).",
        );
        m.param(
            "avp_table",
            ParamType::Str,
            "",
            "The AVP table (Kamailio's usr_preferences).",
        );
        m.param(
            "use_domain",
            ParamType::Int,
            0_i64,
            "1: AVPs of a user are kept per domain too.",
        );
        m.param(
            "uuid_column",
            ParamType::Str,
            "uuid",
            "Column of the user's unique id.",
        );
        m.param(
            "attribute_column",
            ParamType::Str,
            "attribute",
            "Column of the AVP's name.",
        );
        m.param(
            "value_column",
            ParamType::Str,
            "value",
            "Column of the AVP's value.",
        );
        m.param(
            "type_column",
            ParamType::Str,
            "type",
            "Column of the AVP's type.",
        );
        m.param(
            "username_column",
            ParamType::Str,
            "username",
            "Column of the user name.",
        );
        m.param(
            "domain_column",
            ParamType::Str,
            "domain",
            "Column of the domain.",
        );
        m.repeatable_param(
            "db_scheme",
            ParamType::Str,
            "A named layout of an AVP table.",
        );
        let names = m.registry().avp_names();
        {
            let names = names.clone();
            m.function("avp_print")
                .routes(RouteMask::ANY)
                .doc("Logs every AVP of the message (name, int or str, value), newest first; always 1.")
                .handler(move |ctx: &mut MsgContext| ops::avp_print(&names, ctx));
        }
        let state = m.state(move |p| {
            Ok(Arc::new(db::DbState {
                cfg: db::DbConfig::from_params(p)?,
                db: std::sync::OnceLock::new(),
                names: names.clone(),
            }))
        });
        {
            let state = state.clone();
            m.on_start(move |env| {
                let url = env.params.string("db_url");
                let st = state.get();
                async move {
                    if url.is_empty() {
                        return Ok(());
                    }
                    let st = st.map_err(|e| e.message)?;
                    let db = ferrosip_db::Db::connect(&url)
                        .await
                        .map_err(|e| format!("cannot connect to db_url: {e}"))?;
                    let _ = st.db.set(db);
                    Ok(())
                }
            });
        }
        const ANY: RouteMask = RouteMask::ANY;
        let s = &state;
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("is_avp_set", &["name"], ANY,
                "1 when the AVP $avp(name) has a value, -1 otherwise.",
                is_avp_set),
            FnRow::sync("avp_delete", &["name"], ANY,
                "Deletes the newest value of $avp(name), or every value with the /g flag; 1 done, -1 the AVP had no value.",
                avp_delete),
            FnRow::sync("avp_copy", &["old_name", "new_name"], ANY,
                "Adds the newest value of OLD_NAME to NEW_NAME (every value with /g on NEW_NAME, in order; /d deletes what was copied from OLD_NAME); 1 done, -1 OLD_NAME had no value.",
                avp_copy),
            FnRow::sync("avp_check", &["name", "op_value"], ANY,
                "Compares the newest value of the AVP (every value with the g flag, on the AVP or in OP_VALUE: true when one matches) with OP_VALUE \"op/value[/flags]\": op is eq, ne, lt, le, gt, ge (numbers compare as numbers) or re (a regular expression); value a literal (i:10, s:text) or a pseudo-variable; flag i ignores case. 1 matched, -1 not.",
                avp_check),
            FnRow::sync("avp_pushto", &["destination", "name"], ANY,
                "Assigns the newest value of the AVP to the pseudo-variable DESTINATION ($ru, $du, $var(x), ...); 1 done, -1 the AVP had no value.",
                avp_pushto),
            FnRow::asynchronous("avp_db_load", &["source", "name"], ANY,
                "Loads the AVPs of the user SOURCE names (\"$fu\", \"$ru/username\", \"$ru/domain\", \"$avp(uuid)\", a literal uuid; /uuid, /uri, /username, /domain say which columns match: by default the user and, with use_domain, the host of $ru/$fu/$tu/$ou, the uuid column for anything else) from avp_table: NAME is $avp(name) (that attribute), * (every one, named as stored), s or i (string- or number-named), each with /table to read another table. Values of type 2 are numbers. 1 loaded, -1 none.",
                s.with(|st: &Arc<db::DbState>, ctx: &mut MsgContext, source: db::Source, avps: db::DbAvps| db::load(st, ctx, source, avps))),
            FnRow::asynchronous("avp_db_store", &["source", "name"], ANY,
                "Stores every value of $avp(name) as a row of the user SOURCE names (as avp_db_load; type 2 for numbers); 1 stored, -1 the AVP has no value.",
                s.with(|st: &Arc<db::DbState>, ctx: &mut MsgContext, source: db::Source, avp: db::OneDbAvp| db::store(st, ctx, source, avp))),
            FnRow::asynchronous("avp_db_delete", &["source", "name"], ANY,
                "Deletes the rows of the user SOURCE names (as avp_db_load) for $avp(name), or for every attribute (*), the string-named (s) or number-named (i) ones; 1 done.",
                s.with(|st: &Arc<db::DbState>, ctx: &mut MsgContext, source: db::Source, avps: db::DbAvps| db::delete(st, ctx, source, avps))),
            FnRow::asynchronous("avp_db_query", &["query"], ANY,
                "Runs the SQL statement QUERY (pseudo-variables in it are replaced, unescaped, as Kamailio does) on db_url; 1 done.",
                s.with(|st: &Arc<db::DbState>, _ctx: &mut MsgContext, query: Bytes| db::query(st, query, None))),
            FnRow::asynchronous("avp_db_query", &["query", "dest"], ANY,
                "Runs the SQL query QUERY and adds the columns of each row (at most 1024) to the DEST AVPs in order (\"$avp(a);$avp(b)\"; NULL columns are skipped); 1 rows came back, -1 none.",
                s.with(|st: &Arc<db::DbState>, _ctx: &mut MsgContext, query: Bytes, dest: db::AvpList| db::query(st, query, Some(dest)))),
            FnRow::sync("avp_op", &["name", "op_value"], ANY,
                "Arithmetic on the newest integer value of NAME (\"$avp(a)\", \"$avp(a)/g\" for every value, \"$avp(a)/$avp(b)\" to put results in b): OP_VALUE is \"op/value[/flags]\" with op add, sub, mul, div, mod, and, or, xor, not (not: ~value), value an integer or a pseudo-variable, flags g (every value) and d (delete the values used; without a destination the result replaces them). Each result is a new value. 1 done, -1 no integer value; dividing by 0 is an error.",
                ops::avp_op),
            FnRow::sync("avp_subst", &["avps", "subst"], ANY,
                "sed-like substitution \"/re/replacement/flags\" (flags i, g; \\1..\\9 the groups) on the newest value of AVPS (every value with /g): the result replaces the value, or is added to the destination AVP (\"$avp(a)/$avp(b)\"; /d deletes the source values too). 1 something was substituted, -1 otherwise.",
                ops::avp_subst),
            FnRow::sync("avp_subst_pv", &["avps", "subst"], ANY,
                "As avp_subst() with the replacement's pseudo-variables read for each call.",
                |ctx: &mut MsgContext, avps: ops::SrcDst, subst: ops::SubstPv| ops::avp_subst(ctx, avps, subst.0)),
        ]);
        m.example(
            "loadmodule \"sl.so\"\nloadmodule \"avpops.so\"\n\
             request_route {\n    \
                 $avp(route) = \"sip:gw1.example.com\";\n    \
                 if (avp_check(\"$avp(route)\", \"re/^sip:gw\")) {\n        \
                     avp_pushto(\"$du\", \"$avp(route)\");\n    }\n    \
                 avp_delete(\"$avp(route)/g\");\n    \
                 sl_send_reply(\"200\", \"OK\");\n}\n",
        );
    }
}

#[cfg(test)]
mod tests;
