//! `xlog`: Logging of formatted messages with pseudo-variables.

pub mod emit;
use emit::*;

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, MsgContext, ParamType, RouteMask, Value};

/// The `xlog` module.
pub struct XlogModule;

impl Module for XlogModule {
    fn name(&self) -> &'static str {
        "xlog"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.example(include_str!("../example.cfg"));
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
        let cfg = m.state(|p| {
            let facility = p.string("log_facility");
            let facility = (!facility.is_empty()).then_some(facility);
            if let Some(f) = &facility {
                if syslog_facility(f).is_none() {
                    return Err(format!(
                        "xlog log_facility \"{f}\": not a syslog facility (LOG_LOCAL0..LOG_LOCAL7, LOG_DAEMON, ...)"
                    ));
                }
            }
            if p.int("prefix_mode") != 0 {
                return Err("xlog prefix_mode 1 (a prefix with pseudo-variables) is not supported: give a plain prefix".into());
            }
            Ok(XlogConfig {
                prefix: p.string("prefix"),
                facility,
            })
        });
        const LEVEL_FORMAT: &[&str] = &["level", "format"];
        const FACILITY_LEVEL_FORMAT: &[&str] = &["facility", "level", "format"];
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("xlog", &["format"], RouteMask::ALL, "Logs the format at error level; always 1.", cfg.with(xlog)),
            FnRow::sync("xlog", LEVEL_FORMAT, RouteMask::ALL, "Logs the format at level (\"L_ALERT\"..\"L_DBG\", or a PV); always 1.", cfg.with(xlog_level)),
            FnRow::sync("xlog", FACILITY_LEVEL_FORMAT, RouteMask::ALL, "Logs the format at level to a syslog facility; always 1.", cfg.with(xlog_facility)),
            FnRow::sync("xdbg", &["format"], RouteMask::ALL, "Logs the format at debug level; always 1.", cfg.with(|c: &XlogConfig, ctx: &mut MsgContext, t: Bytes| emit_with(c, ctx, L_DBG, None, &t))),
            FnRow::sync("xinfo", &["format"], RouteMask::ALL, "Logs the format at info level; always 1.", cfg.with(|c: &XlogConfig, ctx: &mut MsgContext, t: Bytes| emit_with(c, ctx, L_INFO, None, &t))),
            FnRow::sync("xnotice", &["format"], RouteMask::ALL, "Logs the format at notice level; always 1.", cfg.with(|c: &XlogConfig, ctx: &mut MsgContext, t: Bytes| emit_with(c, ctx, L_NOTICE, None, &t))),
            FnRow::sync("xwarn", &["format"], RouteMask::ALL, "Logs the format at warning level; always 1.", cfg.with(|c: &XlogConfig, ctx: &mut MsgContext, t: Bytes| emit_with(c, ctx, L_WARN, None, &t))),
            FnRow::sync("xerr", &["format"], RouteMask::ALL, "Logs the format at error level; always 1.", cfg.with(|c: &XlogConfig, ctx: &mut MsgContext, t: Bytes| emit_with(c, ctx, L_ERR, None, &t))),
            FnRow::sync("xbug", &["format"], RouteMask::ALL, "Logs the format at bug level; always 1.", cfg.with(|c: &XlogConfig, ctx: &mut MsgContext, t: Bytes| emit_with(c, ctx, L_BUG, None, &t))),
            FnRow::sync("xcrit", &["format"], RouteMask::ALL, "Logs the format at critical level; always 1.", cfg.with(|c: &XlogConfig, ctx: &mut MsgContext, t: Bytes| emit_with(c, ctx, L_CRIT, None, &t))),
            FnRow::sync("xalert", &["format"], RouteMask::ALL, "Logs the format at alert level; always 1.", cfg.with(|c: &XlogConfig, ctx: &mut MsgContext, t: Bytes| emit_with(c, ctx, L_ALERT, None, &t))),
            FnRow::declared::<(Bytes,)>("xlogl", &["format"], RouteMask::ALL, "Like xlog() with the config line number added; always 1."),
            FnRow::declared::<(Bytes, Bytes)>("xlogl", LEVEL_FORMAT, RouteMask::ALL, "Like xlog(level, format) with the config line number added; always 1."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("xlogl", FACILITY_LEVEL_FORMAT, RouteMask::ALL, "Like xlog(facility, level, format) with the config line number added; always 1."),
            FnRow::declared::<(Bytes,)>("xdbgl", &["format"], RouteMask::ALL, "Like xdbg() with the config line number added; always 1."),
            FnRow::declared::<(Bytes, Bytes)>("xlogm", LEVEL_FORMAT, RouteMask::ALL, "Like xlog(level, format) but honors methods_filter; always 1."),
        ]);
    }
}

#[cfg(test)]
mod tests_emit {
    use super::*;
    use ferrosip_api::{NetInfo, Registry, RouteKind};
    use ferrosip_script::vm::Outcome;
    use ferrosip_sip::SipMessage;
    use ferrosip_tests::Script;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn ctx() -> MsgContext {
        let raw = "OPTIONS sip:bob@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
To: <sip:bob@10.0.0.5>\r\nFrom: <sip:alice@example.com>;tag=9\r\nCall-ID: c1@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let msg = SipMessage::parse(Bytes::from_static(raw.as_bytes())).expect("parses");
        let net = NetInfo {
            source: "192.0.2.7:5062".parse().unwrap(),
            ..NetInfo::default()
        };
        MsgContext::new(msg, RouteKind::Request, net)
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level(b"L_ALERT").unwrap(), -5);
        assert_eq!(parse_level(b"L_DBG").unwrap(), 3);
        assert_eq!(parse_level(b" 2 ").unwrap(), 2);
        assert!(parse_level(b"L_LOUD").is_err());
        assert_eq!(tracing_level(L_CRIT), tracing::Level::ERROR);
        assert_eq!(tracing_level(L_WARN), tracing::Level::WARN);
        assert_eq!(tracing_level(L_NOTICE), tracing::Level::INFO);
        assert_eq!(tracing_level(L_DBG), tracing::Level::DEBUG);
    }

    #[test]
    fn script_logs_with_fields() {
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&XlogModule);
        let cfg = r#"loadmodule "xlog.so"
request_route {
    xlog("L_WARN", "got $rm from $si\n");
    xdbg("debug line\n");
    $var(l) = 2;
    xlog("$var(l)", "dynamic level\n");
    if (xinfo("x")) { return(1); }
}
"#;
        let script = Script::load(&reg, cfg);
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        let (o, _) = tracing::subscriber::with_default(sub, || script.run(ctx()));
        assert!(matches!(o, Outcome::Return(1)), "{o:?}");
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[0].contains("WARN") && lines[0].contains("got OPTIONS from 192.0.2.7"),
            "{out}"
        );
        assert!(
            lines[0].contains("call_id=c1@h") && lines[0].contains("method=OPTIONS"),
            "{out}"
        );
        assert!(lines[0].contains("src=192.0.2.7:5062"), "{out}");
        assert!(
            lines[1].contains("INFO") && lines[1].contains("dynamic level"),
            "{out}"
        );
        assert!(!out.contains("debug line"));
    }
}
