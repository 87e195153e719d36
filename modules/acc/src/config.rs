//! The module's parameters, checked once per load: what is built is read here, and every
//! parameter whose behaviour is not built refuses the load with its name (no parameter is
//! accepted and ignored).

use std::path::PathBuf;
use std::sync::Arc;

use chrono::format::Item;

use ferrosip_api::pv::Binder;
use ferrosip_api::{ModuleParams, PvRef};

/// One `name=$pv` of `log_extra` / `db_extra`.
pub struct Extra {
    pub name: String,
    pub pv: PvRef,
}

/// A flag parameter: -1 (unset) or a bit 0..63.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flag(Option<u64>);

impl Flag {
    pub fn set_in(self, flags: u64) -> bool {
        self.0.is_some_and(|bit| flags & bit != 0)
    }

    /// The flag's bit (0 when unset).
    pub fn bit(self) -> u64 {
        self.0.unwrap_or(0)
    }
}

/// The names of the core columns (`acc_*_column`).
struct Columns {
    pub method: String,
    pub from_tag: String,
    pub to_tag: String,
    pub callid: String,
    pub sip_code: String,
    pub sip_reason: String,
    pub time: String,
}

/// `time_mode`: what a record says of its time beside `timestamp=` (log) and the
/// `time` column (database), Kamailio's modes 0-4.
pub enum TimeMode {
    /// 0: nothing more.
    Seconds,
    /// 1: the seconds again in `time_attr` (database) and the microseconds in
    /// `time_exten` (log and database).
    Micros { attr: String, exten: String },
    /// 2: seconds with milliseconds (`1733450000.123`) in `time_attr`.
    Millis { attr: String },
    /// 3 (local time) and 4 (UTC): `time_format` (strftime) in `time_attr`.
    Formatted {
        attr: String,
        items: Vec<Item<'static>>,
        utc: bool,
    },
}

pub struct AccConfig {
    pub log_flag: Flag,
    pub log_missed_flag: Flag,
    pub db_flag: Flag,
    pub db_missed_flag: Flag,
    pub failed_transaction_flag: Flag,
    pub prepare_flag: Flag,
    pub prepare_always: bool,
    /// Reply codes `failed_transaction_flag` does not account.
    pub failed_filter: Vec<u16>,
    /// `early_media`: a provisional reply with a body is accounted like a final.
    pub early_media: bool,
    /// `report_ack`: the ACK of an accounted 2xx gets a record of its own.
    pub report_ack: bool,
    /// `report_cancels`: CANCEL transactions are watched like the others.
    pub report_cancels: bool,
    /// `detect_direction`: From and To tags swapped in records of upstream requests.
    pub detect_direction: bool,
    /// `reason_from_hf`: the reason is a reply's Reason header when it has one.
    pub reason_from_hf: bool,
    pub time_mode: TimeMode,
    pub log_level: tracing::Level,
    pub log_extra: Vec<Extra>,
    pub db_extra: Vec<Extra>,
    pub extra_nullable: bool,
    pub db_url: Option<String>,
    pub table_acc: String,
    pub table_missed: String,
    pub version_check: bool,
    /// Every column of a database record, core then `db_extra`, shared by the records.
    pub db_columns: Arc<[String]>,
    pub writer: WriterConfig,
    /// Dialog-based CDRs, when `cdr_enable` is 1.
    pub cdr: Option<CdrConfig>,
}

/// Bounds of the writer (Ferrosip's own parameters; see docs/accounting.md).
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Records waiting in memory for the writer.
    pub queue_size: usize,
    /// Records per insert transaction.
    pub batch_size: usize,
    /// Where records wait while the database is unreachable.
    pub spool_dir: PathBuf,
    /// Records the spool holds at most; past it a record is dropped, logged and counted.
    pub spool_max_records: u64,
    /// Longest wait for one batch insert before the batch goes to the spool.
    pub db_timeout: std::time::Duration,
}

fn flag(p: &ModuleParams, name: &str) -> Result<Flag, String> {
    match p.int(name) {
        -1 => Ok(Flag(None)),
        n @ 0..=63 => Ok(Flag(Some(1 << n))),
        n => Err(format!("{name} = {n}: a flag is 0..63 (or -1 for none)")),
    }
}

/// Refuses a parameter set to anything but its unbuilt-free value.
fn refuse_int(p: &ModuleParams, name: &str, ok: &[i64], why: &str) -> Result<(), String> {
    let v = p.int(name);
    if p.is_set(name) && !ok.contains(&v) {
        return Err(format!("modparam(\"acc\", \"{name}\", {v}): {why}"));
    }
    Ok(())
}

fn refuse_set(p: &ModuleParams, name: &str, why: &str) -> Result<(), String> {
    if p.is_set(name) {
        return Err(format!("modparam(\"acc\", \"{name}\", ...): {why}"));
    }
    Ok(())
}

/// `name=$pv;name2=$pv2` as Kamailio writes `log_extra` / `db_extra`.
pub fn parse_extras(
    param: &str,
    text: &str,
    binder: &Binder<'_>,
    max: usize,
    columns: bool,
) -> Result<Vec<Extra>, String> {
    let mut out = Vec::new();
    for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, pv)) = item.split_once('=') else {
            return Err(format!("{param}: \"{item}\" is not name=$pv"));
        };
        let (name, pv) = (name.trim(), pv.trim());
        if columns {
            ferrosip_db::check_identifier(name).map_err(|e| format!("{param}: {e}"))?;
        } else if name.is_empty() {
            return Err(format!("{param}: \"{item}\" has no name"));
        }
        let pv = binder
            .parse_pv(pv)
            .map_err(|e| format!("{param}: \"{pv}\": {e}"))?;
        out.push(Extra {
            name: name.to_string(),
            pv,
        });
    }
    if out.len() > max {
        return Err(format!(
            "{param}: {} values, more than acc_extra_size ({max})",
            out.len()
        ));
    }
    Ok(out)
}

/// A 0/1 switch.
fn bool_param(p: &ModuleParams, name: &str) -> Result<bool, String> {
    match p.int(name) {
        0 => Ok(false),
        1 => Ok(true),
        n => Err(format!("{name} = {n}: 0 or 1")),
    }
}

/// `time_mode` with the parameters it uses; those it does not use refuse the load (a
/// name set for nothing is a mistake worth knowing).
fn time_mode(p: &ModuleParams) -> Result<TimeMode, String> {
    let mode = p.int("time_mode");
    let used: &[&str] = match mode {
        0 => &[],
        1 => &["time_attr", "time_exten"],
        2 => &["time_attr"],
        3 | 4 => &["time_attr", "time_format"],
        n => return Err(format!("time_mode = {n}: 0..4")),
    };
    for name in ["time_attr", "time_exten", "time_format"] {
        if p.is_set(name) && !used.contains(&name) {
            return Err(format!(
                "modparam(\"acc\", \"{name}\", ...): not used by time_mode {mode}"
            ));
        }
    }
    // Kamailio's defaults for the names.
    let name = |param: &str, default: &str| -> String {
        Some(p.string(param))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    let attr = name("time_attr", "time_attr");
    Ok(match mode {
        0 => TimeMode::Seconds,
        1 => TimeMode::Micros {
            attr,
            exten: name("time_exten", "time_exten"),
        },
        2 => TimeMode::Millis { attr },
        _ => {
            let format = p.string("time_format");
            let items = chrono::format::StrftimeItems::new(&format)
                .parse_to_owned()
                .map_err(|_| format!("time_format \"{format}\": not a strftime format"))?;
            TimeMode::Formatted {
                attr,
                items,
                utc: mode == 4,
            }
        }
    })
}

/// Dialog-based CDRs (`cdr_enable=1`): written when a dialog ends, through the
/// `dialog` module.
pub struct CdrConfig {
    /// `cdr_log_enable`: a log line per CDR.
    pub log: bool,
    /// `cdr_start_on_confirmed`: the start is the 2xx, not the INVITE.
    pub start_on_confirmed: bool,
    /// `cdr_extra`: values of the message that ended the dialog (the BYE); only
    /// `$dlg_var(...)` ones when no message did (failed and expired dialogs).
    pub extra: Vec<Extra>,
    pub extra_nullable: bool,
    /// `cdr_start_id`, `cdr_end_id`, `cdr_duration_id`: names in the log and columns.
    pub start_id: String,
    pub end_id: String,
    pub duration_id: String,
    /// `cdr_skip`: a dialog with this variable set gets no CDR.
    pub skip: Option<bytes::Bytes>,
    /// `cdrs_table`: the table (empty: no database CDRs).
    pub table: Option<Arc<str>>,
    /// The table's columns, in the order of the values.
    pub columns: Arc<[String]>,
    /// `cdr_on_failed`: CDRs of calls never answered.
    pub on_failed: bool,
    /// `cdr_expired_dlg_enable`: CDRs of dialogs ended by their timeout.
    pub expired: bool,
    /// `cdr_duration_mode`: digits of the seconds fraction in the log (0, 3 or 6).
    pub fraction_digits: u8,
}

fn cdr_config(
    p: &ModuleParams,
    binder: &Binder<'_>,
    db_url: bool,
) -> Result<Option<CdrConfig>, String> {
    if !bool_param(p, "cdr_enable")? {
        for name in [
            "cdr_start_on_confirmed",
            "cdr_extra",
            "cdr_start_id",
            "cdr_end_id",
            "cdr_duration_id",
            "cdr_duration_mode",
            "cdr_skip",
            "cdrs_table",
            "cdr_expired_dlg_enable",
        ] {
            if p.is_set(name) {
                return Err(format!(
                    "modparam(\"acc\", \"{name}\", ...): CDRs are off (cdr_enable is 0)"
                ));
            }
        }
        return Ok(None);
    }
    refuse_set(
        p,
        "cdr_facility",
        "CDRs go to Ferrosip's log (target \"acc\"); per-module syslog facilities are not built",
    )?;
    let max_extra = usize::try_from(p.int("cdr_extra_size"))
        .map_err(|_| "cdr_extra_size must be >= 0".to_string())?;
    let extra = parse_extras("cdr_extra", &p.string("cdr_extra"), binder, max_extra, true)?;
    let id = |name: &str| -> Result<String, String> {
        let v = p.string(name);
        ferrosip_db::check_identifier(&v).map_err(|e| format!("{name}: {e}"))?;
        Ok(v)
    };
    let (start_id, end_id, duration_id) = (
        id("cdr_start_id")?,
        id("cdr_end_id")?,
        id("cdr_duration_id")?,
    );
    let table = Some(p.string("cdrs_table")).filter(|t| !t.is_empty());
    if let Some(t) = &table {
        ferrosip_db::check_identifier(t).map_err(|e| format!("cdrs_table: {e}"))?;
        if !db_url {
            return Err("cdrs_table is set but db_url is not".into());
        }
    }
    let fraction_digits = match p.int("cdr_duration_mode") {
        0 => 0,
        1 => 3,
        2 => 6,
        n => {
            return Err(format!(
                "cdr_duration_mode = {n}: 0 (seconds), 1 (ms) or 2 (us)"
            ))
        }
    };
    let columns = [&start_id, &end_id, &duration_id]
        .into_iter()
        .cloned()
        .chain(extra.iter().map(|e| e.name.clone()))
        .collect();
    Ok(Some(CdrConfig {
        log: bool_param(p, "cdr_log_enable")?,
        start_on_confirmed: bool_param(p, "cdr_start_on_confirmed")?,
        extra,
        extra_nullable: bool_param(p, "cdr_extra_nullable")?,
        start_id,
        end_id,
        duration_id,
        skip: Some(p.string("cdr_skip"))
            .filter(|s| !s.is_empty())
            .map(bytes::Bytes::from),
        table: table.map(Arc::from),
        columns,
        on_failed: bool_param(p, "cdr_on_failed")?,
        expired: bool_param(p, "cdr_expired_dlg_enable")?,
        fraction_digits,
    }))
}

impl AccConfig {
    pub fn from_params(p: &ModuleParams, binder: &Binder<'_>) -> Result<AccConfig, String> {
        refuse_int(
            p,
            "db_insert_mode",
            &[0, 2],
            "INSERT DELAYED is not built; every insert is asynchronous already",
        )?;
        let time_mode = time_mode(p)?;
        refuse_set(p, "multi_leg_info", "multi-leg accounting is not built")?;
        refuse_int(
            p,
            "clone_msg",
            &[1],
            "the request is always kept with its transaction (only 1 is built)",
        )?;
        refuse_set(
            p,
            "log_facility",
            "records go to Ferrosip's log (target \"acc\"); per-module syslog facilities are not built",
        )?;
        let max_extra = usize::try_from(p.int("acc_extra_size"))
            .map_err(|_| "acc_extra_size must be >= 0".to_string())?;
        let failed_filter = p
            .string("failed_filter")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u16>()
                    .ok()
                    .filter(|c| (300..700).contains(c))
                    .ok_or_else(|| format!("failed_filter: \"{s}\" is not a reply code >= 300"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let log_level = match p.int("log_level") {
            i64::MIN..=-1 => tracing::Level::WARN,
            0..=2 => tracing::Level::INFO,
            _ => tracing::Level::DEBUG,
        };
        let log_extra = parse_extras(
            "log_extra",
            &p.string("log_extra"),
            binder,
            max_extra,
            false,
        )?;
        let db_extra = parse_extras("db_extra", &p.string("db_extra"), binder, max_extra, true)?;
        let column = |name: &str| -> Result<String, String> {
            let v = p.string(name);
            ferrosip_db::check_identifier(&v).map_err(|e| format!("{name}: {e}"))?;
            Ok(v)
        };
        let columns = Columns {
            method: column("acc_method_column")?,
            from_tag: column("acc_from_tag_column")?,
            to_tag: column("acc_to_tag_column")?,
            callid: column("acc_callid_column")?,
            sip_code: column("acc_sip_code_column")?,
            sip_reason: column("acc_sip_reason_column")?,
            time: column("acc_time_column")?,
        };
        let time_columns: Vec<String> = match &time_mode {
            TimeMode::Seconds => Vec::new(),
            TimeMode::Micros { attr, exten } => vec![attr.clone(), exten.clone()],
            TimeMode::Millis { attr } | TimeMode::Formatted { attr, .. } => vec![attr.clone()],
        };
        for c in &time_columns {
            ferrosip_db::check_identifier(c).map_err(|e| format!("time_attr / time_exten: {e}"))?;
        }
        let db_columns: Arc<[String]> = [
            &columns.method,
            &columns.from_tag,
            &columns.to_tag,
            &columns.callid,
            &columns.sip_code,
            &columns.sip_reason,
            &columns.time,
        ]
        .into_iter()
        .cloned()
        .chain(time_columns)
        .chain(db_extra.iter().map(|e| e.name.clone()))
        .collect();
        let db_url = Some(p.string("db_url")).filter(|u| !u.is_empty());
        let cdr = cdr_config(p, binder, db_url.is_some())?;
        let db_flag = flag(p, "db_flag")?;
        let db_missed_flag = flag(p, "db_missed_flag")?;
        if db_url.is_none() && (db_flag.0.is_some() || db_missed_flag.0.is_some()) {
            return Err("db_flag / db_missed_flag are set but db_url is not".into());
        }
        let table_acc = column("db_table_acc")?;
        let table_missed = column("db_table_missed_calls")?;
        let positive = |name: &str, max: i64| -> Result<i64, String> {
            match p.int(name) {
                n if (1..=max).contains(&n) => Ok(n),
                n => Err(format!("{name} = {n}: must be 1..{max}")),
            }
        };
        let writer = WriterConfig {
            queue_size: positive("queue_size", 10_000_000)? as usize,
            batch_size: positive("batch_size", 10_000)? as usize,
            spool_dir: PathBuf::from(p.string("spool_dir")),
            spool_max_records: positive("spool_max_records", i64::MAX)? as u64,
            db_timeout: std::time::Duration::from_millis(positive("db_timeout", 600_000)? as u64),
        };
        if db_url.is_some() && writer.spool_dir.as_os_str().is_empty() {
            return Err("spool_dir must name a directory".into());
        }
        Ok(AccConfig {
            log_flag: flag(p, "log_flag")?,
            log_missed_flag: flag(p, "log_missed_flag")?,
            db_flag,
            db_missed_flag,
            failed_transaction_flag: flag(p, "failed_transaction_flag")?,
            prepare_flag: flag(p, "acc_prepare_flag")?,
            prepare_always: p.int("acc_prepare_always") != 0,
            failed_filter,
            early_media: bool_param(p, "early_media")?,
            report_ack: bool_param(p, "report_ack")?,
            report_cancels: bool_param(p, "report_cancels")?,
            detect_direction: bool_param(p, "detect_direction")?,
            reason_from_hf: bool_param(p, "reason_from_hf")?,
            time_mode,
            log_level,
            log_extra,
            db_extra,
            extra_nullable: p.int("acc_extra_nullable") != 0,
            db_url,
            table_acc,
            table_missed,
            version_check: p.int("db_version_check") != 0,
            db_columns,
            writer,
            cdr,
        })
    }

    /// Any of the flags that make a transaction watched.
    pub fn watches(&self, flags: u64) -> bool {
        self.prepare_always
            || [
                self.log_flag,
                self.log_missed_flag,
                self.db_flag,
                self.db_missed_flag,
                self.failed_transaction_flag,
                self.prepare_flag,
            ]
            .iter()
            .any(|f| f.set_in(flags))
    }

    /// Whether any flag is configured at all (else no observer is needed).
    pub fn any_flag(&self) -> bool {
        self.prepare_always
            || [
                self.log_flag,
                self.log_missed_flag,
                self.db_flag,
                self.db_missed_flag,
                self.prepare_flag,
            ]
            .iter()
            .any(|f| f.0.is_some())
    }
}
