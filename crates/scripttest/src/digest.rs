//! Digest credentials for a test's request (RFC 2617 / RFC 3261 §22.4): a step's
//! `auth = { user, password }` answers the last challenge the proxy sent in the test.

use md5::{Digest, Md5};

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The parameters of a `Digest` challenge.
fn challenge_params(value: &str) -> Vec<(String, String)> {
    let rest = value.trim();
    let rest = rest
        .strip_prefix("Digest")
        .or_else(|| rest.strip_prefix("digest"))
        .unwrap_or(rest);
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            return out;
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            chars.by_ref().take_while(|c| *c != '"').collect()
        } else {
            chars.by_ref().take_while(|c| *c != ',').collect::<String>()
        };
        out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// The header (name, value) answering `challenge` (a `WWW-Authenticate` or
/// `Proxy-Authenticate` value; `proxy` says which) for `method` on `uri`.
pub fn credentials(
    challenge: &str,
    proxy: bool,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> Result<(&'static str, String), String> {
    let params = challenge_params(challenge);
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let realm = get("realm").ok_or("the challenge has no realm")?;
    let nonce = get("nonce").ok_or("the challenge has no nonce")?;
    if let Some(a) = get("algorithm") {
        if !a.eq_ignore_ascii_case("MD5") {
            return Err(format!("algorithm {a}: tests answer MD5 challenges only"));
        }
    }
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let qop_auth = get("qop").is_some_and(|q| q.split(',').any(|q| q.trim() == "auth"));
    let mut value =
        format!("Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\"");
    if qop_auth {
        let (nc, cnonce) = ("00000001", "0a4f113b");
        let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        value.push_str(&format!(
            ", qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\""
        ));
    } else {
        let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        value.push_str(&format!(", response=\"{response}\""));
    }
    if let Some(o) = get("opaque") {
        value.push_str(&format!(", opaque=\"{o}\""));
    }
    value.push_str(", algorithm=MD5");
    let name = if proxy {
        "Proxy-Authorization"
    } else {
        "Authorization"
    };
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    /// RFC 2617 §3.5's example, without qop (the RFC 2069 form).
    #[test]
    fn answers_a_challenge_without_qop() {
        let (name, v) = super::credentials(
            "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"",
            false,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
        )
        .unwrap();
        assert_eq!(name, "Authorization");
        // MD5(HA1:nonce:HA2) for these values.
        let ha1 = super::md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = super::md5_hex("GET:/dir/index.html");
        let r = super::md5_hex(&format!("{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:{ha2}"));
        assert!(v.contains(&format!("response=\"{r}\"")), "{v}");
        assert!(v.contains("uri=\"/dir/index.html\""));
    }

    /// With qop=auth, RFC 2617 §3.5's example response (nc 00000001, cnonce 0a4f113b).
    #[test]
    fn answers_a_qop_auth_challenge_as_rfc_2617_example() {
        let (_, v) = super::credentials(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
            false,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
        )
        .unwrap();
        assert!(v.contains("response=\"6629fae49393a05397450978507c4ef1\""), "{v}");
        assert!(v.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
    }
}
