//! `pv`: Pseudo-variable helpers (the PVs themselves are part of Ferrosip's core): checks, XAVP and static-branch functions.

use bytes::Bytes;
use ferrosip_api::args::PvOut;
use ferrosip_api::registry::FnRow;
use ferrosip_api::xavp::{XKind, XList, XVal};
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, MsgContext, ParamType, RouteMask, SetOp, Value,
    Verdict,
};

/// The `pv` module.
pub struct PvModule;

impl Module for PvModule {
    fn name(&self) -> &'static str {
        "pv"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Pseudo-variable helpers (the PVs themselves are part of Ferrosip's core): checks, XAVP and static-branch functions.");
        m.repeatable_param(
            "shvset",
            ParamType::Str,
            "Initial value of a shared variable \"name=type:value\" (may be given several times).",
        );
        m.repeatable_param(
            "varset",
            ParamType::Str,
            "Initial value of a $var \"name=type:value\" (may be given several times).",
        );
        m.param(
            "avp_aliases",
            ParamType::Str,
            Value::Null,
            "AVP aliases \"alias=name;...\" (legacy).",
        );
        const REQ_FAIL_BRANCH_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::EVENT);
        const SPARAMS_XNAME: &[&str] = &["sparams", "xname"];
        const XNAME_PVNAME: &[&str] = &["xname", "pvname"];
        const RNAME_CNAME_IVAL: &[&str] = &["rname", "cname", "ival"];
        const RNAME_CNAME_SVAL: &[&str] = &["rname", "cname", "sval"];
        const RNAME_CNAME: &[&str] = &["rname", "cname"];
        let pv_unset = |ctx: &mut MsgContext, pv: PvOut| {
            pv.0.set(ctx, SetOp::Assign, Value::Null)?;
            Ok(Verdict::TRUE)
        };
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("pv_isset", &["pvar"], RouteMask::ANY, "True (1) when the pseudo-variable has a value (is not null); -1 otherwise.", |_ctx: &mut MsgContext, v: Value| Ok(Verdict::from(!v.is_null()))),
            FnRow::sync("pv_unset", &["pvar"], RouteMask::ANY, "Sets the pseudo-variable to null (deletes it); always 1.", pv_unset),
            FnRow::sync("is_int", &["pvar"], RouteMask::ANY, "True (1) when the pseudo-variable holds an integer; -1 otherwise.", |_ctx: &mut MsgContext, v: Value| Ok(Verdict::from(matches!(v, Value::Int(_))))),
            FnRow::sync("typeof", &["pvar", "vtype"], RouteMask::ANY, "True (1) when the value type is vtype (\"int\", \"str\" or \"null\"); -1 otherwise.", |_ctx: &mut MsgContext, v: Value, vtype: Bytes| Ok(Verdict::from(type_name(&v).as_bytes() == vtype.as_ref()))),
            FnRow::sync("not_empty", &["pvar"], RouteMask::ANY, "True (1) when the pseudo-variable holds a non-empty string; -1 otherwise.", |_ctx: &mut MsgContext, v: Value| Ok(Verdict::from(is_not_empty(&v)))),
            FnRow::sync("pv_xavp_print", &[], RouteMask::ANY, "Logs every XAVP at info level (debugging); always 1.", |ctx: &mut MsgContext| print(ctx, XKind::Xavp)),
            FnRow::sync("pv_xavu_print", &[], RouteMask::ANY, "Logs every XAVU at info level (debugging); always 1.", |ctx: &mut MsgContext| print(ctx, XKind::Xavu)),
            FnRow::sync("pv_xavi_print", &[], RouteMask::ANY, "Logs every XAVI at info level (debugging); always 1.", |ctx: &mut MsgContext| print(ctx, XKind::Xavi)),
            FnRow::declared::<(Bytes, Bytes)>("pv_var_to_xavp", &["varname", "xname"], RouteMask::ANY, "Copies $var(s) (or \"*\" for all) into an XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("pv_xavp_to_var", &["xname"], RouteMask::ANY, "Copies the fields of an XAVP into $vars of the same names; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64, Bytes)>("xavp_copy", &["source_name", "source_index", "destination_name"], RouteMask::ANY, "Copies one XAVP item to another XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64, Bytes, i64)>("xavp_copy", &["source_name", "source_index", "destination_name", "destination_index"], RouteMask::ANY, "Copies one XAVP item into an existing item of another XAVP; 1 on success, -1 on failure."),
            FnRow::sync("xavp_slist_explode", &["slist", "sep", "mode", "xname"], RouteMask::ANY, "Splits slist at any character of sep into a new XAVP item whose fields \"v\" keep the order (mode \"t\" trims blanks); 1 on success, -1 when nothing is left.", slist_explode),
            FnRow::sync("xavp_params_explode", SPARAMS_XNAME, RouteMask::ANY, "Parses \"a=b;c=d\" parameters into a new XAVP item with one field per parameter; 1 on success, -1 on an empty or malformed list.", |ctx: &mut MsgContext, sp: Bytes, x: Bytes| params_explode(ctx, XKind::Xavp, sp, x)),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("xavp_xparams_explode", &["sparams", "sep", "xname"], RouteMask::ANY, "Parses parameters with a custom separator into an XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, PvOut)>("xavp_params_implode", XNAME_PVNAME, RouteMask::ANY, "Writes the fields of an XAVP as \"a=b;c=d\" into a variable; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, PvOut)>("xavp_params_implode_qval", XNAME_PVNAME, RouteMask::ANY, "As xavp_params_implode() with values double-quoted; 1 on success, -1 on failure."),
            FnRow::sync("xavu_params_explode", SPARAMS_XNAME, RouteMask::ANY, "Parses \"a=b;c=d\" parameters into the XAVU (replacing it), one field per parameter; 1 on success, -1 on an empty or malformed list.", |ctx: &mut MsgContext, sp: Bytes, x: Bytes| params_explode(ctx, XKind::Xavu, sp, x)),
            FnRow::declared::<(Bytes, PvOut)>("xavu_params_implode", XNAME_PVNAME, RouteMask::ANY, "Writes the fields of an XAVU as parameters into a variable; 1 on success, -1 on failure."),
            FnRow::sync("xavp_child_seti", RNAME_CNAME_IVAL, RouteMask::ANY, "Sets an integer field of the first item of an XAVP (the item is created when missing); 1 on success, -1 when the item holds a plain value or the message holds too many items.", |ctx: &mut MsgContext, r: Bytes, c: Bytes, v: i64| child_set(ctx, XKind::Xavp, r, c, Value::Int(v))),
            FnRow::sync("xavp_child_sets", RNAME_CNAME_SVAL, RouteMask::ANY, "Sets a string field of the first item of an XAVP (the item is created when missing); 1 on success, -1 as xavp_child_seti().", |ctx: &mut MsgContext, r: Bytes, c: Bytes, v: Bytes| child_set(ctx, XKind::Xavp, r, c, Value::Str(v))),
            FnRow::sync("xavp_rm", &["rname"], RouteMask::ANY, "Removes the first (newest) item of an XAVP; 1 when one was removed, -1 when there was none.", |ctx: &mut MsgContext, r: Bytes| rm(ctx, XKind::Xavp, r, false)),
            FnRow::sync("xavp_rm_all", &["rname"], RouteMask::ANY, "Removes every item of an XAVP; 1 when some were removed, -1 when there were none.", |ctx: &mut MsgContext, r: Bytes| rm(ctx, XKind::Xavp, r, true)),
            FnRow::sync("xavp_child_rm", RNAME_CNAME, RouteMask::ANY, "Removes the first field cname of the first item of an XAVP; 1 when removed, -1 when absent.", |ctx: &mut MsgContext, r: Bytes, c: Bytes| child_rm(ctx, XKind::Xavp, r, c)),
            FnRow::sync("xavi_child_seti", RNAME_CNAME_IVAL, RouteMask::ANY, "As xavp_child_seti() on an XAVI (names compared ignoring case); 1 on success, -1 on failure.", |ctx: &mut MsgContext, r: Bytes, c: Bytes, v: i64| child_set(ctx, XKind::Xavi, r, c, Value::Int(v))),
            FnRow::sync("xavi_child_sets", RNAME_CNAME_SVAL, RouteMask::ANY, "As xavp_child_sets() on an XAVI; 1 on success, -1 on failure.", |ctx: &mut MsgContext, r: Bytes, c: Bytes, v: Bytes| child_set(ctx, XKind::Xavi, r, c, Value::Str(v))),
            FnRow::sync("xavi_rm", &["rname"], RouteMask::ANY, "Removes the first item of an XAVI; 1 when removed, -1 when there was none.", |ctx: &mut MsgContext, r: Bytes| rm(ctx, XKind::Xavi, r, false)),
            FnRow::sync("xavi_rm_all", &["rname"], RouteMask::ANY, "Removes every item of an XAVI; 1 when some were removed, -1 when there were none.", |ctx: &mut MsgContext, r: Bytes| rm(ctx, XKind::Xavi, r, true)),
            FnRow::sync("xavi_child_rm", RNAME_CNAME, RouteMask::ANY, "As xavp_child_rm() on an XAVI; 1 when removed, -1 when absent.", |ctx: &mut MsgContext, r: Bytes, c: Bytes| child_rm(ctx, XKind::Xavi, r, c)),
            FnRow::sync("xavp_lshift", &["xname", "idx"], RouteMask::ANY, "Rotates the items of an XAVP left by idx positions (the newest goes last for idx 1); 1 on success, -1 for a negative idx.", lshift),
            FnRow::declared::<(Bytes,)>("xavp_push_dst", &["xname"], REQ_FAIL_BRANCH_EVENT, "Pushes the destination fields of an XAVP item into the branch (R-URI, $du, socket); 1 on success, -1 on failure."),
            FnRow::declared::<()>("sbranch_set_ruri", &[], RouteMask::ANY, "Sets the R-URI and branch attributes from the static branch ($sbranch); 1 on success, -1 on failure."),
            FnRow::declared::<()>("sbranch_append", &[], RouteMask::ANY, "Adds the static branch ($sbranch) as a new branch; 1 on success, -1 on failure."),
            FnRow::declared::<()>("sbranch_reset", &[], RouteMask::ANY, "Clears the static branch ($sbranch); always 1."),
            FnRow::declared::<(PvOut, Bytes)>("pv_evalx", &["dst", "fmt"], RouteMask::ANY, "Evaluates fmt twice (the result is itself a format) and stores it in dst; 1 on success, -1 on failure."),
        ]);
    }
}

fn name_of(b: &Bytes, what: &str) -> Result<String, FnError> {
    let s = std::str::from_utf8(b)
        .map_err(|_| FnError::new(format!("{what} is not UTF-8")))?
        .trim();
    if s.is_empty() {
        return Err(FnError::new(format!("{what} is empty")));
    }
    Ok(s.to_string())
}

fn full(e: ferrosip_api::xavp::XavpError) -> FnError {
    FnError::new(e.to_string())
}

/// `pv_xavp_print()` and its siblings: one info line per item.
fn print(ctx: &mut MsgContext, kind: XKind) -> FnResult {
    for line in ctx.avps.xavps.dump(kind) {
        tracing::info!("{line}");
    }
    Ok(Verdict::TRUE)
}

/// `name=value;name2=value2` into fields, each value unquoted; `None` for a list with no
/// parameter or a parameter without a name.
fn parse_params(text: &[u8]) -> Option<Vec<(String, Value)>> {
    let text = String::from_utf8_lossy(text);
    let text = text.trim().trim_end_matches(';');
    let mut out = Vec::new();
    for part in text.split(';') {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), v.trim()),
            None => (part.trim(), ""),
        };
        if name.is_empty() {
            return None;
        }
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        out.push((name.to_string(), Value::from_string(value.to_string())));
    }
    (!out.is_empty()).then_some(out)
}

fn params_explode(ctx: &mut MsgContext, kind: XKind, sparams: Bytes, xname: Bytes) -> FnResult {
    let xname = name_of(&xname, "xname")?;
    let Some(params) = parse_params(&sparams) else {
        return Ok(Verdict::FALSE);
    };
    let mut fields = XList::default();
    for (name, value) in params {
        if kind == XKind::Xavu {
            fields.set_unique(kind, &name, XVal::Value(value));
        } else {
            // Kamailio adds each at the head: the last parameter ends first.
            fields.push_front(&name, XVal::Value(value));
        }
    }
    ctx.avps
        .xavps
        .add_list(kind, &xname, fields)
        .map_err(full)?;
    Ok(Verdict::TRUE)
}

fn slist_explode(
    ctx: &mut MsgContext,
    slist: Bytes,
    sep: Bytes,
    mode: Bytes,
    xname: Bytes,
) -> FnResult {
    let xname = name_of(&xname, "xname")?;
    if sep.is_empty() {
        return Err(FnError::new(
            "xavp_slist_explode: the separator list is empty",
        ));
    }
    let trim = mode.first() == Some(&b't');
    let mut fields = XList::default();
    for token in slist.split(|b| sep.contains(b)) {
        let token = if trim { token.trim_ascii() } else { token };
        if !token.is_empty() {
            fields.push_back("v", XVal::Value(Value::Str(slist.slice_ref(token))));
        }
    }
    if fields.is_empty() {
        return Ok(Verdict::FALSE);
    }
    ctx.avps
        .xavps
        .add_list(XKind::Xavp, &xname, fields)
        .map_err(full)?;
    Ok(Verdict::TRUE)
}

fn child_set(ctx: &mut MsgContext, kind: XKind, r: Bytes, c: Bytes, v: Value) -> FnResult {
    let (r, c) = (name_of(&r, "rname")?, name_of(&c, "cname")?);
    match ctx.avps.xavps.set_child(kind, &r, &c, v) {
        Ok(done) => Ok(Verdict::from(done)),
        Err(e) => {
            tracing::warn!("{}_child_set({r}, {c}): {e}", kind.name());
            Ok(Verdict::FALSE)
        }
    }
}

fn child_rm(ctx: &mut MsgContext, kind: XKind, r: Bytes, c: Bytes) -> FnResult {
    let (r, c) = (name_of(&r, "rname")?, name_of(&c, "cname")?);
    Ok(Verdict::from(ctx.avps.xavps.remove_child(kind, &r, &c)))
}

fn rm(ctx: &mut MsgContext, kind: XKind, r: Bytes, all: bool) -> FnResult {
    let r = name_of(&r, "rname")?;
    let list = ctx.avps.xavps.list_mut(kind);
    let removed = if all {
        list.remove_all(kind, &r) > 0
    } else {
        list.remove_nth(kind, &r, 0)
    };
    Ok(Verdict::from(removed))
}

fn lshift(ctx: &mut MsgContext, xname: Bytes, idx: i64) -> FnResult {
    let x = name_of(&xname, "xname")?;
    let Ok(n) = usize::try_from(idx) else {
        return Ok(Verdict::FALSE);
    };
    ctx.avps
        .xavps
        .list_mut(XKind::Xavp)
        .rotate_named(XKind::Xavp, &x, n);
    Ok(Verdict::TRUE)
}

/// The type names `typeof()` compares against, as Kamailio spells them.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Int(_) => "int",
        Value::Str(_) => "str",
    }
}

/// `not_empty()`: a non-empty string; an integer always prints as something.
fn is_not_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Int(_) => true,
        Value::Str(s) => !s.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_lists() {
        let p = parse_params(b"a=1;b=\"x y\";flag;").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[1], ("b".to_string(), Value::from_static("x y")));
        assert_eq!(p[2], ("flag".to_string(), Value::from_static("")));
        assert!(parse_params(b"=1").is_none());
        assert!(parse_params(b"").is_none());
    }

    #[test]
    fn value_checks() {
        assert_eq!(type_name(&Value::Int(3)), "int");
        assert_eq!(type_name(&Value::from_static("3")), "str");
        assert_eq!(type_name(&Value::Null), "null");
        assert!(is_not_empty(&Value::from_static("x")));
        assert!(!is_not_empty(&Value::from_static("")));
        assert!(!is_not_empty(&Value::Null));
    }
}
