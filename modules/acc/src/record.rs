//! Accounting records: what a transaction leaves behind, for the log and the database,
//! and their one-line form in the spool.

use std::sync::Arc;

use ferrosip_api::{MsgContext, Value};
use ferrosip_db::DbValue;

use crate::config::{AccConfig, Extra, TimeMode};

/// The request's side of a record, taken when the transaction starts (Kamailio evaluates
/// the extras against the transaction's request).
pub struct RequestPart {
    pub method: String,
    pub from_tag: String,
    pub callid: String,
    /// The request's own To tag (in-dialog requests); a reply's replaces it.
    pub to_tag: String,
    pub log_extra: Vec<(Arc<str>, Value)>,
    pub db_extra: Vec<Value>,
    /// An in-dialog request from callee to caller (`detect_direction`): its records
    /// carry the To tag as `from_tag` and the From tag as `to_tag`, so that both
    /// directions of a dialog read the same.
    pub upstream: bool,
}

fn text(b: Option<&[u8]>) -> String {
    String::from_utf8_lossy(b.unwrap_or_default()).into_owned()
}

fn eval(extras: &[Extra], ctx: &MsgContext) -> Vec<Value> {
    extras
        .iter()
        // A PV that fails (no such header) is an empty value, as in Kamailio.
        .map(|e| e.pv.get(ctx).unwrap_or(Value::Null))
        .collect()
}

impl RequestPart {
    pub fn of(cfg: &AccConfig, ctx: &MsgContext, log_names: &[Arc<str>]) -> RequestPart {
        let msg = &ctx.msg;
        RequestPart {
            method: text(msg.method_bytes()),
            from_tag: text(msg.from_tag()),
            callid: text(msg.call_id()),
            to_tag: text(msg.to_tag()),
            log_extra: log_names
                .iter()
                .cloned()
                .zip(eval(&cfg.log_extra, ctx))
                .collect(),
            db_extra: eval(&cfg.db_extra, ctx),
            upstream: false,
        }
    }

    /// The record's (from_tag, to_tag) with the outcome's To tag.
    fn tags<'a>(&'a self, out: &'a Outcome<'_>) -> (&'a str, &'a str) {
        if self.upstream {
            (out.to_tag, &self.from_tag)
        } else {
            (&self.from_tag, out.to_tag)
        }
    }
}

/// The outcome side of a record.
pub struct Outcome<'a> {
    pub code: &'a str,
    pub reason: &'a str,
    pub to_tag: &'a str,
    pub time: Stamp,
}

/// When a record was made.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    /// Unix seconds.
    pub secs: i64,
    pub micros: u32,
}

impl Stamp {
    /// The stamp of a time since the Unix epoch.
    pub fn at(since_epoch: std::time::Duration) -> Stamp {
        Stamp {
            secs: since_epoch.as_secs() as i64,
            micros: since_epoch.subsec_micros(),
        }
    }

    /// Seconds with milliseconds, as `time_mode` 2 stores them.
    fn millis(self) -> f64 {
        self.secs as f64 + f64::from(self.micros / 1000) / 1000.0
    }

    /// `time_format` in local time or UTC (`time_mode` 3 and 4).
    fn formatted(self, items: &[chrono::format::Item<'static>], utc: bool) -> String {
        use chrono::TimeZone;
        let fmt = |t: Option<String>| t.unwrap_or_default();
        if utc {
            fmt(chrono::Utc
                .timestamp_opt(self.secs, 0)
                .single()
                .map(|t| t.format_with_items(items.iter()).to_string()))
        } else {
            fmt(chrono::Local
                .timestamp_opt(self.secs, 0)
                .single()
                .map(|t| t.format_with_items(items.iter()).to_string()))
        }
    }
}

/// Kamailio's log line: `timestamp=..;method=..;from_tag=..;to_tag=..;call_id=..;
/// code=..;reason=..` and the `log_extra` values.
pub fn log_line(mode: &TimeMode, req: &RequestPart, out: &Outcome<'_>) -> String {
    let (from_tag, to_tag) = req.tags(out);
    let t = out.time;
    let time = match mode {
        TimeMode::Seconds => String::new(),
        TimeMode::Micros { exten, .. } => format!(";{exten}={}", t.micros),
        TimeMode::Millis { attr } => format!(";{attr}={:.3}", t.millis()),
        TimeMode::Formatted { attr, items, utc } => {
            format!(";{attr}={}", t.formatted(items, *utc))
        }
    };
    let mut s = format!(
        "timestamp={}{time};method={};from_tag={from_tag};to_tag={to_tag};call_id={};code={};reason={}",
        t.secs, req.method, req.callid, out.code, out.reason
    );
    for (name, v) in &req.log_extra {
        s.push(';');
        s.push_str(name);
        s.push('=');
        if let Some(b) = v.to_bytes() {
            s.push_str(&String::from_utf8_lossy(&b));
        } else {
            s.push_str("n/a");
        }
    }
    s
}

/// One row for the database.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub table: Arc<str>,
    pub cols: Arc<[String]>,
    pub vals: Vec<DbValue>,
}

fn extra_value(v: &Value, nullable: bool) -> DbValue {
    match v.to_bytes() {
        Some(b) => DbValue::Str(String::from_utf8_lossy(&b).into_owned()),
        None if nullable => DbValue::Null,
        None => DbValue::Str(String::new()),
    }
}

impl Record {
    pub fn new(cfg: &AccConfig, table: Arc<str>, req: &RequestPart, out: &Outcome<'_>) -> Record {
        let mut vals = Vec::with_capacity(cfg.db_columns.len());
        let (from_tag, to_tag) = req.tags(out);
        let t = out.time;
        vals.extend([
            DbValue::Str(req.method.clone()),
            DbValue::Str(from_tag.to_string()),
            DbValue::Str(to_tag.to_string()),
            DbValue::Str(req.callid.clone()),
            DbValue::Str(out.code.to_string()),
            DbValue::Str(out.reason.to_string()),
            DbValue::Time(t.secs),
        ]);
        match &cfg.time_mode {
            TimeMode::Seconds => {}
            TimeMode::Micros { .. } => {
                vals.extend([DbValue::Int(t.secs), DbValue::Int(i64::from(t.micros))])
            }
            TimeMode::Millis { .. } => vals.push(DbValue::Double(t.millis())),
            TimeMode::Formatted { items, utc, .. } => {
                vals.push(DbValue::Str(t.formatted(items, *utc)))
            }
        }
        vals.extend(
            req.db_extra
                .iter()
                .map(|v| extra_value(v, cfg.extra_nullable)),
        );
        Record {
            table,
            cols: cfg.db_columns.clone(),
            vals,
        }
    }

    /// The spool line: tab-separated table, then column and value pairs, `%`-escaped.
    pub fn encode(&self, out: &mut String) {
        escape(&self.table, out);
        for (c, v) in self.cols.iter().zip(&self.vals) {
            out.push('\t');
            escape(c, out);
            out.push('\t');
            match v {
                DbValue::Null => out.push('N'),
                DbValue::Int(i) => out.push_str(&format!("I{i}")),
                DbValue::Time(t) => out.push_str(&format!("T{t}")),
                DbValue::Double(d) => out.push_str(&format!("D{d}")),
                DbValue::Str(s) => {
                    out.push('S');
                    escape(s, out);
                }
            }
        }
        out.push('\n');
    }

    /// A spool line back; `None` for a line that is not one (a torn last line).
    pub fn decode(line: &str) -> Option<Record> {
        let mut parts = line.split('\t');
        let table: Arc<str> = unescape(parts.next()?)?.into();
        let mut cols = Vec::new();
        let mut vals = Vec::new();
        while let Some(c) = parts.next() {
            cols.push(unescape(c)?);
            let v = parts.next()?;
            let (kind, rest) = v.split_at_checked(1)?;
            vals.push(match kind {
                "N" => DbValue::Null,
                "I" => DbValue::Int(rest.parse().ok()?),
                "T" => DbValue::Time(rest.parse().ok()?),
                "D" => DbValue::Double(rest.parse().ok()?),
                "S" => DbValue::Str(unescape(rest)?),
                _ => return None,
            });
        }
        if cols.is_empty() {
            return None;
        }
        Some(Record {
            table,
            cols: cols.into(),
            vals,
        })
    }
}

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\t' => out.push_str("%09"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            c => out.push(c),
        }
    }
}

fn unescape(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "25" => '%',
            "09" => '\t',
            "0A" => '\n',
            "0D" => '\r',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(upstream: bool) -> RequestPart {
        RequestPart {
            method: "BYE".into(),
            from_tag: "callee-tag".into(),
            callid: "c1".into(),
            to_tag: "caller-tag".into(),
            log_extra: Vec::new(),
            db_extra: Vec::new(),
            upstream,
        }
    }

    /// time_mode 1-4 in the log as Kamailio prints them, and detect_direction's swap.
    #[test]
    fn log_lines_carry_the_time_mode_and_the_direction() {
        let out = Outcome {
            code: "200",
            reason: "OK",
            to_tag: "caller-tag",
            time: Stamp {
                secs: 1_733_450_000,
                micros: 123_456,
            },
        };
        let fmt = |f: &str| {
            chrono::format::StrftimeItems::new(f)
                .parse_to_owned()
                .unwrap()
        };
        let line = |mode: TimeMode, upstream: bool| log_line(&mode, &request(upstream), &out);
        assert_eq!(
            line(TimeMode::Seconds, false),
            "timestamp=1733450000;method=BYE;from_tag=callee-tag;to_tag=caller-tag;call_id=c1;code=200;reason=OK"
        );
        assert!(line(TimeMode::Seconds, true).contains(";from_tag=caller-tag;to_tag=callee-tag;"));
        let micros = TimeMode::Micros {
            attr: "time_attr".into(),
            exten: "usec".into(),
        };
        assert!(line(micros, false).starts_with("timestamp=1733450000;usec=123456;method=BYE;"));
        let millis = TimeMode::Millis { attr: "t".into() };
        assert!(line(millis, false).starts_with("timestamp=1733450000;t=1733450000.123;method="));
        let utc = TimeMode::Formatted {
            attr: "when".into(),
            items: fmt("%Y-%m-%d %H:%M:%S"),
            utc: true,
        };
        assert!(
            line(utc, false).starts_with("timestamp=1733450000;when=2024-12-06 01:53:20;method=")
        );
    }

    #[test]
    fn spool_lines_round_trip() {
        let r = Record {
            table: "acc".into(),
            cols: vec!["method".to_string(), "x".into(), "t".into(), "n".into()].into(),
            vals: vec![
                DbValue::Str("INV%ITE\ta\nb\r".into()),
                DbValue::Int(-5),
                DbValue::Time(1_700_000_000),
                DbValue::Null,
            ],
        };
        let mut line = String::new();
        r.encode(&mut line);
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(Record::decode(line.trim_end_matches('\n')), Some(r));
        let short = Record::decode("acc\tmethod\tSINVITE").unwrap();
        assert_eq!(short.vals, [DbValue::Str("INVITE".into())]);
        assert!(Record::decode("acc\tmethod").is_none());
        assert!(Record::decode("acc\tmethod\tQx").is_none());
        assert!(Record::decode("acc\tmethod\tS%zz").is_none());
    }
}
