//! The server's command line: Kamailio's flags that operators put in unit files and
//! container entrypoints (`-f -c -D -E -e -m -M -P -u -g -A -l -L -n -d`), each with its
//! meaning or a clear message, shared by `ferrosip [FLAGS]` and `ferrosip run [FLAGS]`.

use std::path::PathBuf;

use clap::{ArgAction, Args};

/// The config read when no `-f` is given.
pub const DEFAULT_CONFIG: &str = "/etc/ferrosip/ferrosip.cfg";

/// What `-l` takes, as Kamailio's `-l`.
const LISTEN_FORMAT: &str = "[PROTO:]ADDR[:PORT][/ADVERTISE[:PORT]]";

/// Kamailio's flags ferrosip knows, for the message about one it does not.
pub const KNOWN_FLAGS: &str =
    "-f FILE, -c, -D, -E, -e, -d, -A DEFINE, -l ADDRESS, -L DIR, -m MB, -M MB, -n N, -P FILE, -u USER, -g GROUP, --log-engine=json, --log-level LEVEL";

#[derive(Args, Clone, Debug, Default)]
pub struct ServerOpts {
    /// The config file (default /etc/ferrosip/ferrosip.cfg).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Define NAME (or NAME=value) for #!ifdef, like `kamailio -A`.
    #[arg(short = 'A', value_name = "NAME[=VALUE]")]
    pub defines: Vec<String>,
    /// Log level: error, warn, info, debug, trace or a debug= number (default: the
    /// config's `debug=`).
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Raise the log level one step per `d` above the config's `debug=`, like `kamailio -d`.
    #[arg(short = 'd', action = ArgAction::Count)]
    pub debug_steps: u8,
    /// Listen on this socket too, like `kamailio -l` (repeat for more): added to the
    /// config's `listen=` sockets; without a protocol, UDP and TCP.
    #[arg(short = 'l', long = "listen", value_name = LISTEN_FORMAT)]
    pub listen: Vec<String>,
    /// Log to stderr, like `kamailio -E` (otherwise as the config's `log_stderror=` says;
    /// Kamailio's default, syslog).
    #[arg(short = 'E', long = "stderr")]
    pub log_stderr: bool,
    /// Colour the level of stderr lines even when stderr is not a terminal (`kamailio -e`).
    #[arg(short = 'e')]
    pub colors: bool,
    /// Log format, Kamailio's `--log-engine`: `json` for one JSON document per line
    /// (also the config's `log_engine_type="json"`).
    #[arg(long = "log-engine", value_name = "NAME[:DATA]")]
    pub log_engine: Option<String>,
    /// `-D`/`-DD`: stay in the foreground, which ferrosip always does; `-DDD` (daemonize)
    /// is refused: run it under systemd or a container runtime.
    #[arg(short = 'D', action = ArgAction::Count)]
    pub foreground: u8,
    /// Write the process id to FILE (removed at stop), like `kamailio -P`.
    #[arg(short = 'P', long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Run as USER once the sockets are bound (overrides the config's `user=`).
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Run as GROUP once the sockets are bound (overrides the config's `group=`).
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    pub group: Option<String>,
    /// Kamailio's shared memory size in MB: accepted, not used (ferrosip has no fixed
    /// pools; see docs/coming-from-kamailio.md).
    #[arg(short = 'm', value_name = "MB")]
    pub shm_mb: Option<u64>,
    /// Kamailio's private memory size in MB: accepted, not used (as -m).
    #[arg(short = 'M', value_name = "MB")]
    pub pkg_mb: Option<u64>,
    /// Kamailio's module directory: accepted, not used (modules are built into ferrosip).
    /// The log level is `--log-level`.
    #[arg(short = 'L', value_name = "DIR")]
    pub module_path: Option<PathBuf>,
    /// Worker threads per UDP socket, like `kamailio -n` (overrides `children=`).
    #[arg(short = 'n', value_name = "N")]
    pub children: Option<u32>,
}

impl ServerOpts {
    /// The config to read.
    pub fn config(&self) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    /// What is refused before anything starts: `-DDD`, a log level `-L` took for a
    /// directory, an unknown log engine.
    pub fn refusal(&self) -> Option<String> {
        if self.foreground >= 3 {
            return Some(
                "-DDD (daemonize): ferrosip always runs in the foreground; run it under systemd (packaging/ferrosip.service) or a container runtime".into(),
            );
        }
        if let Some(dir) = &self.module_path {
            let text = dir.to_string_lossy();
            if crate::logging::parse_level(&text).is_some() && !dir.exists() {
                return Some(format!(
                    "-L is Kamailio's module directory; for the log level write --log-level {text}"
                ));
            }
        }
        if let Some(engine) = &self.log_engine {
            if let Err(e) = crate::logging::Format::from_engine(engine) {
                return Some(format!("--log-engine: {e}"));
            }
        }
        if self.children == Some(0) {
            return Some("-n 0: at least one worker is needed".into());
        }
        None
    }

    /// What is accepted but has no effect, said once the logger is up.
    pub fn notices(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(mb) = self.shm_mb {
            notes.push(format!("-m {mb}: ferrosip has no shared memory pool to size (memory is allocated as needed); limits are per resource: tcp_max_connections, max_waiting_routes, module limits"));
        }
        if let Some(mb) = self.pkg_mb {
            notes.push(format!("-M {mb}: ferrosip has no private memory pool to size (memory is allocated as needed)"));
        }
        if let Some(dir) = &self.module_path {
            notes.push(format!(
                "-L {}: modules are built into ferrosip; no module directory is read",
                dir.display()
            ));
        }
        notes
    }
}
