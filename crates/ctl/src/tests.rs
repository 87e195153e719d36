//! The sockets, driven as their clients drive them, with bad input.

use super::*;
use ferrosip_api::registry::RpcValue;
use serve::Limits;
use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};

fn methods() -> Arc<Methods> {
    let mut m = Methods::default();
    m.add("test.echo", "Answers its parameters.", |args| {
        Ok(RpcValue::Array(
            args.iter()
                .map(|a| match a {
                    Value::Int(i) => RpcValue::Int(*i),
                    v => RpcValue::Str(
                        String::from_utf8_lossy(&v.to_bytes().unwrap_or_default()).into(),
                    ),
                })
                .collect(),
        ))
    });
    m.add("test.fail", "Fails.", |_| {
        Err(RpcError::failed("it failed"))
    });
    m.add("test.panic", "Panics.", |_| panic!("a bug"));
    Arc::new(m)
}

fn settings(dir: &Path, max_clients: usize) -> Settings {
    Settings {
        streams: vec![Endpoint::Unix(dir.join("ctl"))],
        default_stream: false,
        stream_access: FileAccess {
            mode: Some(0o600),
            ..Default::default()
        },
        fifo: Some((dir.join("rpc.fifo"), FileAccess::default())),
        fifo_reply_dir: dir.to_path_buf(),
        dgram: Some((dir.join("rpc.sock"), FileAccess::default())),
        default_fifo: false,
        default_dgram: false,
        dgram_timeout: Duration::from_secs(1),
        limits: Limits {
            max_clients,
            read_timeout: Duration::from_millis(2000),
            max_request: 4096,
            pretty: false,
        },
    }
}

struct Running {
    _rt: tokio::runtime::Runtime,
    iface: Option<Interface>,
    dir: tempfile::TempDir,
}

fn running(max_clients: usize) -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let iface = start(&settings(dir.path(), max_clients), methods(), rt.handle()).expect("start");
    Running {
        _rt: rt,
        iface: Some(iface),
        dir,
    }
}

fn stream(r: &Running) -> UnixStream {
    let s = UnixStream::connect(r.dir.path().join("ctl")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

/// Reads one JSON document from the stream, byte by byte: what follows it stays in the
/// socket for the next call.
fn read_json(s: &mut UnixStream) -> serde_json::Value {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if let json::Framed::Doc(d, _) = json::frame(&buf) {
            return d;
        }
        let n = s.read(&mut byte).expect("read");
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
}

fn read_binrpc(s: &mut UnixStream) -> (u8, u32, Vec<RpcValue>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(h) = binrpc::parse_header(&buf) {
            if buf.len() >= h.header_len + h.body_len {
                let vals = binrpc::decode_values(&buf[h.header_len..h.header_len + h.body_len])
                    .expect("reply body");
                return (h.kind, h.cookie, vals);
            }
        }
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the server closes the connection with nothing more than whitespace sent.
fn closed(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 16];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(n) if b[..n].iter().all(u8::is_ascii_whitespace) => continue,
            _ => return false,
        }
    }
}

#[test]
fn json_and_binrpc_share_the_ctl_socket_and_a_connection_serves_many_requests() {
    let r = running(4);
    let mut s = stream(&r);
    s.write_all(br#"{"jsonrpc":"2.0","method":"test.echo","params":["a",2],"id":1} {"jsonrpc":"2.0","method":"nope","id":"x"}"#)
        .expect("send");
    let a = read_json(&mut s);
    assert_eq!(a["result"], serde_json::json!(["a", 2]));
    let b = read_json(&mut s);
    assert_eq!(b["error"]["code"], -32601);
    assert_eq!(b["id"], "x");
    // A notification (no id) gets no answer: the next answer is the next request's.
    s.write_all(br#"{"method":"test.echo"}{"method":"test.fail","id":3}"#)
        .expect("send");
    let c = read_json(&mut s);
    assert_eq!(
        (c["id"].clone(), c["error"]["code"].clone()),
        (3.into(), 500.into())
    );

    let mut k = stream(&r);
    k.write_all(&binrpc::request(
        77,
        "test.echo",
        &[Value::from_static("x"), Value::Int(5)],
    ))
    .expect("send");
    assert_eq!(
        read_binrpc(&mut k),
        (
            binrpc::REPLY,
            77,
            vec![RpcValue::Str("x".into()), RpcValue::Int(5)]
        )
    );
    k.write_all(&binrpc::request(78, "test.panic", &[]))
        .expect("send");
    let (kind, cookie, vals) = read_binrpc(&mut k);
    assert_eq!(
        (kind, cookie, vals[0].clone()),
        (binrpc::FAULT, 78, RpcValue::Int(500))
    );
    // Still serving after the panic.
    k.write_all(&binrpc::request(79, "test.echo", &[]))
        .expect("send");
    assert_eq!(read_binrpc(&mut k), (binrpc::REPLY, 79, vec![]));
}

#[test]
fn bad_input_gets_errors_and_the_socket_keeps_serving() {
    let r = running(4);
    let mut s = stream(&r);
    s.write_all(b"{\"method\": tru}").expect("send");
    assert_eq!(read_json(&mut s)["error"]["code"], -32700);
    assert!(closed(&mut s));

    let mut s = stream(&r);
    let mut huge = b"{\"method\":\"test.echo\",\"params\":[\"".to_vec();
    huge.extend_from_slice(&[b'x'; 10_000]);
    let _ = s.write_all(&huge);
    assert_eq!(read_json(&mut s)["error"]["code"], -32600);

    let mut s = stream(&r);
    s.write_all(&binrpc::request(
        5,
        "test.echo",
        &[Value::from_string("y".repeat(10_000))],
    ))
    .expect("send");
    let (kind, cookie, _) = read_binrpc(&mut s);
    assert_eq!((kind, cookie), (binrpc::FAULT, 5));

    let mut s = stream(&r);
    s.write_all(&[0xA1, 0x00, 0x03, 0x01, 0x44, 0x01, 0x02])
        .expect("send");
    let (kind, _, _) = read_binrpc(&mut s);
    assert_eq!(kind, binrpc::FAULT);

    // A client that sends half a request and stops is disconnected at the read timeout.
    let mut s = stream(&r);
    s.write_all(b"{\"method\":").expect("send");
    assert!(closed(&mut s));

    let mut s = stream(&r);
    s.write_all(br#"{"method":"test.echo","params":[1],"id":9}"#)
        .expect("send");
    assert_eq!(read_json(&mut s)["result"], serde_json::json!([1]));
}

#[test]
fn clients_beyond_the_limit_are_closed_at_once() {
    let r = running(1);
    let mut first = stream(&r);
    first
        .write_all(br#"{"method":"test.echo","id":1}"#)
        .expect("send");
    read_json(&mut first);
    let mut second = stream(&r);
    assert!(closed(&mut second));
    drop(first);
    std::thread::sleep(Duration::from_millis(100));
    let mut third = stream(&r);
    third
        .write_all(br#"{"method":"test.echo","id":2}"#)
        .expect("send");
    assert_eq!(read_json(&mut third)["id"], 2);
}

#[test]
fn the_datagram_socket_answers_its_sender() {
    let r = running(4);
    let me = r.dir.path().join("client.sock");
    let c = UnixDatagram::bind(&me).expect("bind");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let server = r.dir.path().join("rpc.sock");
    let mut buf = vec![0u8; 65536];
    c.send_to(
        br#"{"jsonrpc":"2.0","method":"test.echo","params":["d"],"id":4}"#,
        &server,
    )
    .expect("send");
    let n = c.recv(&mut buf).expect("answer");
    let a: serde_json::Value = serde_json::from_slice(&buf[..n]).expect("json");
    assert_eq!(a["result"], serde_json::json!(["d"]));
    c.send_to(b"not json", &server).expect("send");
    let n = c.recv(&mut buf).expect("answer");
    let a: serde_json::Value = serde_json::from_slice(&buf[..n]).expect("json");
    assert_eq!(a["error"]["code"], -32700);
}

#[test]
fn the_fifo_answers_to_the_reply_fifo_named() {
    let r = running(4);
    let reply = r.dir.path().join("reply_1");
    let c = std::ffi::CString::new(reply.to_str().expect("path")).expect("c");
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let fifo = r.dir.path().join("rpc.fifo");
    // Garbage first: dropped through its line, the next request still served.
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("fifo");
    w.write_all(b"garbage {\n{\"jsonrpc\": \"2.0\", \"method\": \"test.echo\", \"params\": [\"f\"], \"reply_name\": \"reply_1\", \"id\": 12}\n")
        .expect("write");
    drop(w);
    let text = std::fs::read_to_string(&reply).expect("reply");
    let a: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        (a["id"].clone(), a["result"].clone()),
        (12.into(), serde_json::json!(["f"]))
    );
}

#[test]
fn files_are_removed_when_the_interface_stops_and_stale_ones_replaced() {
    let mut r = running(4);
    let ctl = r.dir.path().join("ctl");
    assert!(ctl.exists());
    drop(r.iface.take());
    assert!(!ctl.exists());
    assert!(!r.dir.path().join("rpc.fifo").exists());
    // A stale socket file (its server died) is replaced.
    let _stale = std::os::unix::net::UnixListener::bind(&ctl).expect("bind");
    drop(_stale);
    let iface = start(&settings(r.dir.path(), 1), methods(), r._rt.handle()).expect("restart");
    drop(iface);
}

#[test]
fn endpoints_and_modes_read_as_kamailio_writes_them() {
    assert_eq!(
        Endpoint::parse("unix:/run/x/ctl").unwrap(),
        Endpoint::Unix("/run/x/ctl".into())
    );
    assert_eq!(
        Endpoint::parse("tcp:127.0.0.1:2049").unwrap(),
        Endpoint::Tcp("127.0.0.1:2049".parse().unwrap())
    );
    assert!(Endpoint::parse("udp:127.0.0.1:2049").is_err());
    assert_eq!(file_mode(0o660).unwrap(), 0o660);
    assert_eq!(file_mode(660).unwrap(), 0o660);
    assert_eq!(file_mode(600).unwrap(), 0o600);
    assert!(file_mode(99999).is_err());
}

/// A module with one sync and one async command.
struct Demo;

impl ferrosip_api::Module for Demo {
    fn name(&self) -> &'static str {
        "demo"
    }

    fn declare(&self, m: &mut ferrosip_api::ModuleBuilder<'_>) {
        m.rpc("demo.sync", "Sync.", |args| {
            Ok(RpcValue::Int(args.len() as i64))
        });
        m.rpc_async("demo.async", "Async.", |args: Vec<Value>| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            match args.first() {
                Some(Value::Int(i)) => Ok(RpcValue::Int(i * 2)),
                _ => Err("give a number".to_string()),
            }
        });
    }
}

#[test]
fn module_commands_run_sync_and_async_and_core_ones_read_them() {
    let mut reg = Registry::new();
    reg.register(&Demo);
    let methods = Methods::from_registry(&reg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        assert_eq!(
            methods.call("demo.async", vec![Value::Int(21)]).await,
            Ok(RpcValue::Int(42))
        );
        assert_eq!(
            methods.call("demo.async", vec![]).await,
            Err(RpcError::failed("give a number"))
        );
        assert_eq!(
            methods.call("demo.sync", vec![Value::Null]).await,
            Ok(RpcValue::Int(1))
        );
    });
    // A core command on the blocking pool reading an async module command.
    let method = methods.get("demo.async").expect("declared").clone();
    let got = rt
        .block_on(rt.spawn_blocking(move || method.call_blocking(&[Value::Int(5)])))
        .expect("join");
    assert_eq!(got, Ok(RpcValue::Int(10)));
}
