#![no_main]
//! libFuzzer wrapper over ferrosip_fuzz_check::check_credentials (the same check runs on stable in
//! crates/fuzz-check/tests/replay.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrosip_fuzz_check::check_credentials(data);
});
