//! The static look at a Lua script made when it loads (and so by `ferrosip check`): every
//! plain `KSR.a.b(...)` / `KSR.a(...)` call must name a function that exists and is
//! implemented; each that does not is an error with file:line.

use crate::Shared;
use ferrosip_api::registry::ValueCallable;
use std::collections::HashSet;

/// Names `KSR` itself provides (see `ksr::install`), at the top and per table.
const CORE_TOP: &[&str] = &[
    "is_method_in",
    "is_method",
    "is_myself",
    "is_myself_ruri",
    "is_myself_furi",
    "is_myself_turi",
    "is_myself_srcip",
    "is_myself_dstip",
    "setdsturi",
    "resetdsturi",
    "isdsturiset",
    "err",
    "crit",
    "warn",
    "notice",
    "info",
    "dbg",
    "log",
];
const CORE_TABLES: &[(&str, &[&str])] = &[
    (
        "pv",
        &["get", "gete", "getw", "sets", "seti", "unset", "is_null"],
    ),
    ("hdr", &["append", "insert", "remove", "is_present", "get"]),
    ("x", &["exit", "drop", "modf"]),
];

pub(crate) fn check(shared: &Shared) -> Vec<String> {
    let text = String::from_utf8_lossy(&shared.source);
    let file = shared.path.display().to_string();
    let reg = &shared.registry;
    let call =
        regex::Regex::new(r"\bKSR\.([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\s*\(")
            .expect("a valid regex");
    let modules: HashSet<&str> = reg
        .functions()
        .map(|d| d.module.as_str())
        .chain(reg.modules().filter(|m| m.absorbed).map(|m| m.name))
        .collect();
    let mut problems = Vec::new();
    let mut in_block_comment = false;
    for (n, line) in text.lines().enumerate() {
        let mut code = line;
        if in_block_comment {
            match code.find("]]") {
                Some(end) => {
                    in_block_comment = false;
                    code = &code[end + 2..];
                }
                None => continue,
            }
        }
        if let Some(start) = code.find("--") {
            if code[start..].starts_with("--[[") && !code[start..].contains("]]") {
                in_block_comment = true;
            }
            code = &code[..start];
        }
        for c in call.captures_iter(code) {
            let a = &c[1];
            let b = c.get(2).map(|m| m.as_str());
            let at = format!("{file}:{}", n + 1);
            let problem = match b {
                None => {
                    let known = CORE_TOP.contains(&a)
                        || a.strip_prefix("is_")
                            .is_some_and(|m| crate::ksr::METHODS.contains(&m))
                        || reg
                            .function(a)
                            .is_some_and(|d| d.iter().any(|d| d.module == "core"));
                    (!known).then(|| format!("KSR.{a}() does not exist"))
                }
                Some(b) => {
                    if let Some((_, names)) = CORE_TABLES.iter().find(|(t, _)| *t == a) {
                        (!names.contains(&b)).then(|| format!("KSR.{a}.{b}() does not exist"))
                    } else if a == "kx" {
                        (!crate::ksr::KX_GETTERS.iter().any(|(g, _)| *g == b))
                            .then(|| format!("KSR.kx.{b}() does not exist"))
                    } else if !modules.contains(a) {
                        Some(format!(
                            "KSR.{a}.{b}(): no module {a} (is loadmodule \"{a}.so\" missing?)"
                        ))
                    } else {
                        let absorbed = reg.module(a).is_some_and(|m| m.absorbed);
                        let defs: Vec<_> = reg
                            .function(b)
                            .unwrap_or(&[])
                            .iter()
                            .filter(|d| absorbed || d.module == a)
                            .collect();
                        if defs.is_empty() {
                            Some(format!("KSR.{a}.{b}() does not exist"))
                        } else if defs
                            .iter()
                            .all(|d| matches!(d.by_value, ValueCallable::Declared))
                        {
                            Some(format!(
                                "KSR.{a}.{b}() is declared but not implemented in this version of Ferrosip"
                            ))
                        } else {
                            None
                        }
                    }
                }
            };
            if let Some(p) = problem {
                problems.push(format!("error: {at}: {p}"));
            }
        }
    }
    problems
}
