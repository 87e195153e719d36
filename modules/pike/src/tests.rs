use super::counter::{Check, PikeConfig, PikeCounter, TopFilter};
use super::PikeModule;
use ferrosip_api::{NetInfo, Registry, RouteKind};
use ferrosip_tests::script::{message_with, Script};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn counter(density: u32, max_nodes: usize) -> PikeCounter {
    counter_on(density, max_nodes, ferrosip_api::Clock::system())
}

fn counter_on(density: u32, max_nodes: usize, clock: ferrosip_api::Clock) -> PikeCounter {
    PikeCounter::with_clock(
        PikeConfig {
            sampling_time_unit: 2,
            reqs_density_per_unit: density,
            remove_latency: 4,
            log_level: 1,
            max_nodes,
        },
        clock,
    )
}

const UNIT: std::time::Duration = std::time::Duration::from_secs(2);

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

/// Checks `ip` `n` times and gives the 1-based index of each verdict that was not
/// Allowed.
fn not_allowed(c: &PikeCounter, ip: IpAddr, n: usize) -> Vec<(usize, Check)> {
    (1..=n)
        .map(|i| (i, c.check(ip)))
        .filter(|(_, v)| *v != Check::Allowed)
        .collect()
}

#[test]
fn a_fresh_address_is_blocked_at_its_22nd_request_as_in_kamailio() {
    // density 16: the /8, /16 and /24 prefixes need 4 requests each (a quarter of
    // 16) before the next byte gets a node, each new node inheriting 3; the address's
    // own count starts at the 7th request and reaches 16 at the 22nd.
    let clock = ferrosip_api::Clock::manual();
    let c = counter_on(16, 100, clock.clone());
    for i in 1..22 {
        assert_eq!(c.check(A), Check::Allowed, "request {i}");
    }
    assert_eq!(c.check(A), Check::JustBlocked, "the 22nd request in a unit");
    assert_eq!(c.check(A), Check::Blocked);
    assert_eq!(c.len(), 4, "one node per byte");
    // Next unit: the previous unit still holds 17 (>= 16), so still blocked.
    clock.advance(UNIT);
    let (unblocked, _) = c.sweep();
    assert!(unblocked.is_empty());
    assert_eq!(c.check(A), Check::Blocked);
    // One more unit: 1 request in the previous unit, none now: cooled, unblocked.
    clock.advance(UNIT);
    let (unblocked, _) = c.sweep();
    assert_eq!(unblocked, vec![A]);
    assert_eq!(c.check(A), Check::Allowed);
}

#[test]
fn a_neighbour_of_a_blocked_address_is_blocked_sooner() {
    // Its /24 is already busy: its first request makes its node (inheriting the /24's
    // count), and its own count reaches 16 at its 17th.
    let c = counter(16, 100);
    assert_eq!(not_allowed(&c, A, 22), [(22, Check::JustBlocked)]);
    assert_eq!(not_allowed(&c, B, 17), [(17, Check::JustBlocked)]);
    // Another /8 starts from nothing.
    let far = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    assert_eq!(not_allowed(&c, far, 22), [(22, Check::JustBlocked)]);
}

#[test]
fn a_steady_sender_under_the_density_is_never_blocked_and_a_block_outlasts_its_unit() {
    let clock = ferrosip_api::Clock::manual();
    let c = counter_on(16, 100, clock.clone());
    // 15 requests a unit for ten units: never 16 in a unit nor as the mean.
    for unit in 0..10 {
        assert!(not_allowed(&c, A, 15).is_empty(), "unit {unit}");
        clock.advance(UNIT);
    }
    // A unit of 15 then one of 17: blocked at the 16th of the second (16 in the unit).
    assert!(not_allowed(&c, A, 15).is_empty());
    clock.advance(UNIT);
    assert_eq!(not_allowed(&c, A, 17)[0], (16, Check::JustBlocked));
    // A unit of 20 (blocked at the 22nd of 26): the next unit is blocked from its
    // first request, the previous one holding 20.
    let c = counter_on(16, 100, clock.clone());
    assert_eq!(not_allowed(&c, B, 26)[0], (22, Check::JustBlocked));
    clock.advance(UNIT);
    // prev 20 >= 16: still red.
    assert_eq!(not_allowed(&c, B, 12).len(), 12);
}

#[test]
fn counts_follow_the_clock_even_when_the_sweeper_is_late() {
    let clock = ferrosip_api::Clock::manual();
    let c = counter_on(3, 100, clock.clone());
    // density 3: a quarter is 0, so every request reaching a prefix splits it; the
    // full address counts from the 5th request.
    assert_eq!(not_allowed(&c, A, 6), []);
    // Two units later with no sweep in between: the old counts are gone.
    clock.advance(UNIT * 2);
    assert_eq!(not_allowed(&c, A, 3), [(3, Check::JustBlocked)]);
    // One unit later the previous unit's 3 still make it hot.
    clock.advance(UNIT);
    assert_eq!(c.check(A), Check::Blocked);
}

#[test]
fn ipv6_and_mapped_ipv4_are_counted() {
    let c = counter(3, 100);
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
    // 16 bytes: one request makes each of the 16 nodes, the 19th is the 3rd counted.
    assert_eq!(not_allowed(&c, v6, 19), [(19, Check::JustBlocked)]);
    assert_eq!(not_allowed(&c, A, 6), []);
    assert_eq!(
        c.check(mapped),
        Check::JustBlocked,
        "::ffff:192.0.2.1 is 192.0.2.1"
    );
    let hot = c.top(TopFilter::Hot);
    assert_eq!(
        hot.iter().map(|n| n.ip).collect::<Vec<_>>(),
        [A, v6],
        "{hot:?}"
    );
}

#[test]
fn prefixes_expire_from_their_creation_and_addresses_from_their_last_request() {
    let clock = ferrosip_api::Clock::manual();
    let c = counter_on(16, 100, clock.clone());
    let second = std::time::Duration::from_secs(1);
    // Three requests: only the /8 node, counted 3 times (a quarter of 16 is 4).
    assert!(not_allowed(&c, A, 3).is_empty());
    assert_eq!(c.len(), 1);
    // Requests stopping at a prefix do not renew it: 4 s (remove_latency) after it was
    // made it goes, though hit at 3 s.
    clock.advance(second * 3);
    c.sweep();
    assert!(not_allowed(&c, A, 1).is_empty());
    clock.advance(second);
    c.sweep();
    assert_eq!(c.len(), 0, "the /8 prefix expired");
    // A full address lives from its last request; its prefixes while it does.
    assert!(not_allowed(&c, A, 10).is_empty());
    assert_eq!(c.len(), 4);
    clock.advance(second * 3);
    assert!(not_allowed(&c, A, 1).is_empty());
    clock.advance(second * 3);
    c.sweep();
    assert_eq!(c.len(), 4, "hit 3 s ago");
    clock.advance(second);
    c.sweep();
    // The address went; its /24 then gets remove_latency of its own, and so on up.
    assert_eq!(c.len(), 3);
    for left in [2, 1, 0] {
        clock.advance(second * 4);
        c.sweep();
        assert_eq!(c.len(), left);
    }
}

#[test]
fn the_node_cap_holds_and_idle_nodes_are_removed() {
    let clock = ferrosip_api::Clock::manual();
    let c = counter_on(16, 1000, clock.clone());
    for i in 0..5000u32 {
        c.check(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
    }
    assert_eq!(c.len(), 1000);
    let (_, untracked) = c.sweep();
    assert!(untracked > 0);
    // Nothing expires within remove_latency (4 s); after it, everything idle goes.
    assert_eq!(c.len(), 1000);
    for _ in 0..8 {
        clock.advance(std::time::Duration::from_secs(4));
        c.sweep();
    }
    assert_eq!(c.len(), 0);
    // And a flooder is counted and blocked again.
    assert_eq!(not_allowed(&c, A, 22), [(22, Check::JustBlocked)]);
}

fn registry() -> Registry {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&PikeModule);
    reg
}

#[test]
fn pike_check_req_and_pike_check_ip_in_a_script() {
    let reg = registry();
    let script = Script::load(
        &reg,
        "loadmodule \"pike.so\"\n\
         modparam(\"pike\", \"reqs_density_per_unit\", 3)\n\
         request_route {\n\
             if ($rm == \"MESSAGE\") { pike_check_ip(\"2001:db8::1\"); return $rc; }\n\
             pike_check_req(); return $rc;\n\
         }\n",
    );
    let net = NetInfo {
        source: SocketAddr::new(A, 5060),
        ..NetInfo::default()
    };
    let req = |method: &str| {
        message_with(
            &format!(
                "{method} sip:x@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\n\
                 From: <sip:a@example.com>;tag=1\nTo: <sip:x@example.com>\nCall-ID: p1\n\
                 CSeq: 1 {method}\nContent-Length: 0\n\n"
            ),
            RouteKind::Request,
            net,
        )
    };
    // density 3: an IPv4 address counts from its 5th request, an IPv6 one from its
    // 17th (one node per byte first).
    let mut codes = Vec::new();
    for _ in 0..8 {
        let (_, ctx) = script.run(req("OPTIONS"));
        codes.push(ctx.rc);
    }
    assert_eq!(codes, [1, 1, 1, 1, 1, 1, -2, -1]);
    let mut codes = Vec::new();
    for _ in 0..19 {
        let (_, ctx) = script.run(req("MESSAGE"));
        codes.push(ctx.rc);
    }
    assert_eq!(codes[16..], [1, 1, -2]);
    assert!(codes[..16].iter().all(|c| *c == 1));
}
