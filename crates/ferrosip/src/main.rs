//! The `ferrosip` command.

mod catalog;
mod ctl;
mod db;
mod lcr;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferrosip",
    version,
    about = "SIP routing engine with Kamailio-compatible scripts"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Shortcut for `ferrosip run -f FILE`.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// With -f: defines, as for `run`.
    #[arg(short = 'A', value_name = "NAME[=VALUE]")]
    defines: Vec<String>,
    /// With -f: log level, as for `run`.
    #[arg(short = 'L', long = "log-level")]
    log_level: Option<String>,
    /// With -f: sockets to listen on, as for `run`.
    #[arg(short = 'l', long = "listen", value_name = LISTEN_FORMAT)]
    listen: Vec<String>,
}

/// What `-l` takes, as Kamailio's `-l`.
const LISTEN_FORMAT: &str = "[PROTO:]ADDR[:PORT][/ADVERTISE[:PORT]]";

#[derive(Subcommand)]
enum Command {
    /// Run the server on a config, in the foreground (SIGINT/SIGTERM stop it).
    Run {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Define NAME (or NAME=value) for #!ifdef, like `kamailio -A`.
        #[arg(short = 'A', value_name = "NAME[=VALUE]")]
        defines: Vec<String>,
        /// Log level: error, warn, info, debug, trace (default: from the config's `debug=`).
        #[arg(short = 'L', long = "log-level")]
        log_level: Option<String>,
        /// Listen on this socket too, like `kamailio -l` (repeat for more): added to the
        /// config's `listen=` sockets; without a protocol, UDP and TCP.
        #[arg(short = 'l', long = "listen", value_name = LISTEN_FORMAT)]
        listen: Vec<String>,
    },
    /// Preprocess, parse and compile a config; report every error with its location.
    Check {
        /// The config file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Define NAME (or NAME=value) for #!ifdef, like `kamailio -A`.
        #[arg(short = 'A', value_name = "NAME[=VALUE]")]
        defines: Vec<String>,
        /// Print the compiled bytecode of each route.
        #[arg(long)]
        dump: bool,
        /// Report uses of functions and pseudo-variables that are declared but not
        /// implemented yet as warnings, not errors (for configs not meant to run here:
        /// `run` still refuses them).
        #[arg(long)]
        allow_declared: bool,
    },
    /// Write the operator docs of every module (parameters, functions, PVs) to a directory.
    Docs {
        #[arg(long, default_value = "docs/modules")]
        out: PathBuf,
    },
    /// Database tools, like kamdbctl/kamctl: create the tables, add and remove subscribers.
    Db {
        #[command(subcommand)]
        command: db::DbCommand,
    },
    /// Least-cost routing tools: import a carrier rate sheet into the LCR rules.
    Lcr {
        #[command(subcommand)]
        command: lcr::LcrCommand,
    },
    /// Run an RPC command on the running server (like kamcmd): `ferrosip ctl core.uptime`.
    Ctl(ctl::CtlArgs),
    /// Run route-script test files (*.test.toml, docs/testing.md) with no network: exit 0
    /// all passed, 1 a test failed, 2 a test file could not run.
    Test {
        /// Test files, or directories holding *.test.toml (default: the current one).
        paths: Vec<PathBuf>,
        /// Only the tests whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Level of the log lines tests can assert on (`log`, `no_log`).
        #[arg(short = 'L', long = "log-level", default_value = "debug")]
        log_level: String,
    },
}

/// Runs an async CLI command (`db`, `lcr`) to completion on a one-thread runtime,
/// printing its error.
pub(crate) fn run_async_command<E: std::fmt::Display>(
    command: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_defines(defs: &[String]) -> Vec<(String, Option<String>)> {
    defs.iter()
        .map(|d| match d.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (d.clone(), None),
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match (cli.command, cli.file) {
        (Some(c), _) => c,
        (None, Some(file)) => Command::Run {
            file,
            defines: cli.defines,
            log_level: cli.log_level,
            listen: cli.listen,
        },
        (None, None) => {
            eprintln!("usage: ferrosip run -f FILE | ferrosip check -f FILE | ferrosip -f FILE (see --help)");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Run {
            file,
            defines,
            log_level,
            listen,
        } => run(&file, &defines, log_level.as_deref(), &listen),
        Command::Check {
            file,
            defines,
            dump,
            allow_declared,
        } => check(&file, &defines, dump, allow_declared),
        Command::Docs { out } => match catalog::write_docs(&out) {
            Ok(n) => {
                println!("wrote {n} module pages to {}", out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Db { command } => db::run(command),
        Command::Lcr { command } => lcr::run(command),
        Command::Ctl(args) => ctl::run(args),
        Command::Test {
            paths,
            filter,
            log_level,
        } => {
            ferrosip_scripttest::logs::install(&log_level);
            let options = ferrosip_scripttest::Options {
                paths,
                filter,
                observer: None,
            };
            ExitCode::from(ferrosip_scripttest::run(&options, catalog::registry_for))
        }
    }
}

/// Kamailio's `debug=` levels mapped to ours.
fn level_from_debug(debug: Option<i64>) -> &'static str {
    match debug {
        Some(d) if d <= -1 => "error",
        Some(0) => "warn",
        Some(1) | Some(2) => "info",
        Some(3) => "debug",
        Some(_) => "trace",
        None => "info",
    }
}

/// Kamailio's `debug=` number for one of our levels (what `cfg.get core debug` says).
fn debug_from_level(level: &str) -> i64 {
    match level {
        "error" => -1,
        "warn" => 0,
        "debug" => 3,
        "trace" => 4,
        _ => 2,
    }
}

/// The log filter for a level (the grammar's own tracing stays at warn).
fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_new(format!("{level},pest=warn"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// glibc hands the free top of an arena back to the kernel at once and maps it again on
/// the next burst. Transactions are allocated by the workers and freed by the timer thread,
/// so under load that was ~1.2 `mprotect` calls per call. A server keeps its peak heap (as
/// Kamailio's preallocated shared memory does) and grows it in 16 MiB steps; the pages
/// are only resident once used. (mimalloc instead cost as much CPU here and ~60 % more
/// PSS: docs/performance.md.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_heap_mapped() {
    // SAFETY: mallopt only sets allocator parameters; called before any worker exists.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TOP_PAD, 16 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_heap_mapped() {}

/// A `-l` value as the config's `listen=` writes it: `[proto:]addr[:port]` then
/// `advertise host[:port]` for Kamailio's `/host[:port]` suffix.
fn listen_value(arg: &str) -> Result<String, String> {
    let mut fields = arg.split('/');
    let socket = fields.next().unwrap_or_default().trim();
    if socket.is_empty() {
        return Err(format!("-l {arg}: no address"));
    }
    let advertise = fields.next().map(str::trim);
    if fields.next().is_some() {
        return Err(format!(
            "-l {arg}: socket names are not supported (give [PROTO:]ADDR[:PORT][/ADVERTISE[:PORT]])"
        ));
    }
    match advertise {
        None => Ok(socket.to_string()),
        Some("") => Err(format!("-l {arg}: empty advertise address")),
        Some(a) => Ok(format!("{socket} advertise {a}")),
    }
}

fn run(
    file: &std::path::Path,
    defines: &[String],
    log_level: Option<&str>,
    listen: &[String],
) -> ExitCode {
    keep_heap_mapped();
    let listen: Vec<String> = match listen.iter().map(|l| listen_value(l)).collect() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // A script that uses a declared-only function or PV is refused: those calls would
    // fail on every message (`if (!pike_check_req()) exit;` would drop all traffic).
    let opts = ferrosip_script::LoadOptions {
        defines: parse_defines(defines),
        allow_declared: false,
        ..Default::default()
    };
    // Only the modules the script loads are declared (see `catalog::registry_for`).
    let registry = match ferrosip_script::loaded_module_names(file, &opts) {
        Some(names) => catalog::registry_for(&names),
        None => catalog::registry(),
    };
    let registry = std::sync::Arc::new(registry);
    // A `cfgengine "lua"` engine keeps the registry for its calls by value.
    let mut opts = opts;
    opts.shared_registry = Some(ferrosip_script::SharedRegistry(registry.clone()));
    let loaded = match ferrosip_script::load_file(file, &opts, &registry) {
        Ok(l) => l,
        Err(errors) => {
            let errors = explain_load_errors(file, &opts, errors);
            print_load_errors(file, &errors, "; not starting");
            return ExitCode::FAILURE;
        }
    };
    let debug = loaded
        .globals
        .get("debug")
        .and_then(|v| v.last())
        .and_then(|v| v.unquoted().trim().parse().ok());
    let level = log_level.unwrap_or(level_from_debug(debug));
    // The filter is reloadable: the control interface changes the level at run time.
    let (filter, filter_handle) = tracing_subscriber::reload::Layer::new(log_filter(level));
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .init();
    }
    let log_level = std::sync::Arc::new(ferrosip_ctl::LogLevel::new(
        debug_from_level(level),
        move |debug| {
            filter_handle
                .reload(log_filter(level_from_debug(Some(debug))))
                .map_err(|e| e.to_string())
        },
    ));
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    // A reload compiles the same file with the same defines and registry.
    let ctl_registry = registry.clone();
    let prom_registry = registry.clone();
    let reloader = ferrosip_server::Reloader::new(file.to_path_buf(), opts, registry, &loaded)
        .explained_by(catalog::registry);
    // As Kamailio's, `-l` sockets are added to the config's. Added after the reloader
    // took what the file says, so a reload compares file with file and does not take
    // them for a change of `listen=`.
    let mut loaded = loaded;
    for value in listen {
        loaded
            .globals
            .entry("listen".to_string())
            .or_default()
            .push(ferrosip_script::ast::GlobalValue {
                raw: value,
                span: Default::default(),
                parsed: None,
            });
    }
    // The control interface (ctl, jsonrpcs), started with the server's engine.
    let ctl_params = loaded.modules.get("ctl").cloned();
    let jsonrpcs_params = loaded.modules.get("jsonrpcs").cloned();
    let attach_ctl: ferrosip_server::Attachment = Box::new(move |engine| {
        let iface = ferrosip_ctl::attach(
            engine,
            &ctl_registry,
            ctl_params.as_ref(),
            jsonrpcs_params.as_ref(),
            Some(log_level),
        )?;
        Ok(Box::new(iface) as Box<dyn std::any::Any>)
    });
    // The Prometheus exporter (xhttp_prom), started with the server's engine.
    let prom_params = loaded.modules.get("xhttp_prom").cloned();
    let attach_metrics: ferrosip_server::Attachment = Box::new(move |engine| {
        let exporter = ferrosip_metrics::attach(engine, &prom_registry, prom_params.as_ref())?;
        Ok(Box::new(exporter) as Box<dyn std::any::Any>)
    });
    match ferrosip_server::run_with(loaded, Some(reloader), vec![attach_ctl, attach_metrics]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The errors of a script that did not load against the registry of the modules it loads,
/// as the full registry words them: a function of a module the script does not load is
/// then named with that module ("add loadmodule"), not as an unknown function.
fn explain_load_errors(
    file: &std::path::Path,
    opts: &ferrosip_script::LoadOptions,
    errors: ferrosip_script::LoadErrors,
) -> ferrosip_script::LoadErrors {
    let full = std::sync::Arc::new(catalog::registry());
    let opts = ferrosip_script::LoadOptions {
        skip_module_init: true,
        shared_registry: Some(ferrosip_script::SharedRegistry(full.clone())),
        ..opts.clone()
    };
    ferrosip_script::load_file(file, &opts, &full)
        .err()
        .unwrap_or(errors)
}

/// Every error with its location, then a summary line (`suffix` says what happens next).
fn print_load_errors(file: &std::path::Path, errors: &ferrosip_script::LoadErrors, suffix: &str) {
    for e in &errors.messages {
        eprintln!("{e}\n");
    }
    eprintln!(
        "{}: {} error(s){suffix}",
        file.display(),
        errors.messages.len()
    );
    if errors.declared_uses > 0 {
        eprintln!(
            "{} of them use functions or pseudo-variables that are declared but not implemented yet (docs/modules lists what is implemented)",
            errors.declared_uses
        );
    }
}

fn check(file: &std::path::Path, defines: &[String], dump: bool, allow_declared: bool) -> ExitCode {
    let registry = std::sync::Arc::new(catalog::registry());
    let opts = ferrosip_script::LoadOptions {
        defines: parse_defines(defines),
        allow_declared,
        shared_registry: Some(ferrosip_script::SharedRegistry(registry.clone())),
        ..Default::default()
    };
    match ferrosip_script::load_file(file, &opts, &registry) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            if dump {
                print!("{}", loaded.program.dump());
            }
            if !loaded.declared_only.is_empty() {
                eprintln!(
                    "declared but not implemented yet (allowed by --allow-declared; `run` refuses this config): {}",
                    loaded.declared_only.join(", ")
                );
            }
            eprintln!(
                "{}: OK ({} routes, {} modules loaded)",
                file.display(),
                loaded.program.routes.len(),
                loaded.modules.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_load_errors(file, &errors, "");
            if errors.declared_uses > 0 {
                eprintln!(
                    "(--allow-declared reports those as warnings, for a config not meant to run)"
                );
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::listen_value;

    #[test]
    fn listen_arguments_are_written_as_the_configs_listen() {
        assert_eq!(
            listen_value("udp:127.0.0.1:5080").unwrap(),
            "udp:127.0.0.1:5080"
        );
        assert_eq!(listen_value("10.0.0.1").unwrap(), "10.0.0.1");
        assert_eq!(
            listen_value("udp:10.0.0.1:5060/203.0.113.7:5090").unwrap(),
            "udp:10.0.0.1:5060 advertise 203.0.113.7:5090"
        );
        assert!(listen_value("").is_err());
        assert!(listen_value("udp:10.0.0.1/").is_err());
        assert!(listen_value("udp:10.0.0.1:5060/1.2.3.4/name").is_err());
    }
}
