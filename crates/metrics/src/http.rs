//! The exporter's HTTP/1.1 listener: GET (and HEAD) of `/metrics` only, one request per
//! connection. Hand-written rather than hyper (not in the dependency tree): a scraper
//! sends one small GET, and every limit here is explicit.

use crate::Sources;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Connections served at once; more are closed at once (a scraper needs one).
pub const MAX_CLIENTS: usize = 8;
/// The largest request head read; a longer one is answered 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its whole request head, and to take the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts connections until the task is aborted.
pub async fn serve(listener: TcpListener, sources: Arc<Sources>, prefix: Arc<str>) {
    let clients = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Ok(permit) = clients.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let (sources, prefix) = (sources.clone(), prefix.clone());
                tokio::spawn(async move {
                    serve_connection(stream, &sources, &prefix).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("metrics listener accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// GET (or HEAD: `head_only`) of the metrics.
    Metrics {
        head_only: bool,
    },
    NotFound,
    MethodNotAllowed,
    Bad,
}

/// Reads the request line of a complete head (`GET /metrics HTTP/1.1`); a query string
/// is ignored, as scrapers may add one.
pub fn parse_head(head: &[u8]) -> Request {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Request::Bad;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Bad;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::MethodNotAllowed,
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path == "/metrics" {
        Request::Metrics { head_only }
    } else {
        Request::NotFound
    }
}

/// Reads until the blank line that ends the head; `None` on timeout, close or overflow
/// (`Some(Err)` carries the status to answer).
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, Option<u16>> {
    let mut buf = Vec::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    let mut chunk = [0u8; 1024];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(buf);
        }
        if buf.len() >= MAX_HEAD {
            return Err(Some(431));
        }
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(None),
            Err(_) => return Err(Some(408)),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve_connection(mut stream: TcpStream, sources: &Sources, prefix: &str) {
    let (status, reason, extra, body, head_only) = match read_head(&mut stream).await {
        Err(None) => return,
        Err(Some(431)) => (
            431,
            "Request Header Fields Too Large",
            "",
            String::new(),
            false,
        ),
        Err(Some(_)) => (408, "Request Timeout", "", String::new(), false),
        Ok(head) => match parse_head(&head) {
            Request::Metrics { head_only } => (
                200,
                "OK",
                "",
                crate::render::render(sources, prefix).await,
                head_only,
            ),
            Request::NotFound => (404, "Not Found", "", "not found\n".into(), false),
            Request::MethodNotAllowed => (
                405,
                "Method Not Allowed",
                "Allow: GET, HEAD\r\n",
                String::new(),
                false,
            ),
            Request::Bad => (400, "Bad Request", "", String::new(), false),
        },
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    let _ = tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    })
    .await;
    // Closing with unread input makes the kernel send a reset, which can discard the
    // answer before the client reads it (a refused oversized head): what the client
    // still sends is read and dropped first, up to a bound and for a short time.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics { head_only: false }
        );
        assert_eq!(
            parse_head(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics { head_only: true }
        );
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Request::MethodNotAllowed
        );
        assert_eq!(parse_head(b"GET /metrics\r\n\r\n"), Request::Bad);
        assert_eq!(parse_head(b"GET /metrics SIP/2.0\r\n\r\n"), Request::Bad);
        assert_eq!(parse_head(b"\xff\xfe\r\n\r\n"), Request::Bad);
    }
}
