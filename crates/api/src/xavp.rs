//! Extended AVPs (Kamailio's `$xavp`, `$xavu`, `$xavi`): named items whose value is a
//! plain value or a list of named fields, kept per message and carried with the
//! transaction into its branch, failure and reply routes (they live inside [`Avps`], so
//! every place that carries a transaction's AVPs carries them too).
//!
//! A list keeps Kamailio's order: a new item goes to the head, so index 0 of a name is the
//! newest item of that name. Three separate root lists exist: `xavp` (names compared
//! exactly), `xavu` (one item per name: setting replaces) and `xavi` (names compared
//! ignoring ASCII case).
//!
//! [`Avps`]: crate::context::Avps

use crate::value::Value;
use std::fmt::Write as _;

/// Most items (roots and fields, all three lists together) one message may hold: a script
/// looping over network input cannot grow a message's state without bound.
pub const MAX_XAVP_ITEMS: usize = 1024;

/// Which root list, and how names compare in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XKind {
    /// `$xavp`: a stack per name, exact names.
    Xavp,
    /// `$xavu`: a single item per name.
    Xavu,
    /// `$xavi`: as `$xavp`, names compared ignoring ASCII case.
    Xavi,
}

impl XKind {
    /// The PV class name (`xavp`, `xavu`, `xavi`).
    pub const fn name(self) -> &'static str {
        match self {
            XKind::Xavp => "xavp",
            XKind::Xavu => "xavu",
            XKind::Xavi => "xavi",
        }
    }

    /// Whether `a` and `b` name the same item in this list.
    pub fn same(self, a: &str, b: &str) -> bool {
        match self {
            XKind::Xavi => a.eq_ignore_ascii_case(b),
            _ => a == b,
        }
    }
}

/// The value of an item: a plain value or a list of fields.
#[derive(Clone, Debug, PartialEq)]
pub enum XVal {
    /// A null, an integer or a string.
    Value(Value),
    /// Named fields (themselves plain values in practice).
    List(XList),
}

impl XVal {
    /// The value as the script reads it; a list reads as a marker (Kamailio prints its
    /// address), never as its fields.
    pub fn to_value(&self) -> Value {
        match self {
            XVal::Value(v) => v.clone(),
            XVal::List(_) => Value::from_static("<<xavp>>"),
        }
    }

    fn items(&self) -> usize {
        match self {
            XVal::Value(_) => 1,
            XVal::List(l) => 1 + l.items(),
        }
    }
}

/// A list of named items, head (newest) first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct XList {
    items: Vec<(Box<str>, XVal)>,
}

impl XList {
    /// Every item, head first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &XVal)> {
        self.items.iter().map(|(n, v)| (&**n, v))
    }

    /// True when the list holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items in this list and below.
    pub fn items(&self) -> usize {
        self.items.iter().map(|(_, v)| v.items()).sum()
    }

    fn positions<'a>(&'a self, kind: XKind, name: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.items
            .iter()
            .enumerate()
            .filter(move |(_, (n, _))| kind.same(n, name))
            .map(|(i, _)| i)
    }

    /// How many items are named `name`.
    pub fn count(&self, kind: XKind, name: &str) -> usize {
        self.positions(kind, name).count()
    }

    fn position(&self, kind: XKind, name: &str, index: usize) -> Option<usize> {
        self.positions(kind, name).nth(index)
    }

    /// The `index`-th item named `name` (0: the newest).
    pub fn get(&self, kind: XKind, name: &str, index: usize) -> Option<&XVal> {
        self.position(kind, name, index).map(|i| &self.items[i].1)
    }

    /// The `index`-th item named `name`, to change in place.
    pub fn get_mut(&mut self, kind: XKind, name: &str, index: usize) -> Option<&mut XVal> {
        self.position(kind, name, index)
            .map(move |i| &mut self.items[i].1)
    }

    /// Every item named `name`, newest first.
    pub fn all<'a>(&'a self, kind: XKind, name: &'a str) -> impl Iterator<Item = &'a XVal> + 'a {
        self.items
            .iter()
            .filter(move |(n, _)| kind.same(n, name))
            .map(|(_, v)| v)
    }

    /// Adds an item at the head (Kamailio's `xavp_add_value`).
    pub fn push_front(&mut self, name: &str, val: XVal) {
        self.items.insert(0, (name.into(), val));
    }

    /// Adds an item at the tail (for lists built in order, e.g. exploded parameters).
    pub fn push_back(&mut self, name: &str, val: XVal) {
        self.items.push((name.into(), val));
    }

    /// Replaces the value of the `index`-th item named `name`; false when there is none.
    pub fn set_nth(&mut self, kind: XKind, name: &str, index: usize, val: XVal) -> bool {
        match self.get_mut(kind, name, index) {
            Some(slot) => {
                *slot = val;
                true
            }
            None => false,
        }
    }

    /// Replaces the first item named `name`, or adds one (`$xavu`'s only assignment).
    pub fn set_unique(&mut self, kind: XKind, name: &str, val: XVal) {
        if !self.set_nth(kind, name, 0, val.clone()) {
            self.push_front(name, val);
        }
        // One item per name: older ones of the same name (from a list built by other
        // means) go.
        let mut seen = false;
        self.items.retain(|(n, _)| {
            if !kind.same(n, name) {
                return true;
            }
            let keep = !seen;
            seen = true;
            keep
        });
    }

    /// Removes the `index`-th item named `name`; false when there is none.
    pub fn remove_nth(&mut self, kind: XKind, name: &str, index: usize) -> bool {
        match self.position(kind, name, index) {
            Some(i) => {
                self.items.remove(i);
                true
            }
            None => false,
        }
    }

    /// Removes every item named `name`; how many there were.
    pub fn remove_all(&mut self, kind: XKind, name: &str) -> usize {
        let before = self.items.len();
        self.items.retain(|(n, _)| !kind.same(n, name));
        before - self.items.len()
    }

    /// Rotates the items named `name` left by `n` (the first goes last), leaving other
    /// names where they are (`xavp_lshift`).
    pub fn rotate_named(&mut self, kind: XKind, name: &str, n: usize) {
        let pos: Vec<usize> = self.positions(kind, name).collect();
        if pos.len() < 2 {
            return;
        }
        let mut vals: Vec<XVal> = pos
            .iter()
            .map(|&i| std::mem::replace(&mut self.items[i].1, XVal::Value(Value::Null)))
            .collect();
        let len = vals.len();
        vals.rotate_left(n % len);
        for (&i, v) in pos.iter().zip(vals) {
            self.items[i].1 = v;
        }
    }
}

/// Why an XAVP could not be changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XavpError {
    /// The message already holds [`MAX_XAVP_ITEMS`].
    #[error("more than {MAX_XAVP_ITEMS} XAVP items in one message")]
    Full,
}

/// The three root lists of one message. They sit in every message's and transaction's
/// AVPs, and most messages have none: the lists live behind one pointer made at the first
/// item, so an empty set costs 8 bytes in the transaction cell instead of 72.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Xavps(Option<Box<XavpLists>>);

#[derive(Clone, Debug, Default, PartialEq)]
struct XavpLists {
    xavp: XList,
    xavu: XList,
    xavi: XList,
}

static NO_ITEMS: XList = XList { items: Vec::new() };

impl Xavps {
    /// The root list of `kind`.
    pub fn list(&self, kind: XKind) -> &XList {
        let Some(lists) = &self.0 else {
            return &NO_ITEMS;
        };
        match kind {
            XKind::Xavp => &lists.xavp,
            XKind::Xavu => &lists.xavu,
            XKind::Xavi => &lists.xavi,
        }
    }

    /// The root list of `kind`, to change. Callers adding items check [`Xavps::room`]
    /// first.
    pub fn list_mut(&mut self, kind: XKind) -> &mut XList {
        let lists = self.0.get_or_insert_with(Box::default);
        match kind {
            XKind::Xavp => &mut lists.xavp,
            XKind::Xavu => &mut lists.xavu,
            XKind::Xavi => &mut lists.xavi,
        }
    }

    /// Items held, all lists together.
    pub fn items(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |l| l.xavp.items() + l.xavu.items() + l.xavi.items())
    }

    /// Ok when `more` items can be added without passing [`MAX_XAVP_ITEMS`].
    pub fn room(&self, more: usize) -> Result<(), XavpError> {
        if self.items() + more > MAX_XAVP_ITEMS {
            Err(XavpError::Full)
        } else {
            Ok(())
        }
    }

    /// Adds a new root item whose value is `fields` (a row, exploded parameters...).
    pub fn add_list(&mut self, kind: XKind, name: &str, fields: XList) -> Result<(), XavpError> {
        self.room(1 + fields.items())?;
        let list = self.list_mut(kind);
        if kind == XKind::Xavu {
            list.set_unique(kind, name, XVal::List(fields));
        } else {
            list.push_front(name, XVal::List(fields));
        }
        Ok(())
    }

    /// Sets field `field` of the first item `root` (created when missing), replacing the
    /// first field of that name or adding it (`xavp_child_seti/sets`, `$xavu(r=>f)`).
    pub fn set_child(
        &mut self,
        kind: XKind,
        root: &str,
        field: &str,
        value: Value,
    ) -> Result<bool, XavpError> {
        self.room(2)?;
        let list = self.list_mut(kind);
        match list.get_mut(kind, root, 0) {
            Some(XVal::List(fields)) => {
                fields.set_unique(kind, field, XVal::Value(value));
                Ok(true)
            }
            // A root holding a plain value has no fields to set.
            Some(XVal::Value(_)) => Ok(false),
            None => {
                let mut fields = XList::default();
                fields.push_front(field, XVal::Value(value));
                list.push_front(root, XVal::List(fields));
                Ok(true)
            }
        }
    }

    /// Removes the first field `field` of the first item `root`; false when absent.
    pub fn remove_child(&mut self, kind: XKind, root: &str, field: &str) -> bool {
        match self.list_mut(kind).get_mut(kind, root, 0) {
            Some(XVal::List(fields)) => fields.remove_nth(kind, field, 0),
            _ => false,
        }
    }

    /// Writes every item of `kind` as `pv_xavp_print` logs them, one line each.
    pub fn dump(&self, kind: XKind) -> Vec<String> {
        let mut out = Vec::new();
        for (name, val) in self.list(kind).iter() {
            match val {
                XVal::Value(v) => out.push(format!("{}: {name} = {}", kind.name(), show(v))),
                XVal::List(fields) => {
                    let mut line = format!("{}: {name} => {{", kind.name());
                    for (i, (f, fv)) in fields.iter().enumerate() {
                        let sep = if i == 0 { " " } else { ", " };
                        let _ = write!(line, "{sep}{f}={}", show(&fv.to_value()));
                    }
                    line.push_str(" }");
                    out.push(line);
                }
            }
        }
        out
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "<null>".into(),
        Value::Int(i) => i.to_string(),
        Value::Str(s) => format!("\"{}\"", String::from_utf8_lossy(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &'static str) -> XVal {
        XVal::Value(Value::from_static(s))
    }

    #[test]
    fn newest_first_and_case_rules() {
        let mut l = XList::default();
        l.push_front("a", v("1"));
        l.push_front("b", v("x"));
        l.push_front("a", v("2"));
        assert_eq!(l.get(XKind::Xavp, "a", 0), Some(&v("2")));
        assert_eq!(l.get(XKind::Xavp, "a", 1), Some(&v("1")));
        assert_eq!(l.get(XKind::Xavp, "A", 0), None);
        assert_eq!(l.get(XKind::Xavi, "A", 0), Some(&v("2")));
        assert!(l.set_nth(XKind::Xavp, "a", 1, v("one")));
        assert!(!l.set_nth(XKind::Xavp, "a", 2, v("none")));
        assert!(l.remove_nth(XKind::Xavp, "a", 0));
        assert_eq!(l.get(XKind::Xavp, "a", 0), Some(&v("one")));
        l.set_unique(XKind::Xavp, "b", v("y"));
        assert_eq!(l.count(XKind::Xavp, "b"), 1);
        assert_eq!(l.remove_all(XKind::Xavp, "a"), 1);
    }

    #[test]
    fn rotate_and_children() {
        let mut x = Xavps::default();
        for n in ["1", "2", "3"] {
            x.list_mut(XKind::Xavp).push_front("r", v(n));
        }
        x.list_mut(XKind::Xavp).rotate_named(XKind::Xavp, "r", 1);
        let l = x.list(XKind::Xavp);
        assert_eq!(l.get(XKind::Xavp, "r", 0), Some(&v("2")));
        assert_eq!(l.get(XKind::Xavp, "r", 2), Some(&v("3")));
        assert!(x.set_child(XKind::Xavi, "Cfg", "k", Value::Int(1)).unwrap());
        assert!(x.set_child(XKind::Xavi, "cfg", "K", Value::Int(2)).unwrap());
        let root = x.list(XKind::Xavi).get(XKind::Xavi, "CFG", 0).unwrap();
        let XVal::List(f) = root else {
            panic!("a list")
        };
        assert_eq!(f.count(XKind::Xavi, "k"), 1);
        assert_eq!(
            f.get(XKind::Xavi, "k", 0),
            Some(&XVal::Value(Value::Int(2)))
        );
        assert!(x.remove_child(XKind::Xavi, "cfg", "k"));
        assert!(!x.remove_child(XKind::Xavi, "cfg", "k"));
    }

    #[test]
    fn bounded() {
        let mut x = Xavps::default();
        let mut added = 0;
        while x
            .set_child(XKind::Xavp, "r", &format!("f{added}"), Value::Int(1))
            .is_ok()
        {
            // set_child on an existing root adds one field; the first call two items.
            added += 1;
            if added > 2 * MAX_XAVP_ITEMS {
                break;
            }
        }
        assert!(x.items() <= MAX_XAVP_ITEMS);
        assert_eq!(x.room(2), Err(XavpError::Full));
    }
}
