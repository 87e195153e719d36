//! `usrloc`: User location storage (the registrar's contact table), in memory with optional database persistence; no script functions of its own.

use ferrosip_api::{Module, ModuleBuilder, ParamType, Value};

/// The `usrloc` module.
pub struct UsrlocModule;

impl Module for UsrlocModule {
    fn name(&self) -> &'static str {
        "usrloc"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("User location storage (the registrar's contact table), in memory with optional database persistence; no script functions of its own.");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailio:kamailiorw@localhost/kamailio",
            "Database used to persist contacts (see db_mode).",
        );
        m.param(
            "db_mode",
            ParamType::Int,
            0_i64,
            "Persistence: 0 memory only, 1 write-through, 2 write-back, 3 database only.",
        );
        m.param(
            "timer_interval",
            ParamType::Int,
            60_i64,
            "Seconds between expiry runs (and write-back flushes).",
        );
        m.param(
            "timer_procs",
            ParamType::Int,
            0_i64,
            "Number of dedicated timer processes (0: use the main timer).",
        );
        m.param(
            "db_load",
            ParamType::Int,
            1_i64,
            "When 1, contacts are loaded from the database at startup.",
        );
        m.param(
            "db_insert_update",
            ParamType::Int,
            0_i64,
            "When 1, inserts use \"insert or update\" for duplicate keys.",
        );
        m.param(
            "use_domain",
            ParamType::Int,
            0_i64,
            "When 1, the address of record includes the domain.",
        );
        m.param(
            "desc_time_order",
            ParamType::Int,
            0_i64,
            "When 1, contacts are ordered by last modification instead of q.",
        );
        m.param("matching_mode", ParamType::Int, 0_i64, "How a contact is matched on update: 0 contact only, 1 contact and Call-ID, 2 contact and path, 3 contact, Call-ID and path.");
        m.param(
            "cseq_delay",
            ParamType::Int,
            20_i64,
            "Seconds during which a repeated REGISTER with the same CSeq is accepted.",
        );
        m.param(
            "fetch_rows",
            ParamType::Int,
            2000_i64,
            "Rows fetched per database query.",
        );
        m.param(
            "hash_size",
            ParamType::Int,
            10_i64,
            "Power of two of the number of slots in the contact hash table.",
        );
        m.param(
            "nat_bflag",
            ParamType::Int,
            -1_i64,
            "Branch flag marking contacts behind NAT (-1: none).",
        );
        m.param(
            "handle_lost_tcp",
            ParamType::Int,
            0_i64,
            "When 1, contacts of a closed TCP connection are removed.",
        );
        m.param(
            "close_expired_tcp",
            ParamType::Int,
            0_i64,
            "When 1, the TCP connection of an expired contact is closed.",
        );
        m.param(
            "skip_remote_socket",
            ParamType::Int,
            0_i64,
            "When 1, the socket of contacts is ignored when matching.",
        );
        m.param("preload", ParamType::Str, Value::Null, "Domain (table) loaded at startup even if not used by registrar functions (repeatable in Kamailio).");
        m.param(
            "db_update_as_insert",
            ParamType::Int,
            0_i64,
            "When 1, updates are written as inserts (history mode).",
        );
        m.param(
            "db_check_update",
            ParamType::Int,
            0_i64,
            "When 1, an update that changed no row is followed by an insert.",
        );
        m.param(
            "xavp_contact",
            ParamType::Str,
            Value::Null,
            "XAVP with extra attributes stored per contact.",
        );
        m.param(
            "db_ops_ruid",
            ParamType::Int,
            1_i64,
            "When 1, database updates and deletes use the ruid column.",
        );
        m.param(
            "expires_type",
            ParamType::Int,
            0_i64,
            "When 1, expires is stored as an integer instead of a datetime.",
        );
        m.param(
            "db_raw_fetch_type",
            ParamType::Int,
            0_i64,
            "When 1, raw database queries fetch rows in chunks.",
        );
        m.param(
            "db_insert_null",
            ParamType::Int,
            0_i64,
            "When 1, null fields are included in inserts.",
        );
        m.param(
            "server_id_filter",
            ParamType::Int,
            0_i64,
            "When 1, only contacts with this server's server_id are loaded.",
        );
        m.param(
            "db_timer_clean",
            ParamType::Int,
            0_i64,
            "When 1, expired contacts are deleted from the database by the timer (db_mode 3).",
        );
        m.param(
            "rm_expired_delay",
            ParamType::Int,
            0_i64,
            "Seconds an expired contact is kept before removal.",
        );
        m.param(
            "version_table",
            ParamType::Int,
            1_i64,
            "When 1, the table version is checked at startup.",
        );
        m.param(
            "ka_mode",
            ParamType::Int,
            0_i64,
            "Keepalive of contacts: 0 off, 1 all, 2 UDP only, 4 NAT-ed only (bit mask).",
        );
        m.param(
            "ka_from",
            ParamType::Str,
            "sip:server@kamailio.org",
            "From URI of keepalive requests.",
        );
        m.param(
            "ka_domain",
            ParamType::Str,
            "kamailio.org",
            "Domain used in keepalive Call-IDs.",
        );
        m.param(
            "ka_method",
            ParamType::Str,
            "OPTIONS",
            "Method of keepalive requests.",
        );
        m.param(
            "ka_filter",
            ParamType::Int,
            0_i64,
            "Which contacts get keepalives: 0 all, 1 those with the received field, ...",
        );
        m.param(
            "ka_interval",
            ParamType::Int,
            40_i64,
            "Seconds between keepalive rounds.",
        );
        m.param(
            "ka_randomize",
            ParamType::Int,
            20_i64,
            "Maximum random delay in seconds added to keepalive timing.",
        );
        m.param(
            "ka_timeout",
            ParamType::Int,
            0_i64,
            "Seconds without keepalive reply after which a contact is removed (0: never).",
        );
        m.param(
            "ka_loglevel",
            ParamType::Int,
            255_i64,
            "Log level of keepalive round-trip messages (255: off).",
        );
        m.param(
            "ka_logmsg",
            ParamType::Str,
            " to-uri: [$tu] remote-addr: [$sas]",
            "Format appended to keepalive log messages.",
        );
        m.param(
            "ka_reply_codes",
            ParamType::Str,
            "0",
            "Reply codes counted as a valid keepalive reply (0: any).",
        );
        m.param(
            "load_rank",
            ParamType::Int,
            1_i64,
            "Process rank that loads contacts from the database at startup.",
        );
        m.param(
            "db_clean_tcp",
            ParamType::Int,
            0_i64,
            "When 1, TCP contacts are removed from the database at startup.",
        );
        m.param(
            "ruid_column",
            ParamType::Str,
            "ruid",
            "Database column holding the record unique id.",
        );
        m.param(
            "user_column",
            ParamType::Str,
            "username",
            "Database column holding the user part of the address of record.",
        );
        m.param(
            "domain_column",
            ParamType::Str,
            "domain",
            "Database column holding the domain of the address of record.",
        );
        m.param(
            "contact_column",
            ParamType::Str,
            "contact",
            "Database column holding the contact URI.",
        );
        m.param(
            "expires_column",
            ParamType::Str,
            "expires",
            "Database column holding the expiry time.",
        );
        m.param(
            "q_column",
            ParamType::Str,
            "q",
            "Database column holding the q value.",
        );
        m.param(
            "callid_column",
            ParamType::Str,
            "callid",
            "Database column holding the Call-ID of the REGISTER.",
        );
        m.param(
            "cseq_column",
            ParamType::Str,
            "cseq",
            "Database column holding the CSeq of the REGISTER.",
        );
        m.param(
            "flags_column",
            ParamType::Str,
            "flags",
            "Database column holding the internal flags.",
        );
        m.param(
            "cflags_column",
            ParamType::Str,
            "cflags",
            "Database column holding the branch flags of the contact.",
        );
        m.param(
            "user_agent_column",
            ParamType::Str,
            "user_agent",
            "Database column holding the User-Agent.",
        );
        m.param(
            "received_column",
            ParamType::Str,
            "received",
            "Database column holding the source address of the REGISTER.",
        );
        m.param(
            "path_column",
            ParamType::Str,
            "path",
            "Database column holding the Path header.",
        );
        m.param(
            "socket_column",
            ParamType::Str,
            "socket",
            "Database column holding the receiving socket.",
        );
        m.param(
            "methods_column",
            ParamType::Str,
            "methods",
            "Database column holding the supported methods.",
        );
        m.param(
            "instance_column",
            ParamType::Str,
            "instance",
            "Database column holding the +sip.instance value.",
        );
        m.param(
            "reg_id_column",
            ParamType::Str,
            "reg_id",
            "Database column holding the reg-id value.",
        );
        m.param(
            "server_id_column",
            ParamType::Str,
            "server_id",
            "Database column holding the server id.",
        );
        m.param(
            "connection_id_column",
            ParamType::Str,
            "connection_id",
            "Database column holding the TCP connection id.",
        );
        m.param(
            "keepalive_column",
            ParamType::Str,
            "keepalive",
            "Database column holding the keepalive flag.",
        );
        m.param(
            "partition_column",
            ParamType::Str,
            "partition",
            "Database column holding the partition number.",
        );
    }
}
