//! `acc`: Transaction accounting to syslog and database (CDR-like records of requests and missed calls).

mod acc;
mod cdr;
mod config;
mod record;
mod writer;

use ferrosip_api::{Module, ModuleBuilder, ParamType, Value};

/// The `acc` module.
pub struct AccModule;

impl Module for AccModule {
    fn name(&self) -> &'static str {
        "acc"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Transaction accounting to the log and the database: a record for each transaction whose flags ask for one, written when its final reply goes upstream (and for early media, the ACK of the 2xx, CANCELs as configured), and missed calls (an INVITE's first failed attempt). Database records go through a bounded queue to a writer thread and, while the database is down, to an on-disk spool replayed when it is back (docs/accounting.md).");
        m.needs("tm");
        m.param(
            "early_media",
            ParamType::Int,
            0_i64,
            "When 1, a provisional reply with a body (183 with SDP: early media) going upstream is accounted like a final one.",
        );
        m.param("failed_transaction_flag", ParamType::Int, -1_i64, "Message flag that makes failed transactions (final reply >= 300) accounted (-1: none).");
        m.param(
            "failed_filter",
            ParamType::Str,
            Value::Null,
            "Comma-separated reply codes not accounted as failed.",
        );
        m.param(
            "report_ack",
            ParamType::Int,
            0_i64,
            "When 1, the ACK of an accounted 2xx gets a record of its own (method ACK, the 2xx's code), when t_relay() or t_check_trans() sees it.",
        );
        m.param(
            "report_cancels",
            ParamType::Int,
            0_i64,
            "When 1, a CANCEL's own transaction is accounted with its flags (its 200 Canceling).",
        );
        m.param(
            "multi_leg_info",
            ParamType::Str,
            Value::Null,
            "AVPs describing call legs (\"name=$avp(x);...\").",
        );
        m.param(
            "detect_direction",
            ParamType::Int,
            0_i64,
            "When 1, records of upstream in-dialog requests (From tag not the ftag of this proxy's Record-Route; after loose_route()) carry the To tag as from_tag and the From tag as to_tag.",
        );
        m.param("acc_prepare_flag", ParamType::Int, -1_i64, "Flag that makes tm keep the data needed by acc even when no accounting flag is set yet (-1: none).");
        m.param(
            "acc_prepare_always",
            ParamType::Int,
            0_i64,
            "When 1, acc data is always prepared as if acc_prepare_flag were set.",
        );
        m.param(
            "reason_from_hf",
            ParamType::Int,
            0_i64,
            "When 1, the reason of a record is the whole Reason header of the reply when it has one.",
        );
        m.param(
            "acc_extra_nullable",
            ParamType::Int,
            0_i64,
            "When 1, empty extra values are stored as NULL in the database.",
        );
        m.param(
            "log_flag",
            ParamType::Int,
            -1_i64,
            "Message flag enabling syslog accounting of the transaction (-1: none).",
        );
        m.param(
            "log_missed_flag",
            ParamType::Int,
            -1_i64,
            "Message flag enabling syslog accounting of missed calls (-1: none).",
        );
        m.param(
            "log_level",
            ParamType::Int,
            1_i64,
            "Log level of syslog records (1 = L_NOTICE).",
        );
        m.param(
            "log_facility",
            ParamType::Str,
            "LOG_DAEMON",
            "Syslog facility of accounting records.",
        );
        m.param(
            "log_extra",
            ParamType::Str,
            Value::Null,
            "Extra values in syslog records (\"name=$pv;...\").",
        );
        m.param(
            "db_flag",
            ParamType::Int,
            -1_i64,
            "Message flag enabling database accounting (-1: none).",
        );
        m.param(
            "db_missed_flag",
            ParamType::Int,
            -1_i64,
            "Message flag enabling database accounting of missed calls (-1: none).",
        );
        m.param(
            "db_extra",
            ParamType::Str,
            Value::Null,
            "Extra columns in database records (\"column=$pv;...\").",
        );
        m.param(
            "db_url",
            ParamType::Str,
            Value::Null,
            "Database for accounting records (unset: database accounting off).",
        );
        m.param(
            "db_table_acc",
            ParamType::Str,
            "acc",
            "Table of accounted transactions.",
        );
        m.param(
            "db_table_missed_calls",
            ParamType::Str,
            "missed_calls",
            "Table of missed calls.",
        );
        m.param(
            "db_version_check",
            ParamType::Int,
            1_i64,
            "When 1, table versions are checked at startup.",
        );
        m.param(
            "db_insert_mode",
            ParamType::Int,
            0_i64,
            "0 plain INSERT, 1 INSERT DELAYED, 2 asynchronous insert.",
        );
        m.param(
            "acc_method_column",
            ParamType::Str,
            "method",
            "Database column holding the method.",
        );
        m.param(
            "acc_from_tag_column",
            ParamType::Str,
            "from_tag",
            "Database column holding the From tag.",
        );
        m.param(
            "acc_to_tag_column",
            ParamType::Str,
            "to_tag",
            "Database column holding the To tag.",
        );
        m.param(
            "acc_callid_column",
            ParamType::Str,
            "callid",
            "Database column holding the Call-ID.",
        );
        m.param(
            "acc_sip_code_column",
            ParamType::Str,
            "sip_code",
            "Database column holding the reply code.",
        );
        m.param(
            "acc_sip_reason_column",
            ParamType::Str,
            "sip_reason",
            "Database column holding the reply reason.",
        );
        m.param(
            "acc_time_column",
            ParamType::Str,
            "time",
            "Database column holding the record time.",
        );
        m.param("time_mode", ParamType::Int, 0_i64, "What records say of their time beside timestamp/time: 0 nothing, 1 seconds in time_attr and microseconds in time_exten, 2 seconds.milliseconds in time_attr, 3 time_format in local time in time_attr, 4 the same in UTC.");
        m.param(
            "time_attr",
            ParamType::Str,
            Value::Null,
            "Column / log key of the time of time_mode 1..4.",
        );
        m.param(
            "time_exten",
            ParamType::Str,
            Value::Null,
            "Column / log key of the microseconds of time_mode 1.",
        );
        m.param(
            "time_format",
            ParamType::Str,
            "%Y-%m-%d %H:%M:%S",
            "strftime format of time_mode 3 and 4.",
        );
        m.param(
            "cdr_enable",
            ParamType::Int,
            0_i64,
            "When 1, each dialog the dialog module tracks gets a CDR when it ends (start, end, duration and cdr_extra), to the log (cdr_log_enable) and to cdrs_table; needs dialog loaded (docs/accounting.md).",
        );
        m.param(
            "cdr_log_enable",
            ParamType::Int,
            1_i64,
            "When 1, each CDR is a log line (target acc, at log_level).",
        );
        m.param(
            "cdr_start_on_confirmed",
            ParamType::Int,
            0_i64,
            "When 1, a CDR starts at the 2xx of the INVITE instead of the INVITE.",
        );
        m.param(
            "cdr_facility",
            ParamType::Str,
            "LOG_DAEMON",
            "Syslog facility of CDRs: not built, a value is refused at load (CDRs go to Ferrosip's log).",
        );
        m.param(
            "cdr_extra",
            ParamType::Str,
            Value::Null,
            "Extra values of CDRs (\"name=$pv;...\"), read from the BYE that ended the call; for calls no request ended (failed, expired) only $dlg_var(...) values are read, others are empty.",
        );
        m.param(
            "cdr_extra_nullable",
            ParamType::Int,
            0_i64,
            "When 1, empty CDR extra values are stored as NULL.",
        );
        m.param(
            "cdr_start_id",
            ParamType::Str,
            "start_time",
            "CDR field name of the start time.",
        );
        m.param(
            "cdr_end_id",
            ParamType::Str,
            "end_time",
            "CDR field name of the end time.",
        );
        m.param(
            "cdr_duration_id",
            ParamType::Str,
            "duration",
            "CDR field name of the duration.",
        );
        m.param(
            "cdr_duration_mode",
            ParamType::Int,
            1_i64,
            "Fraction of the seconds in CDR log lines: 0 none, 1 milliseconds, 2 microseconds.",
        );
        m.param(
            "cdr_expired_dlg_enable",
            ParamType::Int,
            0_i64,
            "When 1, dialogs ended by their timeout get a CDR too.",
        );
        m.param(
            "cdr_skip",
            ParamType::Str,
            Value::Null,
            "Dialog variable that, when set, suppresses the CDR.",
        );
        m.param(
            "cdrs_table",
            ParamType::Str,
            "",
            "Table of CDRs (empty: no database CDRs; needs db_url). Columns: cdr_start_id, cdr_end_id (DATETIME), cdr_duration_id (seconds, a double; 0 for unanswered calls), then cdr_extra's names.",
        );
        m.param(
            "clone_msg",
            ParamType::Int,
            1_i64,
            "When 1, the request is cloned for accounting in reply callbacks.",
        );
        m.param(
            "cdr_on_failed",
            ParamType::Int,
            1_i64,
            "When 1, calls never answered get a CDR too (end = start, no duration).",
        );
        m.param(
            "acc_extra_size",
            ParamType::Int,
            64_i64,
            "Maximum number of extra attributes.",
        );
        m.param(
            "cdr_extra_size",
            ParamType::Int,
            64_i64,
            "Maximum number of CDR extra attributes.",
        );
        m.param(
            "spool_dir",
            ParamType::Str,
            "/var/spool/ferrosip/acc",
            "Ferrosip: directory of the on-disk spool where database records wait while the database is unreachable.",
        );
        m.param(
            "spool_max_records",
            ParamType::Int,
            1_000_000_i64,
            "Ferrosip: records the spool holds at most; past it records are dropped, logged and counted.",
        );
        m.param(
            "queue_size",
            ParamType::Int,
            100_000_i64,
            "Ferrosip: database records waiting in memory for the writer at most; past it records are dropped, logged and counted.",
        );
        m.param(
            "batch_size",
            ParamType::Int,
            200_i64,
            "Ferrosip: records inserted per database transaction at most.",
        );
        m.param(
            "db_timeout",
            ParamType::Int,
            2000_i64,
            "Ferrosip: milliseconds one batch insert may take before its records go to the spool.",
        );
        acc::declare(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_api::pv::Binder;
    use ferrosip_api::Registry;

    /// What is not built (or is set for nothing) refuses the load, naming the parameter;
    /// what is built loads.
    /// (The core PVs the extras name come with the script crate: tests/tests/acc.rs.)
    #[test]
    fn unbuilt_parameters_refuse_the_load_by_name() {
        let mut reg = Registry::new();
        reg.register(&AccModule);
        let def = reg.module("acc").expect("acc");
        let build = |set: &[(&str, Value)]| {
            let mut p = def.default_params();
            for (k, v) in set {
                p.push(k, v.clone());
            }
            def.tm_observers[0](&p, &Binder::new(&reg)).map(|o| o.is_some())
        };
        assert_eq!(build(&[]), Ok(false), "no flag: nothing to watch");
        assert_eq!(
            build(&[("log_flag", Value::Int(1)), ("report_ack", Value::Int(0)),]),
            Ok(true)
        );
        for set in [
            &[("report_ack", Value::Int(1))][..],
            &[("report_cancels", Value::Int(1))],
            &[("early_media", Value::Int(1))],
            &[("detect_direction", Value::Int(1))],
            &[("reason_from_hf", Value::Int(1))],
            &[
                ("time_mode", Value::Int(1)),
                ("time_exten", Value::from_static("usec")),
            ],
            &[("time_mode", Value::Int(2))],
            &[
                ("time_mode", Value::Int(3)),
                ("time_format", Value::from_static("%s")),
            ],
            &[("time_mode", Value::Int(4))],
        ] {
            let mut with_flag = vec![("log_flag", Value::Int(1))];
            with_flag.extend(set.iter().cloned());
            assert_eq!(build(&with_flag), Ok(true), "{set:?}");
        }
        for (name, value) in [
            ("cdr_enable", Value::Int(1)),
            ("log_facility", Value::from_static("LOG_LOCAL0")),
            ("multi_leg_info", Value::from_static("x=$avp(x)")),
            ("report_ack", Value::Int(2)),
            ("time_mode", Value::Int(5)),
            ("time_exten", Value::from_static("usec")),
            ("time_format", Value::from_static("%H")),
        ] {
            let e = build(&[(name, value)]).expect_err(name);
            assert!(e.contains(name), "{e}");
        }
        let e = build(&[
            ("time_mode", Value::Int(3)),
            ("time_format", Value::from_static("%Q %")),
        ])
        .expect_err("time_format");
        assert!(e.contains("time_format"), "{e}");
        let e = build(&[("db_flag", Value::Int(1))]).expect_err("db_url");
        assert!(e.contains("db_url"), "{e}");
        let e = build(&[("db_extra", Value::from_static("bad col=$si"))]).expect_err("column");
        assert!(e.contains("db_extra"), "{e}");
    }
}
