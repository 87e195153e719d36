//! `is_method`'s argument: a `|`-separated method list, parsed once at load.

use bytes::Bytes;
use ferrosip_api::args::{raw_to_format, value_to_bytes, Fixable};
use ferrosip_api::{ArgKind, ArgType, CallEnv, FixupEnv, FnError, MsgContext, RawArg, Value};
use std::sync::Arc;

/// A list of SIP method names such as `INVITE|SUBSCRIBE`.
///
/// As in Kamailio, any token is accepted (a typo'd method simply never matches), and the
/// comparison ignores case: Kamailio maps method names to ids case-insensitively.
/// Shared: a constant list is handed to every call without copying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodList(Arc<[Bytes]>);

impl MethodList {
    /// Parses `INVITE|SUBSCRIBE`; empty items are dropped.
    pub fn parse(text: &[u8]) -> MethodList {
        MethodList(
            text.split(|&b| b == b'|')
                .map(<[u8]>::trim_ascii)
                .filter(|m| !m.is_empty())
                .map(|m| Bytes::copy_from_slice(&m.to_ascii_uppercase()))
                .collect(),
        )
    }

    /// True when `method` is one of the listed methods.
    pub fn contains(&self, method: &[u8]) -> bool {
        self.0.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    pub fn methods(&self) -> &[Bytes] {
        &self.0
    }
}

impl ArgType for MethodList {
    type Fixed = Fixable<MethodList>;
    const KIND: ArgKind = ArgKind::Custom("method list");

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        let f = raw_to_format(raw, env)?;
        if f.is_literal() {
            let list = MethodList::parse(f.text().as_bytes());
            if list.0.is_empty() {
                return Err("empty method list".to_string());
            }
            Ok(Fixable::Const(list))
        } else {
            Ok(Fixable::Dynamic(f))
        }
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        match fixed {
            Fixable::Const(list) => Ok(list.clone()),
            Fixable::Dynamic(f) => Ok(MethodList::parse(&f.eval(ctx)?)),
        }
    }

    /// As a dynamic argument: an empty list matches nothing.
    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<Self, FnError> {
        Ok(MethodList::parse(&value_to_bytes(value)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_case_insensitively() {
        let l = MethodList::parse(b"INVITE| subscribe |");
        assert_eq!(l.methods().len(), 2);
        assert!(l.contains(b"INVITE"));
        assert!(l.contains(b"invite"));
        assert!(l.contains(b"SUBSCRIBE"));
        assert!(!l.contains(b"BYE"));
        assert!(!l.contains(b"INVITEX"));
    }
}
