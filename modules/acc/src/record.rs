//! Accounting records: what a transaction leaves behind, for the log and the database,
//! and their one-line form in the spool.

use std::sync::Arc;

use ferrosip_api::{MsgContext, Value};
use ferrosip_db::DbValue;

use crate::config::{AccConfig, Extra};

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
        }
    }
}

/// The outcome side of a record.
pub struct Outcome<'a> {
    pub code: &'a str,
    pub reason: &'a str,
    pub to_tag: &'a str,
    /// Unix seconds.
    pub time: i64,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Kamailio's log line: `timestamp=..;method=..;from_tag=..;to_tag=..;call_id=..;
/// code=..;reason=..` and the `log_extra` values.
pub fn log_line(req: &RequestPart, out: &Outcome<'_>) -> String {
    let mut s = format!(
        "timestamp={};method={};from_tag={};to_tag={};call_id={};code={};reason={}",
        out.time, req.method, req.from_tag, out.to_tag, req.callid, out.code, out.reason
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
        vals.extend([
            DbValue::Str(req.method.clone()),
            DbValue::Str(req.from_tag.clone()),
            DbValue::Str(out.to_tag.to_string()),
            DbValue::Str(req.callid.clone()),
            DbValue::Str(out.code.to_string()),
            DbValue::Str(out.reason.to_string()),
            DbValue::Time(out.time),
        ]);
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
