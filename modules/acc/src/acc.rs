//! What the module does with its parameters: the transaction observer, the script
//! functions and the writer's life.

use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use ferrosip_api::rr::{Direction, LocalRoute};
use ferrosip_api::{
    E2eAck, FinalReply, FnError, FnResult, ModuleBuilder, MsgContext, RouteMask, TmObserver,
    TxnWatch, Verdict,
};

use crate::config::AccConfig;
use crate::record::{log_line, Outcome, Record, RequestPart, Stamp};
use crate::writer::Writer;

/// The module's state for one load: its configuration and, once the server has started,
/// the database writer.
struct Acc {
    cfg: AccConfig,
    log_names: Vec<Arc<str>>,
    table_acc: Arc<str>,
    table_missed: Arc<str>,
    writer: OnceLock<Writer>,
    /// Records are stamped from the registry's clock (`ferrosip test` moves it).
    clock: ferrosip_api::Clock,
}

/// Which kind of record a log line is (Kamailio's prefixes).
#[derive(Clone, Copy)]
enum LogKind {
    Answered,
    Missed,
    Request,
    Acked,
}

impl Acc {
    fn new(cfg: AccConfig, clock: ferrosip_api::Clock) -> Acc {
        Acc {
            clock,
            log_names: cfg
                .log_extra
                .iter()
                .map(|e| e.name.as_str().into())
                .collect(),
            table_acc: cfg.table_acc.as_str().into(),
            table_missed: cfg.table_missed.as_str().into(),
            cfg,
            writer: OnceLock::new(),
        }
    }

    fn now(&self) -> Stamp {
        Stamp::at(self.clock.since_epoch())
    }

    fn log(&self, kind: LogKind, req: &RequestPart, out: &Outcome<'_>) {
        let line = log_line(&self.cfg.time_mode, req, out);
        let prefix = match kind {
            LogKind::Answered => "ACC: transaction answered:",
            LogKind::Missed => "ACC: call missed:",
            LogKind::Request => "ACC: request accounted:",
            LogKind::Acked => "ACC: request acknowledged:",
        };
        match self.cfg.log_level {
            tracing::Level::WARN => tracing::warn!(target: "acc", "{prefix} {line}"),
            tracing::Level::INFO => tracing::info!(target: "acc", "{prefix} {line}"),
            _ => tracing::debug!(target: "acc", "{prefix} {line}"),
        }
    }

    /// A dialog ended: its CDR, when `cdr_enable` asks for them and it gets one.
    fn cdr(&self, end: &ferrosip_mod_dialog::DialogEnd<'_>) {
        let Some(cfg) = &self.cfg.cdr else {
            return;
        };
        let Some((line, record)) = crate::cdr::on_end(cfg, end) else {
            return;
        };
        if let Some(line) = line {
            match self.cfg.log_level {
                tracing::Level::WARN => tracing::warn!(target: "acc", "CDR: {line}"),
                tracing::Level::INFO => tracing::info!(target: "acc", "CDR: {line}"),
                _ => tracing::debug!(target: "acc", "CDR: {line}"),
            }
        }
        if let Some(record) = record {
            match self.writer.get() {
                Some(w) => w.push(record),
                None => {
                    tracing::warn!(target: "acc", "CDR not stored: the database writer is not running")
                }
            }
        }
    }

    fn store(&self, table: Arc<str>, req: &RequestPart, out: &Outcome<'_>) -> bool {
        match self.writer.get() {
            Some(w) => {
                w.push(Record::new(&self.cfg, table, req, out));
                true
            }
            None => false,
        }
    }

    /// Writes the records `log` and `db` ask for, from a reply.
    fn write(
        &self,
        kind: LogKind,
        log: bool,
        db: Option<&Arc<str>>,
        req: &RequestPart,
        reply: &FinalReply<'_>,
    ) {
        let code = reply.code.to_string();
        // reason_from_hf: the Reason header of a reply that came from a branch, whole
        // (e.g. `Q.850;cause=16;text="Normal call clearing"`), as Kamailio stores it.
        let reason_hf = reply
            .reply
            .filter(|_| self.cfg.reason_from_hf)
            .and_then(|r| r.header("Reason"));
        let reason = String::from_utf8_lossy(reason_hf.unwrap_or(reply.reason));
        let to_tag = match reply.to_tag {
            Some(t) => String::from_utf8_lossy(t),
            None => req.to_tag.as_str().into(),
        };
        let out = Outcome {
            code: &code,
            reason: &reason,
            to_tag: &to_tag,
            time: self.now(),
        };
        if log {
            self.log(kind, req, &out);
        }
        if let Some(table) = db {
            self.store(table.clone(), req, &out);
        }
    }

    /// A reply going upstream (a final, or a provisional with early media): the
    /// transaction's records, as its flags now ask (Kamailio's should_acc_reply).
    fn answered(&self, req: &RequestPart, reply: &FinalReply<'_>) {
        let cfg = &self.cfg;
        let flags = reply.flags;
        // A failed transaction is accounted as such only with failed_transaction_flag
        // and a code failed_filter does not list.
        let account = !reply.failed()
            || (cfg.failed_transaction_flag.set_in(flags)
                && !cfg.failed_filter.contains(&reply.code));
        let log = cfg.log_flag.set_in(flags) && account;
        let db = cfg.db_flag.set_in(flags) && account;
        if log || db {
            self.write(
                LogKind::Answered,
                log,
                db.then_some(&self.table_acc),
                req,
                reply,
            );
        }
    }

    /// A failed INVITE: a missed call if its flags ask; returns the missed-call flags
    /// that were set, for the caller to reset (only the first failed attempt counts,
    /// unless failure_route sets them again).
    fn missed(&self, req: &RequestPart, reply: &FinalReply<'_>) -> u64 {
        let cfg = &self.cfg;
        let log = cfg.log_missed_flag.set_in(reply.flags);
        let db = cfg.db_missed_flag.set_in(reply.flags);
        if !(log || db) {
            return 0;
        }
        self.write(
            LogKind::Missed,
            log,
            db.then_some(&self.table_missed),
            req,
            reply,
        );
        let mut reset = 0;
        if log {
            reset |= cfg.log_missed_flag.bit();
        }
        if db {
            reset |= cfg.db_missed_flag.bit();
        }
        reset
    }

    /// The ACK of an accounted 2xx (`report_ack`): its own record, with the ACK's values
    /// and extras and the 2xx's code, as the transaction's flags now ask.
    fn acked(&self, ack: &E2eAck<'_>) {
        let cfg = &self.cfg;
        let log = cfg.log_flag.set_in(ack.flags);
        let db = cfg.db_flag.set_in(ack.flags);
        if !(log || db) {
            return;
        }
        let req = RequestPart::of(cfg, ack.ctx, &self.log_names);
        let code = ack.code.to_string();
        let reason = String::from_utf8_lossy(ack.reason);
        let out = Outcome {
            code: &code,
            reason: &reason,
            to_tag: &req.to_tag,
            time: self.now(),
        };
        if log {
            self.log(LogKind::Acked, &req, &out);
        }
        if db {
            self.store(self.table_acc.clone(), &req, &out);
        }
    }
}

struct Observer(Arc<Acc>);

impl TmObserver for Observer {
    fn on_request(&self, ctx: &MsgContext) -> Option<Box<dyn TxnWatch>> {
        let acc = &self.0;
        let cfg = &acc.cfg;
        if !cfg.watches(ctx.flags) {
            return None;
        }
        let method = ctx.msg.method_bytes();
        if method == Some(b"CANCEL") && !cfg.report_cancels {
            return None;
        }
        let mut req = RequestPart::of(cfg, ctx, &acc.log_names);
        // Upstream: the request's From tag is not the one this proxy's Route entry
        // recorded (rr's ftag; needs loose_route() first, as in Kamailio).
        req.upstream = cfg.detect_direction
            && ctx
                .ext
                .get::<LocalRoute>()
                .is_some_and(|l| l.direction(ctx.msg.from_tag()) == Direction::Upstream);
        Some(Box::new(Watch {
            invite: method == Some(b"INVITE"),
            // Kamailio decides it when the transaction starts: report_ack and an
            // accounting flag set then.
            ack: cfg.report_ack
                && (cfg.log_flag.set_in(ctx.flags) || cfg.db_flag.set_in(ctx.flags)),
            req,
            acc: acc.clone(),
        }))
    }
}

struct Watch {
    acc: Arc<Acc>,
    req: RequestPart,
    /// Missed calls are INVITEs only (Kamailio's acc).
    invite: bool,
    /// `report_ack` applies to this transaction.
    ack: bool,
}

impl TxnWatch for Watch {
    fn on_final(&mut self, reply: &FinalReply<'_>) {
        if self.invite && reply.failed() {
            // Still set at the final: the failure had none before (a local reply, a
            // CANCEL), or failure_route set the flags again.
            self.acc.missed(&self.req, reply);
        }
        self.acc.answered(&self.req, reply);
    }

    fn on_provisional(&mut self, reply: &FinalReply<'_>) {
        if self.acc.cfg.early_media && reply.has_body() {
            self.acc.answered(&self.req, reply);
        }
    }

    fn on_failure(&mut self, failed: &FinalReply<'_>) -> u64 {
        match self.invite {
            true => self.acc.missed(&self.req, failed),
            false => 0,
        }
    }

    fn wants_e2e_ack(&self) -> bool {
        self.ack
    }

    fn on_e2e_ack(&mut self, ack: &E2eAck<'_>) {
        self.acc.acked(ack);
    }
}

/// `"403 Forbidden"` -> ("403", "Forbidden"); a comment not starting with a code is all
/// reason (Kamailio's acc comment).
fn split_comment(comment: &str) -> (&str, &str) {
    let b = comment.as_bytes();
    if b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit) && (b.len() == 3 || b[3] == b' ') {
        (&comment[..3], comment[3..].trim_start())
    } else {
        ("", comment)
    }
}

/// The load's state, for the script functions and the start and stop hooks.
#[derive(Clone, Default)]
struct Shared(Arc<RwLock<Option<Arc<Acc>>>>);

impl Shared {
    fn get(&self) -> Result<Arc<Acc>, FnError> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| FnError::new("module acc is not initialised"))
    }
    fn set(&self, acc: Arc<Acc>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(acc);
    }
}

fn request_record(acc: &Acc, ctx: &MsgContext, comment: &Bytes) -> (RequestPart, String, String) {
    let comment = String::from_utf8_lossy(comment);
    let (code, reason) = split_comment(&comment);
    (
        RequestPart::of(&acc.cfg, ctx, &acc.log_names),
        code.to_string(),
        reason.to_string(),
    )
}

fn acc_log_request(shared: &Shared, ctx: &mut MsgContext, comment: Bytes) -> FnResult {
    let acc = shared.get()?;
    let (req, code, reason) = request_record(&acc, ctx, &comment);
    let out = Outcome {
        code: &code,
        reason: &reason,
        to_tag: &req.to_tag,
        time: acc.now(),
    };
    acc.log(LogKind::Request, &req, &out);
    Ok(Verdict::TRUE)
}

fn acc_db_request(shared: &Shared, ctx: &mut MsgContext, comment: Bytes, table: Bytes) -> FnResult {
    let acc = shared.get()?;
    let table = String::from_utf8_lossy(&table);
    ferrosip_db::check_identifier(&table).map_err(|e| FnError::new(e.to_string()))?;
    let (req, code, reason) = request_record(&acc, ctx, &comment);
    let out = Outcome {
        code: &code,
        reason: &reason,
        to_tag: &req.to_tag,
        time: acc.now(),
    };
    if !acc.store(table.as_ref().into(), &req, &out) {
        return Err(FnError::new("acc_db_request: db_url is not set"));
    }
    Ok(Verdict::TRUE)
}

pub fn declare(m: &mut ModuleBuilder<'_>) {
    let shared = Shared::default();
    let dialog_events = m.uses::<ferrosip_mod_dialog::DialogEvents>();
    {
        let shared = shared.clone();
        let clock = m.clock();
        m.on_tm_event(move |params, binder| {
            let acc = Arc::new(Acc::new(
                AccConfig::from_params(params, binder)?,
                clock.clone(),
            ));
            // CDRs: the dialog module tells of each dialog's end; the hook reads the
            // current load's state, so a reload that turns CDRs off silences it.
            match (acc.cfg.cdr.is_some(), dialog_events.get()) {
                (true, None) => {
                    return Err(
                        "cdr_enable = 1 needs the dialog module: loadmodule \"dialog.so\"".into(),
                    )
                }
                (true, Some(events)) => {
                    let shared = shared.clone();
                    events.set_on_end(
                        "acc",
                        Some(Arc::new(move |end: &ferrosip_mod_dialog::DialogEnd<'_>| {
                            if let Ok(acc) = shared.get() {
                                acc.cdr(end);
                            }
                        })),
                    );
                }
                (false, Some(events)) => events.set_on_end("acc", None),
                (false, None) => {}
            }
            shared.set(acc.clone());
            let observer: Option<Arc<dyn TmObserver>> = acc
                .cfg
                .any_flag()
                .then(|| Arc::new(Observer(acc)) as Arc<dyn TmObserver>);
            Ok(observer)
        });
    }
    {
        let shared = shared.clone();
        m.on_start(move |_env| {
            let acc = shared.get();
            async move {
                let acc = acc.map_err(|e| e.message)?;
                let Some(url) = acc.cfg.db_url.clone() else {
                    return Ok(());
                };
                let mut tables = Vec::new();
                if acc.cfg.version_check {
                    if acc.cfg.db_flag.set_in(u64::MAX) {
                        tables.push((acc.cfg.table_acc.clone(), 5));
                    }
                    if acc.cfg.db_missed_flag.set_in(u64::MAX) {
                        tables.push((acc.cfg.table_missed.clone(), 4));
                    }
                }
                let writer = crate::writer::start(url, tables, acc.cfg.writer.clone()).await?;
                let _ = acc.writer.set(writer);
                Ok(())
            }
        });
    }
    {
        let shared = shared.clone();
        m.on_stop(move |_| {
            if let Ok(acc) = shared.get() {
                if let Some(w) = acc.writer.get() {
                    w.stop(std::time::Duration::from_secs(10));
                }
            }
        });
    }
    {
        let shared = shared.clone();
        m.function("acc_log_request")
            .args(&["comment"])
            .routes(RouteMask::ANY)
            .doc("Writes an accounting record of the request to the log with the comment (\"403 Forbidden\": code and reason); 1 on success.")
            .handler(move |ctx: &mut MsgContext, comment: Bytes| {
                acc_log_request(&shared, ctx, comment)
            });
    }
    {
        let shared = shared.clone();
        m.function("acc_db_request")
            .args(&["comment", "table"])
            .routes(RouteMask::ANY)
            .doc("Queues an accounting record of the request for the table (code and reason from the comment, as acc_log_request); 1 on success, an error without db_url.")
            .handler(move |ctx: &mut MsgContext, comment: Bytes, table: Bytes| {
                acc_db_request(&shared, ctx, comment, table)
            });
    }
    {
        let shared = shared.clone();
        m.function("acc_request")
            .args(&["comment", "table"])
            .routes(RouteMask::ANY)
            .doc("Writes an accounting record of the request to the log and, with db_url, queues it for the table; 1 on success.")
            .handler(move |ctx: &mut MsgContext, comment: Bytes, table: Bytes| {
                acc_log_request(&shared, ctx, comment.clone())?;
                match shared.get()?.cfg.db_url {
                    Some(_) => acc_db_request(&shared, ctx, comment, table),
                    None => Ok(Verdict::TRUE),
                }
            });
    }
    m.rpc(
        "acc.stats",
        "Counters of the database writer: queued, inserted, spooled, replayed, already_stored, dropped_*, rejected.",
        move |_| {
            let acc = shared.get().map_err(|e| e.message)?;
            let w = acc.writer.get().ok_or("no database writer (db_url unset)")?;
            Ok(ferrosip_api::RpcValue::Struct(
                w.counters
                    .snapshot()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), ferrosip_api::RpcValue::Int(v as i64)))
                    .collect(),
            ))
        },
    );
}
