//! The module template built and tested as an outsider would: `cargo test` on
//! `templates/Cargo.toml`, a workspace of its own (the template module `numinfo` and the
//! custom binary `my-ferrosip` that builds it in) with path dependencies on this one. Its
//! unit tests use the shared testkit; its integration tests run the custom binary on a
//! .cfg and on Lua with the module's table on PostgreSQL.
//!
//! The build goes into this test's own target directory with this test's profile, so it
//! reuses what the workspace build compiled (same sources, versions and profile): only
//! the template's two crates and the custom binary's link are new.

use std::path::Path;
use std::process::Command;

#[test]
fn the_template_module_builds_into_a_custom_binary_and_its_tests_pass() {
    let exe = std::env::current_exe().expect("current_exe");
    // <target>/<profile dir>/deps/<test>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from a cargo target directory");
    let target_dir = profile_dir.parent().expect("target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("{}: no profile directory", profile_dir.display()),
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = std::time::Instant::now();
    let out = Command::new(&cargo)
        .args(["test", "--profile", profile, "--workspace"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo test on the templates failed:\n{stdout}\n{stderr}"
    );
    // Every test of the template ran: its unit tests and the custom binary's.
    for name in [
        "a_literal_prefix_is_checked_when_the_script_loads",
        "a_lookup_waits_on_the_database_then_sets_the_label",
        "a_cfg_script_calls_the_added_module",
        "a_lua_script_calls_the_added_module",
        "check_names_the_modules_this_binary_has",
    ] {
        assert!(
            stdout.contains(&format!("{name} ... ok")),
            "{name} did not pass:\n{stdout}\n{stderr}"
        );
    }
    eprintln!("templates built and tested in {:.0?}", started.elapsed());
}
