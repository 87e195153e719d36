//! The states, filters, tags, limits and expiry of the records, with the module's own
//! table and no server.

use super::*;
use ferrosip_sip::Method;

fn limits() -> Limits {
    Limits {
        init_lifetime: 180,
        active_lifetime: 7200,
        finish_lifetime: 10,
        max_items: 3,
        max_tags: 2,
        max_item_size: 200,
    }
}

fn sf(callid: &str, branch: &str) -> SipFields {
    SipFields {
        callid: Bytes::copy_from_slice(callid.as_bytes()),
        ftag: Bytes::from_static(b"ft"),
        ttag: Bytes::new(),
        branch: Bytes::copy_from_slice(branch.as_bytes()),
    }
}

fn add(t: &Table, callid: &str, src: &str, now: u64) -> Result<bool, AddError> {
    t.add(
        sf(callid, "b1"),
        Bytes::copy_from_slice(src.as_bytes()),
        Bytes::from_static(b"sip:bob@example.com"),
        Bytes::from_static(b"srcip=10.0.0.1"),
        now,
    )
}

fn state(t: &Table, callid: &str) -> Option<State> {
    t.with_item(callid.as_bytes(), |it| it.state)
}

#[test]
fn a_call_goes_through_its_states() {
    let t = Table::new(4, limits(), 1000);
    assert_eq!(add(&t, "c1", "sip:alice@a", 1000), Ok(true));
    // A retransmitted INVITE (same branch) keeps the record.
    assert_eq!(add(&t, "c1", "sip:other@a", 1001), Ok(false));
    assert_eq!(state(&t, "c1"), Some(State::Init));
    t.on_invite_reply(b"c1", 180, b"tt", 1001);
    assert_eq!(state(&t, "c1"), Some(State::Progress));
    // ACK before the 2xx changes nothing; the 2xx answers and keeps the To tag.
    t.on_request(b"c1", &Method::Ack, 1001);
    assert_eq!(state(&t, "c1"), Some(State::Progress));
    t.on_invite_reply(b"c1", 200, b"tt", 1002);
    assert_eq!(
        t.with_item(b"c1", |it| (it.state, it.ttag.clone(), it.ts_answer)),
        Some((State::Answered, Bytes::from_static(b"tt"), 1002))
    );
    // A late 486 from another branch does not undo the answer; the ACK confirms.
    t.on_invite_reply(b"c1", 486, b"x", 1002);
    t.on_request(b"c1", &Method::Ack, 1002);
    assert_eq!(state(&t, "c1"), Some(State::Confirmed));
    t.on_request(b"c1", &Method::Cancel, 1003);
    assert_eq!(state(&t, "c1"), Some(State::Confirmed));
    t.on_request(b"c1", &Method::Bye, 1010);
    assert_eq!(state(&t, "c1"), Some(State::Terminated));
    assert_eq!(t.with_item(b"c1", |it| it.ts_finish), Some(1010));
}

#[test]
fn cancel_and_negative_replies_end_a_call_unanswered_and_a_new_branch_starts_over() {
    let t = Table::new(4, limits(), 1000);
    add(&t, "c1", "a", 1000).unwrap();
    t.on_request(b"c1", &Method::Cancel, 1001);
    assert_eq!(state(&t, "c1"), Some(State::NotAnswered));
    add(&t, "c2", "a", 1000).unwrap();
    t.on_invite_reply(b"c2", 404, b"", 1001);
    assert_eq!(state(&t, "c2"), Some(State::NotAnswered));
    // Serial forking: a new INVITE branch of an ended call is a new attempt.
    assert_eq!(
        t.add(
            sf("c2", "b2"),
            Bytes::new(),
            Bytes::new(),
            Bytes::new(),
            1002
        ),
        Ok(true)
    );
    assert_eq!(state(&t, "c2"), Some(State::Init));
    // A new branch of a live call (a spiral or a parallel fork) is not tracked apart.
    assert_eq!(
        t.add(
            sf("c2", "b3"),
            Bytes::new(),
            Bytes::new(),
            Bytes::new(),
            1002
        ),
        Ok(false)
    );
    assert_eq!(t.len(), 2);
    let (_, finished) = t.stats();
    assert_eq!(
        finished[State::NotAnswered as usize],
        (State::NotAnswered, 1)
    );
}

#[test]
fn counts_by_field_and_operator_take_only_live_calls() {
    let t = Table::new(4, limits(), 1000);
    add(&t, "c1", "sip:alice@a.example", 1000).unwrap();
    add(&t, "c2", "sip:ALICE@b.example", 1000).unwrap();
    add(&t, "c3", "sip:carol@a.example", 1000).unwrap();
    t.on_invite_reply(b"c3", 603, b"", 1001);
    let count = |f: Field, op: Op, v: &str| t.count(&Filter::new(f, op, v.as_bytes()).unwrap());
    assert_eq!(count(Field::Any, Op::Eq, "whatever"), 2);
    assert_eq!(count(Field::Src, Op::Eq, "sip:alice@a.example"), 1);
    assert_eq!(count(Field::Src, Op::Ne, "sip:alice@a.example"), 1);
    assert_eq!(
        count(Field::Src, Op::Re, "^sip:alice@"),
        2,
        "re ignores case"
    );
    assert_eq!(count(Field::Src, Op::Sw, "sip:alice"), 1);
    assert_eq!(count(Field::Src, Op::Fm, "sip:*@?.example"), 2);
    assert_eq!(count(Field::Data, Op::Eq, "srcip=10.0.0.1"), 2);
    assert_eq!(count(Field::Dst, Op::Fm, "*carol*"), 0);
    assert!(Filter::new(Field::Src, Op::Re, b"(").is_err());
    assert_eq!(Field::parse(b"SRC"), Some(Field::Src));
    assert_eq!(Op::parse(b"xx"), None);
}

#[test]
fn tags_are_counted_on_live_calls_and_bounded() {
    let t = Table::new(4, limits(), 1000);
    add(&t, "c1", "a", 1000).unwrap();
    add(&t, "c2", "a", 1000).unwrap();
    assert!(t.tags_add(b"c1", b"gold"));
    assert!(t.tags_add(b"c1", b"gold"));
    assert!(!t.tags_add(b"c1", b"third"), "max_tags is 2");
    assert!(t.tags_add(b"c2", b"gold"));
    assert!(!t.tags_add(b"nope", b"gold"));
    assert_eq!(t.tags_count(b"gold"), 3);
    assert_eq!(t.tags_rm(b"c1", b"gold"), Some(true));
    assert_eq!(t.tags_rm(b"c1", b"silver"), Some(false));
    assert_eq!(t.tags_rm(b"nope", b"gold"), None);
    t.on_request(b"c2", &Method::Cancel, 1001);
    assert_eq!(t.tags_count(b"gold"), 1);
}

#[test]
fn the_table_is_bounded() {
    let t = Table::new(4, limits(), 1000);
    for c in ["c1", "c2", "c3"] {
        add(&t, c, "a", 1000).unwrap();
    }
    assert_eq!(add(&t, "c4", "a", 1000), Err(AddError::Full));
    let big = "x".repeat(300);
    t.expire(5000);
    assert_eq!(t.len(), 0);
    assert_eq!(add(&t, "c5", &big, 5000), Err(AddError::TooBig));
}

#[test]
fn records_expire_by_the_lifetime_of_their_state() {
    let t = Table::new(4, limits(), 1000);
    add(&t, "ringing", "a", 1000).unwrap();
    add(&t, "up", "a", 1000).unwrap();
    t.on_invite_reply(b"up", 200, b"t", 1000);
    t.on_request(b"up", &Method::Ack, 1000);
    add(&t, "ended", "a", 1000).unwrap();
    t.on_request(b"ended", &Method::Cancel, 1000);
    assert_eq!(t.expire(1010), 0, "finish_lifetime 10 is not over at 1010");
    assert_eq!(t.expire(1011), 1);
    assert_eq!(state(&t, "ended"), None);
    assert_eq!(t.expire(1181), 1);
    assert_eq!(state(&t, "ringing"), None);
    assert_eq!(state(&t, "up"), Some(State::Confirmed));
    assert_eq!(t.expire(8201), 1);
    assert_eq!(t.len(), 0);
    let (active, finished) = t.stats();
    assert!(active.iter().all(|(_, n)| *n == 0));
    assert_eq!(finished[State::Init as usize].1, 1);
    assert_eq!(finished[State::Confirmed as usize].1, 1);
    assert_eq!(finished[State::NotAnswered as usize].1, 1);
}
