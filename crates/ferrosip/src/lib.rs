//! The `ferrosip` command as a library, so that a custom binary can add its own modules:
//!
//! ```no_run
//! # struct MyModule;
//! # impl ferrosip_api::Module for MyModule {
//! #     fn name(&self) -> &'static str { "my_module" }
//! #     fn declare(&self, _m: &mut ferrosip_api::ModuleBuilder<'_>) {}
//! # }
//! fn main() -> std::process::ExitCode {
//!     ferrosip::Server::builder().module(MyModule).run()
//! }
//! ```
//!
//! The binary built from this crate (`src/bin/ferrosip.rs`) is exactly that with no added
//! module. Rust has no stable ABI, so modules are linked in, not loaded: `loadmodule
//! "NAME.so"` finds a compiled-in module by name, and an unknown name lists the modules
//! this binary has. `docs/dev/modules.md` shows the whole way, from an empty crate to a
//! binary an operator runs; `templates/binary` is a binary crate to start from.

pub mod catalog;
mod cli;
mod ctl;
mod db;
mod lcr;
mod logging;
mod privileges;

pub use catalog::Catalog;
use clap::{Parser, Subcommand};
use cli::ServerOpts;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

/// The modules of the running binary: set once by [`ServerBuilder::run`] (built-in only
/// until then). A process runs one binary, and the reloader's error explanations take a
/// plain `fn`, so this is process-wide.
static CATALOG: OnceLock<Catalog> = OnceLock::new();

fn binary_catalog() -> &'static Catalog {
    CATALOG.get_or_init(Catalog::builtin)
}

/// The registry with every module of this binary (`check`, docs, error messages).
fn full_registry() -> ferrosip_api::Registry {
    binary_catalog().registry()
}

/// The registry for a script loading `modules`, from this binary's modules.
fn registry_for(modules: &[String]) -> ferrosip_api::Registry {
    binary_catalog().registry_for(modules)
}

/// The `ferrosip` command with the built-in modules and those a custom binary adds.
pub struct Server;

impl Server {
    /// A server with the built-in modules; add yours with [`ServerBuilder::module`].
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            catalog: Catalog::builtin(),
            errors: Vec::new(),
        }
    }
}

/// Collects the modules of a custom binary, then runs the `ferrosip` command line
/// (`run`, `check`, `docs`, `db`, `lcr`, `ctl`) with them.
pub struct ServerBuilder {
    catalog: Catalog,
    errors: Vec<String>,
}

impl ServerBuilder {
    /// Builds `module` into this binary: scripts load it with `loadmodule "NAME.so"`
    /// (NAME is [`Module::name`](ferrosip_api::Module::name)), `ferrosip docs` writes its
    /// page, Lua calls its functions as `KSR.NAME.fn()`. A name the binary already has
    /// is refused when [`ServerBuilder::run`] starts.
    pub fn module<M: ferrosip_api::Module>(mut self, module: M) -> ServerBuilder {
        if let Err(e) = self.catalog.add(module) {
            self.errors.push(e);
        }
        self
    }

    /// The modules this binary will have.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Runs the command line of this process (`std::env::args`).
    pub fn run(self) -> ExitCode {
        self.run_with_args(std::env::args_os())
    }

    /// Runs the command line `args` (the first is the program name).
    pub fn run_with_args<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        if !self.errors.is_empty() {
            for e in &self.errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(2);
        }
        if CATALOG.set(self.catalog).is_err() {
            eprintln!("error: a process runs one ferrosip command line");
            return ExitCode::FAILURE;
        }
        match parse_cli(args) {
            Ok(cli) => command_line(cli),
            Err(code) => code,
        }
    }
}

/// `ferrosip` with the built-in modules: what `src/bin/ferrosip.rs` runs.
pub fn main() -> ExitCode {
    Server::builder().run()
}

#[derive(Parser)]
#[command(
    name = "ferrosip",
    version,
    about = "SIP routing engine with Kamailio-compatible scripts",
    after_help = "Without a command, runs the server as `kamailio` does: `ferrosip -f FILE -DD -E`; without -f, on /etc/ferrosip/ferrosip.cfg."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Check the config and exit (0 when it loads), like `kamailio -c`.
    #[arg(short = 'c', long = "check")]
    check: bool,
    #[command(flatten)]
    server: ServerOpts,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server on a config, in the foreground (SIGINT/SIGTERM stop it).
    Run {
        #[command(flatten)]
        server: ServerOpts,
    },
    /// Preprocess, parse and compile a config; report every error with its location.
    Check {
        /// The config file (default /etc/ferrosip/ferrosip.cfg).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
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
        /// Show the statement trace (file:line, route, values, return codes) of each
        /// failing test.
        #[arg(long)]
        trace: bool,
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

/// Parses the command line; an unknown flag is answered with the Kamailio flags ferrosip
/// knows (a unit file or entrypoint written for Kamailio may carry one it does not).
fn parse_cli<I, T>(args: I) -> Result<Cli, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(cli),
        Err(e) => {
            let unknown = e.kind() == clap::error::ErrorKind::UnknownArgument;
            let _ = e.print();
            if unknown {
                eprintln!(
                    "ferrosip knows these of Kamailio's flags: {}; see docs/coming-from-kamailio.md",
                    cli::KNOWN_FLAGS
                );
            }
            Err(ExitCode::from(e.exit_code().clamp(0, 255) as u8))
        }
    }
}

fn command_line(cli: Cli) -> ExitCode {
    let command = match cli.command {
        Some(c) => c,
        None if cli.check => Command::Check {
            file: Some(cli.server.config()),
            defines: cli.server.defines,
            dump: false,
            allow_declared: false,
        },
        None => Command::Run { server: cli.server },
    };
    match command {
        Command::Run { server } => run(&server),
        Command::Check {
            file,
            defines,
            dump,
            allow_declared,
        } => {
            let file = file.unwrap_or_else(|| PathBuf::from(cli::DEFAULT_CONFIG));
            check(&file, &defines, dump, allow_declared)
        }
        Command::Docs { out } => match catalog::write_docs_of(&full_registry(), &out) {
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
            trace,
        } => {
            ferrosip_scripttest::logs::install(&log_level);
            let options = ferrosip_scripttest::Options {
                paths,
                filter,
                observer: None,
                trace,
            };
            ExitCode::from(ferrosip_scripttest::run(&options, registry_for))
        }
    }
}

/// The config's last value of a core parameter, unquoted.
fn global(loaded: &ferrosip_script::Loaded, name: &str) -> Option<String> {
    loaded
        .globals
        .get(name)
        .and_then(|v| v.last())
        .map(|v| v.unquoted().trim().to_string())
}

/// Kamailio's yes/no/on/off/1/0.
fn yes(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" | "1" => Some(true),
        "no" | "off" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Where and how to log: the command line first, then the config (Kamailio's
/// `log_stderror`, `log_facility`, `log_name`, `log_engine_type`).
fn log_settings(
    server: &ServerOpts,
    loaded: &ferrosip_script::Loaded,
) -> Result<(logging::Destination, logging::Format), String> {
    let engine = server
        .log_engine
        .clone()
        .or_else(|| global(loaded, "log_engine_type"))
        .unwrap_or_default();
    let format = logging::Format::from_engine(&engine)?;
    let stderr = match global(loaded, "log_stderror") {
        _ if server.log_stderr => true,
        Some(v) => yes(&v).ok_or_else(|| format!("log_stderror={v}: give yes or no"))?,
        None => false,
    };
    if stderr {
        return Ok((logging::Destination::Stderr, format));
    }
    let facility = match global(loaded, "log_facility") {
        Some(name) => logging::facility_from_name(&name).ok_or_else(|| {
            format!("log_facility={name}: not a syslog facility (LOG_DAEMON, LOG_LOCAL0..LOG_LOCAL7, ...)")
        })?,
        None => logging::DEFAULT_FACILITY,
    };
    let name = global(loaded, "log_name")
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "ferrosip".to_string());
    Ok((logging::Destination::Syslog { facility, name }, format))
}

/// The log level: `--log-level`, else the config's `debug=` raised by one step per `-d`.
fn log_level(server: &ServerOpts, debug: Option<i64>) -> Result<&'static str, String> {
    if let Some(level) = &server.log_level {
        return logging::parse_level(level).ok_or_else(|| {
            format!("--log-level {level}: give error, warn, info, debug, trace or a debug= number")
        });
    }
    let debug = debug.unwrap_or(2) + i64::from(server.debug_steps);
    Ok(logging::level_from_debug(debug))
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

fn run(server: &ServerOpts) -> ExitCode {
    keep_heap_mapped();
    if let Some(why) = server.refusal() {
        eprintln!("error: {why}");
        return ExitCode::from(2);
    }
    let listen: Vec<String> = match server.listen.iter().map(|l| listen_value(l)).collect() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Up before the config is read, on stderr, so what loading says shows.
    let early_format = server
        .log_engine
        .as_deref()
        .map_or(Ok(logging::Format::Plain), logging::Format::from_engine)
        .unwrap_or(logging::Format::Plain);
    let early_level = match log_level(server, None) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let logger = logging::Logger::install(early_level, early_format, server.colors);
    for note in server.notices() {
        tracing::info!("{note}");
    }
    let file = server.config();
    let file = file.as_path();
    if server.file.is_none() && !file.exists() {
        eprintln!(
            "error: no -f given and the default config {} does not exist",
            file.display()
        );
        return ExitCode::FAILURE;
    }
    // A script that uses a declared-only function or PV is refused: those calls would
    // fail on every message (`if (!pike_check_req()) exit;` would drop all traffic).
    let opts = ferrosip_script::LoadOptions {
        defines: parse_defines(&server.defines),
        allow_declared: false,
        ..Default::default()
    };
    // Only the modules the script loads are declared (see `catalog::registry_for`).
    let registry = match ferrosip_script::loaded_module_names(file, &opts) {
        Some(names) => registry_for(&names),
        None => full_registry(),
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
    if server.trace {
        registry.cfg_trace().set_on(true);
    }
    let debug = global(&loaded, "debug").and_then(|v| v.parse().ok());
    let level = match log_level(server, debug) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (destination, format) = match log_settings(server, &loaded) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run_as = privileges::RunAs {
        user: (server.user.clone())
            .or_else(|| global(&loaded, "user"))
            .or_else(|| global(&loaded, "uid")),
        group: (server.group.clone())
            .or_else(|| global(&loaded, "group"))
            .or_else(|| global(&loaded, "gid")),
    };
    let ids = match run_as.resolve() {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Written as root, before the drop, as Kamailio does: /run is root's.
    let _pid_file = match server.pid_file.as_deref().map(privileges::PidFile::write) {
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    if let Err(e) = logger.set_level(level) {
        tracing::warn!("cannot set the log level: {e}");
    }
    logger.configure(&destination, format);
    let level_logger = logger.clone();
    let log_level = std::sync::Arc::new(ferrosip_ctl::LogLevel::new(
        logging::debug_from_level(level),
        move |debug| level_logger.set_level(logging::level_from_debug(debug)),
    ));
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    // A reload compiles the same file with the same defines and registry.
    let ctl_registry = registry.clone();
    let prom_registry = registry.clone();
    let reloader = ferrosip_server::Reloader::new(file.to_path_buf(), opts, registry, &loaded)
        .explained_by(full_registry);
    // As Kamailio's, `-l` sockets are added to the config's. Added after the reloader
    // took what the file says, so a reload compares file with file and does not take
    // them for a change of `listen=`.
    let mut loaded = loaded;
    if let Some(children) = server.children {
        loaded
            .globals
            .entry("children".to_string())
            .or_default()
            .push(ferrosip_script::ast::GlobalValue {
                raw: children.to_string(),
                span: Default::default(),
                parsed: None,
            });
    }
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
    // Root is given up last: every socket (SIP, ctl, metrics) is bound by then.
    let drop_privileges: ferrosip_server::Attachment = Box::new(move |_engine| {
        if let Some(ids) = &ids {
            privileges::drop_to(ids).map_err(|e| format!("cannot drop privileges: {e}"))?;
            let uid = ids.user.as_ref().map(|u| u.0);
            tracing::info!(uid = ?uid, gid = ids.gid, "dropped root after binding");
        }
        Ok(Box::new(()) as Box<dyn std::any::Any>)
    });
    let lifecycle = ferrosip_server::Lifecycle {
        started: Some(Box::new(|| privileges::sd_notify("READY=1"))),
        stopping: Some(Box::new(|| privileges::sd_notify("STOPPING=1"))),
    };
    let attachments = vec![attach_ctl, attach_metrics, drop_privileges];
    match ferrosip_server::run_with_lifecycle(loaded, Some(reloader), attachments, lifecycle) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            if destination != logging::Destination::Stderr {
                eprintln!("error: {e}");
            }
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
    let full = std::sync::Arc::new(full_registry());
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
    let registry = std::sync::Arc::new(full_registry());
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
