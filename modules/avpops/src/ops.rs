//! avpops' `avp_op` (arithmetic and bit operations), `avp_subst`/`avp_subst_pv`
//! (sed-like substitutions) and `avp_print`, with Kamailio's argument syntax.

use ferrosip_api::args::Spec;
use ferrosip_api::format::Format;
use ferrosip_api::pv::Binder;
use ferrosip_api::registry::AvpNames;
use ferrosip_api::{FnError, FnResult, MsgContext, PvRef, Value, Verdict};
use std::sync::Arc;

use crate::AvpName;

/// Values one call may produce at most (an AVP with many values and `/g`).
const MAX_RESULTS: usize = 1024;

/// `"$avp(src)[/flags][/$avp(dst)]"`: the AVP to read and where results go.
#[derive(Clone, Debug)]
pub struct SrcDst {
    src: AvpName,
    dst: Option<u32>,
}

impl Spec for SrcDst {
    const KIND: &'static str = "$avp(src)[/flags][/$avp(dst)]";

    fn parse(text: &str, binder: &Binder<'_>) -> Result<SrcDst, String> {
        let t = text.trim();
        // A second AVP follows the first one's flags: "$avp(a)/g/$avp(b)".
        let (first, dst) = match t.rfind("/$avp(") {
            Some(i) if i > 0 => (&t[..i], Some(&t[i + 1..])),
            _ => (t, None),
        };
        let src = AvpName::parse(first, binder)?;
        let dst = match dst {
            None => None,
            Some(d) => {
                let d = AvpName::parse(d, binder)?;
                if d.all || d.delete {
                    return Err(format!("\"{t}\": flags go on the first AVP"));
                }
                Some(d.slot)
            }
        };
        Ok(SrcDst { src, dst })
    }
}

impl SrcDst {
    /// The values to work on: the newest, or every one with `/g` (newest first).
    fn values(&self, ctx: &MsgContext) -> Vec<(usize, Value)> {
        let all = ctx.avps.all(self.src.slot).cloned().enumerate();
        if self.src.all {
            all.take(MAX_RESULTS).collect()
        } else {
            all.take(1).collect()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    Not,
}

#[derive(Clone)]
enum IntOperand {
    Lit(i64),
    Pv(PvRef),
}

/// `avp_op`'s `"op/value[/flags]"`: op add, sub, mul, div, mod, and, or, xor, not; value
/// an integer (`i:5` or `5`) or a pseudo-variable; flags g (every value), d (delete the
/// values used).
#[derive(Clone)]
pub struct OpValue {
    op: ArithOp,
    operand: IntOperand,
    all: bool,
    delete: bool,
}

impl Spec for OpValue {
    const KIND: &'static str = "op/value[/flags]";

    fn parse(text: &str, binder: &Binder<'_>) -> Result<OpValue, String> {
        let mut parts = text.trim().splitn(3, '/');
        let op = match parts.next().unwrap_or("").to_ascii_lowercase().as_str() {
            "add" => ArithOp::Add,
            "sub" => ArithOp::Sub,
            "mul" => ArithOp::Mul,
            "div" => ArithOp::Div,
            "mod" => ArithOp::Mod,
            "and" => ArithOp::And,
            "or" => ArithOp::Or,
            "xor" => ArithOp::Xor,
            "not" => ArithOp::Not,
            o => {
                return Err(format!(
                    "unknown operation \"{o}\" (add sub mul div mod and or xor not)"
                ))
            }
        };
        let value = parts
            .next()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("\"{text}\": no value after the operation"))?;
        let operand = if value.starts_with('$') {
            IntOperand::Pv(
                binder
                    .parse_pv(value)
                    .map_err(|e| format!("{value}: {}", e.message))?,
            )
        } else {
            let n = value.strip_prefix("i:").unwrap_or(value);
            IntOperand::Lit(
                n.parse()
                    .map_err(|_| format!("\"{value}\": the value must be an integer"))?,
            )
        };
        let (mut all, mut delete) = (false, false);
        for f in parts.next().unwrap_or("").chars() {
            match f {
                'g' | 'G' => all = true,
                'd' | 'D' => delete = true,
                other => return Err(format!("unknown flag {other} (g, d)")),
            }
        }
        Ok(OpValue {
            op,
            operand,
            all,
            delete,
        })
    }
}

impl OpValue {
    fn apply(&self, a: i64, b: i64) -> Result<i64, FnError> {
        Ok(match self.op {
            ArithOp::Add => a.wrapping_add(b),
            ArithOp::Sub => a.wrapping_sub(b),
            ArithOp::Mul => a.wrapping_mul(b),
            ArithOp::Div if b == 0 => return Err(FnError::new("avp_op: division by 0")),
            ArithOp::Mod if b == 0 => return Err(FnError::new("avp_op: modulo by 0")),
            ArithOp::Div => a.wrapping_div(b),
            ArithOp::Mod => a.wrapping_rem(b),
            ArithOp::And => a & b,
            ArithOp::Or => a | b,
            ArithOp::Xor => a ^ b,
            ArithOp::Not => !b,
        })
    }
}

/// `avp_op(avps, op_value)`: each integer value worked on gives a new value on the
/// destination (the source when none is named); `d` deletes the values used. 1 done, -1
/// the AVP had no integer value (or the operand is not an integer).
pub fn avp_op(ctx: &mut MsgContext, avps: SrcDst, op: OpValue) -> FnResult {
    let b = match &op.operand {
        IntOperand::Lit(n) => *n,
        IntOperand::Pv(p) => match p.get(ctx)?.as_int() {
            Some(n) => n,
            None => return Ok(Verdict::FALSE),
        },
    };
    let all = avps.src.all || op.all;
    let values: Vec<(usize, i64)> = ctx
        .avps
        .all(avps.src.slot)
        .enumerate()
        .filter_map(|(i, v)| match v {
            Value::Int(n) => Some((i, *n)),
            _ => None,
        })
        .take(if all { MAX_RESULTS } else { 1 })
        .collect();
    if values.is_empty() {
        return Ok(Verdict::FALSE);
    }
    let results = values
        .iter()
        .map(|(_, a)| op.apply(*a, b))
        .collect::<Result<Vec<_>, _>>()?;
    if op.delete || avps.src.delete {
        // Newest-first indexes: remove from the oldest so the others stay valid.
        for (i, _) in values.iter().rev() {
            ctx.avps.remove_nth(avps.src.slot, *i);
        }
    }
    let dst = avps.dst.unwrap_or(avps.src.slot);
    for r in results.into_iter().rev() {
        ctx.avps.push(dst, Value::Int(r));
    }
    Ok(Verdict::TRUE)
}

/// A sed-like `/re/replacement/flags` (any delimiter; flags i: ignore case, g: every
/// match). `\1`..`\9` in the replacement are the groups; with `avp_subst_pv` the
/// replacement's pseudo-variables are read first.
#[derive(Clone)]
pub struct Subst {
    re: Arc<regex::bytes::Regex>,
    /// As written (avp_subst).
    replacement: bytes::Bytes,
    /// With its pseudo-variables (avp_subst_pv).
    pv_replacement: Option<Format>,
    global: bool,
}

impl Spec for Subst {
    const KIND: &'static str = "/re/replacement/flags";

    fn parse(text: &str, binder: &Binder<'_>) -> Result<Subst, String> {
        Subst::parse_with(text, binder, false)
    }
}

impl Subst {
    fn parse_with(text: &str, binder: &Binder<'_>, pvs: bool) -> Result<Subst, String> {
        let mut chars = text.chars();
        let delim = chars
            .next()
            .ok_or("empty substitution (expected /re/replacement/flags)")?;
        let body: &str = chars.as_str();
        // Split at unescaped delimiters.
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut esc = false;
        for c in body.chars() {
            if esc {
                if c != delim {
                    cur.push('\\');
                }
                cur.push(c);
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == delim && parts.len() < 2 {
                parts.push(std::mem::take(&mut cur));
            } else {
                cur.push(c);
            }
        }
        if esc {
            cur.push('\\');
        }
        parts.push(cur);
        let [re, replacement, flags] = <[String; 3]>::try_from(parts)
            .map_err(|_| format!("\"{text}\" is not {delim}re{delim}replacement{delim}flags"))?;
        let (mut icase, mut global) = (false, false);
        for f in flags.chars() {
            match f {
                'i' | 'I' => icase = true,
                'g' | 'G' => global = true,
                other => return Err(format!("unknown substitution flag {other} (i, g)")),
            }
        }
        let re = regex::bytes::RegexBuilder::new(&re)
            .case_insensitive(icase)
            .build()
            .map_err(|e| format!("bad regular expression {re:?}: {e}"))?;
        let pv_replacement = if pvs {
            Some(Format::parse(&replacement, binder).map_err(|e| format!("replacement: {e}"))?)
        } else {
            None
        };
        Ok(Subst {
            re: Arc::new(re),
            replacement: replacement.into_bytes().into(),
            pv_replacement,
            global,
        })
    }
}

/// A sed replacement (`\1`..`\9` the groups, `\\` a backslash) in the regex crate's
/// syntax (`${1}`, `$$`).
fn regex_replacement(sed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sed.len() + 8);
    let mut i = 0;
    while i < sed.len() {
        match (sed[i], sed.get(i + 1)) {
            (b'\\', Some(d)) if d.is_ascii_digit() => {
                out.extend_from_slice(b"${");
                out.push(*d);
                out.push(b'}');
                i += 2;
            }
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (b'$', _) => {
                out.extend_from_slice(b"$$");
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// `avp_subst_pv`'s substitution: its replacement may hold pseudo-variables.
#[derive(Clone)]
pub struct SubstPv(pub Subst);

impl Spec for SubstPv {
    const KIND: &'static str = "/re/replacement/flags";

    fn parse(text: &str, binder: &Binder<'_>) -> Result<SubstPv, String> {
        Subst::parse_with(text, binder, true).map(SubstPv)
    }
}

/// `avp_subst(avps, subst)` / `avp_subst_pv`: each value worked on that matches is
/// replaced by its substitution (on the destination when one is named; the source value
/// goes too with `d`). 1 when something was substituted, -1 otherwise.
pub fn avp_subst(ctx: &mut MsgContext, avps: SrcDst, subst: Subst) -> FnResult {
    let template = regex_replacement(&match &subst.pv_replacement {
        Some(f) => f.eval(ctx)?,
        None => subst.replacement.clone(),
    });
    let mut done: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, v) in avps.values(ctx) {
        let Some(text) = v.to_bytes() else {
            continue;
        };
        if !subst.re.is_match(&text) {
            continue;
        }
        let out = if subst.global {
            subst.re.replace_all(&text, &template[..]).into_owned()
        } else {
            subst.re.replace(&text, &template[..]).into_owned()
        };
        done.push((i, out));
    }
    if done.is_empty() {
        return Ok(Verdict::FALSE);
    }
    let in_place = avps.dst.is_none();
    if in_place || avps.src.delete {
        for (i, _) in done.iter().rev() {
            ctx.avps.remove_nth(avps.src.slot, *i);
        }
    }
    let dst = avps.dst.unwrap_or(avps.src.slot);
    for (_, out) in done.into_iter().rev() {
        ctx.avps.push(dst, Value::Str(out.into()));
    }
    Ok(Verdict::TRUE)
}

/// `avp_print()`: every AVP of the message in the log (newest first); always 1.
pub fn avp_print(names: &AvpNames, ctx: &MsgContext) -> FnResult {
    for (slot, value) in ctx.avps.entries() {
        let name = names.name(slot).unwrap_or_else(|| slot.to_string());
        let (kind, text) = match value {
            Value::Int(n) => ("int", n.to_string()),
            other => (
                "str",
                other
                    .to_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default(),
            ),
        };
        tracing::info!(target: "avpops", "avp_print: $avp({name}) {kind} value: {text}");
    }
    Ok(Verdict::TRUE)
}
