//! Core transformations: `{s.*}` strings, `{uri.*}` URIs, `{param.*}` parameter lists,
//! `{nameaddr.*}`/`{tobody.*}` name-addr values.

use bytes::Bytes;
use ferrosip_api::pv::Binder;
use ferrosip_api::transform::{FnTransform, TrArg};
use ferrosip_api::{Module, ModuleBuilder, MsgContext, PvError, Transform, TransformClass, Value};
use ferrosip_sip::{NameAddr, Uri};
use std::sync::Arc;

fn bytes_of(v: &Value) -> Bytes {
    v.to_bytes().unwrap_or_default()
}

fn val(b: &[u8]) -> Value {
    Value::Str(Bytes::copy_from_slice(b))
}

fn opt(b: Option<&[u8]>) -> Value {
    b.map(val).unwrap_or_default()
}

fn int_arg(a: &TrArg, ctx: &MsgContext) -> Result<i64, PvError> {
    let v = a.eval(ctx)?;
    v.as_int()
        .ok_or_else(|| PvError::Invalid(format!("transformation argument \"{v}\" is not a number")))
}

fn str_arg(a: &TrArg, ctx: &MsgContext) -> Result<Bytes, PvError> {
    Ok(bytes_of(&a.eval(ctx)?))
}

fn expect_args(args: &[TrArg], min: usize, max: usize) -> Result<(), String> {
    if args.len() < min || args.len() > max {
        if min == max {
            return Err(format!("takes {min} argument(s), {} given", args.len()));
        }
        return Err(format!(
            "takes {min} to {max} arguments, {} given",
            args.len()
        ));
    }
    Ok(())
}

fn boxed(
    f: impl Fn(&MsgContext, Value) -> Result<Value, PvError> + Send + Sync + 'static,
) -> Arc<dyn Transform> {
    Arc::new(FnTransform(f))
}

/// Substring with Kamailio's rules: a negative offset counts from the end; length 0 means
/// "to the end"; a negative length stops that many bytes before the end.
fn substr(s: &[u8], offset: i64, len: i64) -> &[u8] {
    let n = s.len() as i64;
    let start = if offset < 0 {
        (n + offset).max(0)
    } else {
        offset.min(n)
    };
    let end = if len == 0 {
        n
    } else if len < 0 {
        (n + len).max(start)
    } else {
        (start + len).min(n)
    };
    &s[start as usize..end.max(start) as usize]
}

struct StringTransforms;

const S_NAMES: &[&str] = &[
    "len",
    "int",
    "substr",
    "tolower",
    "toupper",
    "strip",
    "striptail",
    "select",
    "trim",
    "rtrim",
    "ltrim",
    "encode.hexa",
    "decode.hexa",
    "numeric",
    "prefixes",
    "unquote",
    "rm",
    "replace",
    "before",
    "after",
    "fmtlines",
];

impl TransformClass for StringTransforms {
    fn names(&self) -> &[&'static str] {
        S_NAMES
    }

    fn bind(
        &self,
        name: &str,
        args: &[TrArg],
        _b: &Binder<'_>,
    ) -> Result<Arc<dyn Transform>, String> {
        let args: Vec<TrArg> = args.to_vec();
        Ok(match name {
            "len" => {
                expect_args(&args, 0, 0)?;
                boxed(|_, v| Ok(Value::Int(bytes_of(&v).len() as i64)))
            }
            "int" => {
                expect_args(&args, 0, 0)?;
                boxed(|_, v| {
                    // Kamailio reads the leading digits and ignores the rest.
                    let b = bytes_of(&v);
                    let b = b.trim_ascii_start();
                    let end = b
                        .iter()
                        .enumerate()
                        .position(|(i, c)| {
                            !(c.is_ascii_digit() || (i == 0 && (*c == b'-' || *c == b'+')))
                        })
                        .unwrap_or(b.len());
                    Ok(Value::Int(
                        ferrosip_api::value::parse_int(&b[..end]).unwrap_or(0),
                    ))
                })
            }
            "substr" => {
                expect_args(&args, 2, 2)?;
                boxed(move |ctx, v| {
                    let s = bytes_of(&v);
                    let off = int_arg(&args[0], ctx)?;
                    let len = int_arg(&args[1], ctx)?;
                    Ok(val(substr(&s, off, len)))
                })
            }
            "tolower" => boxed(|_, v| Ok(val(&bytes_of(&v).to_ascii_lowercase()))),
            "toupper" => boxed(|_, v| Ok(val(&bytes_of(&v).to_ascii_uppercase()))),
            "strip" | "striptail" => {
                expect_args(&args, 1, 1)?;
                let tail = name == "striptail";
                boxed(move |ctx, v| {
                    let s = bytes_of(&v);
                    let n = (int_arg(&args[0], ctx)?.max(0) as usize).min(s.len());
                    Ok(val(if tail { &s[..s.len() - n] } else { &s[n..] }))
                })
            }
            "trim" => boxed(|_, v| Ok(val(bytes_of(&v).trim_ascii()))),
            "rtrim" => boxed(|_, v| Ok(val(bytes_of(&v).trim_ascii_end()))),
            "ltrim" => boxed(|_, v| Ok(val(bytes_of(&v).trim_ascii_start()))),
            "select" => {
                expect_args(&args, 2, 2)?;
                let sep = args[1]
                    .literal()
                    .and_then(|s| s.bytes().next())
                    .ok_or("the separator must be one literal character")?;
                boxed(move |ctx, v| {
                    let s = bytes_of(&v);
                    let idx = int_arg(&args[0], ctx)?;
                    let fields: Vec<&[u8]> = s.split(|c| *c == sep).collect();
                    let i = if idx < 0 {
                        fields.len() as i64 + idx
                    } else {
                        idx
                    };
                    Ok(if i >= 0 && (i as usize) < fields.len() {
                        val(fields[i as usize])
                    } else {
                        Value::Null
                    })
                })
            }
            "encode.hexa" => boxed(|_, v| {
                let s = bytes_of(&v);
                let mut out = String::with_capacity(s.len() * 2);
                for b in s.iter() {
                    out.push_str(&format!("{b:02x}"));
                }
                Ok(Value::from_string(out))
            }),
            "decode.hexa" => boxed(|_, v| {
                let s = bytes_of(&v);
                if !s.len().is_multiple_of(2) {
                    return Err(PvError::Invalid("odd-length hex string".into()));
                }
                let mut out = Vec::with_capacity(s.len() / 2);
                for pair in s.chunks(2) {
                    let h = std::str::from_utf8(pair)
                        .ok()
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                        .ok_or_else(|| PvError::Invalid("not a hex string".into()))?;
                    out.push(h);
                }
                Ok(Value::Str(out.into()))
            }),
            "numeric" => boxed(|_, v| {
                let s = bytes_of(&v);
                let digits: Vec<u8> = s.iter().copied().filter(u8::is_ascii_digit).collect();
                Ok(Value::Str(digits.into()))
            }),
            "unquote" => boxed(|_, v| {
                let s = bytes_of(&v);
                Ok(val(
                    if s.len() >= 2
                        && ((s[0] == b'"' && s[s.len() - 1] == b'"')
                            || (s[0] == b'\'' && s[s.len() - 1] == b'\''))
                    {
                        &s[1..s.len() - 1]
                    } else {
                        &s
                    },
                ))
            }),
            "rm" => {
                expect_args(&args, 1, 1)?;
                boxed(move |ctx, v| {
                    let s = bytes_of(&v);
                    let needle = str_arg(&args[0], ctx)?;
                    Ok(Value::Str(replace_all(&s, &needle, b"").into()))
                })
            }
            "replace" => {
                expect_args(&args, 2, 2)?;
                boxed(move |ctx, v| {
                    let s = bytes_of(&v);
                    let from = str_arg(&args[0], ctx)?;
                    let to = str_arg(&args[1], ctx)?;
                    Ok(Value::Str(replace_all(&s, &from, &to).into()))
                })
            }
            "before" | "after" => {
                expect_args(&args, 1, 1)?;
                let after = name == "after";
                boxed(move |ctx, v| {
                    let s = bytes_of(&v);
                    let needle = str_arg(&args[0], ctx)?;
                    Ok(match find(&s, &needle) {
                        Some(i) if after => val(&s[i + needle.len()..]),
                        Some(i) => val(&s[..i]),
                        None => v,
                    })
                })
            }
            "prefixes" => boxed(|_, v| {
                let s = bytes_of(&v);
                let mut out = Vec::new();
                for i in 1..=s.len() {
                    if i > 1 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&s[..i]);
                }
                Ok(Value::Str(out.into()))
            }),
            other => {
                return Err(format!(
                    "unknown string transformation s.{other} (known: {})",
                    S_NAMES.join(", ")
                ))
            }
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn replace_all(s: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return s.to_vec();
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

struct UriTransforms;

const URI_NAMES: &[&str] = &[
    "user",
    "host",
    "hostport",
    "port",
    "params",
    "param",
    "headers",
    "transport",
    "ttl",
    "uparam",
    "maddr",
    "method",
    "lr",
    "r2",
    "scheme",
    "passwd",
    "tosocket",
    "duri",
    "saor",
];

fn uri_param(u: &Uri<'_>, name: &str) -> Value {
    match u.param(name) {
        Some(Some(v)) => val(v),
        Some(None) => Value::from_static(""),
        None => Value::Null,
    }
}

impl TransformClass for UriTransforms {
    fn names(&self) -> &[&'static str] {
        URI_NAMES
    }

    fn bind(
        &self,
        name: &str,
        args: &[TrArg],
        _b: &Binder<'_>,
    ) -> Result<Arc<dyn Transform>, String> {
        let args: Vec<TrArg> = args.to_vec();
        let name = name.to_string();
        if !URI_NAMES.contains(&name.as_str()) {
            return Err(format!(
                "unknown URI transformation uri.{name} (known: {})",
                URI_NAMES.join(", ")
            ));
        }
        if name == "param" {
            expect_args(&args, 1, 1)?;
        } else {
            expect_args(&args, 0, 0)?;
        }
        Ok(boxed(move |ctx, v| {
            let raw = bytes_of(&v);
            let u = Uri::parse(&raw)
                .map_err(|e| PvError::Invalid(format!("{{uri.{name}}}: not a URI: {e}")))?;
            Ok(match name.as_str() {
                "user" => opt(u.user()),
                "host" => opt(u.host()),
                "port" => u.port().map(|p| Value::Int(p as i64)).unwrap_or_default(),
                "hostport" => match (u.host(), u.port()) {
                    (Some(h), Some(p)) => {
                        Value::from_string(format!("{}:{p}", String::from_utf8_lossy(h)))
                    }
                    (Some(h), None) => val(h),
                    _ => Value::Null,
                },
                "passwd" => opt(u.password()),
                "scheme" => val(u.scheme()),
                "params" => opt(u.params_raw()),
                "headers" => opt(u.headers_raw()),
                "param" => {
                    let p = str_arg(&args[0], ctx)?;
                    uri_param(&u, &String::from_utf8_lossy(&p))
                }
                "duri" => match (u.host(), u.port()) {
                    (Some(h), Some(p)) => Value::from_string(format!(
                        "{}:{}:{p}",
                        String::from_utf8_lossy(u.scheme()),
                        String::from_utf8_lossy(h)
                    )),
                    (Some(h), None) => Value::from_string(format!(
                        "{}:{}",
                        String::from_utf8_lossy(u.scheme()),
                        String::from_utf8_lossy(h)
                    )),
                    _ => Value::Null,
                },
                "saor" => match (u.user(), u.host()) {
                    (Some(us), Some(h)) => Value::from_string(format!(
                        "{}@{}",
                        String::from_utf8_lossy(us),
                        String::from_utf8_lossy(h)
                    )),
                    (None, Some(h)) => val(h),
                    _ => Value::Null,
                },
                other => uri_param(&u, other),
            })
        }))
    }
}

/// Splits a `;`-separated parameter list (`a=1;b;c=x`), respecting quotes.
fn split_params(s: &[u8], sep: u8) -> Vec<(&[u8], Option<&[u8]>)> {
    let mut out = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    let mut pieces = Vec::new();
    for (i, c) in s.iter().enumerate() {
        if *c == b'"' {
            in_quotes = !in_quotes;
        } else if *c == sep && !in_quotes {
            pieces.push(&s[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&s[start..]);
    for p in pieces {
        let p = p.trim_ascii();
        if p.is_empty() {
            continue;
        }
        match p.iter().position(|c| *c == b'=') {
            Some(eq) => out.push((p[..eq].trim_ascii(), Some(p[eq + 1..].trim_ascii()))),
            None => out.push((p, None)),
        }
    }
    out
}

struct ParamTransforms;

const PARAM_NAMES: &[&str] = &["value", "in", "count", "name", "valueat"];

impl TransformClass for ParamTransforms {
    fn names(&self) -> &[&'static str] {
        PARAM_NAMES
    }

    fn bind(
        &self,
        name: &str,
        args: &[TrArg],
        _b: &Binder<'_>,
    ) -> Result<Arc<dyn Transform>, String> {
        let args: Vec<TrArg> = args.to_vec();
        let sep_at = |i: usize| -> Result<u8, String> {
            match args.get(i) {
                None => Ok(b';'),
                Some(a) => a
                    .literal()
                    .and_then(|s| s.bytes().next())
                    .ok_or_else(|| "the separator must be one literal character".to_string()),
            }
        };
        Ok(match name {
            "value" | "in" => {
                expect_args(&args, 1, 2)?;
                let sep = sep_at(1)?;
                let is_in = name == "in";
                boxed(move |ctx, v| {
                    let s = bytes_of(&v);
                    let want = str_arg(&args[0], ctx)?;
                    let found = split_params(&s, sep)
                        .into_iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(&want));
                    Ok(if is_in {
                        Value::Int(found.is_some() as i64)
                    } else {
                        match found {
                            Some((_, Some(v))) => val(v),
                            Some((_, None)) => Value::from_static(""),
                            None => Value::Null,
                        }
                    })
                })
            }
            "count" => {
                expect_args(&args, 0, 1)?;
                let sep = sep_at(0)?;
                boxed(move |_, v| Ok(Value::Int(split_params(&bytes_of(&v), sep).len() as i64)))
            }
            "name" | "valueat" => {
                expect_args(&args, 1, 2)?;
                let sep = sep_at(1)?;
                let want_name = name == "name";
                boxed(move |ctx, v| {
                    let s = bytes_of(&v);
                    let idx = int_arg(&args[0], ctx)?;
                    let params = split_params(&s, sep);
                    let i = if idx < 0 {
                        params.len() as i64 + idx
                    } else {
                        idx
                    };
                    Ok(match params.get(i.max(0) as usize).filter(|_| i >= 0) {
                        Some((n, _)) if want_name => val(n),
                        Some((_, Some(v))) => val(v),
                        Some((_, None)) => Value::from_static(""),
                        None => Value::Null,
                    })
                })
            }
            other => {
                return Err(format!(
                    "unknown parameter transformation param.{other} (known: {})",
                    PARAM_NAMES.join(", ")
                ))
            }
        })
    }
}

struct NameAddrTransforms;

const NA_NAMES: &[&str] = &[
    "name", "uri", "len", "display", "tag", "user", "host", "params",
];

impl TransformClass for NameAddrTransforms {
    fn names(&self) -> &[&'static str] {
        NA_NAMES
    }

    fn bind(
        &self,
        name: &str,
        args: &[TrArg],
        _b: &Binder<'_>,
    ) -> Result<Arc<dyn Transform>, String> {
        expect_args(args, 0, 0)?;
        if !NA_NAMES.contains(&name) {
            return Err(format!("unknown name-addr transformation {name}"));
        }
        let name = name.to_string();
        Ok(boxed(move |_, v| {
            let raw = bytes_of(&v);
            let na = NameAddr::parse(&raw)
                .map_err(|e| PvError::Invalid(format!("not a name-addr: {e}")))?;
            Ok(match name.as_str() {
                "name" | "display" => opt(na.display_name()),
                "uri" => val(na.uri_bytes()),
                "len" => Value::Int(raw.len() as i64),
                "tag" => opt(na.tag()),
                "params" => opt(na.params_raw()),
                "user" | "host" => {
                    let u = Uri::parse(na.uri_bytes())
                        .map_err(|e| PvError::Invalid(format!("bad URI: {e}")))?;
                    opt(if name == "user" { u.user() } else { u.host() })
                }
                _ => Value::Null,
            })
        }))
    }
}

/// Registers the core transformation classes as part of the always-loaded `pv` module.
pub struct CoreTransformsModule;

impl Module for CoreTransformsModule {
    fn name(&self) -> &'static str {
        "pv"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.transform("s", StringTransforms);
        m.transform("uri", UriTransforms);
        m.transform("param", ParamTransforms);
        m.transform("nameaddr", NameAddrTransforms);
        m.transform("tobody", NameAddrTransforms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substr_rules() {
        assert_eq!(substr(b"abcdef", 1, 2), b"bc");
        assert_eq!(substr(b"abcdef", -2, 0), b"ef");
        assert_eq!(substr(b"abcdef", 2, -1), b"cde");
        assert_eq!(substr(b"abc", 10, 2), b"");
    }

    #[test]
    fn params_split() {
        let p = split_params(b"a=1;b; c = \"x;y\"", b';');
        assert_eq!(p.len(), 3);
        assert_eq!(p[2].1, Some(&b"\"x;y\""[..]));
    }
}
