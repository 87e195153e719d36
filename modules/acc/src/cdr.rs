//! Dialog-based CDRs (`cdr_enable=1`, Kamailio's acc_cdr): one record per call when its
//! dialog ends, told by the `dialog` module. Start is the dialog's creation (its INVITE)
//! or, with `cdr_start_on_confirmed`, its 2xx; end and duration are the BYE's time for an
//! answered call, and equal to the start (no duration) for a failed one, as Kamailio
//! writes them. Records go to the log and through the same queue and spool as the
//! transaction records.

use std::fmt::Write as _;
use std::sync::Arc;

use ferrosip_api::Value;
use ferrosip_db::DbValue;
use ferrosip_mod_dialog::{DialogEnd, EndReason};

use crate::config::CdrConfig;
use crate::record::Record;

/// The values of one CDR.
struct Cdr {
    start_ms: i64,
    end_ms: i64,
    /// Milliseconds; `None` for a call that was never answered.
    duration_ms: Option<i64>,
    extra: Vec<Value>,
}

/// The dialog variable an extra names (`$dlg_var(name)`), read from the dialog itself:
/// it is there when no message ended the dialog.
fn dlg_var_name(pv_text: &str) -> Option<&str> {
    pv_text
        .strip_prefix("$dlg_var(")
        .and_then(|r| r.strip_suffix(')'))
}

fn cdr_of(cfg: &CdrConfig, end: &DialogEnd<'_>) -> Option<Cdr> {
    let live = end.live;
    match end.reason {
        EndReason::NotRelayed => return None,
        EndReason::Failed if !cfg.on_failed => return None,
        EndReason::Timeout if !cfg.expired => return None,
        _ => {}
    }
    if let Some(skip) = &cfg.skip {
        if live.vars.iter().any(|(k, _)| k == skip) {
            return None;
        }
    }
    let answered = live.start_ms > 0;
    let start_ms = if cfg.start_on_confirmed && answered {
        live.start_ms
    } else {
        live.created_ms
    };
    let (end_ms, duration_ms) = match end.reason {
        EndReason::Failed => (start_ms, None),
        _ if !answered => (start_ms, None),
        _ => (end.ended_ms, Some((end.ended_ms - start_ms).max(0))),
    };
    let extra = cfg
        .extra
        .iter()
        .map(|e| match dlg_var_name(e.pv.text()) {
            Some(name) => live
                .vars
                .iter()
                .rev()
                .find(|(k, _)| k.as_ref() == name.as_bytes())
                .map_or(Value::Null, |(_, v)| Value::Str(v.clone())),
            None => end
                .request
                .and_then(|ctx| e.pv.get(ctx).ok())
                .unwrap_or(Value::Null),
        })
        .collect();
    Some(Cdr {
        start_ms,
        end_ms,
        duration_ms,
        extra,
    })
}

/// Seconds with `digits` digits of fraction (Kamailio's `cdr_duration_mode`).
fn seconds(ms: i64, digits: u8) -> String {
    match digits {
        0 => format!("{}", ms.div_euclid(1000)),
        3 => format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000)),
        _ => format!("{}.{:06}", ms.div_euclid(1000), ms.rem_euclid(1000) * 1000),
    }
}

fn extra_text(v: &Value) -> String {
    v.to_bytes()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The log line: `start_time=...;end_time=...;duration=...;name=value...`.
fn log_line(cfg: &CdrConfig, cdr: &Cdr) -> String {
    let mut line = format!(
        "{}={};{}={};{}=",
        cfg.start_id,
        seconds(cdr.start_ms, cfg.fraction_digits),
        cfg.end_id,
        seconds(cdr.end_ms, cfg.fraction_digits),
        cfg.duration_id
    );
    if let Some(d) = cdr.duration_ms {
        line.push_str(&seconds(d, cfg.fraction_digits));
    }
    for (e, v) in cfg.extra.iter().zip(&cdr.extra) {
        let _ = write!(line, ";{}={}", e.name, extra_text(v));
    }
    line
}

fn record(cfg: &CdrConfig, table: Arc<str>, cdr: &Cdr) -> Record {
    let mut vals = Vec::with_capacity(cfg.columns.len());
    vals.push(DbValue::Time(cdr.start_ms.div_euclid(1000)));
    vals.push(DbValue::Time(cdr.end_ms.div_euclid(1000)));
    // Kamailio's acc_cdrs has `duration ... DEFAULT 0 NOT NULL`: a call that was never
    // answered stores 0 there (the log line leaves it empty).
    vals.push(DbValue::Double(
        cdr.duration_ms.map_or(0.0, |d| d as f64 / 1000.0),
    ));
    vals.extend(cdr.extra.iter().map(|v| match v.to_bytes() {
        Some(b) if !b.is_empty() || !cfg.extra_nullable => {
            DbValue::Str(String::from_utf8_lossy(&b).into_owned())
        }
        _ if cfg.extra_nullable => DbValue::Null,
        _ => DbValue::Str(String::new()),
    }));
    Record {
        table,
        cols: cfg.columns.clone(),
        vals,
    }
}

/// What to do with a dialog that ended: the log line and the database record its CDR
/// gives (`None` when it gets none).
pub fn on_end(cfg: &CdrConfig, end: &DialogEnd<'_>) -> Option<(Option<String>, Option<Record>)> {
    let cdr = cdr_of(cfg, end)?;
    let line = cfg.log.then(|| log_line(cfg, &cdr));
    let rec = cfg.table.clone().map(|t| record(cfg, t, &cdr));
    Some((line, rec))
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn seconds_keep_the_digits_asked() {
        assert_eq!(seconds(1_733_450_000_123, 3), "1733450000.123");
        assert_eq!(seconds(1_733_450_000_123, 0), "1733450000");
        assert_eq!(seconds(1_733_450_000_123, 6), "1733450000.123000");
        assert_eq!(seconds(5, 3), "0.005");
    }
}
