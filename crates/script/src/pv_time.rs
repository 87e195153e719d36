//! The time pseudo-variables (`$Ts`, `$TS`, `$Tb`, `$Tf`, `$TF`, `$TV(...)`,
//! `$timef(fmt)`, `$utimef(fmt)`). They read the registry's clock, never the system's, so
//! that `ferrosip test` decides what time a route sees.
//!
//! Kamailio caches `$Ts`, `$Tf` and `$TV(s|u)` per message and has uncached twins (`$TS`,
//! `$TF`, `$TV(sn|un)`); here every read is of the clock at that moment, so both spellings
//! give the same value (a route never spans a second boundary it could observe
//! differently, except by sleeping, and then the fresh value is the useful one).

use std::ffi::CString;
use std::sync::Arc;
use std::time::Duration;

use ferrosip_api::pv::{Binder, FnPv, PvClass, PvParamRule};
use ferrosip_api::{Clock, ModuleBuilder, MsgContext, Pv, Value};

/// Registers the time pseudo-variables on the core (`pv`) module.
pub fn declare(m: &mut ModuleBuilder<'_>) {
    let clock = m.clock();
    let started = clock.since_epoch();
    let ts = |clock: &Clock| Value::Int(clock.unix_secs() as i64);
    for (name, doc) in [
        ("Ts", "Unix time in seconds."),
        ("TS", "Unix time in seconds (as $Ts)."),
    ] {
        let clock = clock.clone();
        m.pv_fixed(name, doc, fixed(name, move |_| ts(&clock)));
    }
    m.pv_fixed(
        "Tb",
        "Unix time in seconds when the server started.",
        fixed("Tb", move |_| Value::Int(started.as_secs() as i64)),
    );
    for (name, doc) in [
        (
            "Tf",
            "Local time as text, like ctime(3) without the newline: `Sat Dec  5 20:00:00 2026`.",
        ),
        ("TF", "Local time as text (as $Tf)."),
    ] {
        let clock = clock.clone();
        m.pv_fixed(
            name,
            doc,
            fixed(name, move |_| {
                Value::Str(local_strftime("%a %b %e %H:%M:%S %Y", clock.since_epoch()).into())
            }),
        );
    }
    m.pv("TV", TimevalClass);
    m.pv("timef", StrftimeClass { utc: false });
    m.pv("utimef", StrftimeClass { utc: true });
}

fn fixed<G>(name: &'static str, get: G) -> FnPv<G>
where
    G: Fn(&MsgContext) -> Value + Send + Sync + 'static,
{
    FnPv {
        name,
        get,
        set: None,
    }
}

/// `$TV(s)`/`$TV(sn)` seconds, `$TV(u)`/`$TV(un)` the microseconds within the second,
/// `$TV(Sn)` `seconds.microseconds` as text, `$TV(Sm)` milliseconds since the epoch.
struct TimevalClass;

impl PvClass for TimevalClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn doc(&self) -> &'static str {
        "Time of day: `$TV(s)`/`$TV(sn)` Unix seconds, `$TV(u)`/`$TV(un)` microseconds within \
         the second, `$TV(Sn)` \"seconds.microseconds\", `$TV(Sm)` Unix milliseconds."
    }

    fn bind(&self, param: Option<&str>, binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let clock = binder.registry.clock();
        let field = param.unwrap_or("").trim();
        let get: fn(Duration) -> Value = match field {
            "s" | "sn" => |t| Value::Int(t.as_secs() as i64),
            "u" | "un" => |t| Value::Int(i64::from(t.subsec_micros())),
            "Sn" => |t| Value::Str(format!("{}.{:06}", t.as_secs(), t.subsec_micros()).into()),
            "Sm" => |t| Value::Int(t.as_millis() as i64),
            other => {
                return Err(format!(
                    "$TV({other}): the field is one of s, u, sn, un, Sn, Sm"
                ))
            }
        };
        Ok(Arc::new(fixed("TV", move |_| get(clock.since_epoch()))))
    }
}

/// `$timef(format)` (local time) and `$utimef(format)` (UTC): the time formatted by
/// strftime(3).
struct StrftimeClass {
    utc: bool,
}

impl PvClass for StrftimeClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn doc(&self) -> &'static str {
        if self.utc {
            "UTC time formatted by strftime(3): `$utimef(%Y-%m-%d %H:%M:%S)`."
        } else {
            "Local time formatted by strftime(3): `$timef(%Y-%m-%d %H:%M:%S)`."
        }
    }

    fn bind(&self, param: Option<&str>, binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let format = param.unwrap_or("");
        if format.is_empty() {
            return Err("the strftime format is missing".into());
        }
        if format.contains('\0') {
            return Err("the format contains a NUL byte".into());
        }
        let format = format.to_string();
        let clock = binder.registry.clock();
        let utc = self.utc;
        let name = if utc { "utimef" } else { "timef" };
        Ok(Arc::new(fixed(name, move |_| {
            Value::Str(strftime(&format, clock.since_epoch(), utc).into())
        })))
    }
}

fn local_strftime(format: &str, since_epoch: Duration) -> String {
    strftime(format, since_epoch, false)
}

/// strftime(3) of a time since the epoch, in local time or UTC. Formats come from the
/// script (checked at load), never from the network.
fn strftime(format: &str, since_epoch: Duration, utc: bool) -> String {
    let Ok(format) = CString::new(format) else {
        return String::new();
    };
    let secs = since_epoch.as_secs() as libc::time_t;
    // SAFETY: `tm` is plain data that localtime_r/gmtime_r fill; strftime writes at most
    // `buf.len()` bytes into `buf` and returns how many it wrote (0 when it did not fit).
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let filled = if utc {
            libc::gmtime_r(&secs, &mut tm)
        } else {
            libc::localtime_r(&secs, &mut tm)
        };
        if filled.is_null() {
            return String::new();
        }
        let mut buf = [0u8; 256];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), format.as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}
