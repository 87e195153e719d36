//! The per-message context a route runs against.

use crate::route::RouteKind;
use crate::value::Value;
use bytes::Bytes;
use ferrosip_sip::SipMessage;
use smallvec::SmallVec;
use std::any::{Any, TypeId};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Transport protocol of a socket or a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Proto {
    /// UDP.
    #[default]
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// SCTP.
    Sctp,
    /// WebSocket.
    Ws,
    /// WebSocket over TLS.
    Wss,
}

impl Proto {
    /// Lower-case name as used in `listen=` and `$pr`.
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Tls => "tls",
            Proto::Sctp => "sctp",
            Proto::Ws => "ws",
            Proto::Wss => "wss",
        }
    }

    /// Kamailio's numeric protocol ids, used when scripts compare `proto == UDP`.
    pub const fn id(self) -> i64 {
        match self {
            Proto::Udp => 1,
            Proto::Tcp => 2,
            Proto::Tls => 3,
            Proto::Sctp => 4,
            Proto::Ws => 5,
            Proto::Wss => 6,
        }
    }

    /// A protocol name, any case (`udp`, `TLS`, ...).
    pub fn parse(s: &str) -> Option<Proto> {
        Proto::from_bytes(s.as_bytes())
    }

    /// A transport name as found in a Via or a `transport=` parameter, any case.
    pub fn from_bytes(s: &[u8]) -> Option<Proto> {
        const NAMES: [(&[u8], Proto); 6] = [
            (b"udp", Proto::Udp),
            (b"tcp", Proto::Tcp),
            (b"tls", Proto::Tls),
            (b"sctp", Proto::Sctp),
            (b"ws", Proto::Ws),
            (b"wss", Proto::Wss),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, p)| *p)
    }
}

/// Where a message came from and which local socket received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetInfo {
    /// The transport it came over.
    pub proto: Proto,
    /// The peer's address (`$si`, `$sp`).
    pub source: SocketAddr,
    /// The local socket that received it (`$Ri`, `$Rp`).
    pub local: SocketAddr,
}

impl Default for NetInfo {
    fn default() -> Self {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        NetInfo {
            proto: Proto::Udp,
            source: any,
            local: any,
        }
    }
}

/// `$var(name)` storage. Names are resolved to slots when the script is compiled, so an
/// access is an index, not a lookup. Unlike Kamailio (where `$var`s live per worker process
/// and survive from one message to the next), they start empty for every message: a value
/// left over from another caller's message is a classic source of routing bugs.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    slots: Vec<Value>,
}

impl Vars {
    /// The value of the `$var` in `slot`; null when unset.
    pub fn get(&self, slot: u32) -> &Value {
        static NULL: Value = Value::Null;
        self.slots.get(slot as usize).unwrap_or(&NULL)
    }

    /// Sets the `$var` in `slot`.
    pub fn set(&mut self, slot: u32, value: Value) {
        let i = slot as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, Value::Null);
        }
        self.slots[i] = value;
    }

    /// Unsets every `$var`.
    pub fn clear(&mut self) {
        self.slots.clear();
    }
}

/// AVP storage: each name (resolved to a slot at compile time) holds a stack of values,
/// newest first, as Kamailio's `$avp(name)` / `$(avp(name)[i])` see it.
#[derive(Clone, Debug, Default)]
pub struct Avps {
    entries: Vec<(u32, Value)>,
    /// `$xavp`/`$xavu`/`$xavi`. Kept here because Kamailio's tm saves a transaction's XAVPs
    /// with its AVPs: whatever carries the AVPs into branch, failure and reply routes
    /// carries these too.
    pub xavps: crate::xavp::Xavps,
}

impl Avps {
    /// The `index`-th value of `slot` (0 = newest); negative counts from the oldest.
    pub fn get(&self, slot: u32, index: i32) -> Option<&Value> {
        let mut it = self.entries.iter().rev().filter(|(s, _)| *s == slot);
        if index >= 0 {
            it.nth(index as usize).map(|(_, v)| v)
        } else {
            let all: SmallVec<[&Value; 8]> = it.map(|(_, v)| v).collect();
            let back = (-index) as usize;
            all.len().checked_sub(back).map(|i| all[i])
        }
    }

    /// All values of `slot`, newest first.
    pub fn all(&self, slot: u32) -> impl Iterator<Item = &Value> {
        self.entries
            .iter()
            .rev()
            .filter(move |(s, _)| *s == slot)
            .map(|(_, v)| v)
    }

    /// Adds a value on top (Kamailio's `$avp(x) = v`).
    pub fn push(&mut self, slot: u32, value: Value) {
        self.entries.push((slot, value));
    }

    /// Replaces every value of `slot` with one (Kamailio's `$avp(x) := v`).
    pub fn replace(&mut self, slot: u32, value: Value) {
        self.remove_all(slot);
        self.push(slot, value);
    }

    /// Replaces the `index`-th value (0 = newest), if present.
    pub fn set_nth(&mut self, slot: u32, index: usize, value: Value) -> bool {
        let pos = self
            .entries
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, (s, _))| *s == slot)
            .nth(index)
            .map(|(i, _)| i);
        match pos {
            Some(i) => {
                self.entries[i].1 = value;
                true
            }
            None => false,
        }
    }

    /// Removes every value of `slot`.
    pub fn remove_all(&mut self, slot: u32) {
        self.entries.retain(|(s, _)| *s != slot);
    }

    /// Removes the newest value of `slot` and returns it.
    pub fn pop(&mut self, slot: u32) -> Option<Value> {
        let pos = self.entries.iter().rposition(|(s, _)| *s == slot)?;
        Some(self.entries.remove(pos).1)
    }

    /// Removes the `index`-th newest value of `slot` and returns it.
    pub fn remove_nth(&mut self, slot: u32, index: usize) -> Option<Value> {
        let pos = self
            .entries
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, (s, _))| *s == slot)
            .nth(index)
            .map(|(i, _)| i)?;
        Some(self.entries.remove(pos).1)
    }

    /// Every AVP value with its slot, newest first (avpops' `avp_print`).
    pub fn entries(&self) -> impl Iterator<Item = (u32, &Value)> {
        self.entries.iter().rev().map(|(s, v)| (*s, v))
    }

    /// How many values `slot` holds.
    pub fn count(&self, slot: u32) -> usize {
        self.entries.iter().filter(|(s, _)| *s == slot).count()
    }

    /// Removes every AVP and XAVP.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.xavps = Default::default();
    }
}

/// Typed per-message state that modules attach to a context (e.g. `tm` its transaction,
/// `dispatcher` the remaining destinations for failover). One value per type.
#[derive(Default)]
pub struct Extensions {
    // A stateful relay attaches up to four (transaction, Record-Route plan, forwarding
    // flags, Max-Forwards done): the list itself stays inline.
    items: SmallVec<[(TypeId, Box<dyn Any + Send>); 4]>,
}

impl Extensions {
    /// The value of type `T`, if one was attached.
    pub fn get<T: Any + Send>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.items
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, b)| b.downcast_ref())
    }

    /// The value of type `T` to change in place, if one was attached.
    pub fn get_mut<T: Any + Send>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        self.items
            .iter_mut()
            .find(|(t, _)| *t == id)
            .and_then(|(_, b)| b.downcast_mut())
    }

    /// Attaches `value`, replacing (and returning) the one of the same type.
    pub fn insert<T: Any + Send>(&mut self, value: T) -> Option<T> {
        let old = self.remove::<T>();
        self.items.push((TypeId::of::<T>(), Box::new(value)));
        old
    }

    /// The value of type `T`, attached first from `f` when there is none.
    pub fn get_or_insert_with<T: Any + Send>(&mut self, f: impl FnOnce() -> T) -> &mut T {
        let id = TypeId::of::<T>();
        let pos = match self.items.iter().position(|(t, _)| *t == id) {
            Some(p) => p,
            None => {
                self.items.push((id, Box::new(f())));
                self.items.len() - 1
            }
        };
        self.items[pos]
            .1
            .downcast_mut()
            .expect("extension stored under its own TypeId")
    }

    /// Takes the value of type `T` off the context.
    pub fn remove<T: Any + Send>(&mut self) -> Option<T> {
        let id = TypeId::of::<T>();
        let pos = self.items.iter().position(|(t, _)| *t == id)?;
        self.items
            .swap_remove(pos)
            .1
            .downcast()
            .ok()
            .map(|b: Box<T>| *b)
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({} items)", self.items.len())
    }
}

/// One message being processed by a route, with everything the script can read or change.
#[derive(Debug)]
pub struct MsgContext {
    /// The message: parsed lazily, edited in place (edits apply when it is sent).
    pub msg: SipMessage,
    /// The phase now running.
    pub route: RouteKind,
    /// Where the message came from and which socket received it.
    pub net: NetInfo,
    /// Message flags (`setflag`/`isflagset`), 0..=63.
    pub flags: u64,
    /// Branch flags of the current branch (`setbflag`, `$bf`), 0..=63.
    pub bflags: u64,
    /// `$du`: where the request is actually sent, overriding the R-URI.
    pub dst_uri: Option<Bytes>,
    /// `$avp(...)`: travel with the transaction to its other routes.
    pub avps: Avps,
    /// `$var(...)`: this message's only, empty at the start of each.
    pub vars: Vars,
    /// `$rc` / `$retcode`: the last function or route return code.
    pub rc: i32,
    /// `$T_branch_idx`.
    pub branch_idx: i32,
    /// Typed state modules attach to the message (one value per type).
    pub ext: Extensions,
    /// The loop-detection tag the server computed for the request as received (RFC 3261
    /// §16.6 step 8), written into every branch it sends; `None` when detection is off.
    /// A field, not an extension: every request has one, and an extension is boxed.
    pub loop_tag: Option<std::num::NonZeroU32>,
    /// The running server, when there is one.
    pub services: Option<std::sync::Arc<dyn crate::services::Services>>,
}

impl std::fmt::Debug for dyn crate::services::Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Services")
    }
}

impl MsgContext {
    /// A context for `msg` about to run a route of `route`, received as `net` says.
    pub fn new(msg: SipMessage, route: RouteKind, net: NetInfo) -> MsgContext {
        MsgContext {
            msg,
            route,
            net,
            flags: 0,
            bflags: 0,
            dst_uri: None,
            avps: Avps::default(),
            vars: Vars::default(),
            rc: 1,
            branch_idx: 0,
            ext: Extensions::default(),
            loop_tag: None,
            services: None,
        }
    }

    /// The server's services, or an error naming the function that needs them.
    pub fn services(
        &self,
        function: &str,
    ) -> Result<std::sync::Arc<dyn crate::services::Services>, crate::FnError> {
        self.services.clone().ok_or_else(|| {
            crate::FnError::new(format!(
                "{function}() needs a running server (not available here)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avp_stack_semantics() {
        let mut a = Avps::default();
        a.push(1, Value::Int(1));
        a.push(2, Value::Int(99));
        a.push(1, Value::Int(2));
        assert_eq!(a.get(1, 0), Some(&Value::Int(2)));
        assert_eq!(a.get(1, 1), Some(&Value::Int(1)));
        assert_eq!(a.get(1, -1), Some(&Value::Int(1)));
        assert_eq!(a.get(1, 2), None);
        a.replace(1, Value::Int(7));
        assert_eq!(a.count(1), 1);
        assert_eq!(a.pop(1), Some(Value::Int(7)));
        assert_eq!(a.count(2), 1);
    }

    #[test]
    fn extensions_by_type() {
        #[derive(Debug, PartialEq)]
        struct Tx(u32);
        let mut e = Extensions::default();
        assert!(e.get::<Tx>().is_none());
        e.insert(Tx(1));
        e.get_or_insert_with(|| Tx(5)).0 += 1;
        assert_eq!(e.get::<Tx>(), Some(&Tx(2)));
        assert_eq!(e.remove::<Tx>(), Some(Tx(2)));
    }
}
