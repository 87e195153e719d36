//! Log lines through `tracing`, with the message's Call-ID, method and source address as
//! structured fields.

use bytes::Bytes;
use ferrosip_api::{FnError, FnResult, MsgContext, Verdict};

/// Kamailio's log levels (`L_ALERT` = -5 .. `L_DBG` = 3).
pub const L_ALERT: i64 = -5;
pub const L_BUG: i64 = -4;
pub const L_CRIT2: i64 = -3;
pub const L_CRIT: i64 = -2;
pub const L_ERR: i64 = -1;
pub const L_WARN: i64 = 0;
pub const L_NOTICE: i64 = 1;
pub const L_INFO: i64 = 2;
pub const L_DBG: i64 = 3;

/// A level given as `L_ERR`... or as a number (what a PV holding a level gives).
pub fn parse_level(s: &[u8]) -> Result<i64, FnError> {
    let t = String::from_utf8_lossy(s);
    let t = t.trim();
    Ok(match t {
        "L_ALERT" => L_ALERT,
        "L_BUG" => L_BUG,
        "L_CRIT2" => L_CRIT2,
        "L_CRIT" => L_CRIT,
        "L_ERR" => L_ERR,
        "L_WARN" => L_WARN,
        "L_NOTICE" => L_NOTICE,
        "L_INFO" => L_INFO,
        "L_DBG" => L_DBG,
        other => other
            .parse::<i64>()
            .map_err(|_| FnError::new(format!("unknown log level \"{other}\"")))?,
    })
}

/// The `tracing` level for a Kamailio level: alert, bug, crit and err are errors, warn a
/// warning, notice and info are info, debug (and anything above) debug.
pub fn tracing_level(level: i64) -> tracing::Level {
    match level {
        i64::MIN..=L_ERR => tracing::Level::ERROR,
        L_WARN => tracing::Level::WARN,
        L_NOTICE | L_INFO => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    }
}

/// A syslog facility by Kamailio's names (`LOG_LOCAL0`, `LOG_DAEMON`; the `LOG_` prefix
/// and case optional): the number RFC 3164 multiplies by 8. The server's logger uses it
/// for `log_facility=` too.
pub fn syslog_facility(name: &str) -> Option<u8> {
    let upper = name.trim().trim_matches('"').to_ascii_uppercase();
    let bare = upper.strip_prefix("LOG_").unwrap_or(&upper);
    const NAMES: [(&str, u8); 20] = [
        ("KERN", 0),
        ("USER", 1),
        ("MAIL", 2),
        ("DAEMON", 3),
        ("AUTH", 4),
        ("SYSLOG", 5),
        ("LPR", 6),
        ("NEWS", 7),
        ("UUCP", 8),
        ("CRON", 9),
        ("AUTHPRIV", 10),
        ("FTP", 11),
        ("LOCAL0", 16),
        ("LOCAL1", 17),
        ("LOCAL2", 18),
        ("LOCAL3", 19),
        ("LOCAL4", 20),
        ("LOCAL5", 21),
        ("LOCAL6", 22),
        ("LOCAL7", 23),
    ];
    NAMES.iter().find(|(n, _)| *n == bare).map(|(_, f)| *f)
}

/// The module's parameters that shape every line: `prefix` before the message, and
/// `log_facility` for lines whose call names none.
#[derive(Debug, Default)]
pub struct XlogConfig {
    pub prefix: String,
    pub facility: Option<String>,
}

/// Emits `text` at `level`; always 1, as Kamailio's xlog.
pub fn emit(ctx: &MsgContext, level: i64, facility: Option<&[u8]>, text: &[u8]) -> FnResult {
    emit_with(&XlogConfig::default(), ctx, level, facility, text)
}

/// [`emit`] with the module's `prefix` and `log_facility`. A facility that is not a
/// syslog name is an error (as Kamailio's fixup refuses it).
pub fn emit_with(
    cfg: &XlogConfig,
    ctx: &MsgContext,
    level: i64,
    facility: Option<&[u8]>,
    text: &[u8],
) -> FnResult {
    let call_id = String::from_utf8_lossy(ctx.msg.call_id().unwrap_or_default());
    let method = match ctx.msg.method_bytes() {
        Some(m) => String::from_utf8_lossy(m).into_owned(),
        None => ctx
            .msg
            .cseq()
            .map(|c| String::from_utf8_lossy(c.method_bytes()).into_owned())
            .unwrap_or_default(),
    };
    let src = ctx.net.source;
    let msg = String::from_utf8_lossy(text);
    let msg = msg.trim_end_matches(['\r', '\n']);
    let prefix = &cfg.prefix;
    let facility = match facility {
        Some(f) => {
            let f = String::from_utf8_lossy(f);
            if syslog_facility(&f).is_none() {
                return Err(FnError::new(format!("unknown syslog facility \"{f}\"")));
            }
            f.into_owned()
        }
        None => cfg.facility.clone().unwrap_or_default(),
    };
    macro_rules! ev {
        ($lvl:expr) => {
            tracing::event!(target: "xlog", $lvl, call_id = %call_id, method = %method, src = %src, facility = %facility, level = level, "{prefix}{msg}")
        };
    }
    match tracing_level(level) {
        tracing::Level::ERROR => ev!(tracing::Level::ERROR),
        tracing::Level::WARN => ev!(tracing::Level::WARN),
        tracing::Level::INFO => ev!(tracing::Level::INFO),
        _ => ev!(tracing::Level::DEBUG),
    }
    Ok(Verdict::TRUE)
}

pub fn xlog(cfg: &XlogConfig, ctx: &mut MsgContext, text: Bytes) -> FnResult {
    emit_with(cfg, ctx, L_ERR, None, &text)
}

pub fn xlog_level(cfg: &XlogConfig, ctx: &mut MsgContext, level: Bytes, text: Bytes) -> FnResult {
    let l = parse_level(&level)?;
    emit_with(cfg, ctx, l, None, &text)
}

pub fn xlog_facility(
    cfg: &XlogConfig,
    ctx: &mut MsgContext,
    facility: Bytes,
    level: Bytes,
    text: Bytes,
) -> FnResult {
    let l = parse_level(&level)?;
    emit_with(cfg, ctx, l, Some(&facility), &text)
}
