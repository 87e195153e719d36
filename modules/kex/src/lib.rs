//! `kex`: Kamailio core extensions: branch and script flags, destination URI helpers, myself checks, debug level.

use bytes::Bytes;
use ferrosip_api::args::{Flag, PvOut};
use ferrosip_api::{Module, ModuleBuilder, MsgContext, RouteMask, Verdict};

/// The `kex` module.
pub struct KexModule;

impl Module for KexModule {
    fn name(&self) -> &'static str {
        "kex"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Kamailio core extensions: branch and script flags, destination URI helpers, myself checks, debug level.");
        m.function("setsflag")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("Sets a script flag (kept across the processing of the message in the worker); always 1.")
            .declared::<(Flag,)>();
        m.function("resetsflag")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("Resets a script flag; always 1.")
            .declared::<(Flag,)>();
        m.function("issflagset")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the script flag is set; -1 otherwise.")
            .declared::<(Flag,)>();
        m.function("setbflag")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("Sets a branch flag of the current branch (branch 0: the R-URI); always 1.")
            .handler(|ctx: &mut MsgContext, f: Flag| {
                set_bit(&mut ctx.bflags, f);
                Ok(Verdict::TRUE)
            });
        m.function("setbflag")
            .args(&["flag", "branch"])
            .routes(RouteMask::ANY)
            .doc("Sets a branch flag of the given branch index; 1 on success, -1 on a bad index.")
            .declared::<(Flag, i64)>();
        m.function("resetbflag")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("Resets a branch flag of the current branch; always 1.")
            .handler(|ctx: &mut MsgContext, f: Flag| {
                reset_bit(&mut ctx.bflags, f);
                Ok(Verdict::TRUE)
            });
        m.function("resetbflag")
            .args(&["flag", "branch"])
            .routes(RouteMask::ANY)
            .doc("Resets a branch flag of the given branch index; 1 on success, -1 on a bad index.")
            .declared::<(Flag, i64)>();
        m.function("isbflagset")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the branch flag of the current branch is set; -1 otherwise.")
            .handler(|ctx: &mut MsgContext, f: Flag| Ok(Verdict::from(bit_is_set(ctx.bflags, f))));
        m.function("isbflagset")
            .args(&["flag", "branch"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the branch flag of the given branch is set; -1 otherwise.")
            .declared::<(Flag, i64)>();
        m.function("setdsturi")
            .args(&["uri"])
            .routes(RouteMask::ANY)
            .doc("Sets the destination URI ($du); 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, uri: Bytes| {
                if uri.is_empty() {
                    return Ok(Verdict::FALSE);
                }
                ctx.dst_uri = Some(uri);
                Ok(Verdict::TRUE)
            });
        m.function("resetdsturi")
            .routes(RouteMask::ANY)
            .doc("Clears the destination URI ($du); always 1.")
            .handler(|ctx: &mut MsgContext| {
                ctx.dst_uri = None;
                Ok(Verdict::TRUE)
            });
        m.function("isdsturiset")
            .routes(RouteMask::ANY)
            .doc("True (1) when the destination URI ($du) is set; -1 otherwise.")
            .handler(|ctx: &mut MsgContext| Ok(Verdict::from(dst_uri_is_set(&ctx.dst_uri))));
        m.function("pv_printf")
            .args(&["var", "format"])
            .routes(RouteMask::ANY)
            .doc(
                "Evaluates the format and assigns it to the variable; 1 on success, -1 on failure.",
            )
            .declared::<(PvOut, Bytes)>();
        m.function("avp_printf")
            .args(&["var", "format"])
            .routes(RouteMask::ANY)
            .doc("Alias of pv_printf(); 1 on success, -1 on failure.")
            .declared::<(PvOut, Bytes)>();
        m.function("is_myself")
            .args(&["uri"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the URI host and port are local (listen addresses, aliases, local domains); -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("is_myhost")
            .args(&["uri"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the URI host is local, ignoring the port; -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("setdebug")
            .args(&["level"])
            .routes(RouteMask::ANY)
            .doc("Sets the log level for the rest of this message's processing in this worker; always 1.")
            .declared::<(i64,)>();
        m.function("resetdebug")
            .routes(RouteMask::ANY)
            .doc("Restores the global log level; always 1.")
            .declared::<()>();
    }
}

fn set_bit(bits: &mut u64, f: Flag) {
    *bits |= 1 << f.0;
}

fn reset_bit(bits: &mut u64, f: Flag) {
    *bits &= !(1 << f.0);
}

fn bit_is_set(bits: u64, f: Flag) -> bool {
    bits & (1 << f.0) != 0
}

/// `isdsturiset()`: a `$du` that was set to an empty string counts as unset.
fn dst_uri_is_set(du: &Option<Bytes>) -> bool {
    du.as_ref().is_some_and(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_api::Registry;

    #[test]
    fn flag_bits() {
        let mut bits = 0u64;
        set_bit(&mut bits, Flag(0));
        set_bit(&mut bits, Flag(63));
        assert!(bit_is_set(bits, Flag(0)));
        assert!(bit_is_set(bits, Flag(63)));
        assert!(!bit_is_set(bits, Flag(5)));
        reset_bit(&mut bits, Flag(63));
        assert!(!bit_is_set(bits, Flag(63)));
        assert_eq!(bits, 1);
    }

    #[test]
    fn dst_uri_set_means_non_empty() {
        assert!(!dst_uri_is_set(&None));
        assert!(!dst_uri_is_set(&Some(Bytes::new())));
        assert!(dst_uri_is_set(&Some(Bytes::from_static(b"sip:1.2.3.4"))));
    }

    #[test]
    fn declares_every_function_with_docs_and_routes() {
        let mut reg = Registry::new();
        reg.register(&KexModule);
        let def = reg.module("kex").expect("module registered");
        assert!(!def.doc.is_empty());
        for name in &def.functions {
            for f in reg.function(name).unwrap() {
                assert!(!f.doc.is_empty(), "{} has no doc", f.signature());
                assert!(!f.routes.is_empty(), "{} has no route kinds", f.signature());
                assert_eq!(f.arg_names.len(), f.arity(), "{}", f.signature());
            }
        }
        for p in &def.params {
            assert!(!p.doc.is_empty(), "param {} has no doc", p.name);
        }
    }
}
