//! `pv`: Pseudo-variable helpers (the PVs themselves are part of Ferrosip's core): checks, XAVP and static-branch functions.

use bytes::Bytes;
use ferrosip_api::args::PvOut;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{
    Module, ModuleBuilder, MsgContext, ParamType, RouteMask, SetOp, Value, Verdict,
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
            FnRow::declared::<()>("pv_xavp_print", &[], RouteMask::ANY, "Logs every XAVP (debugging); always 1."),
            FnRow::declared::<()>("pv_xavu_print", &[], RouteMask::ANY, "Logs every XAVU (debugging); always 1."),
            FnRow::declared::<()>("pv_xavi_print", &[], RouteMask::ANY, "Logs every XAVI (debugging); always 1."),
            FnRow::declared::<(Bytes, Bytes)>("pv_var_to_xavp", &["varname", "xname"], RouteMask::ANY, "Copies $var(s) (or \"*\" for all) into an XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("pv_xavp_to_var", &["xname"], RouteMask::ANY, "Copies the fields of an XAVP into $vars of the same names; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64, Bytes)>("xavp_copy", &["source_name", "source_index", "destination_name"], RouteMask::ANY, "Copies one XAVP item to another XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64, Bytes, i64)>("xavp_copy", &["source_name", "source_index", "destination_name", "destination_index"], RouteMask::ANY, "Copies one XAVP item into an existing item of another XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, Bytes, Bytes)>("xavp_slist_explode", &["slist", "sep", "mode", "xname"], RouteMask::ANY, "Splits a separated list into XAVP items; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("xavp_params_explode", SPARAMS_XNAME, RouteMask::ANY, "Parses \"a=b;c=d\" parameters into an XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("xavp_xparams_explode", &["sparams", "sep", "xname"], RouteMask::ANY, "Parses parameters with a custom separator into an XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, PvOut)>("xavp_params_implode", XNAME_PVNAME, RouteMask::ANY, "Writes the fields of an XAVP as \"a=b;c=d\" into a variable; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, PvOut)>("xavp_params_implode_qval", XNAME_PVNAME, RouteMask::ANY, "As xavp_params_implode() with values double-quoted; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("xavu_params_explode", SPARAMS_XNAME, RouteMask::ANY, "Parses \"a=b;c=d\" parameters into an XAVU; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, PvOut)>("xavu_params_implode", XNAME_PVNAME, RouteMask::ANY, "Writes the fields of an XAVU as parameters into a variable; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, i64)>("xavp_child_seti", RNAME_CNAME_IVAL, RouteMask::ANY, "Sets an integer child field of the first item of an XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("xavp_child_sets", RNAME_CNAME_SVAL, RouteMask::ANY, "Sets a string child field of the first item of an XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("xavp_rm", &["rname"], RouteMask::ANY, "Removes the first item of an XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("xavp_rm_all", &["rname"], RouteMask::ANY, "Removes every item of an XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("xavp_child_rm", RNAME_CNAME, RouteMask::ANY, "Removes a child field of the first item of an XAVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, i64)>("xavi_child_seti", RNAME_CNAME_IVAL, RouteMask::ANY, "Sets an integer child field of an XAVI (case-insensitive names); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("xavi_child_sets", RNAME_CNAME_SVAL, RouteMask::ANY, "Sets a string child field of an XAVI; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("xavi_rm", &["rname"], RouteMask::ANY, "Removes the first item of an XAVI; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("xavi_rm_all", &["rname"], RouteMask::ANY, "Removes every item of an XAVI; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("xavi_child_rm", RNAME_CNAME, RouteMask::ANY, "Removes a child field of an XAVI; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64)>("xavp_lshift", &["xname", "idx"], RouteMask::ANY, "Rotates the items of an XAVP left by idx positions; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("xavp_push_dst", &["xname"], REQ_FAIL_BRANCH_EVENT, "Pushes the destination fields of an XAVP item into the branch (R-URI, $du, socket); 1 on success, -1 on failure."),
            FnRow::declared::<()>("sbranch_set_ruri", &[], RouteMask::ANY, "Sets the R-URI and branch attributes from the static branch ($sbranch); 1 on success, -1 on failure."),
            FnRow::declared::<()>("sbranch_append", &[], RouteMask::ANY, "Adds the static branch ($sbranch) as a new branch; 1 on success, -1 on failure."),
            FnRow::declared::<()>("sbranch_reset", &[], RouteMask::ANY, "Clears the static branch ($sbranch); always 1."),
            FnRow::declared::<(PvOut, Bytes)>("pv_evalx", &["dst", "fmt"], RouteMask::ANY, "Evaluates fmt twice (the result is itself a format) and stores it in dst; 1 on success, -1 on failure."),
        ]);
    }
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
    fn value_checks() {
        assert_eq!(type_name(&Value::Int(3)), "int");
        assert_eq!(type_name(&Value::from_static("3")), "str");
        assert_eq!(type_name(&Value::Null), "null");
        assert!(is_not_empty(&Value::from_static("x")));
        assert!(!is_not_empty(&Value::from_static("")));
        assert!(!is_not_empty(&Value::Null));
    }
}
