//! `pv`: Pseudo-variable helpers (the PVs themselves are part of Ferrosip's core): checks, XAVP and static-branch functions.

use bytes::Bytes;
use ferrosip_api::args::PvOut;
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
        m.function("pv_isset")
            .args(&["pvar"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the pseudo-variable has a value (is not null); -1 otherwise.")
            .handler(|_ctx: &mut MsgContext, v: Value| Ok(Verdict::from(!v.is_null())));
        m.function("pv_unset")
            .args(&["pvar"])
            .routes(RouteMask::ANY)
            .doc("Sets the pseudo-variable to null (deletes it); always 1.")
            .handler(|ctx: &mut MsgContext, pv: PvOut| {
                pv.0.set(ctx, SetOp::Assign, Value::Null)?;
                Ok(Verdict::TRUE)
            });
        m.function("is_int")
            .args(&["pvar"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the pseudo-variable holds an integer; -1 otherwise.")
            .handler(|_ctx: &mut MsgContext, v: Value| {
                Ok(Verdict::from(matches!(v, Value::Int(_))))
            });
        m.function("typeof")
            .args(&["pvar", "vtype"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the value type is vtype (\"int\", \"str\" or \"null\"); -1 otherwise.")
            .handler(|_ctx: &mut MsgContext, v: Value, vtype: Bytes| {
                Ok(Verdict::from(type_name(&v).as_bytes() == vtype.as_ref()))
            });
        m.function("not_empty")
            .args(&["pvar"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the pseudo-variable holds a non-empty string; -1 otherwise.")
            .handler(|_ctx: &mut MsgContext, v: Value| Ok(Verdict::from(is_not_empty(&v))));
        m.function("pv_xavp_print")
            .routes(RouteMask::ANY)
            .doc("Logs every XAVP (debugging); always 1.")
            .declared::<()>();
        m.function("pv_xavu_print")
            .routes(RouteMask::ANY)
            .doc("Logs every XAVU (debugging); always 1.")
            .declared::<()>();
        m.function("pv_xavi_print")
            .routes(RouteMask::ANY)
            .doc("Logs every XAVI (debugging); always 1.")
            .declared::<()>();
        m.function("pv_var_to_xavp")
            .args(&["varname", "xname"])
            .routes(RouteMask::ANY)
            .doc("Copies $var(s) (or \"*\" for all) into an XAVP; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("pv_xavp_to_var")
            .args(&["xname"])
            .routes(RouteMask::ANY)
            .doc("Copies the fields of an XAVP into $vars of the same names; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("xavp_copy")
            .args(&["source_name", "source_index", "destination_name"])
            .routes(RouteMask::ANY)
            .doc("Copies one XAVP item to another XAVP; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64, Bytes)>();
        m.function("xavp_copy")
            .args(&["source_name", "source_index", "destination_name", "destination_index"])
            .routes(RouteMask::ANY)
            .doc("Copies one XAVP item into an existing item of another XAVP; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64, Bytes, i64)>();
        m.function("xavp_slist_explode")
            .args(&["slist", "sep", "mode", "xname"])
            .routes(RouteMask::ANY)
            .doc("Splits a separated list into XAVP items; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes, Bytes)>();
        m.function("xavp_params_explode")
            .args(&["sparams", "xname"])
            .routes(RouteMask::ANY)
            .doc("Parses \"a=b;c=d\" parameters into an XAVP; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("xavp_xparams_explode")
            .args(&["sparams", "sep", "xname"])
            .routes(RouteMask::ANY)
            .doc("Parses parameters with a custom separator into an XAVP; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("xavp_params_implode")
            .args(&["xname", "pvname"])
            .routes(RouteMask::ANY)
            .doc("Writes the fields of an XAVP as \"a=b;c=d\" into a variable; 1 on success, -1 on failure.")
            .declared::<(Bytes, PvOut)>();
        m.function("xavp_params_implode_qval")
            .args(&["xname", "pvname"])
            .routes(RouteMask::ANY)
            .doc("As xavp_params_implode() with values double-quoted; 1 on success, -1 on failure.")
            .declared::<(Bytes, PvOut)>();
        m.function("xavu_params_explode")
            .args(&["sparams", "xname"])
            .routes(RouteMask::ANY)
            .doc("Parses \"a=b;c=d\" parameters into an XAVU; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("xavu_params_implode")
            .args(&["xname", "pvname"])
            .routes(RouteMask::ANY)
            .doc("Writes the fields of an XAVU as parameters into a variable; 1 on success, -1 on failure.")
            .declared::<(Bytes, PvOut)>();
        m.function("xavp_child_seti")
            .args(&["rname", "cname", "ival"])
            .routes(RouteMask::ANY)
            .doc("Sets an integer child field of the first item of an XAVP; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, i64)>();
        m.function("xavp_child_sets")
            .args(&["rname", "cname", "sval"])
            .routes(RouteMask::ANY)
            .doc("Sets a string child field of the first item of an XAVP; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("xavp_rm")
            .args(&["rname"])
            .routes(RouteMask::ANY)
            .doc("Removes the first item of an XAVP; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("xavp_rm_all")
            .args(&["rname"])
            .routes(RouteMask::ANY)
            .doc("Removes every item of an XAVP; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("xavp_child_rm")
            .args(&["rname", "cname"])
            .routes(RouteMask::ANY)
            .doc("Removes a child field of the first item of an XAVP; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("xavi_child_seti")
            .args(&["rname", "cname", "ival"])
            .routes(RouteMask::ANY)
            .doc("Sets an integer child field of an XAVI (case-insensitive names); 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, i64)>();
        m.function("xavi_child_sets")
            .args(&["rname", "cname", "sval"])
            .routes(RouteMask::ANY)
            .doc("Sets a string child field of an XAVI; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("xavi_rm")
            .args(&["rname"])
            .routes(RouteMask::ANY)
            .doc("Removes the first item of an XAVI; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("xavi_rm_all")
            .args(&["rname"])
            .routes(RouteMask::ANY)
            .doc("Removes every item of an XAVI; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("xavi_child_rm")
            .args(&["rname", "cname"])
            .routes(RouteMask::ANY)
            .doc("Removes a child field of an XAVI; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("xavp_lshift")
            .args(&["xname", "idx"])
            .routes(RouteMask::ANY)
            .doc("Rotates the items of an XAVP left by idx positions; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64)>();
        m.function("xavp_push_dst")
            .args(&["xname"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Pushes the destination fields of an XAVP item into the branch (R-URI, $du, socket); 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("sbranch_set_ruri")
            .routes(RouteMask::ANY)
            .doc("Sets the R-URI and branch attributes from the static branch ($sbranch); 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("sbranch_append")
            .routes(RouteMask::ANY)
            .doc("Adds the static branch ($sbranch) as a new branch; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("sbranch_reset")
            .routes(RouteMask::ANY)
            .doc("Clears the static branch ($sbranch); always 1.")
            .declared::<()>();
        m.function("pv_evalx")
            .args(&["dst", "fmt"])
            .routes(RouteMask::ANY)
            .doc("Evaluates fmt twice (the result is itself a format) and stores it in dst; 1 on success, -1 on failure.")
            .declared::<(PvOut, Bytes)>();
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
