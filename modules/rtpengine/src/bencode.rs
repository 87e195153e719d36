//! Bencode, the encoding of rtpengine's ng control protocol: integers, byte strings,
//! lists and dictionaries. Written here rather than taken from a crate: the protocol
//! needs a few dozen lines, no serde mapping, and a decoder that bounds what an answer
//! from the network may make it allocate (nesting depth, the datagram's size).

/// Nesting deeper than this in an answer is refused.
const MAX_DEPTH: usize = 32;

/// A bencoded value.
#[derive(Clone, Debug, PartialEq)]
pub enum Bval {
    Int(i64),
    Str(Vec<u8>),
    List(Vec<Bval>),
    /// Keys in the order given: rtpengine does not need them sorted.
    Dict(Vec<(Vec<u8>, Bval)>),
}

impl Bval {
    pub fn str(s: impl AsRef<[u8]>) -> Bval {
        Bval::Str(s.as_ref().to_vec())
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bval::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Bval::Str(s) => {
                out.extend_from_slice(s.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(s);
            }
            Bval::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Bval::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Bval::Str(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// A dictionary's value for `key`.
    pub fn get(&self, key: &str) -> Option<&Bval> {
        match self {
            Bval::Dict(d) => d.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Bval::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A dictionary's entry for `key`, added empty as `empty` when missing.
    pub fn entry(&mut self, key: &str, empty: Bval) -> Option<&mut Bval> {
        let Bval::Dict(d) = self else { return None };
        let pos = match d.iter().position(|(k, _)| k == key.as_bytes()) {
            Some(p) => p,
            None => {
                d.push((key.as_bytes().to_vec(), empty));
                d.len() - 1
            }
        };
        Some(&mut d[pos].1)
    }
}

/// Decodes exactly one value filling `input`.
pub fn decode(input: &[u8]) -> Result<Bval, String> {
    let mut pos = 0;
    let v = value(input, &mut pos, 0)?;
    if pos != input.len() {
        return Err(format!("{} bytes after the value", input.len() - pos));
    }
    Ok(v)
}

fn value(b: &[u8], pos: &mut usize, depth: usize) -> Result<Bval, String> {
    if depth > MAX_DEPTH {
        return Err("nested too deep".into());
    }
    match b.get(*pos) {
        Some(b'i') => {
            let end = find(b, *pos + 1, b'e')?;
            let n = std::str::from_utf8(&b[*pos + 1..end])
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or("a bad integer")?;
            *pos = end + 1;
            Ok(Bval::Int(n))
        }
        Some(b'l') => {
            *pos += 1;
            let mut l = Vec::new();
            while b.get(*pos) != Some(&b'e') {
                l.push(value(b, pos, depth + 1)?);
            }
            *pos += 1;
            Ok(Bval::List(l))
        }
        Some(b'd') => {
            *pos += 1;
            let mut d = Vec::new();
            while b.get(*pos) != Some(&b'e') {
                let Bval::Str(k) = string(b, pos)? else {
                    unreachable!("string() returns strings")
                };
                d.push((k, value(b, pos, depth + 1)?));
            }
            *pos += 1;
            Ok(Bval::Dict(d))
        }
        Some(c) if c.is_ascii_digit() => string(b, pos),
        Some(_) => Err(format!("unexpected byte at {}", *pos)),
        None => Err("truncated".into()),
    }
}

fn string(b: &[u8], pos: &mut usize) -> Result<Bval, String> {
    let colon = find(b, *pos, b':')?;
    let len = std::str::from_utf8(&b[*pos..colon])
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .ok_or("a bad string length")?;
    let start = colon + 1;
    let end = start
        .checked_add(len)
        .filter(|&e| e <= b.len())
        .ok_or("truncated")?;
    *pos = end;
    Ok(Bval::Str(b[start..end].to_vec()))
}

fn find(b: &[u8], from: usize, c: u8) -> Result<usize, String> {
    b.get(from..)
        .and_then(|s| s.iter().position(|&x| x == c))
        .map(|p| from + p)
        .ok_or_else(|| "truncated".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_input_is_refused() {
        let v = Bval::Dict(vec![
            (b"command".to_vec(), Bval::str("offer")),
            (
                b"flags".to_vec(),
                Bval::List(vec![Bval::str("trust-address")]),
            ),
            (b"n".to_vec(), Bval::Int(-3)),
        ]);
        let bytes = v.to_bytes();
        assert_eq!(
            bytes,
            b"d7:command5:offer5:flagsl13:trust-addresse1:ni-3ee".to_vec()
        );
        assert_eq!(decode(&bytes).unwrap(), v);
        assert_eq!(
            v.get("command").and_then(Bval::as_bytes),
            Some(&b"offer"[..])
        );
        for bad in [
            &b"d3:abc"[..],
            b"5:ab",
            b"i12",
            b"ix3e",
            b"x",
            b"le1:a",
            b"99999999999999999999:a",
            b"d1:ai1ee2:xx",
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{}{}", "l".repeat(100), "e".repeat(100));
        assert!(decode(deep.as_bytes()).is_err());
    }
}
