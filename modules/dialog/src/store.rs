//! Dialogs in Kamailio's `dialog` and `dialog_vars` tables (`db_mode`).
//!
//! Realtime (1): each change of a confirmed dialog is written, and an ended one removed,
//! by one writer task in the order they happened. Delayed (2): the writer keeps the last
//! change per dialog and writes them every `db_update_period` seconds. Shutdown (3):
//! nothing is written until the server stops. Every mode writes what is pending when the
//! server stops, and at start the stored dialogs are loaded back.
//!
//! Changes reach the writer through a bounded queue: the SIP path never waits for the
//! database, and a database that stays down costs at most [`QUEUE`] pending changes
//! (further ones are logged and lost; the dialog itself stays tracked in memory).

use bytes::Bytes;
use ferrosip_db::{Cond, Db, DbValue};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

use crate::table::{Dialog, DlgState, Live, Table};

/// Changes waiting for the writer, at most.
pub const QUEUE: usize = 65_536;

/// One change to write.
pub enum Op {
    /// The dialog's row and variables as they are now.
    Save(Arc<Dialog>),
    /// The dialog ended: its row and variables go.
    Remove(u32, u32),
    /// Write what is pending, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The database side of the module, once started.
pub struct Store {
    pub db: Db,
    pub mode: i64,
    pub table: String,
    pub vars_table: String,
    queue: mpsc::Sender<Op>,
    /// The writer's receiving end until the writer task takes it.
    pending_rx: Mutex<Option<mpsc::Receiver<Op>>>,
}

const COLS: &[&str] = &[
    "hash_entry",
    "hash_id",
    "callid",
    "from_uri",
    "from_tag",
    "to_uri",
    "to_tag",
    "caller_cseq",
    "callee_cseq",
    "caller_route_set",
    "callee_route_set",
    "caller_contact",
    "callee_contact",
    "caller_sock",
    "callee_sock",
    "state",
    "start_time",
    "timeout",
    "sflags",
    "iflags",
    "toroute_name",
    "req_uri",
    "xdata",
];

/// Kamailio's internal flag for "BYE both sides on timeout".
const IFLAG_TIMEOUT_BYE: i64 = 1;

fn s(b: &[u8]) -> DbValue {
    DbValue::Str(String::from_utf8_lossy(b).into_owned())
}

fn route_set(r: &[Bytes]) -> DbValue {
    if r.is_empty() {
        return DbValue::Null;
    }
    let v: Vec<String> = r
        .iter()
        .map(|u| format!("<{}>", String::from_utf8_lossy(u)))
        .collect();
    DbValue::Str(v.join(","))
}

fn parse_route_set(v: Option<&DbValue>) -> Vec<Bytes> {
    let Some(DbValue::Str(s)) = v else {
        return Vec::new();
    };
    s.split(',')
        .map(|e| e.trim().trim_start_matches('<').trim_end_matches('>'))
        .filter(|e| !e.is_empty())
        .map(|e| Bytes::copy_from_slice(e.as_bytes()))
        .collect()
}

/// The profiles of a dialog in `xdata`, as Kamailio keeps them:
/// `{"profiles":[{"name":"value"}, ...]}`.
fn xdata(live: &Live) -> DbValue {
    if live.profiles.is_empty() {
        return DbValue::Null;
    }
    let list: Vec<serde_json::Value> = live
        .profiles
        .iter()
        .map(|(p, v)| {
            let mut o = serde_json::Map::new();
            o.insert(
                p.to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
            );
            serde_json::Value::Object(o)
        })
        .collect();
    DbValue::Str(serde_json::json!({ "profiles": list }).to_string())
}

fn parse_xdata(v: Option<&DbValue>) -> Vec<(Arc<str>, Bytes)> {
    let Some(DbValue::Str(text)) = v else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in json["profiles"].as_array().into_iter().flatten() {
        for (k, v) in item.as_object().into_iter().flatten() {
            let value = v.as_str().unwrap_or_default();
            out.push((
                Arc::from(k.as_str()),
                Bytes::copy_from_slice(value.as_bytes()),
            ));
        }
    }
    out
}

fn row(d: &Dialog) -> Vec<DbValue> {
    let live = d.live();
    vec![
        DbValue::Int(i64::from(d.h_entry)),
        DbValue::Int(i64::from(d.h_id)),
        s(&d.callid),
        s(&d.from_uri),
        s(&d.from_tag),
        s(&d.to_uri),
        s(&live.to_tag),
        DbValue::Str(live.caller_cseq.to_string()),
        DbValue::Str(live.callee_cseq.to_string()),
        route_set(&d.caller_route_set),
        route_set(&live.callee_route_set),
        s(&d.caller_contact),
        s(&live.callee_contact),
        s(&d.caller_sock),
        s(&live.callee_sock),
        DbValue::Int(live.state.code()),
        DbValue::Int(live.start_ts),
        DbValue::Int(live.expires_ms.map_or(0, |e| e / 1000)),
        DbValue::Int(i64::from(live.sflags)),
        DbValue::Int(if live.timeout_bye {
            IFLAG_TIMEOUT_BYE
        } else {
            0
        }),
        DbValue::Null,
        s(&d.req_uri),
        xdata(&live),
    ]
}

impl Store {
    /// A store on `db`; [`Store::run_writer`] starts its writer.
    pub fn new(db: Db, mode: i64, table: String, vars_table: String) -> Store {
        let (queue, rx) = mpsc::channel(QUEUE);
        Store {
            db,
            mode,
            table,
            vars_table,
            queue,
            pending_rx: Mutex::new(Some(rx)),
        }
    }

    /// Queues a change; a full queue loses it with an error in the log.
    pub fn push(&self, op: Op) {
        if let Err(e) = self.queue.try_send(op) {
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                tracing::error!(
                    queue = QUEUE,
                    "dialog: database writes are behind, a dialog change is not stored"
                );
            }
        }
    }

    /// Writes what is queued (stop hooks, tests).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.queue.send(Op::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn save(&self, d: &Dialog) {
        let vals = row(d);
        let keys = ["hash_entry", "hash_id"];
        if let Err(e) = self.db.replace(&self.table, &keys, COLS, &vals).await {
            tracing::error!(error = %e, callid = %String::from_utf8_lossy(&d.callid), "dialog: cannot store the dialog");
            return;
        }
        let vars = d.live().vars.clone();
        self.remove_vars(d.h_entry, d.h_id).await;
        for (k, v) in vars {
            let vals = [
                DbValue::Int(i64::from(d.h_entry)),
                DbValue::Int(i64::from(d.h_id)),
                s(&k),
                s(&v),
            ];
            let cols = ["hash_entry", "hash_id", "dialog_key", "dialog_value"];
            if let Err(e) = self.db.insert(&self.vars_table, &cols, &vals).await {
                tracing::error!(error = %e, "dialog: cannot store a dialog variable");
            }
        }
    }

    async fn remove_vars(&self, h_entry: u32, h_id: u32) {
        let conds = [
            Cond::eq("hash_entry", i64::from(h_entry)),
            Cond::eq("hash_id", i64::from(h_id)),
        ];
        if let Err(e) = self.db.delete(&self.vars_table, &conds).await {
            tracing::error!(error = %e, "dialog: cannot remove dialog variables");
        }
    }

    async fn remove(&self, h_entry: u32, h_id: u32) {
        let conds = [
            Cond::eq("hash_entry", i64::from(h_entry)),
            Cond::eq("hash_id", i64::from(h_id)),
        ];
        if let Err(e) = self.db.delete(&self.table, &conds).await {
            tracing::error!(error = %e, "dialog: cannot remove the dialog");
        }
        self.remove_vars(h_entry, h_id).await;
    }

    async fn apply(&self, op: Op) {
        match op {
            Op::Save(d) => {
                // A dialog that ended before its save was written is removed instead.
                if d.live().state == DlgState::Deleted {
                    self.remove(d.h_entry, d.h_id).await;
                } else {
                    self.save(&d).await;
                }
            }
            Op::Remove(e, i) => self.remove(e, i).await,
            Op::Flush(done) => {
                let _ = done.send(());
            }
        }
    }

    /// The writer: in order (realtime), or coalesced per dialog and written every
    /// `period` (delayed, shutdown: `period` None waits for a flush).
    pub async fn run_writer(self: Arc<Self>, period: Option<Duration>) {
        let Some(mut rx) = self
            .pending_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        if self.mode == 1 {
            while let Some(op) = rx.recv().await {
                self.apply(op).await;
            }
            return;
        }
        let mut pending: HashMap<(u32, u32), Op> = HashMap::new();
        let mut tick = tokio::time::interval(period.unwrap_or(Duration::from_secs(3600)));
        tick.tick().await;
        loop {
            tokio::select! {
                op = rx.recv() => match op {
                    None => break,
                    Some(Op::Flush(done)) => {
                        for (_, op) in pending.drain() {
                            self.apply(op).await;
                        }
                        let _ = done.send(());
                    }
                    Some(op @ Op::Save(_)) | Some(op @ Op::Remove(..)) => {
                        let key = match &op {
                            Op::Save(d) => (d.h_entry, d.h_id),
                            Op::Remove(e, i) => (*e, *i),
                            Op::Flush(_) => unreachable!("matched above"),
                        };
                        pending.insert(key, op);
                    }
                },
                _ = tick.tick(), if period.is_some() => {
                    for (_, op) in pending.drain() {
                        self.apply(op).await;
                    }
                }
            }
        }
    }

    /// Loads the stored dialogs (and their variables) into `table`; how many.
    pub async fn load(&self, table: &Table) -> Result<usize, String> {
        let rows = self
            .db
            .select(&self.table, COLS, &[], None)
            .await
            .map_err(|e| format!("cannot read table {}: {e}", self.table))?;
        let vars = self
            .db
            .select(
                &self.vars_table,
                &["hash_entry", "hash_id", "dialog_key", "dialog_value"],
                &[],
                Some("id"),
            )
            .await
            .map_err(|e| format!("cannot read table {}: {e}", self.vars_table))?;
        let mut by_dialog: HashMap<(i64, i64), Vec<(Bytes, Bytes)>> = HashMap::new();
        for v in &vars {
            let (Some(e), Some(i)) = (v[0].as_int(), v[1].as_int()) else {
                continue;
            };
            let text = |x: &DbValue| Bytes::copy_from_slice(x.as_str().unwrap_or("").as_bytes());
            by_dialog
                .entry((e, i))
                .or_default()
                .push((text(&v[2]), text(&v[3])));
        }
        let mut n = 0;
        for r in rows {
            let get = |i: usize| r.get(i);
            let text = |i: usize| {
                Bytes::copy_from_slice(get(i).and_then(DbValue::as_str).unwrap_or("").as_bytes())
            };
            let int = |i: usize| {
                get(i)
                    .and_then(|v| {
                        v.as_int()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    })
                    .unwrap_or(0)
            };
            let state = DlgState::from_code(int(15)).unwrap_or(DlgState::Confirmed);
            if state == DlgState::Deleted {
                continue;
            }
            let (h_entry, h_id) = (int(0), int(1));
            let expires = int(17);
            let start_ts = int(16);
            let live = Live {
                state,
                to_tag: text(6),
                callee_contact: text(12),
                callee_route_set: parse_route_set(get(10)),
                callee_sock: text(14),
                caller_cseq: int(7) as u32,
                callee_cseq: int(8) as u32,
                start_ts,
                created: start_ts,
                start_ms: start_ts.saturating_mul(1000),
                created_ms: start_ts.saturating_mul(1000),
                lifetime: (expires - start_ts).max(0) as u32,
                expires_ms: (expires > 0).then_some(expires * 1000),
                sflags: int(18) as u32,
                timeout_bye: int(19) & IFLAG_TIMEOUT_BYE != 0,
                vars: by_dialog.remove(&(h_entry, h_id)).unwrap_or_default(),
                profiles: parse_xdata(get(22)),
                relayed: true,
            };
            let d = Dialog {
                h_entry: h_entry as u32,
                h_id: h_id as u32,
                callid: text(2),
                from_uri: text(3),
                from_tag: text(4),
                to_uri: text(5),
                req_uri: text(21),
                caller_contact: text(11),
                caller_route_set: parse_route_set(get(9)),
                caller_sock: text(13),
                live: Mutex::new(live),
            };
            table.restore(d);
            n += 1;
        }
        Ok(n)
    }

    /// Shutdown mode: the table holds exactly the dialogs alive now.
    pub async fn write_all(&self, table: &Table) {
        if let Err(e) = self.db.delete(&self.table, &[]).await {
            tracing::error!(error = %e, "dialog: cannot clear the dialog table");
        }
        if let Err(e) = self.db.delete(&self.vars_table, &[]).await {
            tracing::error!(error = %e, "dialog: cannot clear the dialog_vars table");
        }
        for d in table.all() {
            let state = d.live().state;
            if state >= DlgState::ConfirmedNa && state < DlgState::Deleted {
                self.save(&d).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_and_route_sets_read_back_as_written() {
        let live = Live {
            state: DlgState::Confirmed,
            to_tag: Bytes::new(),
            callee_contact: Bytes::new(),
            callee_route_set: Vec::new(),
            callee_sock: Bytes::new(),
            caller_cseq: 1,
            callee_cseq: 0,
            start_ts: 0,
            created: 0,
            start_ms: 0,
            created_ms: 0,
            lifetime: 0,
            expires_ms: None,
            sflags: 0,
            timeout_bye: false,
            vars: Vec::new(),
            profiles: vec![
                (Arc::from("caller"), Bytes::from_static(b"alice")),
                (Arc::from("calls"), Bytes::new()),
            ],
            relayed: true,
        };
        let x = xdata(&live);
        assert_eq!(parse_xdata(Some(&x)), live.profiles);
        let r = vec![
            Bytes::from_static(b"sip:10.0.0.1;lr"),
            Bytes::from_static(b"sip:p2.example;lr;did=1.2"),
        ];
        assert_eq!(parse_route_set(Some(&route_set(&r))), r);
        assert!(parse_route_set(Some(&DbValue::Null)).is_empty());
    }
}
