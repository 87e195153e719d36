//! The fuzz targets of issue 18, each as a plain "check one input" function, so the same
//! code runs under libFuzzer (`fuzz/`, cargo-fuzz on a nightly toolchain) and on stable
//! (`tests/replay.rs` replays the committed corpus and a bounded seeded mutation loop;
//! `examples/campaign.rs` runs that loop for a given time per target).
//!
//! A check panics when a property is broken: nothing may panic, a parsed message
//! serializes to one that parses to the same message, framing a stream at any split
//! point yields the messages framing it whole does, and edits keep a message parseable.
//! Each returns whether the input was accepted (parsed), which the mutation loop uses
//! to keep valid inputs as further seeds.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ferrosip_sip::{frame_len, SipMessage, Uri};

pub mod mutate;

/// A fuzz target: its name (the corpus directory, the cargo-fuzz target) and its check.
pub struct Target {
    pub name: &'static str,
    pub check: fn(&[u8]) -> bool,
    /// Inputs grow to at most this many bytes in the mutation loop.
    pub max_len: usize,
    /// Tokens the mutator splices in (the grammar's punctuation and keywords).
    pub dictionary: &'static [&'static [u8]],
}

const SIP_DICT: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b": ",
    b";",
    b",",
    b"\"",
    b"<",
    b">",
    b"@",
    b" ",
    b"\t",
    b"\r\n ",
    b"%",
    b"%00",
    b"[",
    b"]",
    b"?",
    b"&",
    b"=",
    b"sip:",
    b"sips:",
    b"tel:",
    b"SIP/2.0",
    b"SIP/2.0/UDP ",
    b"SIP/2.0/TCP ",
    b";branch=z9hG4bK",
    b";tag=",
    b"Content-Length: ",
    b"l: ",
    b"Via: ",
    b"v: ",
    b"CSeq: ",
    b"Max-Forwards: ",
    b"Call-ID: ",
    b"From: ",
    b"To: ",
    b"Contact: ",
    b"Route: ",
    b"Record-Route: ",
    b"Expires: ",
    b"INVITE",
    b"REGISTER",
    b"OPTIONS",
    b"ACK",
    b"4294967296",
    b"65536",
    b"256",
    b"18446744073709551616",
    b"-1",
    b"\0",
    b"\xff",
    b"\xc3\xa9",
];

const CRED_DICT: &[&[u8]] = &[
    b"Digest ",
    b"username=",
    b"realm=",
    b"nonce=",
    b"uri=",
    b"response=",
    b"algorithm=",
    b"qop=",
    b"nc=",
    b"cnonce=",
    b"opaque=",
    b"userhash=",
    b"MD5",
    b"MD5-sess",
    b"SHA-256",
    b"SHA-512-256",
    b"auth",
    b"auth-int",
    b"00000001",
    b"\"",
    b"\\\"",
    b"\\",
    b",",
    b"=",
    b" ",
    b"@",
    b"\0",
    b"\xff",
];

const CFG_DICT: &[&[u8]] = &[
    b"#!define ",
    b"#!ifdef ",
    b"#!ifndef ",
    b"#!else\n",
    b"#!endif\n",
    b"#!subst ",
    b"#!substdef ",
    b"#!trydef ",
    b"#!redefine ",
    b"#!defexp ",
    b"#!defenv ",
    b"#!ifexp ",
    b"request_route {",
    b"route[",
    b"]",
    b"{",
    b"}",
    b"(",
    b")",
    b";",
    b"\n",
    b"\"",
    b"'",
    b"$",
    b"$ru",
    b"$var(",
    b"$(ru{s.len})",
    b"{s.",
    b"if (",
    b"else",
    b"==",
    b"=~",
    b"!",
    b"&&",
    b"||",
    b"+",
    b"loadmodule \"",
    b"modparam(\"",
    b"exit;",
    b"drop;",
    b"return ",
    b"switch(",
    b"case ",
    b"default:",
    b"while(",
    b"/*",
    b"*/",
    b"#",
    b"//",
    b"\\",
    b"\0",
    b"include_file \"",
    b"import_file \"",
    b"event_route[",
    b"9223372036854775808",
    b"-",
];

const DB_TEXT_DICT: &[&[u8]] = &[
    b"(int)",
    b"(int,auto)",
    b"(string)",
    b"(str,null)",
    b"(double)",
    b"(datetime)",
    b"(time)",
    b"(blob)",
    b"(",
    b")",
    b",",
    b":",
    b"\\:",
    b"\\\\",
    b"\\n",
    b"\\0",
    b"\\",
    b"\n",
    b"\r\n",
    b" ",
    b"1e308",
    b"NaN",
    b"inf",
    b"-0",
    b"9223372036854775808",
    b"2024-02-30 25:61:61",
    b"\xc3\xa9",
];

/// Every target, in the order the replay test and the campaign run them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "message",
        check: check_message,
        max_len: 8 * 1024,
        dictionary: SIP_DICT,
    },
    Target {
        name: "framing",
        check: check_framing,
        max_len: 4 * 1024,
        dictionary: SIP_DICT,
    },
    Target {
        name: "uri",
        check: check_uri,
        max_len: 1024,
        dictionary: SIP_DICT,
    },
    Target {
        name: "credentials",
        check: check_credentials,
        max_len: 1024,
        dictionary: CRED_DICT,
    },
    Target {
        name: "cfg",
        check: check_cfg,
        max_len: 32 * 1024,
        dictionary: CFG_DICT,
    },
    Target {
        name: "db_text",
        check: check_db_text,
        max_len: 4 * 1024,
        dictionary: DB_TEXT_DICT,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The repository root (this crate is crates/fuzz-check).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The seed inputs of a target: its committed corpus (tests/corpus/fuzz/<name>, regression
/// inputs included) plus the shared seeds (RFC 4475 messages for the SIP targets, the
/// example configs for `cfg`). Sorted by path, so a seeded run is reproducible.
pub fn seeds(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = repo_root();
    let mut dirs = vec![root.join("tests/corpus/fuzz").join(name)];
    match name {
        "message" | "framing" => dirs.push(root.join("tests/corpus/rfc4475")),
        "cfg" => {
            dirs.push(root.join("examples"));
            dirs.push(root.join("examples/lua"));
        }
        _ => {}
    }
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let wanted = match name {
                "cfg" => p.extension().is_some_and(|x| x == "cfg"),
                "message" | "framing" if !p.starts_with(root.join("tests/corpus/fuzz")) => {
                    p.extension().is_some_and(|x| x == "dat")
                }
                _ => p.is_file(),
            };
            if wanted && p.is_file() {
                if let Ok(data) = std::fs::read(&p) {
                    out.push((p, data));
                }
            }
        }
    }
    out.sort();
    out
}

// ----- SIP messages: parse, edit, serialize -----

/// Parses `data` as one SIP message; a parsed message must serialize to bytes that parse
/// to the same message, every typed view must read without panicking, and a sequence of
/// edits (chosen from the input's bytes) must leave a message that parses to what the
/// edited message shows.
pub fn check_message(data: &[u8]) -> bool {
    let Ok(msg) = SipMessage::parse(Bytes::copy_from_slice(data)) else {
        return false;
    };
    read_everything(&msg);
    let _ = msg.validate();
    let out = msg.to_bytes();
    let again =
        SipMessage::parse(out.clone()).expect("a parsed message serializes to one that parses");
    assert_same_message(&msg, &again);
    assert_eq!(again.to_bytes(), out, "serialization is stable");

    let mut edited = msg.clone_for_edit();
    apply_edits(&mut edited, data);
    read_everything(&edited);
    let out = edited.to_bytes();
    let again = SipMessage::parse(out.clone()).unwrap_or_else(|e| {
        panic!(
            "an edited message parses again ({e}): {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_same_message(&edited, &again);
    if let Ok(stripped) = edited.to_bytes_without_top_via() {
        // What a proxy sends on with a reply: it may lack a Via, but must still index.
        let _ = SipMessage::parse(stripped);
    }
    true
}

/// Reads every typed view a route script can ask for.
fn read_everything(msg: &SipMessage) {
    let _ = (
        msg.method(),
        msg.method_bytes(),
        msg.request_uri(),
        msg.status(),
        msg.reason(),
    );
    if let Some(u) = msg.request_uri_parsed() {
        read_uri(&u);
    }
    let _ = (
        msg.call_id(),
        msg.cseq(),
        msg.from_tag(),
        msg.to_tag(),
        msg.top_via_branch(),
    );
    let _ = (
        msg.request_uri_host(),
        msg.max_forwards(),
        msg.content_length(),
    );
    let _ = (
        msg.content_type(),
        msg.user_agent(),
        msg.body(),
        msg.is_contact_star(),
    );
    for na in [msg.from(), msg.to()].into_iter().flatten() {
        let _ = (na.tag(), na.display_name());
        read_uri(na.uri());
    }
    for via in msg.vias().flatten() {
        let _ = (
            via.branch(),
            via.host(),
            via.port(),
            via.transport(),
            via.received(),
        );
        let _ = (
            via.rport(),
            via.params().into_iter().count(),
            via.maddr(),
            via.ttl(),
        );
    }
    let contacts: Vec<_> = msg.contacts().collect();
    let routes: Vec<_> = msg.routes().chain(msg.record_routes()).collect();
    for list in [contacts, routes] {
        for na in list.into_iter().flatten() {
            let _ = (
                na.display_name(),
                na.params().into_iter().count(),
                na.has_angle_brackets(),
            );
            read_uri(na.uri());
        }
    }
}

/// The message as a proxy reads it: start line, headers in order, body.
fn assert_same_message(a: &SipMessage, b: &SipMessage) {
    assert_eq!(a.is_request(), b.is_request());
    assert_eq!(a.method_bytes(), b.method_bytes());
    assert_eq!(a.request_uri(), b.request_uri());
    assert_eq!(a.status(), b.status());
    assert_eq!(a.reason(), b.reason());
    assert_eq!(a.version(), b.version());
    let ha: Vec<_> = a.headers().collect();
    let hb: Vec<_> = b.headers().collect();
    assert_eq!(ha, hb, "the same headers in the same order");
    assert_eq!(a.body(), b.body());
    assert_eq!(a.call_id(), b.call_id());
    assert_eq!(a.top_via_branch(), b.top_via_branch());
    assert_eq!(a.from_tag(), b.from_tag());
    assert_eq!(a.to_tag(), b.to_tag());
    assert_eq!(a.request_uri_host(), b.request_uri_host());
    assert_eq!(a.max_forwards().ok(), b.max_forwards().ok());
    assert_eq!(a.content_length(), b.content_length());
}

/// Edits a proxy makes, chosen and valued by the input's bytes, so hostile values reach
/// the edit checks too.
fn apply_edits(msg: &mut SipMessage, data: &[u8]) {
    let mut rng = mutate::Rng::new(mutate::hash(data));
    let slice = |rng: &mut mutate::Rng| -> Vec<u8> {
        if data.is_empty() {
            return Vec::new();
        }
        let start = rng.below(data.len());
        let len = rng.below((data.len() - start).min(64) + 1);
        data[start..start + len].to_vec()
    };
    const NAMES: &[&str] = &[
        "X-Fuzz",
        "Via",
        "Route",
        "Record-Route",
        "Contact",
        "CSeq",
        "Call-ID",
        "From",
        "To",
        "Max-Forwards",
        "Content-Length",
        "l",
        "v",
        "Subject",
        "P-Asserted-Identity",
    ];
    for _ in 0..1 + rng.below(6) {
        let name = NAMES[rng.below(NAMES.len())];
        let _ = match rng.below(11) {
            0 => msg.set_request_uri(slice(&mut rng)),
            1 => msg.set_request_uri("sip:fuzz@192.0.2.7:5060;transport=tcp"),
            2 => msg.add_header(name, slice(&mut rng)),
            3 => msg.insert_header_first(name, slice(&mut rng)),
            4 => {
                msg.remove_headers(name);
                Ok(())
            }
            5 => msg.prepend_via(slice(&mut rng)),
            6 => msg.prepend_via("SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKfuzz;rport"),
            7 => msg.remove_top_via(),
            8 => msg.set_header(name, slice(&mut rng)),
            9 => {
                msg.set_max_forwards(rng.next() as u8);
                Ok(())
            }
            _ => {
                msg.set_body(Bytes::from(slice(&mut rng)));
                Ok(())
            }
        };
    }
}

// ----- stream framing -----

/// The largest message the framing check lets through (small, so `TooLarge` is reached).
const FRAME_MAX: usize = 2048;

/// Frames `data` as a TCP stream, whole and cut at split points (every single point for
/// short streams, byte by byte for very short ones, and random cuts chosen by the
/// input's hash): every way yields the same messages and the same error or rest.
pub fn check_framing(data: &[u8]) -> bool {
    let whole = frame_stream(data, &[data.len()]);
    let mut rng = mutate::Rng::new(mutate::hash(data));
    let mut cut_sets: Vec<Vec<usize>> = Vec::new();
    if data.len() <= 512 {
        for i in 0..=data.len() {
            cut_sets.push(vec![i]);
        }
    } else {
        for _ in 0..64 {
            cut_sets.push(vec![rng.below(data.len() + 1)]);
        }
    }
    if data.len() <= 256 {
        cut_sets.push((0..=data.len()).collect());
    }
    for _ in 0..8 {
        let mut cuts: Vec<usize> = (0..1 + rng.below(8))
            .map(|_| rng.below(data.len() + 1))
            .collect();
        cuts.sort_unstable();
        cut_sets.push(cuts);
    }
    for mut cuts in cut_sets {
        cuts.push(data.len());
        let split = frame_stream(data, &cuts);
        assert_eq!(
            split, whole,
            "framing cut at {cuts:?} differs from framing the whole stream"
        );
    }
    !whole.messages.is_empty()
}

#[derive(Debug, PartialEq)]
struct Framed {
    messages: Vec<Vec<u8>>,
    /// The stream was refused (what a reader then does: close the connection).
    refused: bool,
    rest: Vec<u8>,
}

/// A reader's loop: append each chunk (ending at each cut), take every complete message.
fn frame_stream(data: &[u8], cuts: &[usize]) -> Framed {
    let mut buf: Vec<u8> = Vec::new();
    let mut messages = Vec::new();
    let mut from = 0;
    for &cut in cuts {
        buf.extend_from_slice(&data[from..cut]);
        from = cut;
        loop {
            match frame_len(&buf, FRAME_MAX) {
                Ok(Some(n)) => {
                    assert!(n > 0 && n <= buf.len(), "frame_len {n} within the buffer");
                    let msg: Vec<u8> = buf.drain(..n).collect();
                    let total = ferrosip_sip::frame_total(&msg, FRAME_MAX);
                    assert_eq!(
                        total.ok().flatten(),
                        Some(n),
                        "frame_total of a framed message"
                    );
                    messages.push(msg);
                }
                Ok(None) => break,
                Err(_) => {
                    return Framed {
                        messages,
                        refused: true,
                        rest: Vec::new(),
                    }
                }
            }
        }
    }
    Framed {
        messages,
        refused: false,
        rest: buf,
    }
}

// ----- URIs -----

/// Parses `data` as a URI; every accessor reads without panicking, and the URI's text
/// parses again to the same parts.
pub fn check_uri(data: &[u8]) -> bool {
    let Ok(u) = Uri::parse(data) else {
        return false;
    };
    read_uri(&u);
    let again = Uri::parse(u.as_bytes()).expect("a parsed URI's text parses");
    assert_eq!(uri_parts(&u), uri_parts(&again));
    true
}

type UriParts<'a> = (
    &'a [u8],
    Option<&'a [u8]>,
    Option<&'a [u8]>,
    Option<&'a [u8]>,
    Option<u16>,
    Option<&'a [u8]>,
    Option<&'a [u8]>,
);

fn uri_parts<'a>(u: &Uri<'a>) -> UriParts<'a> {
    (
        u.scheme(),
        u.user(),
        u.password(),
        u.host(),
        u.port(),
        u.params_raw(),
        u.headers_raw(),
    )
}

fn read_uri(u: &Uri<'_>) {
    let _ = (
        u.kind(),
        u.opaque(),
        u.params().into_iter().count(),
        u.headers().count(),
    );
    let _ = (u.param("transport"), u.param("lr"), u.param("maddr"));
}

// ----- digest credentials -----

/// Parses `data` as an Authorization / Proxy-Authorization value (modules/auth's parser)
/// and runs the checks `www_authorize` makes on it.
pub fn check_credentials(data: &[u8]) -> bool {
    let Ok(c) = ferrosip_mod_auth::digest::parse_credentials(data) else {
        return false;
    };
    let _ = (
        c.user(),
        c.user_domain(),
        c.digest_algorithm(),
        c.nonce_count(),
    );
    c.validate().is_ok()
}

// ----- configs: preprocessor, grammar, compiler -----

/// Preprocesses and loads `data` as a config (`#!` directives, the pest grammar, the
/// compiler with the core and a few modules' functions); errors are fine, a panic is not.
pub fn check_cfg(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let pp = ferrosip_preprocess::Options {
        include_dirs: Vec::new(),
        env: Some(Default::default()),
        ..Default::default()
    };
    let pre = ferrosip_preprocess::preprocess_str("fuzz.cfg", &text, &pp);
    let parsed = match &pre {
        Ok(p) => ferrosip_script::parser::parse_script(&p.text).is_ok(),
        Err(_) => false,
    };
    let reg = cfg_registry();
    let opts = ferrosip_script::LoadOptions {
        skip_module_init: true,
        ..Default::default()
    };
    // Configs loading modules outside this small registry stop at their loadmodule;
    // the grammar above still read them whole.
    let _ = ferrosip_script::load_str("fuzz.cfg", &text, &opts, reg);
    parsed
}

fn cfg_registry() -> &'static ferrosip_api::Registry {
    static REG: std::sync::OnceLock<ferrosip_api::Registry> = std::sync::OnceLock::new();
    REG.get_or_init(|| {
        let mut reg = ferrosip_api::Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&ferrosip_mod_core::CoreModule);
        reg.register(&ferrosip_mod_maxfwd::MaxfwdModule);
        reg.register(&ferrosip_mod_textops::TextopsModule);
        reg.register(&ferrosip_mod_siputils::SiputilsModule);
        reg.register(&ferrosip_mod_kex::KexModule);
        reg
    })
}

// ----- db_text tables -----

/// Reads `data` as a db_text table file; a table that reads renders to text that reads
/// back to the same table (rendering is idempotent).
pub fn check_db_text(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(rendered) = ferrosip_db::reparse_table_text(text) else {
        return false;
    };
    let again = ferrosip_db::reparse_table_text(&rendered)
        .unwrap_or_else(|e| panic!("a rendered table reads back ({e}): {rendered:?}"));
    assert_eq!(
        again, rendered,
        "a rendered table reads back to the same table"
    );
    true
}
