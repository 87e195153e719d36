//! `xlog`: Logging of formatted messages with pseudo-variables.

use bytes::Bytes;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `xlog` module.
pub struct XlogModule;

impl Module for XlogModule {
    fn name(&self) -> &'static str {
        "xlog"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Logging of formatted messages with pseudo-variables.");
        m.param(
            "buf_size",
            ParamType::Int,
            4096_i64,
            "Size of the buffer the log message is printed into.",
        );
        m.param(
            "force_color",
            ParamType::Int,
            0_i64,
            "When 1, color escapes ($C(xy)) are printed even when not logging to a terminal.",
        );
        m.param(
            "long_format",
            ParamType::Int,
            0_i64,
            "When 1, the log line carries the config file name and line.",
        );
        m.param(
            "prefix",
            ParamType::Str,
            "<script>: ",
            "Text put before every xlog message.",
        );
        m.param(
            "log_facility",
            ParamType::Str,
            Value::Null,
            "Syslog facility for xlog messages (default: the core's).",
        );
        m.param(
            "log_colors",
            ParamType::Str,
            Value::Null,
            "Colors per log level (\"L_ERR=cr;L_WARN=px\").",
        );
        m.param(
            "methods_filter",
            ParamType::Int,
            -1_i64,
            "Bit mask of SIP methods whose messages are not logged (-1: none filtered).",
        );
        m.param(
            "prefix_mode",
            ParamType::Int,
            0_i64,
            "When 1, the prefix is evaluated as a format with pseudo-variables.",
        );
        m.param(
            "auto_newline",
            ParamType::Int,
            0_i64,
            "When 1, a newline is added to messages that do not end with one.",
        );
        m.function("xlog")
            .args(&["format"])
            .routes(RouteMask::ANY)
            .doc("Logs the format at error level; always 1.")
            .declared::<(Bytes,)>();
        m.function("xlog")
            .args(&["level", "format"])
            .routes(RouteMask::ANY)
            .doc("Logs the format at level (\"L_ALERT\"..\"L_DBG\", or a PV); always 1.")
            .declared::<(Bytes, Bytes)>();
        m.function("xlog")
            .args(&["facility", "level", "format"])
            .routes(RouteMask::ANY)
            .doc("Logs the format at level to a syslog facility; always 1.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("xdbg")
            .args(&["format"])
            .routes(RouteMask::ANY)
            .doc("Logs the format at debug level; always 1.")
            .declared::<(Bytes,)>();
        m.function("xinfo")
            .args(&["format"])
            .routes(RouteMask::ANY)
            .doc("Logs the format at info level; always 1.")
            .declared::<(Bytes,)>();
        m.function("xnotice")
            .args(&["format"])
            .routes(RouteMask::ANY)
            .doc("Logs the format at notice level; always 1.")
            .declared::<(Bytes,)>();
        m.function("xwarn")
            .args(&["format"])
            .routes(RouteMask::ANY)
            .doc("Logs the format at warning level; always 1.")
            .declared::<(Bytes,)>();
        m.function("xerr")
            .args(&["format"])
            .routes(RouteMask::ANY)
            .doc("Logs the format at error level; always 1.")
            .declared::<(Bytes,)>();
        m.function("xbug")
            .args(&["format"])
            .routes(RouteMask::ANY)
            .doc("Logs the format at bug level; always 1.")
            .declared::<(Bytes,)>();
        m.function("xcrit")
            .args(&["format"])
            .routes(RouteMask::ANY)
            .doc("Logs the format at critical level; always 1.")
            .declared::<(Bytes,)>();
        m.function("xalert")
            .args(&["format"])
            .routes(RouteMask::ANY)
            .doc("Logs the format at alert level; always 1.")
            .declared::<(Bytes,)>();
        m.function("xlogl")
            .args(&["format"])
            .routes(RouteMask::ANY)
            .doc("Like xlog() with the config line number added; always 1.")
            .declared::<(Bytes,)>();
        m.function("xlogl")
            .args(&["level", "format"])
            .routes(RouteMask::ANY)
            .doc("Like xlog(level, format) with the config line number added; always 1.")
            .declared::<(Bytes, Bytes)>();
        m.function("xlogl")
            .args(&["facility", "level", "format"])
            .routes(RouteMask::ANY)
            .doc("Like xlog(facility, level, format) with the config line number added; always 1.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("xdbgl")
            .args(&["format"])
            .routes(RouteMask::ANY)
            .doc("Like xdbg() with the config line number added; always 1.")
            .declared::<(Bytes,)>();
        m.function("xlogm")
            .args(&["level", "format"])
            .routes(RouteMask::ANY)
            .doc("Like xlog(level, format) but honors methods_filter; always 1.")
            .declared::<(Bytes, Bytes)>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_api::Registry;

    #[test]
    fn declares_every_function_with_docs_and_routes() {
        let mut reg = Registry::new();
        reg.register(&XlogModule);
        let def = reg.module("xlog").expect("module registered");
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
