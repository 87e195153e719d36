//! The script value type and function verdicts.

use bytes::Bytes;
use std::fmt;

/// A script value. Strings are bytes: SIP is mostly ASCII but not guaranteed UTF-8, and
/// most string values are zero-copy slices of the received message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Value {
    /// No value (an unset variable, a missing header).
    #[default]
    Null,
    /// A signed integer.
    Int(i64),
    /// A byte string.
    Str(Bytes),
}

impl Value {
    /// A string value without copying.
    pub fn from_static(s: &'static str) -> Value {
        Value::Str(Bytes::from_static(s.as_bytes()))
    }

    /// A string value owning `s`.
    pub fn from_string(s: String) -> Value {
        Value::Str(Bytes::from(s))
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Integer view as Kamailio converts it: an int is itself, a string is parsed as a
    /// (possibly signed) decimal number after trimming spaces; anything else has none.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Str(s) => parse_int(s),
            Value::Null => None,
        }
    }

    /// String view: an int is printed in decimal; null has none.
    pub fn to_bytes(&self) -> Option<Bytes> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(Bytes::from(i.to_string())),
            Value::Null => None,
        }
    }

    /// Appends the printed form to `out`; null prints as `<null>` as in Kamailio's xlog.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Value::Str(s) => out.extend_from_slice(s),
            Value::Int(i) => {
                use std::io::Write;
                let _ = write!(out, "{i}");
            }
            Value::Null => out.extend_from_slice(b"<null>"),
        }
    }

    /// Truth value in a condition: null is false, an int is true when non-zero, a string
    /// is true when it is a non-zero number or, if not numeric, non-empty.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Int(i) => *i != 0,
            Value::Str(s) => match parse_int(s) {
                Some(i) => i != 0,
                None => !s.is_empty(),
            },
        }
    }

    /// `null`, `int` or `string`, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int(_) => "int",
            Value::Str(_) => "string",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("<null>"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => f.write_str(&String::from_utf8_lossy(s)),
        }
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<&'static str> for Value {
    fn from(s: &'static str) -> Self {
        Value::from_static(s)
    }
}
impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Value::Str(b)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::from_string(s)
    }
}

/// Parses a decimal integer the way scripts expect ("483", " -1 ", "+7").
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let s = s.trim_ascii();
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((d - b'0') as i64)?;
    }
    Some(if neg { -n } else { n })
}

/// What a module function tells the script, mapped exactly to Kamailio's rule at the
/// script boundary: a code > 0 is true, < 0 is false, 0 ends the script (like `exit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict(i32);

impl Verdict {
    /// Success / condition holds (1).
    pub const TRUE: Verdict = Verdict(1);
    /// Failure / condition does not hold (-1).
    pub const FALSE: Verdict = Verdict(-1);
    /// Stop processing the message here (0), as Kamailio functions that consumed it do.
    pub const STOP: Verdict = Verdict(0);

    /// A specific return code, for functions that document several (e.g. `lookup` -1/-2/-3).
    pub const fn code(code: i32) -> Verdict {
        Verdict(code)
    }

    /// The return code the script sees.
    pub const fn rc(self) -> i32 {
        self.0
    }

    /// True for a code > 0.
    pub const fn is_true(self) -> bool {
        self.0 > 0
    }

    /// True for 0 (stop the script).
    pub const fn is_stop(self) -> bool {
        self.0 == 0
    }
}

impl From<bool> for Verdict {
    fn from(b: bool) -> Self {
        if b {
            Verdict::TRUE
        } else {
            Verdict::FALSE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_conversion_follows_script_rules() {
        assert_eq!(Value::from_static("483").as_int(), Some(483));
        assert_eq!(Value::from_static(" -12 ").as_int(), Some(-12));
        assert_eq!(Value::from_static("12a").as_int(), None);
        assert_eq!(Value::from_static("99999999999999999999").as_int(), None);
        assert_eq!(Value::Null.as_int(), None);
    }

    #[test]
    fn truthiness() {
        assert!(!Value::Null.truthy());
        assert!(!Value::Int(0).truthy());
        assert!(Value::Int(-1).truthy());
        assert!(!Value::from_static("0").truthy());
        assert!(!Value::from_static("").truthy());
        assert!(Value::from_static("abc").truthy());
    }

    #[test]
    fn verdict_mapping() {
        assert!(Verdict::from(true).is_true());
        assert!(!Verdict::from(false).is_true());
        assert!(Verdict::STOP.is_stop());
        assert_eq!(Verdict::code(-2).rc(), -2);
    }
}
