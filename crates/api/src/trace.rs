//! The statement trace (Kamailio's debugger `cfgtrace`): when switched on, every statement a
//! route executes is reported with its file:line, the route, the pseudo-variables it read
//! and what it returned.
//!
//! One [`CfgTrace`] lives in each [`crate::Registry`] (so it survives a reload and two
//! registries in one test never share it). The script VM looks at [`CfgTrace::is_on`] once
//! per route run and then runs either its plain loop or its traced one: a run with the
//! trace off pays one atomic load, nothing per statement. The debugger module's `cfgtrace`
//! parameter, `ferrosip run --trace` and the RPC `dbg.trace on|off` flip the switch.
//!
//! Events go to the log (`tracing`, at the debugger's `log_level` with its `log_prefix`)
//! unless a [`TraceSink`] is set: a test runner collects the lines of a failing test that
//! way. The text of an event ([`TraceEvent`]'s `Display`) is the documented, stable format
//! (docs/debugging.md).

use crate::Value;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// What kind of statement an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceKind {
    /// A route starts (the top route of a run, or a `route(NAME)` subroutine).
    Enter,
    /// A module function returned (`result` is its return code).
    Call,
    /// A pseudo-variable was assigned (`result` is the value stored).
    Set,
    /// A condition was evaluated (`if`, `while`, a `&&`/`||` operand): `result` is 1 or 0.
    Test,
    /// A `switch` chose its branch on the value in `result`.
    Switch,
    /// `return` (`result` is the route's return code).
    Return,
    /// `exit`: the route run ended.
    Exit,
    /// `drop`: the message was dropped.
    Drop,
    /// A `KSR.*` call from a Lua route (`result` is its return code).
    Ksr,
}

impl TraceKind {
    /// The kind's word in a trace line (`enter`, `call`, ...).
    pub fn word(self) -> &'static str {
        match self {
            TraceKind::Enter => "enter",
            TraceKind::Call => "call",
            TraceKind::Set => "set",
            TraceKind::Test => "test",
            TraceKind::Switch => "switch",
            TraceKind::Return => "return",
            TraceKind::Exit => "exit",
            TraceKind::Drop => "drop",
            TraceKind::Ksr => "ksr",
        }
    }
}

/// One traced statement.
#[derive(Clone, Debug)]
pub struct TraceEvent<'a> {
    /// The config (or Lua) file and line of the statement.
    pub file: &'a str,
    /// The statement's line in `file`.
    pub line: u32,
    /// `request_route`, `route[AUTH]`, `failure_route[MISSED]`; for Lua the function name.
    pub route: &'a str,
    /// What happened.
    pub kind: TraceKind,
    /// The statement's source text (its first line, shortened).
    pub text: &'a str,
    /// The return code, value stored, condition outcome or `switch` value.
    pub result: Option<Value>,
    /// Pseudo-variables and keywords the statement read, with their values, in order.
    pub values: &'a [(String, Value)],
    /// The message's Call-ID (empty when it has none).
    pub call_id: &'a [u8],
}

/// Values in the trace: strings quoted (so an empty string and a missing value differ).
pub struct TraceValue<'a>(pub &'a Value);

impl fmt::Display for TraceValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Null => f.write_str("<null>"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{:?}", String::from_utf8_lossy(s)),
        }
    }
}

/// The stable line format: `FILE:LINE [ROUTE] KIND TEXT[ -> RESULT][ {NAME=VALUE ...}]`.
impl fmt::Display for TraceEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} [{}] {}",
            self.file,
            self.line,
            self.route,
            self.kind.word()
        )?;
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        if let Some(r) = &self.result {
            write!(f, " -> {}", TraceValue(r))?;
        }
        if !self.values.is_empty() {
            f.write_str(" {")?;
            for (i, (name, v)) in self.values.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{name}={}", TraceValue(v))?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// Where trace events go instead of the log (a test runner's collector).
pub trait TraceSink: Send + Sync {
    /// Called for each traced statement, on the thread running the route.
    fn event(&self, event: &TraceEvent<'_>);
}

/// A sink that keeps every event's line (`ferrosip test --trace`, unit tests).
#[derive(Default)]
pub struct TraceLines(std::sync::Mutex<Vec<String>>);

impl TraceLines {
    /// The lines collected so far, emptied.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The most lines [`TraceLines`] keeps: a looping script must not eat the memory.
pub const TRACE_LINES_MAX: usize = 100_000;

impl TraceSink for TraceLines {
    fn event(&self, event: &TraceEvent<'_>) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() < TRACE_LINES_MAX {
            lines.push(event.to_string());
        }
    }
}

/// How events are logged when no sink is set.
#[derive(Clone, Debug)]
pub struct TraceLog {
    /// Printed before each line (the debugger's `log_prefix`).
    pub prefix: String,
    /// Kamailio's numeric level (the debugger's `log_level`): -1 and below error, 0 warn,
    /// 1 and 2 info, 3 and above debug.
    pub level: i64,
    /// Written in the line as `level=NAME` when set (the debugger's `log_level_name`).
    pub level_name: Option<String>,
}

impl Default for TraceLog {
    fn default() -> Self {
        TraceLog {
            prefix: "*** cfgtrace:".into(),
            level: -1,
            level_name: None,
        }
    }
}

/// The switch and destination of the statement trace; see the module doc.
#[derive(Default)]
pub struct CfgTrace {
    on: AtomicBool,
    sink: RwLock<Option<Arc<dyn TraceSink>>>,
    log: RwLock<TraceLog>,
}

impl CfgTrace {
    /// Whether routes started from now on are traced.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Turns the trace on or off for routes started from now on.
    pub fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    /// Sends events to `sink` instead of the log (`None`: back to the log).
    pub fn set_sink(&self, sink: Option<Arc<dyn TraceSink>>) {
        *self.sink.write().unwrap_or_else(|e| e.into_inner()) = sink;
    }

    /// How trace lines go to the log (level, prefix, level name).
    pub fn set_log(&self, log: TraceLog) {
        *self.log.write().unwrap_or_else(|e| e.into_inner()) = log;
    }

    /// The current [`TraceLog`] settings.
    pub fn log_style(&self) -> TraceLog {
        self.log.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reports one event to the sink, or logs it.
    pub fn emit(&self, event: &TraceEvent<'_>) {
        if let Some(sink) = self.sink.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            sink.event(event);
            return;
        }
        let log = self.log.read().unwrap_or_else(|e| e.into_inner());
        let call_id = String::from_utf8_lossy(event.call_id);
        let level = log.level_name.as_deref().unwrap_or("");
        let sep = if level.is_empty() { "" } else { " " };
        match log.level {
            i64::MIN..=-1 => {
                tracing::error!(call_id = %call_id, "{}{sep}{level} {event}", log.prefix)
            }
            0 => tracing::warn!(call_id = %call_id, "{}{sep}{level} {event}", log.prefix),
            1 | 2 => tracing::info!(call_id = %call_id, "{}{sep}{level} {event}", log.prefix),
            _ => tracing::debug!(call_id = %call_id, "{}{sep}{level} {event}", log.prefix),
        }
    }
}

/// Which way a tapped message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Read from a socket.
    Received,
    /// Written to a socket.
    Sent,
}

/// A SIP message as it crossed a socket, for a [`MessageTap`].
#[derive(Clone, Copy, Debug)]
pub struct TappedMessage<'a> {
    /// Received or sent.
    pub direction: Direction,
    /// The transport it crossed.
    pub proto: crate::Proto,
    /// Where it came from.
    pub source: std::net::SocketAddr,
    /// Where it went.
    pub destination: std::net::SocketAddr,
    /// The message's bytes as on the wire.
    pub data: &'a [u8],
}

/// Sees every SIP message the server receives and sends (siptrace's `trace_mode`). A
/// module adds one with [`crate::ModuleBuilder::message_tap`]; the server calls the taps of
/// the loaded modules on its receiving and sending threads, so a tap must not block.
pub trait MessageTap: Send + Sync {
    /// Called for each message; must return quickly.
    fn message(&self, message: &TappedMessage<'_>);
}

/// The first line of a statement's source text, shortened for a trace line.
pub fn statement_text(source: &str) -> String {
    const MAX: usize = 100;
    let first = source.lines().next().unwrap_or("").trim();
    let first = first.strip_suffix('{').unwrap_or(first).trim_end();
    if first.chars().count() > MAX {
        let cut: String = first.chars().take(MAX).collect();
        format!("{cut}...")
    } else {
        first.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_documented_shape() {
        let values = [
            ("$si".to_string(), Value::Str("10.0.0.1".into())),
            ("$var(n)".to_string(), Value::Null),
        ];
        let e = TraceEvent {
            file: "proxy.cfg",
            line: 12,
            route: "route[AUTH]",
            kind: TraceKind::Test,
            text: "if ($si == \"127.0.0.1\")",
            result: Some(Value::Int(0)),
            values: &values,
            call_id: b"abc",
        };
        assert_eq!(
            e.to_string(),
            "proxy.cfg:12 [route[AUTH]] test if ($si == \"127.0.0.1\") -> 0 {$si=\"10.0.0.1\" $var(n)=<null>}"
        );
    }

    #[test]
    fn statement_text_keeps_the_first_line_without_its_brace() {
        assert_eq!(statement_text("if (a) {\n  b();\n}"), "if (a)");
        assert_eq!(statement_text(&"x".repeat(150)).len(), 103);
    }
}
