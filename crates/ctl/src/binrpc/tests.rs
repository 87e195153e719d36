use super::*;

fn body_of(packet: &[u8]) -> &[u8] {
    let h = parse_header(packet).expect("header");
    &packet[h.header_len..h.header_len + h.body_len]
}

#[test]
fn records_have_the_formats_kamailio_documents() {
    let mut e = Encoder::default();
    e.value(&RpcValue::Int(0x1234));
    e.value(&RpcValue::Int(7));
    e.value(&RpcValue::Int(0));
    e.value(&RpcValue::Str("abcdef".into()));
    e.value(&RpcValue::Str("abcdefhij".into()));
    assert_eq!(
        e.body,
        [
            &[0x20, 0x12, 0x34, 0x10, 0x07, 0x00, 0x71][..],
            b"abcdef\0",
            &[0x91, 0x0a],
            b"abcdefhij\0"
        ]
        .concat()
    );
    let mut e = Encoder::default();
    e.value(&RpcValue::Struct(vec![(
        "s".into(),
        RpcValue::Str("abc".into()),
    )]));
    assert_eq!(
        e.body,
        [&[0x03, 0x25, b's', 0, 0x41][..], b"abc\0", &[0x83]].concat()
    );
}

#[test]
fn a_request_round_trips() {
    let params = vec![
        Value::from_static("all"),
        Value::Int(-5),
        Value::Int(300),
        Value::from_string("x".repeat(70_000)),
    ];
    let p = request(0x1234_5678, "stats.get_statistics", &params);
    let h = parse_header(&p).expect("header");
    assert_eq!((h.kind, h.cookie), (REQUEST, 0x1234_5678));
    assert_eq!(h.header_len + h.body_len, p.len());
    let r = decode_request(body_of(&p)).expect("request");
    assert_eq!(r.method, "stats.get_statistics");
    assert_eq!(r.params, params);
}

#[test]
fn a_reply_round_trips_with_nesting_and_array_members_repeated() {
    let v = RpcValue::Struct(vec![
        ("AOR".into(), RpcValue::Str("alice".into())),
        (
            "Contacts".into(),
            RpcValue::Array(vec![RpcValue::Int(1), RpcValue::Int(2)]),
        ),
        ("big".into(), RpcValue::Int(1 << 40)),
        (
            "inner".into(),
            RpcValue::Struct(vec![("n".into(), RpcValue::Null)]),
        ),
    ]);
    let p = reply(9, &RpcValue::Array(vec![v, RpcValue::Int(-1)]));
    let vals = decode_values(body_of(&p)).expect("values");
    assert_eq!(
        vals,
        vec![
            RpcValue::Struct(vec![
                ("AOR".into(), RpcValue::Str("alice".into())),
                ("Contacts".into(), RpcValue::Int(1)),
                ("Contacts".into(), RpcValue::Int(2)),
                ("big".into(), RpcValue::Str((1i64 << 40).to_string())),
                (
                    "inner".into(),
                    RpcValue::Struct(vec![("n".into(), RpcValue::Str(String::new()))])
                ),
            ]),
            RpcValue::Int(-1),
        ]
    );
    let f = fault(3, 500, "no such method");
    let h = parse_header(&f).expect("header");
    assert_eq!(h.kind, FAULT);
    assert_eq!(
        decode_values(body_of(&f)).expect("fault"),
        vec![RpcValue::Int(500), RpcValue::Str("no such method".into())]
    );
}

#[test]
fn truncated_headers_ask_for_more_and_garbage_is_refused() {
    let p = request(1, "core.uptime", &[]);
    for n in 0..4 {
        assert_eq!(
            parse_header(&p[..n.min(p.len())]),
            Err(DecodeError::Incomplete)
        );
    }
    assert!(matches!(parse_header(b"{\"js"), Err(DecodeError::Bad(_))));
    assert!(matches!(
        parse_header(&[0xA1, 0x20, 1, 1]),
        Err(DecodeError::Bad(_))
    ));
}

/// A small deterministic generator (xorshift): the same inputs on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn malformed_input_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let valid = [
        request(
            7,
            "dispatcher.set_state",
            &[Value::from_static("ip"), Value::Int(1)],
        ),
        reply(
            7,
            &RpcValue::Array(vec![RpcValue::Struct(vec![(
                "a".into(),
                RpcValue::Array(vec![RpcValue::Array(vec![RpcValue::Int(1)])]),
            )])]),
        ),
    ];
    for round in 0..20_000 {
        let mut buf = if round % 3 == 0 {
            (0..rng.next() % 64)
                .map(|_| rng.next() as u8)
                .collect::<Vec<_>>()
        } else {
            let mut b = valid[round % 2].clone();
            // Flip, cut or extend a valid packet.
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % b.len();
                match rng.next() % 3 {
                    0 => b[i] = rng.next() as u8,
                    1 => b.truncate(i),
                    _ => b.insert(i, rng.next() as u8),
                }
                if b.is_empty() {
                    b.push(0xA1);
                }
            }
            b
        };
        if let Ok(h) = parse_header(&buf) {
            let end = (h.header_len + h.body_len).min(buf.len());
            let body = &buf[h.header_len.min(end)..end];
            let _ = decode_request(body);
            let _ = decode_values(body);
        }
        let _ = decode_request(&buf);
        let _ = decode_values(&buf);
        buf.clear();
    }
}

#[test]
fn deep_nesting_is_refused_not_recursed_without_bound() {
    let body = vec![T_ARRAY; 100_000];
    assert!(decode_values(&body).is_err());
}
