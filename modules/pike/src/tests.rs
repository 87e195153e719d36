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

#[test]
fn blocks_at_the_density_then_reports_blocked_until_it_cools() {
    let clock = ferrosip_api::Clock::manual();
    let c = counter_on(16, 100, clock.clone());
    for i in 1..16 {
        assert_eq!(c.check(A), Check::Allowed, "request {i}");
    }
    assert_eq!(c.check(A), Check::JustBlocked, "the 16th request in a unit");
    assert_eq!(c.check(A), Check::Blocked);
    // Another address is not affected.
    assert_eq!(c.check(B), Check::Allowed);
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
fn counts_follow_the_clock_even_when_the_sweeper_is_late() {
    let clock = ferrosip_api::Clock::manual();
    let c = counter_on(3, 100, clock.clone());
    assert_eq!(c.check(A), Check::Allowed);
    assert_eq!(c.check(A), Check::Allowed);
    // Two units later with no sweep in between: the old counts are gone.
    clock.advance(UNIT * 2);
    assert_eq!(c.check(A), Check::Allowed);
    assert_eq!(c.check(A), Check::Allowed);
    assert_eq!(c.check(A), Check::JustBlocked);
    // One unit later the previous unit's 3 still make it hot.
    clock.advance(UNIT);
    assert_eq!(c.check(A), Check::Blocked);
}

#[test]
fn ipv6_and_mapped_ipv4_are_counted() {
    let c = counter(3, 100);
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
    assert_eq!(c.check(v6), Check::Allowed);
    assert_eq!(c.check(v6), Check::Allowed);
    assert_eq!(c.check(v6), Check::JustBlocked);
    assert_eq!(c.check(A), Check::Allowed);
    assert_eq!(c.check(mapped), Check::Allowed);
    assert_eq!(
        c.check(A),
        Check::JustBlocked,
        "::ffff:192.0.2.1 is 192.0.2.1"
    );
    let hot = c.top(TopFilter::Hot);
    assert_eq!(hot.len(), 2);
}

#[test]
fn the_address_cap_holds_and_idle_addresses_are_forgotten() {
    let c = counter(16, 1000);
    for i in 0..5000u32 {
        c.check(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
    }
    assert_eq!(c.len(), 1000);
    let (_, untracked) = c.sweep();
    assert_eq!(untracked, 4000);
    // Nothing was hit within remove_latency (4 s) yet: all still there.
    assert_eq!(c.len(), 1000);
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
    let mut codes = Vec::new();
    for _ in 0..4 {
        let (_, ctx) = script.run(req("OPTIONS"));
        codes.push(ctx.rc);
    }
    assert_eq!(codes, [1, 1, -2, -1]);
    let mut codes = Vec::new();
    for _ in 0..3 {
        let (_, ctx) = script.run(req("MESSAGE"));
        codes.push(ctx.rc);
    }
    assert_eq!(codes, [1, 1, -2]);
}
