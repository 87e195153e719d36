//! One fake [`Services`] for every unit test that runs module code outside a server:
//! replies and forwards are recorded instead of sent, `myself` is the addresses the test
//! declares, and a transaction layer is there only when the test gives one.

use ferrosip_api::tm::Transactions;
use ferrosip_api::{FnError, MsgContext, ReplyHeaders, Services, Target};
use std::sync::{Arc, Mutex};

/// A reply the code under test asked for (`sl_send_reply` and the like).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentReply {
    pub code: u16,
    pub reason: String,
    /// The header lines queued for it (`append_to_reply`), each ending in CRLF.
    pub headers: String,
}

/// Records what would have been sent; see the module comment.
#[derive(Default)]
pub struct FakeServices {
    /// (host, port): the port `None` matches every port.
    myself: Vec<(Vec<u8>, Option<u16>)>,
    refuse_sending: bool,
    transactions: Option<Arc<dyn Transactions>>,
    replies: Mutex<Vec<SentReply>>,
    forwards: Mutex<Vec<Option<Target>>>,
}

impl FakeServices {
    /// No address is myself, replies and forwards succeed and are recorded, no `tm`.
    pub fn new() -> FakeServices {
        FakeServices::default()
    }

    /// `host` is this server: on `port` only (a host given without port is on 5060, as
    /// a SIP URI without port), or on every port when `port` is `None`.
    pub fn myself(mut self, host: &str, port: Option<u16>) -> FakeServices {
        self.myself.push((host.as_bytes().to_vec(), port));
        self
    }

    /// Replies and forwards fail ("not sent by this test"), for code that must not send.
    pub fn refusing_to_send(mut self) -> FakeServices {
        self.refuse_sending = true;
        self
    }

    /// The transaction layer [`Services::transactions`] returns.
    pub fn with_transactions(mut self, tm: Arc<dyn Transactions>) -> FakeServices {
        self.transactions = Some(tm);
        self
    }

    /// The replies so far, oldest first.
    pub fn replies(&self) -> Vec<SentReply> {
        self.replies.lock().expect("replies").clone()
    }

    /// The latest reply; panics when there was none.
    pub fn last_reply(&self) -> SentReply {
        self.replies().pop().expect("a reply was sent")
    }

    /// The forwards so far (their explicit targets; `None`: to `$du` / the R-URI).
    pub fn forwards(&self) -> Vec<Option<Target>> {
        self.forwards.lock().expect("forwards").clone()
    }

    fn refuse(&self) -> Result<(), FnError> {
        if self.refuse_sending {
            Err(FnError::new("not sent by this test"))
        } else {
            Ok(())
        }
    }
}

impl Services for FakeServices {
    fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<(), FnError> {
        self.refuse()?;
        let headers = ctx.ext.remove::<ReplyHeaders>().unwrap_or_default().0;
        self.replies.lock().expect("replies").push(SentReply {
            code,
            reason: String::from_utf8_lossy(reason).into_owned(),
            headers: String::from_utf8_lossy(&headers).into_owned(),
        });
        Ok(())
    }

    fn forward(&self, _: &mut MsgContext, target: Option<Target>) -> Result<(), FnError> {
        self.refuse()?;
        self.forwards.lock().expect("forwards").push(target);
        Ok(())
    }

    fn is_myself(&self, host: &[u8], port: Option<u16>) -> bool {
        self.myself
            .iter()
            .any(|(h, p)| h.as_slice() == host && p.is_none_or(|p| p == port.unwrap_or(5060)))
    }

    fn transactions(&self) -> Option<&dyn Transactions> {
        self.transactions.as_deref()
    }
}
