//! A fuzz campaign on stable: the seeded mutation loop of `tests/replay.rs` for a given
//! time per target (scripts/fuzz-campaign.sh runs it). Failing inputs are written to
//! target/fuzz-failures/<target>/ and the exit status is 1 when there are any.
//!
//! `campaign <seconds per target> [seed] [target...]`, or `campaign replay <target> <file>`
//! to run one input with the default panic message and backtrace.

use std::time::Duration;

use ferrosip_fuzz_check::mutate::{self, Budget};
use ferrosip_fuzz_check::{repo_root, seeds, target, TARGETS};

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "replay") {
        let (name, file) = (args.nth(1).expect("a target"), args.next().expect("a file"));
        let t = target(&name).unwrap_or_else(|| panic!("no target {name}"));
        let accepted = (t.check)(&std::fs::read(&file).expect("the input file"));
        println!("{name} {file}: no failure (accepted: {accepted})");
        return;
    }
    let secs: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: campaign <seconds per target> [seed] [target...]");
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let names: Vec<String> = args.collect();
    let chosen: Vec<_> = if names.is_empty() {
        TARGETS.iter().collect()
    } else {
        names
            .iter()
            .map(|n| target(n).unwrap_or_else(|| panic!("no target {n}")))
            .collect()
    };
    // Failures are reported below, with their input; the default hook's message for
    // each would drown them.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    println!("target        seconds   iterations    accepted  failures");
    for t in chosen {
        let seed_inputs: Vec<Vec<u8>> = seeds(t.name).into_iter().map(|(_, d)| d).collect();
        let stats = mutate::run(
            t,
            &seed_inputs,
            seed,
            Budget::Time(Duration::from_secs(secs)),
        );
        println!(
            "{:<12} {:>8} {:>12} {:>11} {:>9}",
            t.name,
            secs,
            stats.iterations,
            stats.accepted,
            stats.failures.len()
        );
        let dir = repo_root().join("target/fuzz-failures").join(t.name);
        for (input, why) in &stats.failures {
            failed = true;
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{:016x}", mutate::hash(input)));
            let _ = std::fs::write(&file, input);
            println!("  FAIL {}: {why}", file.display());
        }
    }
    std::process::exit(i32::from(failed));
}
