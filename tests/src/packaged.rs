//! Files of the real peers that come as Debian packages: Kamailio's stock kamailio.cfg,
//! its SQL scripts, `kamcmd` and `kamctl`, and Prometheus's `promtool`.
//!
//! scripts/test.sh unpacks those packages into a folder (`FERROSIP_PACKAGED_ROOT`)
//! instead of installing them, so the suite never creates, starts or enables a system
//! service. Without that variable (a developer running `cargo test` on a machine where the
//! packages are installed) the installed files are used.

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
