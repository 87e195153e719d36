//! Issue 18 point 4 on stable: every fuzz target's check replayed over its committed
//! corpus (tests/corpus/fuzz/<target>, the RFC 4475 messages, the example configs), then
//! a bounded mutation loop with a fixed seed. The smoke must stay well under 60 s in all
//! (`cargo test --profile ci -p ferrosip-fuzz-check`); longer runs are
//! scripts/fuzz-campaign.sh.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ferrosip_fuzz_check::mutate::{self, Budget};
use ferrosip_fuzz_check::{seeds, target, TARGETS};

/// Mutated inputs per target; the config target loads whole configs, so it runs fewer.
fn smoke_iterations(name: &str) -> u64 {
    match name {
        "cfg" => 1_500,
        "framing" => 5_000,
        _ => 20_000,
    }
}

fn replay(name: &str) {
    let t = target(name).expect("a target");
    let seeds = seeds(name);
    assert!(
        seeds.len() >= 5,
        "{name}: the committed corpus is missing ({} seeds)",
        seeds.len()
    );
    let mut failed = Vec::new();
    let mut accepted = 0;
    for (path, data) in &seeds {
        match catch_unwind(AssertUnwindSafe(|| (t.check)(data))) {
            Ok(ok) => accepted += usize::from(ok),
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    assert!(failed.is_empty(), "{name}: corpus inputs fail: {failed:?}");
    // The seeds are mostly valid inputs: a check that accepts none tests nothing.
    assert!(accepted > 0, "{name}: no corpus input is accepted");
}

fn smoke(name: &str) {
    let t = target(name).expect("a target");
    let seeds: Vec<Vec<u8>> = seeds(name).into_iter().map(|(_, d)| d).collect();
    let stats = mutate::run(
        t,
        &seeds,
        0x5eed_f022,
        Budget::Iterations(smoke_iterations(name)),
    );
    if let Some((input, why)) = stats.failures.first() {
        let dir = ferrosip_fuzz_check::repo_root()
            .join("target/fuzz-failures")
            .join(name);
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{:016x}", mutate::hash(input)));
        let _ = std::fs::write(&file, input);
        panic!(
            "{name}: {} failing inputs in {} iterations; first ({}): {why}\n{:?}",
            stats.failures.len(),
            stats.iterations,
            file.display(),
            String::from_utf8_lossy(input)
        );
    }
    assert!(
        stats.accepted > 0,
        "{name}: the mutation loop never produced a valid input"
    );
}

#[test]
fn every_target_has_a_test_here() {
    let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        ["message", "framing", "uri", "credentials", "cfg", "db_text"]
    );
}

macro_rules! target_tests {
    ($($name:ident),*) => {$(
        mod $name {
            #[test]
            fn corpus_replays() {
                super::replay(stringify!($name));
            }
            #[test]
            fn seeded_mutations() {
                super::smoke(stringify!($name));
            }
        }
    )*};
}

target_tests!(message, framing, uri, credentials, cfg, db_text);
