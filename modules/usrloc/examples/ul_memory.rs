//! Memory of the in-memory location table (db_mode 0): fills N contacts (default
//! 1,000,000; one per address of record, realistic sizes: a ~60-byte contact URI, a
//! ~40-byte Call-ID, a ~20-byte User-Agent, the socket and a ruid) and prints the
//! resident memory they take, in total and per contact.
//!
//! ```text
//! cargo run --release -p ferrosip-mod-usrloc --example ul_memory [-- CONTACTS]
//! ```

use ferrosip_mod_usrloc::{ContactInfo, Usrloc, ALL_METHODS};
use std::time::Instant;

/// Resident set size of this process, in bytes (Linux).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let ul = Usrloc::default();
    let dom = ul.domain("location");
    let now = ul.unix_now();
    let before = rss();
    let start = Instant::now();
    let mut string_bytes = 0u64;
    for i in 0..n {
        let aor = format!("user{i:07}");
        let info = ContactInfo {
            uri: format!(
                "sip:{aor}@192.168.{}.{}:5060;transport=udp;ob",
                (i >> 8) % 256,
                i % 256
            )
            .into_bytes(),
            callid: format!("{i:016x}-4c2a9e0b7d3f1a68@192.168.1.10").into_bytes(),
            user_agent: b"Yealink SIP-T46S 66.".to_vec(),
            socket: b"udp:10.0.0.1:5060".to_vec(),
            ruid: ul.new_ruid(),
            expires: now + 3600,
            last_modified: now,
            q: -1,
            cseq: 1,
            methods: ALL_METHODS,
            ..Default::default()
        };
        string_bytes += (info.uri.len()
            + info.callid.len()
            + info.user_agent.len()
            + info.socket.len()
            + info.ruid.len()
            + aor.len()) as u64;
        dom.edit(aor.as_bytes(), None, |rec| {
            rec.insert(info).expect("fits");
        });
    }
    let elapsed = start.elapsed();
    let after = rss();
    let used = after.saturating_sub(before);
    println!("contacts:            {}", dom.contact_count());
    println!("fill time:           {:.2} s", elapsed.as_secs_f64());
    println!(
        "string data:         {:.1} bytes/contact (URI, Call-ID, User-Agent, socket, ruid, AoR)",
        string_bytes as f64 / n as f64
    );
    println!(
        "RSS added:           {:.1} MiB ({:.1} bytes/contact)",
        used as f64 / (1024.0 * 1024.0),
        used as f64 / n as f64
    );
    println!(
        "RSS total:           {:.1} MiB",
        after as f64 / (1024.0 * 1024.0)
    );
}
