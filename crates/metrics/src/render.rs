//! The text exposition format (version 0.0.4) of everything a scrape shows. Names follow
//! Prometheus' conventions (the configured prefix, `_total` on counters, seconds) and keep
//! Kamailio's statistic names where Kamailio has the statistic (`core_rcv_requests`,
//! `usrloc_location_contacts`...), as xhttp_prom's `group_name` naming does.

use crate::Sources;
use ferrosip_api::registry::RpcValue;
use ferrosip_server::stats::{HistogramSnapshot, COUNTED_METHODS, LATENCY_BUCKETS_US};
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

/// The exposition being written: one `# HELP`/`# TYPE` pair per family, then its samples.
pub struct Exposition<'a> {
    pub text: String,
    prefix: &'a str,
}

/// A label value as the format quotes it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

impl<'a> Exposition<'a> {
    pub fn new(prefix: &'a str) -> Exposition<'a> {
        Exposition {
            text: String::with_capacity(8 * 1024),
            prefix,
        }
    }

    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let p = self.prefix;
        let _ = writeln!(self.text, "# HELP {p}{name} {help}");
        let _ = writeln!(self.text, "# TYPE {p}{name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.text, "{}{name}", self.prefix);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound_us, count) in LATENCY_BUCKETS_US.iter().zip(h.cumulative) {
            let le = format!("{}", *bound_us as f64 / 1e6);
            self.sample(&bucket, &[("le", &le)], count);
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count);
        self.sample(&format!("{name}_sum"), &[], h.sum_seconds);
        self.sample(&format!("{name}_count"), &[], h.count);
    }
}

/// Every metric, read now.
pub async fn render(sources: &Sources, prefix: &str) -> String {
    let mut out = Exposition::new(prefix);
    let s = &sources.engine.server.stats;

    out.family(
        "core_rcv_requests_total",
        "counter",
        "SIP requests received and parsed, by method (methods outside the list are \"other\").",
    );
    for (method, n) in COUNTED_METHODS.iter().zip(&s.rcv_requests_by_method) {
        out.sample(
            "core_rcv_requests_total",
            &[("method", method)],
            n.load(Relaxed),
        );
    }
    out.family(
        "core_rcv_replies_total",
        "counter",
        "SIP replies received and parsed, by class.",
    );
    for (i, n) in s.rcv_replies_by_class.iter().enumerate() {
        let class = format!("{}xx", i + 1);
        out.sample(
            "core_rcv_replies_total",
            &[("class", &class)],
            n.load(Relaxed),
        );
    }
    out.single(
        "core_fwd_requests_total",
        "counter",
        "SIP requests forwarded (stateless and every tm branch).",
        s.fwd_requests.load(Relaxed),
    );
    out.single(
        "core_fwd_replies_total",
        "counter",
        "SIP replies forwarded statelessly.",
        s.fwd_replies.load(Relaxed),
    );
    out.single(
        "core_err_requests_total",
        "counter",
        "Requests that did not parse and were answered 400 or 505.",
        s.malformed_answered.load(Relaxed),
    );
    out.single(
        "received_messages_total",
        "counter",
        "Datagrams and stream messages received, before parsing.",
        s.received.load(Relaxed),
    );
    out.single(
        "malformed_dropped_total",
        "counter",
        "Messages that did not parse and could not be answered (dropped).",
        s.malformed_dropped.load(Relaxed),
    );
    out.single(
        "oversized_total",
        "counter",
        "Messages over the size limit, answered 513.",
        s.oversized.load(Relaxed),
    );
    out.single(
        "replies_sent_total",
        "counter",
        "Replies this server generated and sent (sl and tm).",
        s.replies_sent.load(Relaxed),
    );
    out.single(
        "loops_total",
        "counter",
        "Requests that came back through one of our Vias, answered 482.",
        s.loops.load(Relaxed),
    );
    out.single(
        "overloaded_total",
        "counter",
        "Requests answered 503 because max_transactions or max_waiting_routes was reached.",
        s.overloaded.load(Relaxed),
    );
    out.single(
        "waiting_routes",
        "gauge",
        "Route runs waiting for I/O now (capped by max_waiting_routes).",
        s.waiting_routes.load(Relaxed),
    );
    out.single(
        "suspended_routes_total",
        "counter",
        "Route runs that waited for an async function and finished on the async runtime.",
        s.suspended.load(Relaxed),
    );
    out.single(
        "panics_total",
        "counter",
        "Messages whose processing panicked (caught; the worker carried on). Any is a bug.",
        s.panics.load(Relaxed),
    );
    let tm = sources.engine.server.tm.as_ref().map_or(0, |tm| tm.len());
    out.single(
        "tm_active_transactions",
        "gauge",
        "Transactions in the transaction table now.",
        tm,
    );
    out.histogram(
        "route_run_duration_seconds",
        "Time from the start of a request_route run to its end, including waits for async functions.",
        &s.route_run.snapshot(),
    );
    out.single(
        "uptime_seconds",
        "gauge",
        "Seconds since the metrics listener started with the server.",
        sources.started.elapsed().as_secs(),
    );
    usrloc(&mut out, sources).await;
    dispatcher(&mut out, sources).await;
    out.text
}

fn field<'v>(v: &'v RpcValue, key: &str) -> Option<&'v RpcValue> {
    match v {
        RpcValue::Struct(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

fn int(v: Option<&RpcValue>) -> i64 {
    match v {
        Some(RpcValue::Int(i)) => *i,
        _ => 0,
    }
}

/// usrloc's counts per location table, from its `ul.stats` command (when loaded).
async fn usrloc(out: &mut Exposition<'_>, sources: &Sources) {
    if sources.methods.get("ul.stats").is_none() {
        return;
    }
    let tables = match sources.methods.call("ul.stats", Vec::new()).await {
        Ok(RpcValue::Array(tables)) => tables,
        other => {
            tracing::warn!("metrics: ul.stats answered {other:?}");
            return;
        }
    };
    for (name, key, help) in [
        (
            "usrloc_location_users",
            "records",
            "Addresses of record with contacts, per location table.",
        ),
        (
            "usrloc_location_contacts",
            "contacts",
            "Registered contacts, per location table.",
        ),
    ] {
        out.family(name, "gauge", help);
        for t in &tables {
            let table = match field(t, "table") {
                Some(RpcValue::Str(s)) => s.as_str(),
                _ => "",
            };
            out.sample(name, &[("table", table)], int(field(t, key)));
        }
    }
}

/// The dispatcher's destinations, from its `dispatcher.list` command (when loaded): the
/// state letter that leads FLAGS is A active, I inactive, T trying, D disabled.
async fn dispatcher(out: &mut Exposition<'_>, sources: &Sources) {
    if sources.methods.get("dispatcher.list").is_none() {
        return;
    }
    let listed = match sources.methods.call("dispatcher.list", Vec::new()).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("metrics: dispatcher.list failed: {}", e.message);
            return;
        }
    };
    const STATES: [(char, &str); 4] = [
        ('A', "active"),
        ('I', "inactive"),
        ('T', "trying"),
        ('D', "disabled"),
    ];
    // (set, uri, state letter) of every destination.
    let mut dests: Vec<(String, String, char)> = Vec::new();
    let mut sets: Vec<String> = Vec::new();
    if let Some(RpcValue::Array(records)) = field(&listed, "RECORDS") {
        for record in records {
            let Some(set) = field(record, "SET") else {
                continue;
            };
            let id = int(field(set, "ID")).to_string();
            sets.push(id.clone());
            if let Some(RpcValue::Array(targets)) = field(set, "TARGETS") {
                for t in targets {
                    let Some(dest) = field(t, "DEST") else {
                        continue;
                    };
                    let uri = match field(dest, "URI") {
                        Some(RpcValue::Str(s)) => s.clone(),
                        _ => String::new(),
                    };
                    let state = match field(dest, "FLAGS") {
                        Some(RpcValue::Str(s)) => s.chars().next().unwrap_or('?'),
                        _ => '?',
                    };
                    dests.push((id.clone(), uri, state));
                }
            }
        }
    }
    out.family(
        "dispatcher_destinations",
        "gauge",
        "Dispatcher destinations per set and state (active, inactive, trying, disabled).",
    );
    for set in &sets {
        for (letter, state) in STATES {
            let n = dests
                .iter()
                .filter(|(s, _, l)| s == set && *l == letter)
                .count();
            out.sample(
                "dispatcher_destinations",
                &[("set", set), ("state", state)],
                n,
            );
        }
    }
    out.family(
        "dispatcher_destination_up",
        "gauge",
        "1 when the dispatcher destination is active (selectable), 0 otherwise.",
    );
    for (set, uri, letter) in &dests {
        out.sample(
            "dispatcher_destination_up",
            &[("set", set), ("uri", uri)],
            u8::from(*letter == 'A'),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::new("p_");
        out.sample("m", &[("a", "x\"y\\z\nw")], 1);
        assert_eq!(out.text, "p_m{a=\"x\\\"y\\\\z\\nw\"} 1\n");
    }

    #[test]
    fn histograms_end_with_inf_sum_and_count() {
        let h = ferrosip_server::stats::LatencyHistogram::default();
        h.observe(std::time::Duration::from_micros(300));
        let mut out = Exposition::new("p_");
        out.histogram("h_seconds", "help", &h.snapshot());
        assert!(out.text.contains("p_h_seconds_bucket{le=\"0.00025\"} 0\n"));
        assert!(out.text.contains("p_h_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(out.text.contains("p_h_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(out.text.contains("p_h_seconds_count 1\n"));
        assert!(out.text.contains("# TYPE p_h_seconds histogram\n"));
    }
}
