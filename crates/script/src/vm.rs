//! The virtual machine: runs a route of a [`Program`] against a message context.
//!
//! A stack machine over one flat instruction vector. Subroutine calls (`route(X)`) push a
//! frame instead of recursing, so the depth limit is a counter, not the native stack.
//! Function calls are awaited only when the function is asynchronous; a synchronous script
//! runs to completion without yielding.

use crate::program::{BinOp, Keyword, MyselfSubject, Op, Program, RouteId, UnOp};
use ferrosip_api::trace::{statement_text, CfgTrace, TraceEvent, TraceKind};
use ferrosip_api::{Callable, FnResult, MsgContext, SendInfo, Span, Value};
use smallvec::SmallVec;
use std::cmp::Ordering;

/// How a route run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The route ran to its end or `return`ed; `rc` is its return value.
    Return(i32),
    /// `exit`, `return 0`, or a function returned 0: processing of the message stops here.
    Exit,
    /// `drop`: the request/reply/branch is discarded.
    Drop,
}

/// A failure that aborted the script (a runaway loop, too deep recursion, a broken
/// program). The message is logged with the location and handled as after `exit`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct RuntimeError {
    pub location: String,
    pub message: String,
}

struct Frame {
    return_pc: u32,
    push_result: bool,
    stack_base: usize,
}

/// Reusable VM state (value stack, frames, loop counters). Keep one per worker to avoid
/// allocating for each message.
#[derive(Default)]
pub struct Vm {
    stack: Vec<Value>,
    frames: SmallVec<[Frame; 8]>,
    loop_counts: Vec<u32>,
}

fn int_of(v: &Value) -> Option<i64> {
    v.as_int()
}

fn bytes_of(v: &Value) -> Vec<u8> {
    match v {
        Value::Str(s) => s.to_vec(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Null => Vec::new(),
    }
}

/// Compares as Kamailio does: the left operand's type decides (an int on the left compares
/// numerically, a string compares bytes); null equals only null.
fn compare(l: &Value, r: &Value) -> Option<Ordering> {
    match (l, r) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Int(a), b) => int_of(b).map(|b| a.cmp(&b)),
        (Value::Str(a), Value::Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
        (Value::Str(a), Value::Int(b)) => {
            // A numeric string against an int compares as numbers ("5" == 5).
            match ferrosip_api::value::parse_int(a) {
                Some(a) => Some(a.cmp(b)),
                None => Some(a.as_ref().cmp(b.to_string().as_bytes())),
            }
        }
    }
}

fn binary(op: BinOp, l: Value, r: Value) -> Result<Value, String> {
    use BinOp::*;
    let b = |x: bool| Value::Int(x as i64);
    Ok(match op {
        Eq => b(compare(&l, &r) == Some(Ordering::Equal)),
        Ne => b(compare(&l, &r) != Some(Ordering::Equal)),
        Lt => b(compare(&l, &r) == Some(Ordering::Less)),
        Le => b(matches!(
            compare(&l, &r),
            Some(Ordering::Less | Ordering::Equal)
        )),
        Gt => b(compare(&l, &r) == Some(Ordering::Greater)),
        Ge => b(matches!(
            compare(&l, &r),
            Some(Ordering::Greater | Ordering::Equal)
        )),
        StrEq => b(bytes_of(&l) == bytes_of(&r)),
        StrNe => b(bytes_of(&l) != bytes_of(&r)),
        IEq => b(bytes_of(&l).eq_ignore_ascii_case(&bytes_of(&r))),
        INe => b(!bytes_of(&l).eq_ignore_ascii_case(&bytes_of(&r))),
        Add => match (&l, &r) {
            (Value::Int(a), _) => Value::Int(a.wrapping_add(
                int_of(&r).ok_or_else(|| format!("cannot add \"{r}\" to a number"))?,
            )),
            (Value::Str(a), _) => {
                let mut out = a.to_vec();
                r.write_to(&mut out);
                Value::Str(out.into())
            }
            (Value::Null, Value::Str(_)) => r,
            (Value::Null, _) => return Err("'+' on a null value".into()),
        },
        _ => {
            let a = int_of(&l).ok_or_else(|| format!("\"{l}\" is not a number"))?;
            let c = int_of(&r).ok_or_else(|| format!("\"{r}\" is not a number"))?;
            Value::Int(match op {
                Sub => a.wrapping_sub(c),
                Mul => a.wrapping_mul(c),
                Div => a.checked_div(c).ok_or("division by zero")?,
                Mod => a.checked_rem(c).ok_or("division by zero")?,
                BitAnd => a & c,
                BitOr => a | c,
                BitXor => a ^ c,
                Shl => a.wrapping_shl(c as u32),
                Shr => a.wrapping_shr(c as u32),
                _ => unreachable!("comparison operators handled above"),
            })
        }
    })
}

impl Vm {
    pub fn new() -> Vm {
        Vm::default()
    }

    fn error(&self, prog: &Program, pc: u32, message: impl Into<String>) -> RuntimeError {
        let span = prog.spans.get(pc as usize).copied().unwrap_or_default();
        RuntimeError {
            location: prog.source.locate(span.start).to_string(),
            message: message.into(),
        }
    }

    fn pop(&mut self) -> Value {
        self.stack.pop().unwrap_or_default()
    }

    /// Runs `route` against `ctx` to its end.
    pub async fn run(
        &mut self,
        prog: &Program,
        route: RouteId,
        ctx: &mut MsgContext,
    ) -> Result<Outcome, RuntimeError> {
        if let Some(engine) = &prog.engine {
            return engine.run(prog, route, ctx).await;
        }
        self.stack.clear();
        self.frames.clear();
        if self.loop_counts.len() < prog.loops as usize {
            self.loop_counts.resize(prog.loops as usize, 0);
        }
        let entry = match prog.routes.get(route as usize) {
            Some(r) => r.entry,
            None => return Err(self.error(prog, 0, format!("no route #{route}"))),
        };
        // The switch is read once per run; the untraced loop is compiled without any of
        // the trace code (`TRACE` is a constant in each copy).
        match prog.trace.as_deref().filter(|t| t.is_on()) {
            Some(trace) => {
                let mut tracer = Tracer::new(trace, route);
                tracer.emit(
                    prog,
                    ctx,
                    prog.routes[route as usize].span,
                    TraceKind::Enter,
                    None,
                );
                self.exec::<true>(prog, entry, ctx, &mut tracer).await
            }
            None => {
                let mut tracer = Tracer::off();
                self.exec::<false>(prog, entry, ctx, &mut tracer).await
            }
        }
    }

    /// The interpreter loop; with `TRACE` every statement is reported to `tracer`.
    async fn exec<const TRACE: bool>(
        &mut self,
        prog: &Program,
        entry: u32,
        ctx: &mut MsgContext,
        tracer: &mut Tracer<'_>,
    ) -> Result<Outcome, RuntimeError> {
        let mut pc = entry;
        loop {
            let Some(op) = prog.code.get(pc as usize) else {
                return Err(self.error(prog, pc, "jump outside the program"));
            };
            let here = pc;
            pc += 1;
            match op {
                Op::Const(i) => self.stack.push(prog.consts[*i as usize].clone()),
                Op::LoadPv(i) => {
                    let v = match prog.pvs[*i as usize].get(ctx) {
                        Ok(v) => v,
                        Err(e) => {
                            self.log_error(prog, here, ctx, &e.to_string());
                            Value::Null
                        }
                    };
                    if TRACE {
                        tracer.read(prog.pvs[*i as usize].text(), &v);
                    }
                    self.stack.push(v);
                }
                Op::StorePv(i, set_op) => {
                    let v = self.pop();
                    let stored = TRACE.then(|| v.clone());
                    if let Err(e) = prog.pvs[*i as usize].set(ctx, *set_op, v) {
                        self.log_error(prog, here, ctx, &e.to_string());
                    }
                    if TRACE {
                        tracer.emit_at(prog, ctx, here, TraceKind::Set, stored);
                    }
                }
                Op::Defined(i) => {
                    let defined = prog.pvs[*i as usize]
                        .get(ctx)
                        .map(|v| !v.is_null())
                        .unwrap_or(false);
                    if TRACE {
                        let text = format!("defined {}", prog.pvs[*i as usize].text());
                        tracer.read(&text, &Value::Int(defined as i64));
                    }
                    self.stack.push(Value::Int(defined as i64));
                }
                Op::Keyword(k) => {
                    let v = keyword(*k, ctx);
                    if TRACE {
                        tracer.read(keyword_name(*k), &v);
                    }
                    self.stack.push(v);
                }
                Op::Unary(u) => {
                    let v = self.pop();
                    let r = match u {
                        UnOp::Not => Value::Int(!v.truthy() as i64),
                        UnOp::Neg => Value::Int(int_of(&v).unwrap_or(0).wrapping_neg()),
                        UnOp::BitNot => Value::Int(!int_of(&v).unwrap_or(0)),
                        UnOp::ToInt => Value::Int(int_of(&v).unwrap_or(0)),
                        UnOp::StrEmpty => Value::Int(bytes_of(&v).is_empty() as i64),
                        UnOp::StrLen => Value::Int(bytes_of(&v).len() as i64),
                        UnOp::ToStr => match v {
                            Value::Null => Value::Null,
                            other => Value::Str(other.to_bytes().unwrap_or_default()),
                        },
                    };
                    self.stack.push(r);
                }
                Op::Binary(b) => {
                    let r = self.pop();
                    let l = self.pop();
                    let v = match binary(*b, l, r) {
                        Ok(v) => v,
                        Err(e) => {
                            self.log_error(prog, here, ctx, &e);
                            Value::Null
                        }
                    };
                    self.stack.push(v);
                }
                Op::Match(i, neg) => {
                    let v = self.pop();
                    let m = match v.to_bytes() {
                        Some(b) => prog.regexes[*i as usize].is_match(&b),
                        None => false,
                    };
                    self.stack.push(Value::Int((m != *neg) as i64));
                }
                Op::MatchDynamic(neg) => {
                    let re = self.pop();
                    let v = self.pop();
                    let re_text = String::from_utf8_lossy(&bytes_of(&re)).into_owned();
                    let m = match regex::bytes::Regex::new(&re_text) {
                        Ok(re) => v.to_bytes().is_some_and(|b| re.is_match(&b)),
                        Err(e) => {
                            self.log_error(prog, here, ctx, &format!("bad regex: {e}"));
                            false
                        }
                    };
                    self.stack.push(Value::Int((m != *neg) as i64));
                }
                Op::MethodIs(i, neg) => {
                    let want = bytes_of(&prog.consts[*i as usize]);
                    let is = ctx
                        .msg
                        .method_bytes()
                        .is_some_and(|m| m.eq_ignore_ascii_case(&want));
                    self.stack.push(Value::Int((is != *neg) as i64));
                }
                Op::Myself(subject, neg) => {
                    let is = match subject {
                        MyselfSubject::Value => {
                            let v = self.pop();
                            myself_value(prog, ctx, &bytes_of(&v))
                        }
                        s => myself_subject(prog, *s, ctx),
                    };
                    self.stack.push(Value::Int((is != *neg) as i64));
                }
                Op::Call(i, push) => {
                    let call = &prog.calls[*i as usize];
                    let result: FnResult =
                        if call.check_route && !call.def.routes.contains(ctx.route) {
                            Err(ferrosip_api::FnError::new(format!(
                                "not allowed in {} (allowed in: {})",
                                ctx.route.keyword(),
                                call.def.routes
                            )))
                        } else {
                            match &call.def.call {
                                Callable::Sync(f) => f(ctx, &call.args),
                                Callable::Async(f) => {
                                    let apply = f(ctx, &call.args).await;
                                    apply(ctx)
                                }
                                Callable::Declared => Err(ferrosip_api::FnError::new(format!(
                            "{} is declared but not implemented in this version of Ferrosip",
                            call.def.name
                        ))),
                            }
                        };
                    let rc = match result {
                        Ok(v) => v.rc(),
                        Err(e) => {
                            self.log_error(
                                prog,
                                here,
                                ctx,
                                &format!("{}: {}", call.def.name, e.message),
                            );
                            e.code
                        }
                    };
                    ctx.rc = rc;
                    if TRACE {
                        tracer.emit_at(
                            prog,
                            ctx,
                            here,
                            TraceKind::Call,
                            Some(Value::Int(rc as i64)),
                        );
                    }
                    if rc == 0 {
                        return Ok(Outcome::Exit);
                    }
                    if *push {
                        // In an expression a call is a condition: > 0 is true, < 0 false.
                        self.stack.push(Value::Int((rc > 0) as i64));
                    }
                }
                Op::CallRoute(r, push) => {
                    pc = self.enter(prog, here, pc, *r, *push)?;
                    if TRACE {
                        tracer.enter(prog, ctx, *r);
                    }
                }
                Op::CallRouteDynamic(push) => {
                    let name = self.pop();
                    let name = String::from_utf8_lossy(&bytes_of(&name)).into_owned();
                    match prog.named_route(ferrosip_api::RouteKind::Request, &name) {
                        Some(r) => {
                            pc = self.enter(prog, here, pc, r, *push)?;
                            if TRACE {
                                tracer.enter(prog, ctx, r);
                            }
                        }
                        None => {
                            self.log_error(prog, here, ctx, &format!("no route[{name}]"));
                            ctx.rc = -1;
                            if *push {
                                self.stack.push(Value::Int(0));
                            }
                        }
                    }
                }
                Op::Jump(t) => pc = *t,
                Op::JumpIfFalse(t) => {
                    let truth = self.pop().truthy();
                    if TRACE {
                        tracer.test(prog, ctx, here, truth);
                    }
                    if !truth {
                        pc = *t;
                    }
                }
                Op::JumpIfTrue(t) => {
                    let truth = self.pop().truthy();
                    if TRACE {
                        tracer.test(prog, ctx, here, truth);
                    }
                    if truth {
                        pc = *t;
                    }
                }
                Op::Pop => {
                    self.pop();
                }
                Op::Switch(i) => {
                    let v = self.pop();
                    if TRACE {
                        tracer.emit_at(prog, ctx, here, TraceKind::Switch, Some(v.clone()));
                    }
                    let table = &prog.switches[*i as usize];
                    let target = match &v {
                        Value::Int(n) => table.ints.get(n),
                        Value::Str(s) => table.strs.get(s.as_ref()).or_else(|| {
                            ferrosip_api::value::parse_int(s).and_then(|n| table.ints.get(&n))
                        }),
                        Value::Null => None,
                    };
                    pc = target.copied().unwrap_or(table.default);
                }
                Op::LoopStart(i) => self.loop_counts[*i as usize] = 0,
                Op::LoopIter(i) => {
                    let c = &mut self.loop_counts[*i as usize];
                    *c += 1;
                    if *c > prog.limits.max_while_loops {
                        return Err(self.error(
                            prog,
                            here,
                            format!(
                                "while loop ran more than max_while_loops={} times",
                                prog.limits.max_while_loops
                            ),
                        ));
                    }
                }
                Op::Return(with_value) => {
                    let rc = if *with_value {
                        let v = self.pop();
                        int_of(&v).unwrap_or(if v.truthy() { 1 } else { -1 }) as i32
                    } else {
                        1
                    };
                    if TRACE {
                        tracer.emit_at(
                            prog,
                            ctx,
                            here,
                            TraceKind::Return,
                            Some(Value::Int(rc as i64)),
                        );
                        tracer.routes.pop();
                    }
                    if rc == 0 {
                        return Ok(Outcome::Exit);
                    }
                    ctx.rc = rc;
                    match self.frames.pop() {
                        Some(f) => {
                            self.stack.truncate(f.stack_base);
                            if f.push_result {
                                self.stack.push(Value::Int((rc > 0) as i64));
                            }
                            pc = f.return_pc;
                        }
                        None => return Ok(Outcome::Return(rc)),
                    }
                }
                Op::Exit => {
                    if TRACE {
                        tracer.emit_at(prog, ctx, here, TraceKind::Exit, None);
                    }
                    return Ok(Outcome::Exit);
                }
                Op::Drop => {
                    if TRACE {
                        tracer.emit_at(prog, ctx, here, TraceKind::Drop, None);
                    }
                    return Ok(Outcome::Drop);
                }
            }
        }
    }

    fn enter(
        &mut self,
        prog: &Program,
        here: u32,
        return_pc: u32,
        route: RouteId,
        push: bool,
    ) -> Result<u32, RuntimeError> {
        if self.frames.len() as u32 >= prog.limits.max_route_depth {
            return Err(self.error(
                prog,
                here,
                format!(
                    "route() calls nested deeper than max_recursive_level={}",
                    prog.limits.max_route_depth
                ),
            ));
        }
        self.frames.push(Frame {
            return_pc,
            push_result: push,
            stack_base: self.stack.len(),
        });
        Ok(prog.routes[route as usize].entry)
    }

    fn log_error(&self, prog: &Program, pc: u32, ctx: &MsgContext, message: &str) {
        let span = prog.spans.get(pc as usize).copied().unwrap_or_default();
        let loc = prog.source.locate(span.start);
        let call_id = ctx
            .msg
            .call_id()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default();
        tracing::error!(location = %loc, call_id = %call_id, "{message}");
    }
}

/// The state of a traced run: the route of each frame (for the route name of an event) and
/// the values read since the last event. Empty, and never touched, when the trace is off.
struct Tracer<'t> {
    trace: Option<&'t CfgTrace>,
    routes: SmallVec<[RouteId; 8]>,
    reads: Vec<(String, Value)>,
}

/// Values one statement may report: a looping expression must not grow a line forever.
const TRACE_READS_MAX: usize = 16;

impl<'t> Tracer<'t> {
    fn off() -> Self {
        Tracer {
            trace: None,
            routes: SmallVec::new(),
            reads: Vec::new(),
        }
    }

    fn new(trace: &'t CfgTrace, route: RouteId) -> Self {
        let mut routes = SmallVec::new();
        routes.push(route);
        Tracer {
            trace: Some(trace),
            routes,
            reads: Vec::new(),
        }
    }

    fn read(&mut self, name: &str, v: &Value) {
        if self.reads.len() < TRACE_READS_MAX {
            self.reads.push((name.to_string(), v.clone()));
        }
    }

    fn enter(&mut self, prog: &Program, ctx: &MsgContext, route: RouteId) {
        self.routes.push(route);
        let span = prog.routes[route as usize].span;
        self.emit(prog, ctx, span, TraceKind::Enter, None);
    }

    fn test(&mut self, prog: &Program, ctx: &MsgContext, pc: u32, truth: bool) {
        self.emit_at(
            prog,
            ctx,
            pc,
            TraceKind::Test,
            Some(Value::Int(truth as i64)),
        );
    }

    fn emit_at(
        &mut self,
        prog: &Program,
        ctx: &MsgContext,
        pc: u32,
        kind: TraceKind,
        result: Option<Value>,
    ) {
        let span = prog.spans.get(pc as usize).copied().unwrap_or_default();
        self.emit(prog, ctx, span, kind, result);
    }

    fn emit(
        &mut self,
        prog: &Program,
        ctx: &MsgContext,
        span: Span,
        kind: TraceKind,
        result: Option<Value>,
    ) {
        let Some(trace) = self.trace else {
            return;
        };
        let loc = prog.source.locate(span.start);
        let source = prog
            .source
            .text()
            .get(span.start as usize..span.end as usize)
            .unwrap_or("");
        // A route's span covers its whole block: its header line says enough.
        let text = statement_text(source);
        let route = self
            .routes
            .last()
            .map_or_else(String::new, |r| prog.route_title(*r));
        trace.emit(&TraceEvent {
            file: &loc.file,
            line: loc.line,
            route: &route,
            kind,
            text: &text,
            result,
            values: &self.reads,
            call_id: ctx.msg.call_id().unwrap_or_default(),
        });
        self.reads.clear();
    }
}

fn keyword_name(k: Keyword) -> &'static str {
    match k {
        Keyword::Method => "method",
        Keyword::Uri => "uri",
        Keyword::FromUri => "from_uri",
        Keyword::ToUri => "to_uri",
        Keyword::SrcIp => "src_ip",
        Keyword::SrcPort => "src_port",
        Keyword::DstIp => "dst_ip",
        Keyword::DstPort => "dst_port",
        Keyword::Proto => "proto",
        Keyword::Af => "af",
        Keyword::Status => "status",
        Keyword::MsgLen => "msg_len",
        Keyword::RetCode => "retcode",
        Keyword::SndIp => "snd_ip",
        Keyword::SndPort => "snd_port",
        Keyword::SndProto => "snd_proto",
        Keyword::SndAf => "snd_af",
        Keyword::ToIp => "to_ip",
        Keyword::ToPort => "to_port",
    }
}

fn keyword(k: Keyword, ctx: &MsgContext) -> Value {
    use crate::pv_core::{ip_value, uri_of};
    match k {
        Keyword::Method => ctx
            .msg
            .method_bytes()
            .map(|m| Value::Str(bytes::Bytes::copy_from_slice(m)))
            .unwrap_or_default(),
        Keyword::Uri => uri_of(ctx, MyselfSubject::Uri),
        Keyword::FromUri => uri_of(ctx, MyselfSubject::FromUri),
        Keyword::ToUri => uri_of(ctx, MyselfSubject::ToUri),
        Keyword::SrcIp => ip_value(ctx.net.source.ip()),
        Keyword::SrcPort => Value::Int(ctx.net.source.port() as i64),
        Keyword::DstIp => ip_value(ctx.net.local.ip()),
        Keyword::DstPort => Value::Int(ctx.net.local.port() as i64),
        Keyword::Proto => Value::Int(ctx.net.proto.id()),
        Keyword::Af => Value::Int(if ctx.net.source.is_ipv4() { 4 } else { 6 }),
        Keyword::Status => ctx
            .msg
            .status()
            .map(|s| Value::Int(s as i64))
            .unwrap_or_default(),
        // In onsend_route, the length on the wire (Kamailio's msg:len there).
        Keyword::MsgLen => match ctx.ext.get::<SendInfo>() {
            Some(snd) => Value::Int(snd.buf.len() as i64),
            None => Value::Int(ctx.msg.len() as i64),
        },
        Keyword::RetCode => Value::Int(ctx.rc as i64),
        Keyword::SndIp | Keyword::SndPort | Keyword::SndProto | Keyword::SndAf => {
            match ctx.ext.get::<SendInfo>() {
                Some(snd) => match k {
                    Keyword::SndIp => ip_value(snd.local.ip()),
                    Keyword::SndPort => Value::Int(snd.local.port() as i64),
                    Keyword::SndProto => Value::Int(snd.proto.id()),
                    _ => Value::Int(if snd.dst.is_ipv4() { 4 } else { 6 }),
                },
                None => Value::Null,
            }
        }
        Keyword::ToIp => ctx
            .ext
            .get::<SendInfo>()
            .map_or(Value::Null, |snd| ip_value(snd.dst.ip())),
        Keyword::ToPort => ctx
            .ext
            .get::<SendInfo>()
            .map_or(Value::Null, |snd| Value::Int(snd.dst.port() as i64)),
    }
}

/// Whether `host[:port]` is ours: the running server knows its sockets and aliases;
/// without one (tests, `ferrosip check`), what the config's `listen=`/`alias=` name.
fn is_myself(prog: &Program, ctx: &MsgContext, host: &[u8], port: Option<u16>) -> bool {
    match &ctx.services {
        Some(services) => services.is_myself(host, port),
        None => prog.myself.matches(host, port) || prog.is_module_local(host),
    }
}

fn myself_subject(prog: &Program, s: MyselfSubject, ctx: &MsgContext) -> bool {
    match s {
        MyselfSubject::SrcIp => {
            is_myself(prog, ctx, ctx.net.source.ip().to_string().as_bytes(), None)
        }
        MyselfSubject::DstIp => {
            is_myself(prog, ctx, ctx.net.local.ip().to_string().as_bytes(), None)
        }
        other => {
            let v = crate::pv_core::uri_of(ctx, other);
            myself_value(prog, ctx, &bytes_of(&v))
        }
    }
}

/// A value compared to `myself`: a SIP URI by its host and port (without one, the default
/// port of its scheme and transport, as Kamailio compares), else a bare host on any port.
fn myself_value(prog: &Program, ctx: &MsgContext, v: &[u8]) -> bool {
    if let Ok(uri) = ferrosip_sip::Uri::parse(v) {
        if let Some(host) = uri.host() {
            let port = uri.port().unwrap_or_else(|| default_port(&uri));
            return is_myself(prog, ctx, host, Some(port));
        }
    }
    is_myself(prog, ctx, v, None)
}

/// 5061 for `sips:` and TLS/WSS transports, else 5060 (RFC 3261 §19.1.2).
fn default_port(uri: &ferrosip_sip::Uri) -> u16 {
    let secure_transport = uri
        .param("transport")
        .flatten()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"tls") || t.eq_ignore_ascii_case(b"wss"));
    if uri.scheme().eq_ignore_ascii_case(b"sips") || secure_transport {
        5061
    } else {
        5060
    }
}

/// Wakes the thread that is blocked in [`run_blocking`].
struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a route to its end on the calling thread (tests, benches, tools). A route that
/// waits on an async function parks the thread until that function's waker fires, so a
/// wait costs no CPU; functions that need the tokio runtime (timers, database pools) must
/// be called with one entered. The server never blocks this way: it polls a route once
/// and hands a pending run to its runtime.
pub fn run_blocking(
    vm: &mut Vm,
    prog: &Program,
    route: RouteId,
    ctx: &mut MsgContext,
) -> Result<Outcome, RuntimeError> {
    let fut = vm.run(prog, route, ctx);
    let mut fut = std::pin::pin!(fut);
    let waker = std::task::Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(r) = std::future::Future::poll(fut.as_mut(), &mut cx) {
            return r;
        }
        // A spurious unpark only costs one more poll.
        std::thread::park();
    }
}

/// `myself` as the script's comparison does it, for other engines (Lua's
/// `KSR.is_myself_ruri()`): `subject` names a message attribute, or with
/// [`MyselfSubject::Value`] `value` is compared as a URI, else as a host.
pub fn is_myself_subject(
    prog: &Program,
    ctx: &MsgContext,
    subject: MyselfSubject,
    value: &[u8],
) -> bool {
    match subject {
        MyselfSubject::Value => myself_value(prog, ctx, value),
        s => myself_subject(prog, s, ctx),
    }
}
