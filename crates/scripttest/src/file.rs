//! The test file format (docs/testing.md): what one `*.test.toml` says, as serde reads
//! it. Unknown keys are refused, so a misspelt assertion is an error (exit 2), never an
//! assertion silently not made.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// One test file: a config and the tests run against it.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The config, relative to the test file.
    pub config: String,
    /// `-A` defines; `{db}` in a value is the URL of the test's SQLite database.
    #[serde(default)]
    pub defines: Vec<String>,
    /// The proxy's address (UDP and TCP are bound there); by default the config's first
    /// `listen=`, else 127.0.0.1 on the config's `port`.
    pub proxy: Option<String>,
    /// A SQLite database of each test's own, created and seeded before it runs.
    pub database: Option<Database>,
    /// DNS answers: a host name to its addresses; a name not listed does not resolve.
    #[serde(default)]
    pub dns: BTreeMap<String, Vec<String>>,
    /// The wall-clock time the tests start at (`$Ts`, `$TV`, expiry times): a TOML
    /// date-time (`2026-03-01T09:00:00Z`) or Unix seconds; by default the real time when
    /// the test starts. Only `wait` steps move it.
    pub now: Option<StartTime>,
    /// Methods of requests left out of every step's `forwards`: what the server sends on
    /// its own real-time timers (dispatcher's OPTIONS probes), which no step can expect.
    #[serde(default)]
    pub ignore_requests: Vec<String>,
    #[serde(default, rename = "test")]
    pub tests: Vec<Spanned<Test>>,
}

/// `now = ...`: when the test clock starts.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum StartTime {
    UnixSeconds(u64),
    DateTime(toml::value::Datetime),
}

impl StartTime {
    pub fn to_system_time(&self) -> Result<std::time::SystemTime, String> {
        let secs = match self {
            StartTime::UnixSeconds(secs) => *secs,
            StartTime::DateTime(dt) => datetime_to_unix(dt)?,
        };
        Ok(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }
}

/// Seconds since the epoch of a TOML date-time with a date, a time and an offset (a
/// local time would depend on the machine running the test).
fn datetime_to_unix(dt: &toml::value::Datetime) -> Result<u64, String> {
    let bad = || format!("now = {dt}: give a date, a time and an offset (2026-03-01T09:00:00Z)");
    let (Some(date), Some(time), Some(offset)) = (dt.date, dt.time, dt.offset) else {
        return Err(bad());
    };
    let offset_minutes = match offset {
        toml::value::Offset::Z => 0_i64,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    let days = days_from_civil(i64::from(date.year), date.month.into(), date.day.into());
    let secs = days * 86_400
        + i64::from(time.hour) * 3_600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    u64::try_from(secs).map_err(|_| bad())
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn toml_datetimes_become_unix_seconds() {
        let file: toml::Value = toml::from_str(
            "a = 2026-03-01T09:00:00Z\nb = 1970-01-01T01:00:00+01:00\nc = 2000-02-29T00:00:00Z",
        )
        .unwrap();
        let at = |k: &str| match file[k].clone() {
            toml::Value::Datetime(dt) => datetime_to_unix(&dt).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(at("a"), 1_772_355_600);
        assert_eq!(at("b"), 0);
        assert_eq!(at("c"), 951_782_400);
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The modules whose tables are created (as `ferrosip db init --modules`).
    pub modules: Vec<String>,
    #[serde(default)]
    pub rows: Vec<Row>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub table: String,
    pub values: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Test {
    pub name: String,
    /// Rows seeded for this test only, after the file's.
    #[serde(default)]
    pub rows: Vec<Row>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<Step>>,
}

/// One thing that happens to the proxy, and what must come out of it.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Step {
    // ----- what happens (exactly one) -----
    /// A message (SIP text) received by the proxy.
    pub send: Option<String>,
    /// A downstream hop answers a request the proxy forwarded, with this status.
    pub respond: Option<u16>,
    /// Time passes on the test clock (tm timers fire): "500ms", "5s", "2m".
    pub wait: Option<String>,

    // ----- how -----
    /// `send`: who sends it, `[proto:]host:port` (default udp:192.0.2.10:5060).
    pub from: Option<String>,
    /// `send`: credentials answering the last 401/407 the proxy sent in this test.
    pub auth: Option<Auth>,
    /// `respond`: which forwarded request is answered, 1 for the test's first (default:
    /// the last one).
    pub forward: Option<usize>,
    /// `respond`: the reason phrase (default: the usual one for the status).
    pub reason: Option<String>,
    /// `respond`: headers added to the reply.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `respond`: a body (with `content_type`).
    pub body: Option<String>,
    pub content_type: Option<String>,

    // ----- what must come out -----
    /// Every reply the proxy sent during the step, in order (retransmissions left out).
    pub replies: Option<Vec<ExpectMessage>>,
    /// Every request the proxy sent during the step, in order (retransmissions left
    /// out).
    pub forwards: Option<Vec<ExpectMessage>>,
    /// The routes that ran, in order: `request_route`, `failure_route[NAME]`, ...
    pub routes: Option<Vec<String>>,
    /// Which route run `pv`/`flags` look at (default: the step's first).
    pub route: Option<String>,
    /// Pseudo-variables at the end of that route run: `"$du" = "sip:..."`; `"<null>"`
    /// for no value. `$sht(table=>key)` reads an htable entry.
    #[serde(default)]
    pub pv: BTreeMap<String, toml::Value>,
    /// Message flags set at the end of that route run.
    #[serde(default)]
    pub flags: Vec<u32>,
    /// Message flags not set at the end of that route run.
    #[serde(default)]
    pub no_flags: Vec<u32>,
    /// Log lines (a substring each) the step must have logged.
    #[serde(default)]
    pub log: Vec<String>,
    /// Substrings no log line of the step may contain.
    #[serde(default)]
    pub no_log: Vec<String>,
    /// Database rows after the step.
    #[serde(default)]
    pub db: Vec<ExpectRows>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub user: String,
    pub password: String,
}

/// An expected message: a bare status (`200`) or a table.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum ExpectMessage {
    Status(u16),
    Full(ExpectFull),
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct ExpectFull {
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub method: Option<String>,
    /// The request URI.
    pub ruri: Option<String>,
    /// Where it went: `proto:host:port`.
    pub to: Option<String>,
    /// Header values (the first header of that name, compared whole); a list for every
    /// header of that name in order.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValues>,
    /// Headers that must be absent.
    #[serde(default)]
    pub absent: Vec<String>,
    pub body: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum HeaderValues {
    One(String),
    All(Vec<String>),
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ExpectRows {
    pub table: String,
    /// Column = value conditions (all must hold).
    #[serde(default, rename = "where")]
    pub conditions: BTreeMap<String, toml::Value>,
    /// How many rows match.
    pub count: usize,
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// A duration as a test writes it: `250ms`, `5s`, `2m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| (&t[..i], &t[i..]));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {text:?} (write 500ms, 5s or 2m)"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        _ => return Err(format!("bad duration {text:?} (write 500ms, 5s or 2m)")),
    };
    Ok(std::time::Duration::from_millis(ms))
}
