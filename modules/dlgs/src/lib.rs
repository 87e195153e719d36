//! `dlgs` (Kamailio 5.4+'s module of the same name, loaded by the stock kamailio.cfg of
//! Kamailio 6): tracks calls without the dialog module's machinery. `dlgs_init()` records an
//! INVITE with three free text fields (src, dst, data); the call then moves through its
//! states by what the proxy sees: every reply it sends to the INVITE (Kamailio hooks the
//! "reply out" event; here a message tap sees each reply as it leaves, stateless or
//! stateful, relayed or local) and the ACK, CANCEL and BYE the script hands to
//! `dlgs_update()`. Scripts count live calls by field (`dlgs_count`) or by tags they put
//! on calls; RPCs list them. A timer forgets each record when the lifetime of its state is
//! over, so the table stays bounded by traffic and time, and by `max_items` in any case.

mod table;

use bytes::Bytes;
use ferrosip_api::args::{raw_to_format, ArgKind, CallEnv, Fixable, FixupEnv, RawArg};
use ferrosip_api::clock::Clock;
use ferrosip_api::registry::FnRow;
use ferrosip_api::trace::{Direction, MessageTap, TappedMessage};
use ferrosip_api::{
    ArgType, FnError, FnResult, Module, ModuleBuilder, ModuleParams, MsgContext, ParamType,
    RouteMask, RpcValue, Value, Verdict,
};
use ferrosip_sip::{Method, SipMessage};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use table::{AddError, Field, Filter, Item, Limits, Op, SipFields, State, StateCounts, Table};

/// The parameters of the loaded script.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub limits: Limits,
    /// Seconds between two runs of the expiry timer.
    pub timer_interval: u64,
    /// Slots of the table.
    pub slots: usize,
}

impl Config {
    pub fn from_params(p: &ModuleParams) -> Result<Config, String> {
        let secs = |name: &str| -> Result<u64, String> {
            u64::try_from(p.int(name)).map_err(|_| format!("{name} must not be negative"))
        };
        let positive = |name: &str| -> Result<usize, String> {
            match usize::try_from(p.int(name)) {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name} must be greater than 0")),
            }
        };
        // As Kamailio: a power of two given by its exponent, at most 2^16; 0 or 1 keeps
        // the default 2^9.
        let hash_size = p.int("hash_size");
        let slots = if hash_size > 1 {
            1usize << hash_size.min(16)
        } else {
            512
        };
        let interval = p.int("timer_interval");
        Ok(Config {
            limits: Limits {
                init_lifetime: secs("init_lifetime")?,
                active_lifetime: secs("active_lifetime")?,
                finish_lifetime: secs("finish_lifetime")?,
                max_items: positive("max_items")?,
                max_tags: positive("max_tags")?,
                max_item_size: positive("max_item_size")?,
            },
            timer_interval: if interval > 0 { interval as u64 } else { 30 },
            slots,
        })
    }
}

/// What the functions, the reply tap, the timer and the RPCs share: the table of the
/// running server, made at the first load and kept over reloads (a reload applies its
/// lifetimes and limits to the records already there).
#[derive(Default)]
pub struct Shared {
    table: RwLock<Option<Arc<Table>>>,
}

impl Shared {
    /// The table, once a script loading the module was loaded.
    pub fn table(&self) -> Option<Arc<Table>> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn install(&self, cfg: &Config, now: u64) -> Arc<Table> {
        let mut slot = self.table.write().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(t) => {
                t.set_limits(cfg.limits);
                t.clone()
            }
            None => {
                let t = Arc::new(Table::new(cfg.slots, cfg.limits, now));
                *slot = Some(t.clone());
                t
            }
        }
    }
}

/// The module state of one load.
pub struct Dlgs {
    table: Arc<Table>,
    clock: Clock,
}

/// The fields that identify `msg`'s call, as Kamailio requires them: a Call-ID, a From
/// tag and a top Via branch.
fn sip_fields(msg: &SipMessage) -> Result<SipFields, FnError> {
    let callid = msg
        .call_id()
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| FnError::new("dlgs: the message has no Call-ID"))?;
    let ftag = msg
        .from_tag()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| FnError::new("dlgs: the From header has no tag"))?;
    let branch = msg
        .top_via_branch()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| FnError::new("dlgs: the top Via has no branch"))?;
    Ok(SipFields {
        callid: msg.bytes_of(callid),
        ftag: msg.bytes_of(ftag),
        ttag: msg.to_tag().map(|t| msg.bytes_of(t)).unwrap_or_default(),
        branch: msg.bytes_of(branch),
    })
}

fn callid(msg: &SipMessage) -> Option<&[u8]> {
    msg.call_id()
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
}

/// Updates the call of `msg`: a request by its method, a reply to an INVITE by its code.
fn update(table: &Table, msg: &SipMessage, now: u64) {
    let Some(cid) = callid(msg) else {
        return;
    };
    if let Some(m) = msg.method() {
        table.on_request(cid, &m, now);
    } else if let (Some(code), Ok(cseq)) = (msg.status(), msg.cseq()) {
        if cseq.method() == Method::Invite {
            table.on_invite_reply(cid, code, msg.to_tag().unwrap_or_default(), now);
        }
    }
}

impl Dlgs {
    fn now(&self) -> u64 {
        self.clock.unix_secs()
    }

    /// `dlgs_init(src, dst, data)`: records an INVITE (a request, or the reply to one in
    /// an onreply route, which then also updates it); any other message updates its call.
    fn init(&self, ctx: &MsgContext, src: Bytes, dst: Bytes, data: Bytes) -> FnResult {
        let msg = &ctx.msg;
        let invite = match msg.method() {
            Some(m) => m == Method::Invite,
            None => msg.cseq().is_ok_and(|c| c.method() == Method::Invite),
        };
        if !invite {
            update(&self.table, msg, self.now());
            return Ok(Verdict::TRUE);
        }
        let sf = sip_fields(msg)?;
        match self.table.add(sf, src, dst, data, self.now()) {
            Ok(_) => {}
            Err(AddError::Full) => {
                return Err(FnError::new(format!(
                    "dlgs_init: {} calls are tracked already (max_items)",
                    self.table.len()
                )))
            }
            Err(AddError::TooBig) => {
                return Err(FnError::new(
                    "dlgs_init: the call's fields are longer than max_item_size",
                ))
            }
        }
        if !msg.is_request() {
            update(&self.table, msg, self.now());
        }
        Ok(Verdict::TRUE)
    }

    fn count(&self, field: Field, op: Op, value: &[u8]) -> FnResult {
        let filter =
            Filter::new(field, op, value).map_err(|e| FnError::new(format!("dlgs_count: {e}")))?;
        Ok(nonzero(self.table.count(&filter)))
    }

    fn tags_add(&self, ctx: &MsgContext, tag: &[u8]) -> FnResult {
        let Some(cid) = callid(&ctx.msg) else {
            return Ok(Verdict::FALSE);
        };
        if tag.is_empty() {
            return Ok(Verdict::FALSE);
        }
        Ok(if self.table.tags_add(cid, tag) {
            Verdict::TRUE
        } else {
            Verdict::FALSE
        })
    }

    fn tags_rm(&self, ctx: &MsgContext, tag: &[u8]) -> FnResult {
        let Some(cid) = callid(&ctx.msg) else {
            return Ok(Verdict::FALSE);
        };
        if tag.is_empty() {
            return Ok(Verdict::FALSE);
        }
        // Kamailio answers 1 for a record without that tag too: only a missing record fails.
        Ok(if self.table.tags_rm(cid, tag).is_some() {
            Verdict::TRUE
        } else {
            Verdict::FALSE
        })
    }
}

/// A count as a return code: the number, or -1 for none (0 would stop the script).
fn nonzero(n: usize) -> Verdict {
    if n == 0 {
        Verdict::FALSE
    } else {
        Verdict::code(i32::try_from(n).unwrap_or(i32::MAX))
    }
}

/// Sees each reply the server sends: Kamailio's dlgs moves calls on the "SIP reply out"
/// event, whichever part of the proxy sent the reply.
struct ReplyTap {
    shared: Arc<Shared>,
    clock: Clock,
}

impl MessageTap for ReplyTap {
    fn message(&self, m: &TappedMessage<'_>) {
        if m.direction != Direction::Sent || !m.data.starts_with(b"SIP/2.0 ") {
            return;
        }
        let Some(table) = self.shared.table() else {
            return;
        };
        // Parsing costs a copy: only when some call is tracked at all.
        if table.is_empty() {
            return;
        }
        if let Ok(msg) = SipMessage::parse_slice(m.data) {
            update(&table, &msg, self.clock.unix_secs());
        }
    }
}

/// A `dlgs_count` field: checked at load when literal.
struct FieldArg(Field);
/// A `dlgs_count` operator: checked at load when literal.
struct OpArg(Op);

fn fixup_word<T: Copy + Send + Sync + 'static>(
    raw: RawArg,
    env: &dyn FixupEnv,
    parse: fn(&[u8]) -> Option<T>,
    what: &str,
) -> Result<Fixable<T>, String> {
    let f = raw_to_format(raw, env)?;
    if f.is_literal() {
        parse(f.text().as_bytes())
            .map(Fixable::Const)
            .ok_or_else(|| format!("unknown {what} \"{}\"", f.text()))
    } else {
        Ok(Fixable::Dynamic(f))
    }
}

fn eval_word<T: Copy>(
    fixed: &Fixable<T>,
    ctx: &MsgContext,
    parse: fn(&[u8]) -> Option<T>,
    what: &str,
) -> Result<T, FnError> {
    match fixed {
        Fixable::Const(v) => Ok(*v),
        Fixable::Dynamic(f) => {
            let b = f.eval(ctx)?;
            parse(&b).ok_or_else(|| {
                FnError::new(format!(
                    "unknown {what} \"{}\"",
                    String::from_utf8_lossy(&b)
                ))
            })
        }
    }
}

fn word_from_value<T>(
    value: Value,
    parse: fn(&[u8]) -> Option<T>,
    what: &str,
) -> Result<T, FnError> {
    let b = ferrosip_api::args::value_to_bytes(value)?;
    parse(&b).ok_or_else(|| {
        FnError::new(format!(
            "unknown {what} \"{}\"",
            String::from_utf8_lossy(&b)
        ))
    })
}

const FIELD: &str = "field (any, src, dst or data)";
const OP: &str = "operator (eq, ne, re, sw or fm)";

impl ArgType for FieldArg {
    type Fixed = Fixable<Field>;
    const KIND: ArgKind = ArgKind::Custom("field: any, src, dst or data");

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        fixup_word(raw, env, Field::parse, FIELD)
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        eval_word(fixed, ctx, Field::parse, FIELD).map(FieldArg)
    }

    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<Self, FnError> {
        word_from_value(value, Field::parse, FIELD).map(FieldArg)
    }
}

impl ArgType for OpArg {
    type Fixed = Fixable<Op>;
    const KIND: ArgKind = ArgKind::Custom("operator: eq, ne, re, sw or fm");

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        fixup_word(raw, env, Op::parse, OP)
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        eval_word(fixed, ctx, Op::parse, OP).map(OpArg)
    }

    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<Self, FnError> {
        word_from_value(value, Op::parse, OP).map(OpArg)
    }
}

fn text(b: &[u8]) -> RpcValue {
    RpcValue::Str(String::from_utf8_lossy(b).into_owned())
}

fn rpc_item(n: usize, it: &Item, brief: bool) -> RpcValue {
    let mut v = vec![
        ("count".to_string(), RpcValue::Int(n as i64)),
        ("src".to_string(), text(&it.src)),
        ("dst".to_string(), text(&it.dst)),
    ];
    if !brief {
        v.push(("data".into(), text(&it.data)));
        v.push(("ruid".into(), RpcValue::Str(it.ruid.clone())));
    }
    v.push(("callid".into(), text(&it.callid)));
    v.push(("branch".into(), text(&it.branch)));
    if !brief {
        v.push(("ftag".into(), text(&it.ftag)));
        v.push(("ttag".into(), text(&it.ttag)));
        v.push(("ts_init".into(), RpcValue::Int(it.ts_init as i64)));
        v.push(("ts_answer".into(), RpcValue::Int(it.ts_answer as i64)));
    }
    v.push(("state".into(), RpcValue::Int(it.state as i64)));
    RpcValue::Struct(v)
}

fn rpc_filter(args: &[Value]) -> Result<Filter, String> {
    let word = |i: usize| -> Result<Bytes, String> {
        args.get(i)
            .and_then(Value::to_bytes)
            .ok_or_else(|| "Invalid Parameters: field, operator and value wanted".to_string())
    };
    let field = Field::parse(&word(0)?).ok_or("Invalid Field")?;
    let op = Op::parse(&word(1)?).ok_or("Invalid Operator")?;
    Filter::new(field, op, &word(2)?)
}

/// At most this many records in one RPC answer: the control socket's reply stays bounded.
const RPC_LIST_MAX: usize = 10_000;

fn rpc_list(shared: &Shared, filter: Option<&Filter>, limit: usize, brief: bool) -> RpcValue {
    let mut out = Vec::new();
    if let Some(t) = shared.table() {
        t.fold((), |(), it| {
            if out.len() < limit && filter.is_none_or(|f| f.matches(it)) {
                out.push(rpc_item(out.len() + 1, it, brief));
            }
        });
    }
    RpcValue::Array(out)
}

/// The `dlgs` module.
pub struct DlgsModule;

impl Module for DlgsModule {
    fn name(&self) -> &'static str {
        "dlgs"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Stateless call tracking (Kamailio's dlgs): dlgs_init() records an INVITE with src, dst and data fields; the replies the proxy sends and the ACK, CANCEL and BYE given to dlgs_update() move the call from init to progress, answered, confirmed, then terminated or notanswered; dlgs_count() and tags count live calls, RPCs list them, and each record is forgotten when the lifetime of its state is over.");
        m.example(include_str!("../example.cfg"));
        m.param("init_lifetime", ParamType::Int, 180_i64, "Seconds a call may stay unanswered (init, progress, or answered without ACK) before its record is removed.");
        m.param(
            "active_lifetime",
            ParamType::Int,
            10800_i64,
            "Seconds an answered and acknowledged call is kept, from its 2xx.",
        );
        m.param(
            "finish_lifetime",
            ParamType::Int,
            10_i64,
            "Seconds an ended call (terminated or not answered) stays listed.",
        );
        m.param("timer_interval", ParamType::Int, 30_i64, "Seconds between two runs of the timer that removes records past their lifetime (0 or less: 30).");
        m.param(
            "hash_size",
            ParamType::Int,
            9_i64,
            "The table has 2^hash_size slots (at most 2^16; 0 or 1: 2^9).",
        );
        m.param("max_items", ParamType::Int, 100_000_i64, "Ferrosip's bound on the records kept: dlgs_init() fails (-1, logged) for a new call beyond it.");
        m.param(
            "max_tags",
            ParamType::Int,
            32_i64,
            "Ferrosip's bound on the tags of one call: dlgs_tags_add() fails beyond it.",
        );
        m.param("max_item_size", ParamType::Int, 65536_i64, "Ferrosip's bound, in bytes, on a call's fields (src, dst, data, Call-ID, tags, branch) and on its tags together (Kamailio's limit on one record).");

        let shared = Arc::new(Shared::default());
        let clock = m.clock();
        let state = {
            let shared = shared.clone();
            let clock = clock.clone();
            m.state(move |p| {
                let cfg = Config::from_params(p)?;
                let table = shared.install(&cfg, clock.unix_secs());
                Ok((
                    cfg,
                    Dlgs {
                        table,
                        clock: clock.clone(),
                    },
                ))
            })
        };
        m.message_tap(Arc::new(ReplyTap {
            shared: shared.clone(),
            clock: clock.clone(),
        }));
        {
            let state = state.clone();
            m.on_start(move |env| {
                let st = state.get();
                let runtime = env.runtime.clone();
                async move {
                    let st = st.map_err(|e| e.message)?;
                    let (cfg, d) = &*st;
                    let table = d.table.clone();
                    let clock = d.clock.clone();
                    let every = Duration::from_secs(cfg.timer_interval);
                    runtime.spawn(async move {
                        let mut tick = tokio::time::interval(every);
                        tick.tick().await;
                        loop {
                            tick.tick().await;
                            let gone = table.expire(clock.unix_secs());
                            if gone > 0 {
                                tracing::debug!(gone, left = table.len(), "dlgs: records expired");
                            }
                        }
                    });
                    Ok(())
                }
            });
        }

        const INIT_ROUTES: RouteMask = RouteMask::REQUEST
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::ONSEND);
        const UPDATE_ROUTES: RouteMask = RouteMask::REQUEST
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONSEND);
        let s = &state;
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("dlgs_init", &["src", "dst", "data"], INIT_ROUTES,
                "Records the call of an INVITE (or of the reply to one) with three text fields to count and list it by; a record of the same Call-ID is kept (a new branch after the call ended starts a new record). Any other message updates its call. 1 on success, -1 when the message lacks Call-ID, From tag or Via branch, or max_items is reached.",
                s.with(|st: &(Config, Dlgs), ctx: &mut MsgContext, src: Bytes, dst: Bytes, data: Bytes| st.1.init(ctx, src, dst, data))),
            FnRow::sync("dlgs_update", &[], UPDATE_ROUTES,
                "Updates the call of the request: the ACK of the 2xx confirms it, a CANCEL ends it unanswered, a BYE ends it; always 1.",
                s.with(|st: &(Config, Dlgs), ctx: &mut MsgContext| {
                    update(&st.1.table, &ctx.msg, st.1.now());
                    Ok(Verdict::TRUE)
                })),
            FnRow::sync("dlgs_count", &["field", "op", "value"], RouteMask::ANY,
                "Counts the live calls (not terminated or notanswered) whose field (src, dst, data; any: all of them) compares with the value by op: eq, ne, re (regex, case-insensitive), sw (starts with), fm (shell wildcard). The count, or -1 for none.",
                s.with(|st: &(Config, Dlgs), _ctx: &mut MsgContext, field: FieldArg, op: OpArg, value: Bytes| st.1.count(field.0, op.0, &value))),
            FnRow::sync("dlgs_tags_add", &["tag"], RouteMask::ANY,
                "Puts a tag on the call of the message; 1 on success, -1 without a record (or beyond max_tags).",
                s.with(|st: &(Config, Dlgs), ctx: &mut MsgContext, tag: Bytes| st.1.tags_add(ctx, &tag))),
            FnRow::sync("dlgs_tags_rm", &["tag"], RouteMask::ANY,
                "Removes one tag from the call of the message; 1 (also when the call has no such tag), -1 without a record.",
                s.with(|st: &(Config, Dlgs), ctx: &mut MsgContext, tag: Bytes| st.1.tags_rm(ctx, &tag))),
            FnRow::sync("dlgs_tags_count", &["tag"], RouteMask::ANY,
                "Counts the tag on live calls; the count, or -1 for none.",
                s.with(|st: &(Config, Dlgs), _ctx: &mut MsgContext, tag: Bytes| Ok(nonzero(st.1.table.tags_count(&tag))))),
        ]);

        {
            let shared = shared.clone();
            m.rpc(
                "dlgs.stats",
                "Records per state now (active) and records removed per their final state (final).",
                move |_| {
                    let Some(t) = shared.table() else {
                        return Ok(RpcValue::Null);
                    };
                    let (active, fin) = t.stats();
                    let part = |v: StateCounts| {
                        RpcValue::Struct(
                            v.iter()
                                .map(|(s, n)| (s.name().to_string(), RpcValue::Int(*n as i64)))
                                .collect(),
                        )
                    };
                    Ok(RpcValue::Struct(vec![
                        ("final".into(), part(fin)),
                        ("active".into(), part(active)),
                    ]))
                },
            );
        }
        {
            let shared = shared.clone();
            m.rpc(
                "dlgs.list",
                "Every record with all its fields (at most 10000).",
                move |_| Ok(rpc_list(&shared, None, RPC_LIST_MAX, false)),
            );
        }
        {
            let shared = shared.clone();
            m.rpc(
                "dlgs.briefing",
                "Every record with src, dst, Call-ID, branch and state (at most 10000).",
                move |_| Ok(rpc_list(&shared, None, RPC_LIST_MAX, true)),
            );
        }
        {
            let shared = shared.clone();
            m.rpc("dlgs.get", "The first record matching field, operator and value (as dlgs_count, without the live-only rule).", move |args| {
                let f = rpc_filter(args)?;
                Ok(rpc_list(&shared, Some(&f), 1, false))
            });
        }
        {
            let shared = shared.clone();
            m.rpc(
                "dlgs.getall",
                "Every record matching field, operator and value (at most 10000).",
                move |args| {
                    let f = rpc_filter(args)?;
                    Ok(rpc_list(&shared, Some(&f), RPC_LIST_MAX, false))
                },
            );
        }
        {
            let shared = shared.clone();
            m.rpc(
                "dlgs.count",
                "The number of live calls matching field, operator and value (as dlgs_count).",
                move |args| {
                    let f = rpc_filter(args)?;
                    let t = shared.table().ok_or("DLGS not initialized")?;
                    Ok(RpcValue::Int(t.count(&f) as i64))
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;
