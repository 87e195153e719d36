//! The `ferrosip` binary for the tests that run it. Cargo cannot express "this test needs
//! another package's binary", so the testkit builds it itself, once per test process, with
//! the profile and target directory the running test was built with: cargo then rebuilds
//! it when any of its sources changed, and a stale binary never runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// A binary already built from the current sources, named by whoever built it:
/// scripts/test.sh builds it once before running the tests with nextest, which starts a
/// process per test, and a cargo call from each of them would queue on cargo's lock.
const PREBUILT: &str = "FERROSIP_TEST_BINARY";

/// The path of a `ferrosip` binary built from the current sources; panics with cargo's
/// output when it does not build.
pub fn ferrosip_bin() -> PathBuf {
    match BINARY.get_or_init(|| match std::env::var_os(PREBUILT) {
        Some(path) if Path::new(&path).is_file() => Ok(PathBuf::from(path)),
        Some(path) => Err(format!(
            "{PREBUILT}={} is not a file",
            path.to_string_lossy()
        )),
        None => build(),
    }) {
        Ok(path) => path.clone(),
        Err(why) => panic!("{why}"),
    }
}

/// Where cargo put the running test (`<target>[/<triple>]/<profile dir>/deps/<test>`),
/// which tells the profile and target directory to build with.
struct Layout {
    target_dir: PathBuf,
    triple: Option<String>,
    profile: String,
    profile_dir: PathBuf,
}

fn layout() -> Result<Layout, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let deps = exe.parent().filter(|d| d.ends_with("deps"));
    let profile_dir = deps
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in a cargo target directory", exe.display()))?;
    let dir_name = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: no profile directory", profile_dir.display()))?;
    // `dev` and `test` build into `debug`, `release` and `bench` into `release`; a custom
    // profile into a directory of its own name.
    let profile = match dir_name {
        "debug" => "dev",
        other => other,
    }
    .to_string();
    let parent = profile_dir
        .parent()
        .ok_or_else(|| format!("{}: no target directory", profile_dir.display()))?;
    // The target directory holds cargo's `.rustc_info.json`, and CACHEDIR.TAG when cargo
    // created it (not when something else made `target/` first, as scripts/test.sh does
    // for the unpacked packages); without either, `parent` is a `--target <triple>`
    // directory inside it.
    let is_target_dir =
        parent.join(".rustc_info.json").exists() || parent.join("CACHEDIR.TAG").exists();
    let (target_dir, triple) = if is_target_dir {
        (parent.to_path_buf(), None)
    } else {
        let triple = parent
            .file_name()
            .and_then(|n| n.to_str())
            .map(String::from);
        let target_dir = parent
            .parent()
            .ok_or_else(|| format!("{}: no target directory", parent.display()))?;
        (target_dir.to_path_buf(), triple)
    };
    Ok(Layout {
        target_dir,
        triple,
        profile,
        profile_dir: profile_dir.to_path_buf(),
    })
}

fn build() -> Result<PathBuf, String> {
    let layout = layout()?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--quiet", "--profile", &layout.profile])
        .args(["-p", "ferrosip", "--bin", "ferrosip"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&layout.target_dir);
    if let Some(triple) = &layout.triple {
        cmd.args(["--target", triple]);
    }
    // Cargo gives a test process its package's variables (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME, ...). Build scripts that track them (ring's, through
    // rerun-if-env-changed) would see them change between this build and one from a
    // shell, and each would rebuild ring and all above it for the other.
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("CARGO_PKG_")
            || n.starts_with("CARGO_BIN_")
            || matches!(
                &*n,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            )
        {
            cmd.env_remove(&name);
        }
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cargo:?} to build the ferrosip binary: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the ferrosip binary ({cmd:?}) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let path = layout
        .profile_dir
        .join(format!("ferrosip{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        return Err(format!(
            "cargo built ferrosip, but {} is missing",
            path.display()
        ));
    }
    Ok(path)
}
