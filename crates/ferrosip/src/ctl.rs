//! `ferrosip ctl`: runs an RPC command on a running server through its control socket,
//! printing the result as kamcmd does (asked in BINRPC, which keeps members in their
//! order) or as JSON (`--json`, asked in JSON-RPC).

use ferrosip_api::registry::RpcValue;
use ferrosip_api::Value;
use ferrosip_ctl::binrpc;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(
    after_help = "Shortcuts: ul show [AOR] | dispatcher list | dispatcher reload | dispatcher set-state STATE GROUP ADDRESS | stats [GROUP] | reload | log-level LEVEL (error, warn, info, debug, trace or a debug= number).\nArguments are sent as numbers when they read as one; prefix s: to send text (s:123), i: for a number."
)]
pub struct CtlArgs {
    /// The control socket: unix:/path, a path, or tcp:ADDRESS:PORT.
    #[arg(short = 's', long = "socket", default_value = ferrosip_ctl::DEFAULT_CTL_SOCKET)]
    socket: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// The command (core.uptime, ul.dump, ...) or a shortcut, then its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// A parameter as kamcmd types it: a number when it reads as one, unless `s:`-prefixed.
fn param(arg: &str) -> serde_json::Value {
    if let Some(s) = arg.strip_prefix("s:") {
        return serde_json::Value::from(s);
    }
    if let Some(i) = arg.strip_prefix("i:").and_then(|s| s.parse::<i64>().ok()) {
        return serde_json::Value::from(i);
    }
    match arg.parse::<i64>() {
        Ok(i) => serde_json::Value::from(i),
        Err(_) => serde_json::Value::from(arg),
    }
}

/// Kamailio's `debug=` number for a level name (or the number itself).
fn debug_level(level: &str) -> Result<i64, String> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "error" | "err" => -1,
        "warn" | "warning" => 0,
        "notice" => 1,
        "info" => 2,
        "debug" => 3,
        "trace" => 4,
        n => n.parse().map_err(|_| {
            format!("log-level {level}: give error, warn, info, debug, trace or a number")
        })?,
    })
}

/// What a command line asks: the RPC method, its parameters, and an AOR to keep (for
/// `ul show AOR`).
fn resolve(words: &[String]) -> Result<(String, Vec<serde_json::Value>, Option<String>), String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let rest = |from: usize| w[from.min(w.len())..].iter().map(|a| param(a)).collect();
    Ok(match w.as_slice() {
        ["ul", "show"] => ("ul.dump".into(), Vec::new(), None),
        ["ul", "show", aor] => ("ul.dump".into(), Vec::new(), Some(aor.to_string())),
        ["dispatcher", "list"] => ("dispatcher.list".into(), Vec::new(), None),
        ["dispatcher", "reload"] => ("dispatcher.reload".into(), Vec::new(), None),
        ["dispatcher", "set-state", ..] => ("dispatcher.set_state".into(), rest(2), None),
        ["stats"] => ("stats.get_statistics".into(), vec!["all".into()], None),
        ["stats", group] => {
            let g = if group.contains(':') || *group == "all" {
                group.to_string()
            } else {
                format!("{group}:")
            };
            ("stats.get_statistics".into(), vec![g.into()], None)
        }
        ["reload"] => ("core.reload".into(), Vec::new(), None),
        ["log-level", level] => (
            "cfg.seti".into(),
            vec!["core".into(), "debug".into(), debug_level(level)?.into()],
            None,
        ),
        ["ul", ..] | ["dispatcher", ..] | ["log-level", ..] => {
            return Err(format!(
                "{}: see ferrosip ctl --help for the shortcuts",
                w.join(" ")
            ))
        }
        [method, ..] => (method.to_string(), rest(1), None),
        [] => return Err("no command".into()),
    })
}

/// A stream to the control socket.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(socket: &str, timeout: Duration) -> Result<Box<dyn Stream>, String> {
    let endpoint = ferrosip_ctl::Endpoint::parse(socket)?;
    Ok(match endpoint {
        ferrosip_ctl::Endpoint::Unix(path) => {
            let s = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
                format!(
                    "cannot connect to {}: {e} (is the server running with loadmodule \"ctl.so\"?)",
                    path.display()
                )
            })?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            Box::new(s)
        }
        ferrosip_ctl::Endpoint::Tcp(addr) => {
            let s = std::net::TcpStream::connect(addr)
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            Box::new(s)
        }
    })
}

/// Sends one request and reads its answer.
fn call(
    socket: &str,
    timeout: Duration,
    method: &str,
    params: Vec<serde_json::Value>,
) -> Result<serde_json::Value, String> {
    let request =
        serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
    let mut s = connect(socket, timeout)?;
    s.write_all(request.to_string().as_bytes())
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let ferrosip_ctl::json::Framed::Doc(doc, _) = ferrosip_ctl::json::frame(&buf) {
            return Ok(doc);
        }
        let n = s.read(&mut chunk).map_err(|e| format!("no answer: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection without an answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends one BINRPC request and reads its answer: the values, or the fault.
fn call_binrpc(
    socket: &str,
    timeout: Duration,
    method: &str,
    params: &[serde_json::Value],
) -> Result<Vec<RpcValue>, String> {
    let params: Vec<Value> = params
        .iter()
        .map(|p| match p {
            serde_json::Value::Number(n) => n
                .as_i64()
                .map_or_else(|| Value::from_string(n.to_string()), Value::Int),
            serde_json::Value::String(s) => Value::from_string(s.clone()),
            other => Value::from_string(other.to_string()),
        })
        .collect();
    let cookie = std::process::id();
    let mut s = connect(socket, timeout)?;
    s.write_all(&binrpc::request(cookie, method, &params))
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match binrpc::parse_header(&buf) {
            Ok(h) if buf.len() >= h.header_len + h.body_len => {
                let body = &buf[h.header_len..h.header_len + h.body_len];
                let values = binrpc::decode_values(body)
                    .map_err(|e| format!("bad answer from the server: {e:?}"))?;
                if h.kind == binrpc::FAULT {
                    let code = match values.first() {
                        Some(RpcValue::Int(c)) => *c,
                        _ => 500,
                    };
                    let msg = match values.get(1) {
                        Some(RpcValue::Str(m)) => m.clone(),
                        _ => String::new(),
                    };
                    return Err(format!("{code} - {msg}"));
                }
                return Ok(values);
            }
            Err(binrpc::DecodeError::Bad(why)) => {
                return Err(format!("bad answer from the server: {why}"))
            }
            _ => {}
        }
        let n = s.read(&mut chunk).map_err(|e| format!("no answer: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection without an answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Keeps the records of `aor` in ul.dump's tables (BINRPC repeats `records` per record).
fn only_aor_values(tables: Vec<RpcValue>, aor: &str) -> Vec<RpcValue> {
    let want = aor.strip_prefix("sip:").unwrap_or(aor);
    let matches = |record: &RpcValue| match record {
        RpcValue::Struct(m) => m
            .iter()
            .any(|(k, v)| k == "aor" && matches!(v, RpcValue::Str(a) if a == aor || a == want)),
        _ => false,
    };
    tables
        .into_iter()
        .map(|t| match t {
            RpcValue::Struct(members) => RpcValue::Struct(
                members
                    .into_iter()
                    .filter(|(k, v)| k != "records" || matches(v))
                    .collect(),
            ),
            other => other,
        })
        .collect()
}

/// kamcmd's layout: scalars as they are, a struct as `{ name: value }` over lines, the
/// items of a top-level array one per line.
fn print_value(v: &RpcValue, depth: usize, out: &mut String) {
    let pad = "\t".repeat(depth);
    match v {
        RpcValue::Null => {}
        RpcValue::Int(i) => out.push_str(&format!("{i}")),
        RpcValue::Str(s) => out.push_str(s),
        RpcValue::Array(items) => {
            out.push_str("[\n");
            for item in items {
                out.push_str(&format!("{pad}\t"));
                print_value(item, depth + 1, out);
                out.push('\n');
            }
            out.push_str(&format!("{pad}]"));
        }
        RpcValue::Struct(members) => {
            out.push_str("{\n");
            for (k, item) in members {
                out.push_str(&format!("{pad}\t{k}: "));
                print_value(item, depth + 1, out);
                out.push('\n');
            }
            out.push_str(&format!("{pad}}}"));
        }
    }
}

fn render(v: &RpcValue) -> String {
    let mut out = String::new();
    match v {
        RpcValue::Array(items) => {
            for item in items {
                print_value(item, 0, &mut out);
                out.push('\n');
            }
        }
        RpcValue::Null => {}
        v => {
            print_value(v, 0, &mut out);
            out.push('\n');
        }
    }
    out
}

/// Keeps the records of `aor` in a ul.dump result.
fn only_aor(result: serde_json::Value, aor: &str) -> serde_json::Value {
    let serde_json::Value::Array(tables) = result else {
        return result;
    };
    let want = aor.strip_prefix("sip:").unwrap_or(aor);
    serde_json::Value::Array(
        tables
            .into_iter()
            .map(|mut t| {
                if let Some(serde_json::Value::Array(records)) = t.get_mut("records") {
                    records.retain(|r| {
                        r.get("aor")
                            .and_then(|a| a.as_str())
                            .is_some_and(|a| a == aor || a == want)
                    });
                }
                t
            })
            .collect(),
    )
}

pub fn run(args: CtlArgs) -> ExitCode {
    let (method, params, aor) = match resolve(&args.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let timeout = Duration::from_secs(args.timeout.max(1));
    if !args.json {
        return match call_binrpc(&args.socket, timeout, &method, &params) {
            Ok(values) => {
                let values = match aor {
                    Some(aor) => only_aor_values(values, &aor),
                    None => values,
                };
                print!("{}", render(&RpcValue::Array(values)));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let answer = match call(&args.socket, timeout, &method, params) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(err) = answer.get("error") {
        let code = err.get("code").cloned().unwrap_or_default();
        let msg = err.get("message").and_then(|m| m.as_str()).unwrap_or("");
        eprintln!("error: {code} - {msg}");
        return ExitCode::FAILURE;
    }
    let mut result = answer.get("result").cloned().unwrap_or_default();
    if let Some(aor) = aor {
        result = only_aor(result, &aor);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&result).unwrap_or_default()
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn shortcuts_name_their_commands() {
        let (m, p, _) = resolve(&words("stats tm")).unwrap();
        assert_eq!(
            (m.as_str(), p),
            ("stats.get_statistics", vec!["tm:".into()])
        );
        let (m, p, _) = resolve(&words("log-level debug")).unwrap();
        assert_eq!(m, "cfg.seti");
        assert_eq!(
            p,
            vec!["core".into(), "debug".into(), serde_json::Value::from(3)]
        );
        let (m, p, _) = resolve(&words("dispatcher set-state ip 1 sip:a@b")).unwrap();
        assert_eq!(m, "dispatcher.set_state");
        assert_eq!(
            p,
            vec!["ip".into(), serde_json::Value::from(1), "sip:a@b".into()]
        );
        let (m, _, aor) = resolve(&words("ul show alice")).unwrap();
        assert_eq!((m.as_str(), aor.as_deref()), ("ul.dump", Some("alice")));
        let (m, p, _) = resolve(&words("core.echo s:12 i:4 x")).unwrap();
        assert_eq!(m, "core.echo");
        assert_eq!(p, vec!["12".into(), serde_json::Value::from(4), "x".into()]);
        assert!(resolve(&words("dispatcher frob")).is_err());
        assert!(resolve(&words("log-level loud")).is_err());
    }

    #[test]
    fn results_print_as_kamcmd_lays_them_out() {
        let v = RpcValue::Struct(vec![
            ("now".into(), RpcValue::Str("x".into())),
            ("uptime".into(), RpcValue::Int(3)),
        ]);
        assert_eq!(render(&v), "{\n\tnow: x\n\tuptime: 3\n}\n");
        let v = RpcValue::Array(vec![
            RpcValue::Str("a = 1".into()),
            RpcValue::Str("b = 2".into()),
        ]);
        assert_eq!(render(&v), "a = 1\nb = 2\n");
    }
}
