//! A step's assertions against what the proxy did, each failure worded as a diff
//! (`- expected` / `+ found`), and the downstream replies a test scripts.

use crate::file::{ExpectFull, ExpectMessage, HeaderValues, Step};
use crate::session::{Names, RouteRecord, Sent, Session};
use bytes::Bytes;
use ferrosip_sip::SipMessage;

/// The usual reason phrase of a status (RFC 3261 §21).
fn default_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Reply",
    }
}

/// A downstream hop's reply to a request the proxy sent: its Vias, From, To (tagged),
/// Call-ID and CSeq, the Record-Route of a 18x/2xx (RFC 3261 §12.1.1), then the step's
/// headers and body.
pub fn downstream_reply(to: &Sent, code: u16, step: &Step, names: &Names) -> Result<Bytes, String> {
    if !(100..=699).contains(&code) {
        return Err(format!("respond = {code}: not a SIP status"));
    }
    let request = SipMessage::parse(to.data.clone())
        .map_err(|e| format!("the forwarded request does not parse: {e}"))?;
    let reason = step.reason.as_deref().unwrap_or(default_reason(code));
    let mut reply = request.reply(code, reason);
    if code != 100 {
        reply = reply.to_tag(format!("{}-down", names.tag));
    }
    if (180..300).contains(&code) {
        for rr in request.headers_named("Record-Route") {
            reply = reply.header("Record-Route", rr);
        }
    }
    for (name, value) in &step.headers {
        reply = reply.header(name, names.fill(value));
    }
    if let Some(body) = &step.body {
        let ctype = step.content_type.as_deref().unwrap_or("application/sdp");
        reply = reply.body(ctype, Bytes::from(names.fill(body).replace('\n', "\r\n")));
    }
    reply.build().map_err(|e| format!("respond = {code}: {e}"))
}

/// Every failure of a step's expectations; `Err` for an expectation that cannot be
/// checked (no such route run, a database error).
pub fn step(
    session: &Session,
    s: &Step,
    sent: &[Sent],
    runs: &[RouteRecord],
    log: &[String],
    names: &Names,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let replies: Vec<&Sent> = sent.iter().filter(|m| m.is_reply()).collect();
    let requests: Vec<&Sent> = sent.iter().filter(|m| !m.is_reply()).collect();
    if let Some(expected) = &s.replies {
        messages("reply", expected, &replies, names, &mut out);
    }
    if let Some(expected) = &s.forwards {
        messages("forward", expected, &requests, names, &mut out);
    }
    if let Some(expected) = &s.routes {
        let found: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        if found != expected.iter().map(String::as_str).collect::<Vec<_>>() {
            out.push(diff("routes run", &expected.join(", "), &found.join(", ")));
        }
    }
    for r in runs {
        if let Some(e) = &r.error {
            out.push(format!("  {} aborted: {e}", r.name));
        }
    }
    if !s.pv.is_empty() || !s.flags.is_empty() || !s.no_flags.is_empty() {
        let run = match &s.route {
            Some(name) => runs.iter().find(|r| &r.name == name).ok_or_else(|| {
                let ran: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
                format!("route = {name:?} did not run in this step (ran: {})", ran.join(", "))
            })?,
            None => runs
                .first()
                .ok_or("pv/flags: no route ran in this step")?,
        };
        for (text, expected) in &s.pv {
            let expected = match expected {
                toml::Value::String(v) => names.fill(v),
                toml::Value::Integer(i) => i.to_string(),
                other => return Err(format!("pv {text:?}: compare with a string or an integer, not {other:?}")),
            };
            let found = run
                .values
                .iter()
                .find(|(t, _)| t == text)
                .map_or("<not recorded>".to_string(), |(_, v)| v.clone());
            if found != expected {
                out.push(diff(&format!("{text} after {}", run.name), &expected, &found));
            }
        }
        for f in &s.flags {
            if *f > 63 || run.flags & (1 << f) == 0 {
                out.push(format!("  flag {f} is not set after {}", run.name));
            }
        }
        for f in &s.no_flags {
            if *f <= 63 && run.flags & (1 << f) != 0 {
                out.push(format!("  flag {f} is set after {}", run.name));
            }
        }
    }
    for want in &s.log {
        let want = names.fill(want);
        if !log.iter().any(|l| l.contains(&want)) {
            out.push(format!("  no log line contains {want:?}"));
        }
    }
    for unwanted in &s.no_log {
        let unwanted = names.fill(unwanted);
        if let Some(l) = log.iter().find(|l| l.contains(&unwanted)) {
            out.push(format!("  a log line contains {unwanted:?}: {l}"));
        }
    }
    for rows in &s.db {
        let conditions = rows
            .conditions
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(t) => toml::Value::String(names.fill(t)),
                    other => other.clone(),
                };
                (k.clone(), v)
            })
            .collect();
        // A module may write from the runtime after the route (usrloc's write-through):
        // the count gets a moment to come true, and only a wrong count waits.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut found = session.count_rows(&rows.table, &conditions)?;
        while found != rows.count && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            found = session.count_rows(&rows.table, &conditions)?;
        }
        if found != rows.count {
            out.push(diff(
                &format!("rows of {} where {}", rows.table, where_text(&conditions)),
                &rows.count.to_string(),
                &found.to_string(),
            ));
        }
    }
    Ok(out)
}

fn diff(what: &str, expected: &str, found: &str) -> String {
    format!("  {what}:\n  - {expected}\n  + {found}")
}

fn first_line(m: &Sent) -> String {
    let text = String::from_utf8_lossy(&m.data);
    format!("{} -> {}", text.lines().next().unwrap_or_default(), m.to_text())
}

fn messages(kind: &str, expected: &[ExpectMessage], found: &[&Sent], names: &Names, out: &mut Vec<String>) {
    if expected.len() != found.len() {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.join("\n    ")
            }
        };
        out.push(format!(
            "  {kind}s: expected {}, found {}:\n  - {}\n  + {}",
            expected.len(),
            found.len(),
            list(expected.iter().map(describe).collect()),
            list(found.iter().map(|m| first_line(m)).collect()),
        ));
        return;
    }
    for (i, (e, m)) in expected.iter().zip(found).enumerate() {
        let e = match e {
            ExpectMessage::Status(s) => ExpectFull {
                status: Some(*s),
                ..Default::default()
            },
            ExpectMessage::Full(f) => f.clone(),
        };
        let what = format!("{kind} {}", i + 1);
        let msg = match SipMessage::parse(m.data.clone()) {
            Ok(msg) => msg,
            Err(err) => {
                out.push(format!("  {what} does not parse ({err}):\n{}", indent(&m.data)));
                continue;
            }
        };
        let before = out.len();
        message(&what, &e, &msg, m, names, out);
        if out.len() > before {
            out.push(format!("  {what} as sent to {}:\n{}", m.to_text(), indent(&m.data)));
        }
    }
}

fn describe(e: &ExpectMessage) -> String {
    match e {
        ExpectMessage::Status(s) => s.to_string(),
        ExpectMessage::Full(f) => {
            let mut parts = Vec::new();
            if let Some(s) = f.status {
                parts.push(s.to_string());
            }
            if let Some(m) = &f.method {
                parts.push(m.clone());
            }
            if let Some(r) = &f.ruri {
                parts.push(r.clone());
            }
            if let Some(t) = &f.to {
                parts.push(format!("-> {t}"));
            }
            parts.join(" ")
        }
    }
}

fn message(what: &str, e: &ExpectFull, msg: &SipMessage, sent: &Sent, names: &Names, out: &mut Vec<String>) {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if let Some(s) = e.status {
        let found = msg.status().map_or("a request".to_string(), |c| c.to_string());
        if found != s.to_string() {
            out.push(diff(&format!("{what}: status"), &s.to_string(), &found));
        }
    }
    if let Some(r) = &e.reason {
        let found = msg.reason().map(lossy).unwrap_or_default();
        if &found != r {
            out.push(diff(&format!("{what}: reason"), r, &found));
        }
    }
    if let Some(m) = &e.method {
        let found = msg.method_bytes().map(lossy).unwrap_or_default();
        if &found != m {
            out.push(diff(&format!("{what}: method"), m, &found));
        }
    }
    if let Some(r) = &e.ruri {
        let r = names.fill(r);
        let found = msg.request_uri().map(lossy).unwrap_or_default();
        if found != r {
            out.push(diff(&format!("{what}: request URI"), &r, &found));
        }
    }
    if let Some(t) = &e.to {
        let t = names.fill(t);
        let t = if t.contains(':') && t.split(':').count() == 2 {
            format!("udp:{t}")
        } else {
            t
        };
        if sent.to_text() != t {
            out.push(diff(&format!("{what}: destination"), &t, &sent.to_text()));
        }
    }
    for (name, values) in &e.headers {
        let found: Vec<String> = msg.headers_named(name).map(lossy).collect();
        match values {
            HeaderValues::One(v) => {
                let v = names.fill(v);
                let first = found.first().cloned().unwrap_or_else(|| "(absent)".into());
                if first != v {
                    out.push(diff(&format!("{what}: {name}"), &v, &first));
                }
            }
            HeaderValues::All(vs) => {
                let vs: Vec<String> = vs.iter().map(|v| names.fill(v)).collect();
                if found != vs {
                    out.push(diff(
                        &format!("{what}: every {name}"),
                        &vs.join(" | "),
                        &found.join(" | "),
                    ));
                }
            }
        }
    }
    for name in &e.absent {
        if let Some(v) = msg.headers_named(name).next() {
            out.push(diff(&format!("{what}: {name}"), "(absent)", &lossy(v)));
        }
    }
    if let Some(b) = &e.body {
        let b = names.fill(b).replace("\r\n", "\n");
        let found = lossy(msg.body()).replace("\r\n", "\n");
        if found != b {
            out.push(diff(&format!("{what}: body"), &b, &found));
        }
    }
}

fn indent(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the step did, shown under its failures: the routes run, what was sent, the log.
pub fn context(sent: &[Sent], runs: &[RouteRecord], log: &[String]) -> String {
    let mut s = String::from("  what the step did:");
    let ran: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    s.push_str(&format!("\n    routes: {}", if ran.is_empty() { "(none)".into() } else { ran.join(", ") }));
    for m in sent {
        s.push_str(&format!("\n    sent: {}", first_line(m)));
    }
    const SHOWN: usize = 30;
    for l in log.iter().skip(log.len().saturating_sub(SHOWN)) {
        s.push_str(&format!("\n    log: {l}"));
    }
    s
}

fn where_text(conditions: &std::collections::BTreeMap<String, toml::Value>) -> String {
    conditions
        .iter()
        .map(|(k, v)| match v {
            toml::Value::String(t) => format!("{k} = {t:?}"),
            toml::Value::Integer(i) => format!("{k} = {i}"),
            other => format!("{k} = {other:?}"),
        })
        .collect::<Vec<_>>()
        .join(" and ")
}
