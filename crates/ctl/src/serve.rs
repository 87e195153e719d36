//! The control sockets: stream sockets (unix or TCP) taking BINRPC or JSON-RPC, told
//! apart by their first byte; jsonrpcs' datagram socket and FIFO. Every resource has a
//! limit: clients served at once, request size, the time a client may take.

use crate::binrpc;
use crate::json::{self, Framed};
use crate::methods::{Methods, RpcError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::{timeout, timeout_at, Instant};

/// Limits of the control sockets.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_clients: usize,
    pub read_timeout: Duration,
    pub max_request: usize,
    /// Indented JSON replies (jsonrpcs' pretty_format).
    pub pretty: bool,
}

/// What every connection shares.
pub struct Shared {
    pub methods: Arc<Methods>,
    pub limits: Limits,
    pub clients: Arc<Semaphore>,
}

/// A stream connection, as long as its client keeps it and within the limits.
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, shared: Arc<Shared>) {
    let Ok(_slot) = shared.clients.clone().try_acquire_owned() else {
        tracing::warn!(
            max_clients = shared.limits.max_clients,
            "control connection refused: too many clients"
        );
        return;
    };
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // The whole next request must arrive within the read timeout.
        let deadline = Instant::now() + shared.limits.read_timeout;
        if buf.is_empty() && !read_more(&mut s, &mut buf, deadline).await {
            return;
        }
        let answer = if binrpc::is_binrpc(buf[0]) {
            binrpc_request(&mut s, &mut buf, deadline, &shared).await
        } else {
            json_request(&mut s, &mut buf, deadline, &shared).await
        };
        let Some((reply, keep_going)) = answer else {
            return;
        };
        if !reply.is_empty() {
            let write = timeout(shared.limits.read_timeout, s.write_all(&reply)).await;
            if !matches!(write, Ok(Ok(()))) {
                return;
            }
        }
        if !keep_going {
            let _ = s.shutdown().await;
            return;
        }
    }
}

/// Reads what is there into `buf`; false at the end of the stream, an error or the
/// deadline.
async fn read_more<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>, deadline: Instant) -> bool {
    let mut chunk = [0u8; 8192];
    match timeout_at(deadline, s.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// One BINRPC request: the reply and whether the connection goes on, or `None` when
/// the client went away or ran out of time.
async fn binrpc_request<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
    shared: &Shared,
) -> Option<(Vec<u8>, bool)> {
    let header = loop {
        match binrpc::parse_header(buf) {
            Ok(h) => break h,
            Err(binrpc::DecodeError::Incomplete) => {
                if !read_more(s, buf, deadline).await {
                    return None;
                }
            }
            Err(binrpc::DecodeError::Bad(why)) => {
                return Some((binrpc::fault(0, 400, why), false));
            }
        }
    };
    if header.body_len > shared.limits.max_request {
        return Some((
            binrpc::fault(header.cookie, 400, "request too large"),
            false,
        ));
    }
    let total = header.header_len + header.body_len;
    while buf.len() < total {
        if !read_more(s, buf, deadline).await {
            return None;
        }
    }
    let body: Vec<u8> = buf.drain(..total).skip(header.header_len).collect();
    if header.kind != binrpc::REQUEST {
        return Some((binrpc::fault(header.cookie, 400, "not a request"), true));
    }
    let reply = match binrpc::decode_request(&body) {
        Err(binrpc::DecodeError::Bad(why)) => binrpc::fault(header.cookie, 400, why),
        Err(binrpc::DecodeError::Incomplete) => {
            binrpc::fault(header.cookie, 400, "truncated request")
        }
        Ok(req) => match shared.methods.call(&req.method, req.params).await {
            Ok(v) => binrpc::reply(header.cookie, &v),
            Err(e) => binrpc::fault(header.cookie, e.code, &e.message),
        },
    };
    Some((reply, true))
}

/// One JSON-RPC request on a stream: as [`binrpc_request`]. Bytes that can never be
/// JSON are answered with a parse error and the connection is closed (there is no
/// telling where the next request would start).
async fn json_request<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
    shared: &Shared,
) -> Option<(Vec<u8>, bool)> {
    loop {
        match json::frame(buf) {
            Framed::Doc(doc, used) => {
                buf.drain(..used);
                // Whitespace after a request is not the start of the next one.
                let ws = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
                buf.drain(..ws);
                let reply = answer_json(doc, &shared.methods, shared.limits.pretty)
                    .await
                    .map(|(text, _)| text.into_bytes())
                    .unwrap_or_default();
                return Some((reply, true));
            }
            Framed::Malformed(why) => {
                let e = RpcError::new(json::PARSE_ERROR, format!("Parse error: {why}"));
                let text = json::response(&serde_json::Value::Null, &Err(e), shared.limits.pretty);
                return Some((text.into_bytes(), false));
            }
            Framed::Incomplete => {
                if buf.len() > shared.limits.max_request {
                    let e = RpcError::new(json::INVALID_REQUEST, "Invalid Request: too large");
                    let text =
                        json::response(&serde_json::Value::Null, &Err(e), shared.limits.pretty);
                    return Some((text.into_bytes(), false));
                }
                if !read_more(s, buf, deadline).await {
                    return None;
                }
            }
        }
    }
}

/// Runs a JSON request: its answer (none for a notification) and the FIFO reply name.
pub async fn answer_json(
    doc: serde_json::Value,
    methods: &Methods,
    pretty: bool,
) -> Option<(String, Option<String>)> {
    let answer = run_json(doc, methods, pretty).await;
    Some((answer.body?, answer.reply_name))
}

/// What running one JSON request gave, for every transport.
struct Answer {
    /// The response document; `None` for a notification.
    body: Option<String>,
    reply_name: Option<String>,
    /// Why it did not run: not a JSON-RPC request (`true`), or the command failed.
    failure: Option<(bool, String)>,
}

async fn run_json(doc: serde_json::Value, methods: &Methods, pretty: bool) -> Answer {
    match json::request(doc) {
        Err(invalid) => Answer {
            failure: Some((true, invalid.error.message.clone())),
            body: Some(json::response(&invalid.id, &Err(invalid.error), pretty)),
            reply_name: invalid.reply_name,
        },
        Ok(req) => {
            let outcome = methods.call(&req.method, req.params).await;
            Answer {
                failure: outcome.as_ref().err().map(|e| (false, e.message.clone())),
                body: req.id.map(|id| json::response(&id, &outcome, pretty)),
                reply_name: req.reply_name,
            }
        }
    }
}

/// jsonrpcs' datagram socket: one request per datagram, the answer to its sender.
pub async fn serve_dgram(
    sock: tokio::net::UnixDatagram,
    shared: Arc<Shared>,
    reply_timeout: Duration,
) {
    let mut buf = vec![0u8; shared.limits.max_request.max(1024)];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let answer = match json::frame(&buf[..n]) {
            Framed::Doc(doc, _) => answer_json(doc, &shared.methods, shared.limits.pretty)
                .await
                .map(|(t, _)| t),
            Framed::Malformed(why) => Some(json::response(
                &serde_json::Value::Null,
                &Err(RpcError::new(
                    json::PARSE_ERROR,
                    format!("Parse error: {why}"),
                )),
                shared.limits.pretty,
            )),
            Framed::Incomplete => Some(json::response(
                &serde_json::Value::Null,
                &Err(RpcError::new(
                    json::PARSE_ERROR,
                    if n == buf.len() {
                        "Parse error: request too large".to_string()
                    } else {
                        "Parse error: incomplete JSON".to_string()
                    },
                )),
                shared.limits.pretty,
            )),
        };
        let (Some(text), Some(path)) = (answer, peer.as_pathname()) else {
            continue;
        };
        let sent = timeout(reply_timeout, sock.send_to(text.as_bytes(), path)).await;
        if !matches!(sent, Ok(Ok(_))) {
            tracing::debug!(peer = %path.display(), "JSON-RPC datagram reply not sent");
        }
    }
}

/// A FIFO reply file name: a plain name inside the reply directory.
fn reply_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0');
    plain.then(|| dir.join(name))
}

/// jsonrpcs' FIFO (kamctl's transport): requests written to the FIFO, each answered to
/// the FIFO its `reply_name` names in the reply directory.
pub async fn serve_fifo(
    mut fifo: tokio::net::unix::pipe::Receiver,
    shared: Arc<Shared>,
    reply_dir: PathBuf,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = match fifo.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("reading the RPC FIFO failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match json::frame(&buf) {
                Framed::Doc(doc, used) => {
                    buf.drain(..used);
                    let Some((text, name)) =
                        answer_json(doc, &shared.methods, shared.limits.pretty).await
                    else {
                        continue;
                    };
                    match name.as_deref().and_then(|n| reply_path(&reply_dir, n)) {
                        Some(path) => write_fifo_reply(&path, text.as_bytes(), &shared).await,
                        None => tracing::warn!(
                            "JSON-RPC FIFO request without a usable reply_name: not answered"
                        ),
                    }
                }
                Framed::Malformed(why) => {
                    // No reply file is known: drop through the end of the line.
                    tracing::warn!("malformed JSON-RPC on the FIFO dropped: {why}");
                    match buf.iter().position(|b| *b == b'\n') {
                        Some(i) => {
                            buf.drain(..=i);
                        }
                        None => buf.clear(),
                    }
                }
                Framed::Incomplete => {
                    if buf.len() > shared.limits.max_request {
                        tracing::warn!("JSON-RPC request on the FIFO too large: dropped");
                        buf.clear();
                    } else if buf.iter().all(u8::is_ascii_whitespace) {
                        buf.clear();
                    }
                    break;
                }
            }
        }
    }
}

/// Writes a reply to a client's FIFO; the client may open it for reading just after
/// writing its request, so opening is retried for a while.
async fn write_fifo_reply(path: &Path, text: &[u8], shared: &Shared) {
    let deadline = Instant::now() + shared.limits.read_timeout;
    let mut sender = loop {
        match tokio::net::unix::pipe::OpenOptions::new().open_sender(path) {
            Ok(s) => break s,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot open the JSON-RPC reply FIFO: {e}");
                return;
            }
        }
    };
    if !matches!(
        timeout_at(deadline, sender.write_all(text)).await,
        Ok(Ok(()))
    ) {
        tracing::warn!(path = %path.display(), "JSON-RPC reply not written to its FIFO");
    }
}

/// The commands for script functions (`jsonrpc_dispatch()`, `jsonrpc_exec()`): the same
/// table, framing and limits as the sockets.
pub struct ScriptRpc {
    pub methods: Arc<Methods>,
    pub pretty: bool,
    pub max_request: usize,
}

impl ferrosip_api::jsonrpc::JsonRpc for ScriptRpc {
    fn execute(
        &self,
        request: bytes::Bytes,
    ) -> ferrosip_api::registry::BoxFuture<'static, ferrosip_api::jsonrpc::JsonRpcReply> {
        use ferrosip_api::jsonrpc::JsonRpcReply;
        let methods = self.methods.clone();
        let pretty = self.pretty;
        let too_large = request.len() > self.max_request;
        Box::pin(async move {
            let refused = |code: i64, message: String| {
                let e = RpcError::new(code, message.clone());
                JsonRpcReply {
                    code: 400,
                    text: message,
                    body: json::response(&serde_json::Value::Null, &Err(e), pretty),
                }
            };
            if too_large {
                return refused(json::INVALID_REQUEST, "Invalid Request: too large".into());
            }
            let doc = match json::frame(&request) {
                Framed::Doc(doc, _) => doc,
                Framed::Malformed(why) => {
                    return refused(json::PARSE_ERROR, format!("Parse error: {why}"))
                }
                Framed::Incomplete => {
                    return refused(json::PARSE_ERROR, "Parse error: incomplete".into())
                }
            };
            let answer = run_json(doc, &methods, pretty).await;
            let (code, text) = match answer.failure {
                None => (200, "OK".to_string()),
                Some((true, why)) => (400, why),
                Some((false, why)) => (500, why),
            };
            JsonRpcReply {
                code,
                text,
                body: answer.body.unwrap_or_default(),
            }
        })
    }
}
