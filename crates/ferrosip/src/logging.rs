//! The process's logger. It is installed before the config is read, writing to stderr, so
//! load-time messages show; once the config is loaded, [`Logger::configure`] points it
//! where Kamailio would: stderr with `-E` or `log_stderror=yes`, otherwise syslog
//! (`log_facility`, `log_name`). Lines are plain text, plain text with the `<N>` priority
//! prefixes journald reads (when stderr is the journal), or one JSON document per line
//! (`--log-engine=json` or `log_engine_type="json"`, Kamailio's switches). The level is a
//! reloadable filter: the control interface (`cfg.seti core debug`, `ferrosip ctl
//! log-level`) changes it at run time.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// Where syslog lines go unless the environment says otherwise (glibc's `_PATH_LOG`).
pub const SYSLOG_SOCKET: &str = "/dev/log";
/// Environment variable naming another syslog socket (a test binds its own).
pub const SYSLOG_SOCKET_ENV: &str = "FERROSIP_SYSLOG_SOCKET";
/// Kamailio's default `log_facility`.
pub const DEFAULT_FACILITY: u8 = 3; // LOG_DAEMON
/// The longest line sent to syslog; longer messages are cut (a datagram has a limit,
/// and syslog daemons cut at 8 KiB or less anyway).
const SYSLOG_MAX_LINE: usize = 8192;

/// How a line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `TIME LEVEL target: message key=value ...`
    Plain,
    /// One JSON document per line.
    Json,
}

impl Format {
    /// Kamailio's `--log-engine`/`log_engine_type` value: `json` (with optional `:data`
    /// flags, which do not change Ferrosip's document) or empty for plain text.
    pub fn from_engine(engine: &str) -> Result<Format, String> {
        let name = engine.split_once(':').map_or(engine, |(n, _)| n).trim();
        match name {
            "" | "plain" | "text" => Ok(Format::Plain),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "unknown log engine '{other}' (ferrosip knows 'json'; omit it for plain text)"
            )),
        }
    }
}

/// Where lines go, decided from the command line and the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    /// Syslog: the facility (0..23, the number RFC 3164 multiplies by 8) and the name
    /// lines are tagged with (`log_name`, default the program name).
    Syslog {
        facility: u8,
        name: String,
    },
}

/// A syslog facility by Kamailio's names (`LOG_LOCAL0`, `LOG_DAEMON`, ...; the `LOG_`
/// prefix and case are optional); xlog's `xlog(facility, ...)` takes the same names.
pub fn facility_from_name(name: &str) -> Option<u8> {
    ferrosip_mod_xlog::emit::syslog_facility(name)
}

/// Kamailio's `debug=` levels as a filter level.
pub fn level_from_debug(debug: i64) -> &'static str {
    match debug {
        d if d <= -1 => "error",
        0 => "warn",
        1 | 2 => "info",
        3 => "debug",
        _ => "trace",
    }
}

/// Kamailio's `debug=` number for a level name (what `cfg.get core debug` says).
pub fn debug_from_level(level: &str) -> i64 {
    match level {
        "error" => -1,
        "warn" => 0,
        "debug" => 3,
        "trace" => 4,
        _ => 2,
    }
}

/// A level name as the filter takes it; `None` when `level` is none of them.
pub fn parse_level(level: &str) -> Option<&'static str> {
    Some(match level.trim().to_ascii_lowercase().as_str() {
        "error" | "err" => "error",
        "warn" | "warning" => "warn",
        "info" | "notice" => "info",
        "debug" | "dbg" => "debug",
        "trace" => "trace",
        n => return n.parse::<i64>().ok().map(level_from_debug),
    })
}

/// The log filter for a level (the grammar's own tracing stays at warn).
fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(format!("{level},pest=warn")).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The installed logger: its level and where its lines go, both changeable.
#[derive(Clone)]
pub struct Logger {
    filter: reload::Handle<EnvFilter, Registry>,
    output: Arc<RwLock<Output>>,
}

impl Logger {
    /// Installs the process's logger: stderr, plain unless `format` says JSON, at `level`.
    /// `colors` forces terminal colours (Kamailio's `-e`); otherwise they are used only
    /// when stderr is a terminal.
    pub fn install(level: &str, format: Format, colors: bool) -> Logger {
        let (filter_layer, handle) = reload::Layer::new(filter(level));
        let output = Arc::new(RwLock::new(Output::stderr(format, colors)));
        let layer = OutputLayer {
            output: output.clone(),
        };
        // A second install (a test calling in twice) keeps the first subscriber.
        let _ = tracing_subscriber::registry()
            .with(filter_layer)
            .with(layer)
            .try_init();
        Logger {
            filter: handle,
            output,
        }
    }

    /// Sets the level (`error`, `warn`, `info`, `debug`, `trace`).
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        self.filter.reload(filter(level)).map_err(|e| e.to_string())
    }

    /// Sends lines to `destination` in `format` from now on. Syslog whose socket cannot
    /// be reached (a container without `/dev/log`) is reported on stderr, and lines stay
    /// there.
    pub fn configure(&self, destination: &Destination, format: Format) {
        let next = match destination {
            Destination::Stderr => {
                let colors = self.output.read().map(|o| o.colors).unwrap_or(false);
                Output::stderr(format, colors)
            }
            Destination::Syslog { facility, name } => {
                let path = syslog_path();
                match UnixDatagram::unbound().and_then(|s| s.connect(&path).map(|()| s)) {
                    Ok(socket) => Output {
                        format,
                        colors: false,
                        journal: false,
                        syslog: Some(Syslog {
                            facility: *facility,
                            name: name.clone(),
                            path,
                            socket: Mutex::new(Some(socket)),
                        }),
                    },
                    Err(e) => {
                        tracing::warn!(
                            socket = %path.display(),
                            "cannot reach syslog ({e}): logging to stderr (use -E or log_stderror=yes to say so)"
                        );
                        return self.set_format(format);
                    }
                }
            }
        };
        if let Ok(mut output) = self.output.write() {
            *output = next;
        }
    }

    fn set_format(&self, format: Format) {
        if let Ok(mut output) = self.output.write() {
            output.format = format;
        }
    }
}

fn syslog_path() -> PathBuf {
    std::env::var_os(SYSLOG_SOCKET_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(SYSLOG_SOCKET), PathBuf::from)
}

/// The current output of the logger.
struct Output {
    format: Format,
    colors: bool,
    /// stderr is the journal's stream: lines carry `<N>` prefixes and no time (the
    /// journal stamps them).
    journal: bool,
    syslog: Option<Syslog>,
}

impl Output {
    fn stderr(format: Format, colors: bool) -> Output {
        let stderr = std::io::stderr();
        Output {
            format,
            colors: colors || std::io::IsTerminal::is_terminal(&stderr),
            journal: stderr_is_journal(),
            syslog: None,
        }
    }
}

struct Syslog {
    facility: u8,
    name: String,
    path: PathBuf,
    /// Reconnected once when a send fails (the syslog daemon restarted).
    socket: Mutex<Option<UnixDatagram>>,
}

impl Syslog {
    fn send(&self, line: &[u8]) -> std::io::Result<()> {
        let mut socket = self
            .socket
            .lock()
            .map_err(|_| std::io::Error::other("syslog socket lock poisoned"))?;
        if let Some(s) = socket.as_ref() {
            if s.send(line).is_ok() {
                return Ok(());
            }
        }
        let fresh = UnixDatagram::unbound()?;
        fresh.connect(&self.path)?;
        let sent = fresh.send(line).map(drop);
        *socket = Some(fresh);
        sent
    }
}

/// systemd sets `JOURNAL_STREAM=DEV:INODE` for a service whose stderr is the journal; it
/// is inherited by children whose stderr is elsewhere, so the device and inode are
/// compared (as sd_journal_stream_fd(3) advises).
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let value = value.to_string_lossy();
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat on fd 2 writes only into the stat buffer we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// Writes every event that passes the filter to the current output.
struct OutputLayer {
    output: Arc<RwLock<Output>>,
}

impl<S: Subscriber> Layer<S> for OutputLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Ok(output) = self.output.read() else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let line = Line {
            level: *meta.level(),
            target: meta.target(),
            fields: &fields,
        };
        match &output.syslog {
            Some(syslog) => {
                let facility = fields
                    .facility
                    .as_deref()
                    .and_then(facility_from_name)
                    .unwrap_or(syslog.facility);
                let mut text = format!(
                    "<{}>{} {}[{}]: ",
                    u32::from(facility) * 8 + u32::from(line.severity()),
                    syslog_time(),
                    syslog.name,
                    std::process::id()
                );
                match output.format {
                    Format::Json => line.json(&mut text),
                    Format::Plain => line.plain(&mut text, false, false),
                }
                let mut end = text.len().min(SYSLOG_MAX_LINE);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                if syslog.send(&text.as_bytes()[..end]).is_err() {
                    // The daemon is gone: the line goes to stderr rather than nowhere.
                    text.push('\n');
                    let _ = std::io::stderr().write_all(text.as_bytes());
                }
            }
            None => {
                let mut text = String::with_capacity(160);
                match output.format {
                    Format::Json => line.json(&mut text),
                    Format::Plain if output.journal => {
                        let _ = write!(text, "<{}>", line.severity());
                        line.plain(&mut text, false, false);
                    }
                    Format::Plain => {
                        text.push_str(&rfc3339_now());
                        text.push(' ');
                        line.plain(&mut text, output.colors, true);
                    }
                }
                text.push('\n');
                // One write per line, so lines of different threads do not interleave.
                let _ = std::io::stderr().write_all(text.as_bytes());
            }
        }
    }
}

/// An event's message and fields, as recorded.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(&'static str, FieldValue)>,
    /// xlog's `facility` field (its `xlog(facility, level, format)` form).
    facility: Option<String>,
    /// xlog's Kamailio level (`L_ALERT`..`L_DBG`), for the syslog severity.
    kamailio_level: Option<i64>,
}

enum FieldValue {
    Int(i64),
    Uint(u64),
    Bool(bool),
    Float(f64),
    /// A string field: quoted in plain lines, as tracing's own formatter does.
    Str(String),
    /// A `%` or `?` field: written as it formats.
    Text(String),
}

impl Visit for Fields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "level" {
            self.kamailio_level = Some(value);
        }
        self.fields.push((field.name(), FieldValue::Int(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name(), FieldValue::Uint(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name(), FieldValue::Bool(value)));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.push((field.name(), FieldValue::Float(value)));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields
                .push((field.name(), FieldValue::Str(value.to_string())));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            "facility" => {
                if !text.is_empty() {
                    self.facility = Some(text.clone());
                }
                self.fields.push((field.name(), FieldValue::Text(text)));
            }
            name => self.fields.push((name, FieldValue::Text(text))),
        }
    }
}

struct Line<'a> {
    level: Level,
    target: &'a str,
    fields: &'a Fields,
}

impl Line<'_> {
    /// The syslog severity (RFC 5424 §6.2.1): Kamailio's level when xlog gave one,
    /// otherwise the event's level.
    fn severity(&self) -> u8 {
        if self.target == "xlog" {
            if let Some(level) = self.fields.kamailio_level {
                return match level {
                    i64::MIN..=-5 => 1, // L_ALERT
                    -4..=-2 => 2,       // L_BUG, L_CRIT2, L_CRIT
                    -1 => 3,
                    0 => 4,
                    1 => 5,
                    2 => 6,
                    _ => 7,
                };
            }
        }
        match self.level {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        }
    }

    /// `LEVEL target: message key=value ...`; `aligned` pads the level to five columns
    /// (stderr lines under a timestamp; syslog and the journal have columns of their own).
    fn plain(&self, out: &mut String, colors: bool, aligned: bool) {
        let padded;
        let name = if aligned {
            padded = format!("{:>5}", self.level.as_str());
            padded.as_str()
        } else {
            self.level.as_str()
        };
        if colors {
            let color = match self.level {
                Level::ERROR => "31",
                Level::WARN => "33",
                Level::INFO => "32",
                Level::DEBUG => "34",
                Level::TRACE => "35",
            };
            let _ = write!(out, "\x1b[{color}m{name}\x1b[0m ");
        } else {
            out.push_str(name);
            out.push(' ');
        }
        let _ = write!(out, "{}: {}", self.target, self.fields.message);
        for (name, value) in &self.fields.fields {
            let _ = match value {
                FieldValue::Int(v) => write!(out, " {name}={v}"),
                FieldValue::Uint(v) => write!(out, " {name}={v}"),
                FieldValue::Bool(v) => write!(out, " {name}={v}"),
                FieldValue::Float(v) => write!(out, " {name}={v}"),
                FieldValue::Str(v) => write!(out, " {name}={v:?}"),
                FieldValue::Text(v) => write!(out, " {name}={v}"),
            };
        }
    }

    /// Kamailio's JSON engine names (`level`, `module`, `message`, `pid`) plus the time
    /// and the event's fields; a field named like one of those gets a `field_` prefix.
    fn json(&self, out: &mut String) {
        use serde_json::{Map, Value};
        let mut doc = Map::new();
        doc.insert("time".into(), Value::from(rfc3339_now()));
        doc.insert("level".into(), Value::from(self.level.as_str()));
        doc.insert("pid".into(), Value::from(std::process::id()));
        doc.insert("module".into(), Value::from(self.target));
        doc.insert("message".into(), Value::from(self.fields.message.as_str()));
        for (name, value) in &self.fields.fields {
            let value = match value {
                FieldValue::Int(v) => Value::from(*v),
                FieldValue::Uint(v) => Value::from(*v),
                FieldValue::Bool(v) => Value::from(*v),
                FieldValue::Float(v) => Value::from(*v),
                FieldValue::Str(v) | FieldValue::Text(v) => Value::from(v.as_str()),
            };
            let key = if doc.contains_key(*name) {
                format!("field_{name}")
            } else {
                (*name).to_string()
            };
            doc.insert(key, value);
        }
        let _ = write!(out, "{}", Value::Object(doc));
    }
}

/// Now as `2026-12-06T17:43:20.123456Z`.
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Days since 1970-01-01 as (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Local time as RFC 3164 writes it (`Dec  6 17:43:20`), as glibc's syslog() does.
fn syslog_time() -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // SAFETY: time and localtime_r only write into values we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return "Jan  1 00:00:00".to_string();
    }
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_by_kamailio_names() {
        assert_eq!(facility_from_name("LOG_LOCAL0"), Some(16));
        assert_eq!(facility_from_name("local7"), Some(23));
        assert_eq!(facility_from_name("LOG_DAEMON"), Some(3));
        assert_eq!(facility_from_name("\"LOG_AUTHPRIV\""), Some(10));
        assert_eq!(facility_from_name("LOG_LOCAL8"), None);
    }

    #[test]
    fn levels_and_debug_numbers() {
        assert_eq!(parse_level("DEBUG"), Some("debug"));
        assert_eq!(parse_level("3"), Some("debug"));
        assert_eq!(parse_level("-1"), Some("error"));
        assert_eq!(parse_level("loud"), None);
        assert_eq!(debug_from_level(level_from_debug(4)), 4);
    }

    #[test]
    fn log_engines() {
        assert_eq!(Format::from_engine("json:M").unwrap(), Format::Json);
        assert_eq!(Format::from_engine("").unwrap(), Format::Plain);
        assert!(Format::from_engine("xml").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_428), (2025, 12, 6));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
