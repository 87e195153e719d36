//! JSON-RPC 2.0 as Kamailio's jsonrpcs module speaks it: a request object with
//! `jsonrpc`, `method`, `params` (an array of plain values) and `id`; the FIFO transport
//! adds `reply_name`, the FIFO file the answer goes to.

use crate::methods::RpcError;
use ferrosip_api::registry::RpcValue;
use ferrosip_api::Value;
use serde_json::Value as Json;

/// Standard JSON-RPC error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub params: Vec<Value>,
    /// `None` for a notification (no answer is sent), else the id to echo.
    pub id: Option<Json>,
    /// The FIFO transport's reply file name.
    pub reply_name: Option<String>,
}

/// A request that cannot be run, with what is known of it to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub id: Json,
    pub reply_name: Option<String>,
    pub error: RpcError,
}

/// Reads a request from a decoded JSON document.
pub fn request(doc: Json) -> Result<Request, Invalid> {
    let Json::Object(mut obj) = doc else {
        return Err(Invalid {
            id: Json::Null,
            reply_name: None,
            error: RpcError::new(INVALID_REQUEST, "Invalid Request: not a JSON object"),
        });
    };
    let id = obj.remove("id");
    let reply_name = match obj.remove("reply_name") {
        Some(Json::String(s)) => Some(s),
        _ => None,
    };
    let invalid = |msg: &str| Invalid {
        id: id.clone().unwrap_or(Json::Null),
        reply_name: reply_name.clone(),
        error: RpcError::new(INVALID_REQUEST, msg),
    };
    if let Some(v) = obj.get("jsonrpc") {
        if v != "2.0" {
            return Err(invalid("Invalid Request: jsonrpc must be \"2.0\""));
        }
    }
    if matches!(id, Some(Json::Object(_)) | Some(Json::Array(_))) {
        return Err(invalid(
            "Invalid Request: id must be a string, a number or null",
        ));
    }
    let method = match obj.remove("method") {
        Some(Json::String(m)) if !m.is_empty() => m,
        _ => return Err(invalid("Invalid Request: no method")),
    };
    let params = match obj.remove("params") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(param(item).map_err(|m| Invalid {
                    id: id.clone().unwrap_or(Json::Null),
                    reply_name: reply_name.clone(),
                    error: RpcError::new(INVALID_PARAMS, m),
                })?);
            }
            out
        }
        Some(_) => {
            return Err(Invalid {
                id: id.clone().unwrap_or(Json::Null),
                reply_name: reply_name.clone(),
                error: RpcError::new(INVALID_PARAMS, "Invalid params: params must be an array"),
            })
        }
    };
    Ok(Request {
        method,
        params,
        id,
        reply_name,
    })
}

fn param(v: Json) -> Result<Value, String> {
    Ok(match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Int(i64::from(b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::from_string(n.to_string()),
        },
        Json::String(s) => Value::from_string(s),
        Json::Array(_) | Json::Object(_) => {
            return Err("Invalid params: each parameter must be a plain value".into())
        }
    })
}

/// The answer to a request: its result or its error, with the id echoed.
pub fn response(id: &Json, outcome: &Result<RpcValue, RpcError>, pretty: bool) -> String {
    let mut w = Writer {
        out: String::new(),
        pretty,
        depth: 0,
    };
    w.out.push('{');
    w.key("jsonrpc", true);
    w.out.push_str("\"2.0\"");
    match outcome {
        Ok(v) => {
            w.key("result", false);
            w.value(v);
        }
        Err(e) => {
            w.key("error", false);
            w.value(&RpcValue::Struct(vec![
                ("code".into(), RpcValue::Int(e.code)),
                ("message".into(), RpcValue::Str(e.message.clone())),
            ]));
        }
    }
    w.key("id", false);
    w.out.push_str(&id.to_string());
    w.depth = 0;
    w.newline();
    w.out.push('}');
    w.out.push('\n');
    w.out
}

/// JSON text of values in their order (a struct may repeat a name, as Kamailio's do).
struct Writer {
    out: String,
    pretty: bool,
    depth: usize,
}

impl Writer {
    fn newline(&mut self) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..self.depth {
                self.out.push('\t');
            }
        }
    }

    fn key(&mut self, k: &str, first: bool) {
        if !first {
            self.out.push(',');
        }
        self.depth = 1;
        self.newline();
        self.string(k);
        self.out.push(':');
        if self.pretty {
            self.out.push(' ');
        }
    }

    fn string(&mut self, s: &str) {
        self.out
            .push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    }

    fn value(&mut self, v: &RpcValue) {
        match v {
            RpcValue::Null => self.out.push_str("null"),
            RpcValue::Int(i) => self.out.push_str(&i.to_string()),
            RpcValue::Str(s) => self.string(s),
            RpcValue::Array(items) => {
                self.out.push('[');
                let outer = self.depth;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.depth = outer + 1;
                    self.newline();
                    self.value(item);
                }
                self.depth = outer;
                if !items.is_empty() {
                    self.newline();
                }
                self.out.push(']');
            }
            RpcValue::Struct(members) => {
                self.out.push('{');
                let outer = self.depth;
                for (i, (k, item)) in members.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.depth = outer + 1;
                    self.newline();
                    self.string(k);
                    self.out.push(':');
                    if self.pretty {
                        self.out.push(' ');
                    }
                    self.value(item);
                }
                self.depth = outer;
                if !members.is_empty() {
                    self.newline();
                }
                self.out.push('}');
            }
        }
    }
}

/// A JSON document back into a value (the client side: `ferrosip ctl`).
pub fn to_rpc_value(v: &Json) -> RpcValue {
    match v {
        Json::Null => RpcValue::Null,
        Json::Bool(b) => RpcValue::Int(i64::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => RpcValue::Int(i),
            None => RpcValue::Str(n.to_string()),
        },
        Json::String(s) => RpcValue::Str(s.clone()),
        Json::Array(items) => RpcValue::Array(items.iter().map(to_rpc_value).collect()),
        Json::Object(map) => RpcValue::Struct(
            map.iter()
                .map(|(k, v)| (k.clone(), to_rpc_value(v)))
                .collect(),
        ),
    }
}

/// What a byte stream holds next: a whole JSON document and the bytes it took, more
/// bytes needed, or bytes that can never become one.
pub enum Framed {
    Doc(Json, usize),
    Incomplete,
    Malformed(String),
}

/// Frames the first JSON document in `buf` (leading whitespace skipped).
pub fn frame(buf: &[u8]) -> Framed {
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Json>();
    match it.next() {
        None => Framed::Incomplete,
        Some(Ok(doc)) => Framed::Doc(doc, it.byte_offset()),
        Some(Err(e)) if e.is_eof() => Framed::Incomplete,
        Some(Err(e)) => Framed::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_as_jsonrpcs_takes_them() {
        let doc = serde_json::from_str(
            r#"{"jsonrpc": "2.0", "method": "ul.dump", "params": ["a", 3, true, 1.5], "reply_name": "kamailio_receiver_1", "id": 7}"#,
        )
        .expect("json");
        let r = request(doc).expect("request");
        assert_eq!(r.method, "ul.dump");
        assert_eq!(
            r.params,
            vec![
                Value::from_static("a"),
                Value::Int(3),
                Value::Int(1),
                Value::from_static("1.5")
            ]
        );
        assert_eq!(r.id, Some(Json::from(7)));
        assert_eq!(r.reply_name.as_deref(), Some("kamailio_receiver_1"));
    }

    #[test]
    fn bad_requests_get_their_error_codes() {
        for (text, code) in [
            (r#"[1,2]"#, INVALID_REQUEST),
            (r#"{"jsonrpc":"1.0","method":"x","id":1}"#, INVALID_REQUEST),
            (r#"{"params":[],"id":1}"#, INVALID_REQUEST),
            (r#"{"method":"x","params":{"a":1},"id":1}"#, INVALID_PARAMS),
            (r#"{"method":"x","params":[[1]],"id":1}"#, INVALID_PARAMS),
        ] {
            let e = request(serde_json::from_str(text).expect("json")).expect_err(text);
            assert_eq!(e.error.code, code, "{text}");
        }
    }

    #[test]
    fn responses_keep_member_order_and_repeated_names() {
        let v = RpcValue::Struct(vec![
            ("b".into(), RpcValue::Int(1)),
            ("a".into(), RpcValue::Str("x\"y".into())),
            ("a".into(), RpcValue::Array(vec![])),
        ]);
        let text = response(&Json::from(1), &Ok(v), false);
        assert_eq!(
            text,
            "{\"jsonrpc\":\"2.0\",\"result\":{\"b\":1,\"a\":\"x\\\"y\",\"a\":[]},\"id\":1}\n"
        );
        let pretty = response(
            &Json::from("q"),
            &Err(RpcError::new(-32601, "Method Not Found")),
            true,
        );
        let back: Json = serde_json::from_str(&pretty).expect("valid json");
        assert_eq!(back["error"]["code"], -32601);
        assert_eq!(back["id"], "q");
    }

    #[test]
    fn streams_are_framed_document_by_document() {
        let buf = b"  {\"method\":\"a\"}\n{\"meth";
        let Framed::Doc(_, used) = frame(buf) else {
            panic!("first document")
        };
        assert!(matches!(frame(&buf[used..]), Framed::Incomplete));
        assert!(matches!(frame(b"{\"a\":}"), Framed::Malformed(_)));
        assert!(matches!(frame(b"   "), Framed::Incomplete));
    }
}
