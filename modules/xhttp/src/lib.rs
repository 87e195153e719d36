//! `xhttp`: HTTP requests received on the SIP TCP and TLS sockets run
//! `event_route[xhttp:request]` (Kamailio's module of that name). The server's stream
//! transport tells an HTTP request from SIP by its first line and hands it over once
//! whole; here: `$hu`, `xhttp_reply()` and the checks of the parameters the transport
//! reads (`url_match`, `url_skip`). The reply is sent when the route ends; then the
//! connection closes, unless `ws_handle_handshake()` (module `websocket`) turned it into
//! a WebSocket.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::websocket::{HttpReply, HttpRequest};
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, MsgContext, ParamType, Pv, PvError, PvIndex,
    RouteMask, Value, Verdict,
};

/// The `xhttp` module.
pub struct XhttpModule;

/// `$hu`: the URL of the HTTP request being handled.
struct UrlPv;

impl Pv for UrlPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        Ok(ctx
            .ext
            .get::<HttpRequest>()
            .map_or(Value::Null, |r| Value::Str(r.url.clone())))
    }
}

/// The whole HTTP/1.1 reply (the connection closes after it).
fn build_reply(code: i64, reason: &[u8], ctype: &[u8], body: &[u8]) -> Result<Bytes, FnError> {
    HttpReply::build(code, reason, ctype, body)
        .map(|r| r.0)
        .map_err(|e| FnError::new(format!("xhttp_reply: {e}")))
}

fn xhttp_reply(
    ctx: &mut MsgContext,
    code: i64,
    reason: Bytes,
    ctype: Bytes,
    body: Bytes,
) -> FnResult {
    if ctx.ext.get::<HttpRequest>().is_none() {
        return Err(FnError::new(
            "xhttp_reply: not handling an HTTP request (only in event_route[xhttp:request])",
        ));
    }
    let reply = build_reply(code, &reason, &ctype, &body)?;
    ctx.ext.insert(HttpReply(reply));
    Ok(Verdict::TRUE)
}

/// A regular expression parameter: compiled once here, so that a bad one fails the load.
fn check_regex(name: &str, re: &str) -> Result<(), String> {
    if re.is_empty() {
        return Ok(());
    }
    regex::bytes::Regex::new(re)
        .map(|_| ())
        .map_err(|e| format!("{name}: {e}"))
}

impl Module for XhttpModule {
    fn name(&self) -> &'static str {
        "xhttp"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("HTTP requests received on the SIP TCP and TLS sockets run event_route[xhttp:request]: `$hu` is the URL, `$hdr()` the request's headers, `$rm` its method; `xhttp_reply()` answers (then the connection closes), `ws_handle_handshake()` (module websocket) upgrades it to SIP over WebSocket. One request per connection; the request (with its body) is bounded by `tcp_max_msg_size` and `tcp_msg_read_timeout`. See docs/websocket.md.");
        m.pv_fixed(
            "hu",
            "URL of the HTTP request (in event_route[xhttp:request]); $null elsewhere.",
            UrlPv,
        );
        m.param(
            "url_match",
            ParamType::Str,
            Value::Null,
            "Regular expression: only HTTP requests whose URL matches it run the event route (default: all); the others are answered 404 Not Found.",
        );
        m.param(
            "url_skip",
            ParamType::Str,
            Value::Null,
            "Regular expression: HTTP requests whose URL matches it do not run the event route; they are answered 404 Not Found.",
        );
        m.param(
            "event_callback",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of event_route[xhttp:request]: not available, a value is refused at load.",
        );
        let _checked = m.state(|p| {
            check_regex("url_match", &p.string("url_match"))?;
            check_regex("url_skip", &p.string("url_skip"))?;
            if !p.string("event_callback").is_empty() {
                return Err("event_callback: KEMI callbacks are not available; use event_route[xhttp:request]".into());
            }
            Ok(())
        });
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("xhttp_reply", &["code", "reason", "ctype", "body"], REQ_EVENT, "Answers the HTTP request with status CODE (200-599), REASON, Content-Type CTYPE (none when empty) and BODY, sent when the route ends; the connection then closes. 1 on success, -1 outside an HTTP request or with a bad status.", xhttp_reply),
        ]);
        m.example(
            r#"loadmodule "xhttp.so"
loadmodule "sl.so"
listen=tcp:127.0.0.1:8080
tcp_accept_no_cl=yes
request_route {
    sl_send_reply("404", "Not here");
}
event_route[xhttp:request] {
    if ($hu == "/health") {
        xhttp_reply("200", "OK", "text/plain", "up\n");
        exit;
    }
    xhttp_reply("404", "Not Found", "", "");
}
"#,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_whole_and_refuses_line_breaks() {
        let r = build_reply(200, b"OK", b"text/plain", b"up").unwrap();
        assert_eq!(
            &r[..],
            b"HTTP/1.1 200 OK\r\nServer: Ferrosip\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nup"
        );
        let r = build_reply(404, b"Not Found", b"", b"").unwrap();
        assert!(r.ends_with(b"Connection: close\r\nContent-Length: 0\r\n\r\n"));
        assert!(build_reply(200, b"OK\r\nX: 1", b"", b"").is_err());
        assert!(build_reply(101, b"Switching", b"", b"").is_err());
        assert!(build_reply(700, b"No", b"", b"").is_err());
    }
}
