//! Files of the real peers that come as Debian packages: Kamailio's stock kamailio.cfg,
//! its SQL scripts, `kamcmd` and `kamctl`, and Prometheus's `promtool`.
//!
//! scripts/test.sh unpacks those packages into a folder (`FERROSIP_PACKAGED_ROOT`)
//! instead of installing them, so the suite never creates, starts or enables a system
//! service. Without that variable (a developer running `cargo test` on a machine where the
//! packages are installed) the installed files are used.
//!
//! Newer Kamailio releases come from Debian suites apt does not know here; scripts/test.sh
//! unpacks each beside the first folder, with the release as suffix (`packaged-6.0`,
//! `packaged-6.1`), or `FERROSIP_PACKAGED_ROOT_6_0` (...) names the folder. [`kamailio`]
//! finds them; an installed Kamailio is only ever the first release.

use std::path::PathBuf;

/// Where the packaged file installed at the absolute path `installed` is for this run.
pub fn packaged_path(installed: &str) -> PathBuf {
    match std::env::var_os("FERROSIP_PACKAGED_ROOT") {
        Some(root) => PathBuf::from(root).join(installed.trim_start_matches('/')),
        None => PathBuf::from(installed),
    }
}

/// Kamailio's stock configuration file.
pub fn kamailio_stock_cfg() -> PathBuf {
    packaged_path("/etc/kamailio/kamailio.cfg")
}

/// The folder of Kamailio's database scripts (`mysql/`, `postgres/`, ...).
pub fn kamailio_sql_dir() -> PathBuf {
    packaged_path("/usr/share/kamailio")
}

/// A command for `kamctl`, set up to find its shell libraries where they were unpacked.
pub fn kamctl_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(packaged_path("/usr/sbin/kamctl"));
    if std::env::var_os("FERROSIP_PACKAGED_ROOT").is_some() {
        cmd.env(
            "MYLIBDIR",
            packaged_path("/usr/lib/x86_64-linux-gnu/kamailio/kamctl"),
        );
    }
    cmd
}

/// Prometheus's `promtool`: the unpacked one, else the one on PATH.
pub fn promtool() -> PathBuf {
    let unpacked = packaged_path("/usr/bin/promtool");
    if std::env::var_os("FERROSIP_PACKAGED_ROOT").is_some() {
        unpacked
    } else {
        PathBuf::from("promtool")
    }
}

/// The Kamailio releases whose stock files the suite uses: Debian bookworm's (the one apt
/// installs here), trixie's and sid's.
pub const KAMAILIO_RELEASES: [&str; 3] = ["5.6", "6.0", "6.1"];

/// Releases in no Debian suite: 5.8 and the development branch (`dev`), laid out from a
/// Kamailio git repository by scripts/test.sh when the machine has one. Used when there,
/// skipped (and said) when not, even under `FERROSIP_REQUIRE_STOCK_CFG`.
pub const KAMAILIO_RELEASES_FROM_GIT: [&str; 2] = ["5.8", "dev"];

/// One Kamailio release's packaged files.
#[derive(Clone, Debug)]
pub struct Kamailio {
    /// `5.6`, `6.0`, `6.1`, `5.8`, `dev`.
    pub version: &'static str,
    root: PathBuf,
}

impl Kamailio {
    /// The file installed at the absolute path `installed`, in this release's folder.
    pub fn path(&self, installed: &str) -> PathBuf {
        self.root.join(installed.trim_start_matches('/'))
    }

    /// The release's stock `kamailio.cfg`.
    pub fn stock_cfg(&self) -> PathBuf {
        self.path("/etc/kamailio/kamailio.cfg")
    }

    /// The release's database scripts (`mysql/`, `postgres/`, ...).
    pub fn sql_dir(&self) -> PathBuf {
        self.path("/usr/share/kamailio")
    }

    /// Whether its stock config and its MySQL and PostgreSQL scripts are there.
    pub fn is_unpacked(&self) -> bool {
        let sql = self.sql_dir();
        self.stock_cfg().exists()
            && sql.join("mysql/standard-create.sql").exists()
            && sql.join("postgres/standard-create.sql").exists()
    }
}

/// Where release `version` (one of [`KAMAILIO_RELEASES`] or
/// [`KAMAILIO_RELEASES_FROM_GIT`]) is unpacked for this run; `None`
/// when it cannot be (no `FERROSIP_PACKAGED_ROOT`, and a release other than the
/// installed one).
pub fn kamailio(version: &'static str) -> Option<Kamailio> {
    let first = std::env::var_os("FERROSIP_PACKAGED_ROOT").map(PathBuf::from);
    let root = if version == KAMAILIO_RELEASES[0] {
        first.unwrap_or_else(|| PathBuf::from("/"))
    } else {
        let var = format!("FERROSIP_PACKAGED_ROOT_{}", version.replace('.', "_"));
        match std::env::var_os(var) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let first = first?;
                let mut name = first.file_name()?.to_os_string();
                name.push(format!("-{version}"));
                first.with_file_name(name)
            }
        }
    };
    Some(Kamailio { version, root })
}

/// The releases that are unpacked. Under `FERROSIP_REQUIRE_STOCK_CFG` (scripts/test.sh,
/// which unpacks them all) a missing Debian one fails the test; otherwise it is skipped,
/// and said, as is a missing release from git.
pub fn kamailio_releases() -> Vec<Kamailio> {
    let mut found: Vec<Kamailio> = KAMAILIO_RELEASES
        .into_iter()
        .filter_map(kamailio_release)
        .collect();
    found.extend(
        KAMAILIO_RELEASES_FROM_GIT
            .into_iter()
            .filter_map(kamailio_release),
    );
    found
}

/// Release `version`'s files, if unpacked. A Debian release scripts/test.sh unpacks must be
/// there under `FERROSIP_REQUIRE_STOCK_CFG`; a release from git is skipped when missing.
pub fn kamailio_release(version: &'static str) -> Option<Kamailio> {
    let k = kamailio(version).filter(Kamailio::is_unpacked);
    if k.is_none() {
        let from_git = KAMAILIO_RELEASES_FROM_GIT.contains(&version);
        assert!(
            from_git || std::env::var_os("FERROSIP_REQUIRE_STOCK_CFG").is_none(),
            "scripts/test.sh unpacks Kamailio {version}'s packages, but they are not there ({:?})",
            kamailio(version).map(|k| k.root)
        );
        if from_git {
            eprintln!("skipped: Kamailio {version} is laid out only from a Kamailio git repository (KAMAILIO_GIT_DIR in scripts/test.sh)");
        } else {
            eprintln!(
                "skipped: Kamailio {version}'s packages are not unpacked (scripts/test.sh does it)"
            );
        }
    }
    k
}
