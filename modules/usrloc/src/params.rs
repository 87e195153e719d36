//! Parameters of `usrloc`, in Kamailio's names; the ones Ferrosip does not use say so.

use ferrosip_api::{ModuleBuilder, ParamType, Value};

pub(crate) fn declare(m: &mut ModuleBuilder<'_>) {
    m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailio:kamailiorw@localhost/kamailio",
            "Database of the location table (see db_mode): mysql://, postgres://, sqlite:// or text:// URL.",
        );
    m.param(
            "db_mode",
            ParamType::Int,
            0_i64,
            "Persistence: 0 memory only; 1 write-through (every change written before the reply, table loaded at start); 2 write-back (changes written by the timer and at stop, table loaded at start); 3 database only (every save and lookup queries the database, so several servers can share one table).",
        );
    m.param(
            "timer_interval",
            ParamType::Int,
            60_i64,
            "Seconds between timer runs: expired contacts are removed (also from the database in db_mode 1 and 2) and db_mode 2 writes its pending changes.",
        );
    m.param(
            "timer_procs",
            ParamType::Int,
            0_i64,
            "Number of dedicated timer processes (0: use the main timer). Accepted, ignored: the timer runs as one task on the server's async runtime.",
        );
    m.param(
        "db_load",
        ParamType::Int,
        1_i64,
        "When 1, contacts are loaded from the database at start (db_mode 1 and 2).",
    );
    m.param(
            "db_insert_update",
            ParamType::Int,
            0_i64,
            "When 1, inserts use \"insert or update\" for duplicate keys. Accepted, ignored: writes always insert or update by ruid.",
        );
    m.param(
            "use_domain",
            ParamType::Int,
            0_i64,
            "When 1, the address of record is user@domain (username and domain columns); when 0, only the user part.",
        );
    m.param(
        "desc_time_order",
        ParamType::Int,
        0_i64,
        "When 1, lookup() orders contacts by last modification (newest first) instead of by q.",
    );
    m.param("matching_mode", ParamType::Int, 0_i64, "How a REGISTER's contact is matched to a stored one: 0 contact URI, 1 contact URI and Call-ID, 2 contact URI and Path, 3 Call-ID only.");
    m.param(
            "cseq_delay",
            ParamType::Int,
            20_i64,
            "Seconds during which a REGISTER repeating the stored Call-ID and CSeq of a contact is taken as a retransmission (contact left as is, 200 OK); later it is refused as out of order (400).",
        );
    m.param(
            "fetch_rows",
            ParamType::Int,
            2000_i64,
            "Rows fetched per database query. Accepted, ignored: the start-up load reads the table in one query.",
        );
    m.param(
            "hash_size",
            ParamType::Int,
            10_i64,
            "Power of two of the number of independently locked shards of each location table (clamped to 6..12: 64 to 4096 shards).",
        );
    m.param(
            "nat_bflag",
            ParamType::Int,
            -1_i64,
            "Branch flag that save() stores with a contact when it is set on the REGISTER, and lookup() sets again on the contact's branch (-1: none).",
        );
    m.param(
        "handle_lost_tcp",
        ParamType::Int,
        0_i64,
        "When 1, contacts of a closed TCP connection are removed. Accepted, ignored.",
    );
    m.param(
        "close_expired_tcp",
        ParamType::Int,
        0_i64,
        "When 1, the TCP connection of an expired contact is closed. Accepted, ignored.",
    );
    m.param(
        "skip_remote_socket",
        ParamType::Int,
        0_i64,
        "When 1, the socket of contacts is ignored when matching. Accepted, ignored.",
    );
    m.param(
        "preload",
        ParamType::Str,
        Value::Null,
        "Location table loaded from the database at start even if no registrar function names it.",
    );
    m.param(
        "db_update_as_insert",
        ParamType::Int,
        0_i64,
        "When 1, updates are written as inserts (history mode). Accepted, ignored.",
    );
    m.param(
            "db_check_update",
            ParamType::Int,
            0_i64,
            "When 1, an update that changed no row is followed by an insert. Accepted, ignored: writes always insert or update by ruid.",
        );
    m.param(
        "xavp_contact",
        ParamType::Str,
        Value::Null,
        "XAVP with extra attributes stored per contact. Accepted, ignored.",
    );
    m.param(
            "db_ops_ruid",
            ParamType::Int,
            1_i64,
            "When 1, database updates and deletes use the ruid column. Accepted, ignored: updates and deletes always use the ruid column.",
        );
    m.param(
            "expires_type",
            ParamType::Int,
            0_i64,
            "When 1, expires is stored as an integer instead of a datetime. Accepted, ignored: expires is stored as a datetime.",
        );
    m.param(
        "db_raw_fetch_type",
        ParamType::Int,
        0_i64,
        "When 1, raw database queries fetch rows in chunks. Accepted, ignored.",
    );
    m.param(
        "db_insert_null",
        ParamType::Int,
        0_i64,
        "When 1, null fields are included in inserts. Accepted, ignored.",
    );
    m.param(
        "server_id_filter",
        ParamType::Int,
        0_i64,
        "When 1, only contacts with this server's server_id are loaded. Accepted, ignored.",
    );
    m.param(
            "db_timer_clean",
            ParamType::Int,
            0_i64,
            "When 1, the timer deletes expired rows from the database in db_mode 3 (in db_mode 1 and 2 it always does).",
        );
    m.param(
            "rm_expired_delay",
            ParamType::Int,
            0_i64,
            "Seconds an expired contact is kept before removal. Accepted, ignored: expired contacts are removed by the next timer run.",
        );
    m.param(
            "version_table",
            ParamType::Int,
            1_i64,
            "When 1, the table version is checked at startup. Accepted, ignored: `ferrosip db init` creates the table in the expected version.",
        );
    m.param(
            "ka_mode",
            ParamType::Int,
            0_i64,
            "Keepalive of contacts: 0 off, 1 all, 2 UDP only, 4 NAT-ed only (bit mask). Accepted, ignored: contact keepalives are not built.",
        );
    m.param(
        "ka_from",
        ParamType::Str,
        "sip:server@kamailio.org",
        "From URI of keepalive requests. Accepted, ignored: contact keepalives are not built.",
    );
    m.param(
        "ka_domain",
        ParamType::Str,
        "kamailio.org",
        "Domain used in keepalive Call-IDs. Accepted, ignored: contact keepalives are not built.",
    );
    m.param(
        "ka_method",
        ParamType::Str,
        "OPTIONS",
        "Method of keepalive requests. Accepted, ignored: contact keepalives are not built.",
    );
    m.param(
            "ka_filter",
            ParamType::Int,
            0_i64,
            "Which contacts get keepalives: 0 all, 1 those with the received field, ... Accepted, ignored: contact keepalives are not built.",
        );
    m.param(
        "ka_interval",
        ParamType::Int,
        40_i64,
        "Seconds between keepalive rounds. Accepted, ignored: contact keepalives are not built.",
    );
    m.param(
            "ka_randomize",
            ParamType::Int,
            20_i64,
            "Maximum random delay in seconds added to keepalive timing. Accepted, ignored: contact keepalives are not built.",
        );
    m.param(
            "ka_timeout",
            ParamType::Int,
            0_i64,
            "Seconds without keepalive reply after which a contact is removed (0: never). Accepted, ignored: contact keepalives are not built.",
        );
    m.param(
            "ka_loglevel",
            ParamType::Int,
            255_i64,
            "Log level of keepalive round-trip messages (255: off). Accepted, ignored: contact keepalives are not built.",
        );
    m.param(
            "ka_logmsg",
            ParamType::Str,
            " to-uri: [$tu] remote-addr: [$sas]",
            "Format appended to keepalive log messages. Accepted, ignored: contact keepalives are not built.",
        );
    m.param(
            "ka_reply_codes",
            ParamType::Str,
            "0",
            "Reply codes counted as a valid keepalive reply (0: any). Accepted, ignored: contact keepalives are not built.",
        );
    m.param(
        "load_rank",
        ParamType::Int,
        1_i64,
        "Process rank that loads contacts from the database at startup. Accepted, ignored.",
    );
    m.param(
        "db_clean_tcp",
        ParamType::Int,
        0_i64,
        "When 1, TCP contacts are removed from the database at startup. Accepted, ignored.",
    );
    m.param(
        "ruid_column",
        ParamType::Str,
        "ruid",
        "Database column holding the record unique id. Only Kamailio's default name is supported.",
    );
    m.param(
            "user_column",
            ParamType::Str,
            "username",
            "Database column holding the user part of the address of record. Only Kamailio's default name is supported.",
        );
    m.param(
            "domain_column",
            ParamType::Str,
            "domain",
            "Database column holding the domain of the address of record. Only Kamailio's default name is supported.",
        );
    m.param(
        "contact_column",
        ParamType::Str,
        "contact",
        "Database column holding the contact URI. Only Kamailio's default name is supported.",
    );
    m.param(
        "expires_column",
        ParamType::Str,
        "expires",
        "Database column holding the expiry time. Only Kamailio's default name is supported.",
    );
    m.param(
        "q_column",
        ParamType::Str,
        "q",
        "Database column holding the q value. Only Kamailio's default name is supported.",
    );
    m.param(
            "callid_column",
            ParamType::Str,
            "callid",
            "Database column holding the Call-ID of the REGISTER. Only Kamailio's default name is supported.",
        );
    m.param(
            "cseq_column",
            ParamType::Str,
            "cseq",
            "Database column holding the CSeq of the REGISTER. Only Kamailio's default name is supported.",
        );
    m.param(
        "flags_column",
        ParamType::Str,
        "flags",
        "Database column holding the internal flags. Only Kamailio's default name is supported.",
    );
    m.param(
            "cflags_column",
            ParamType::Str,
            "cflags",
            "Database column holding the branch flags of the contact. Only Kamailio's default name is supported.",
        );
    m.param(
        "user_agent_column",
        ParamType::Str,
        "user_agent",
        "Database column holding the User-Agent. Only Kamailio's default name is supported.",
    );
    m.param(
            "received_column",
            ParamType::Str,
            "received",
            "Database column holding the source address of the REGISTER. Only Kamailio's default name is supported.",
        );
    m.param(
        "path_column",
        ParamType::Str,
        "path",
        "Database column holding the Path header. Only Kamailio's default name is supported.",
    );
    m.param(
        "socket_column",
        ParamType::Str,
        "socket",
        "Database column holding the receiving socket. Only Kamailio's default name is supported.",
    );
    m.param(
        "methods_column",
        ParamType::Str,
        "methods",
        "Database column holding the supported methods. Only Kamailio's default name is supported.",
    );
    m.param(
            "instance_column",
            ParamType::Str,
            "instance",
            "Database column holding the +sip.instance value. Only Kamailio's default name is supported.",
        );
    m.param(
        "reg_id_column",
        ParamType::Str,
        "reg_id",
        "Database column holding the reg-id value. Only Kamailio's default name is supported.",
    );
    m.param(
        "server_id_column",
        ParamType::Str,
        "server_id",
        "Database column holding the server id. Only Kamailio's default name is supported.",
    );
    m.param(
        "connection_id_column",
        ParamType::Str,
        "connection_id",
        "Database column holding the TCP connection id. Only Kamailio's default name is supported.",
    );
    m.param(
        "keepalive_column",
        ParamType::Str,
        "keepalive",
        "Database column holding the keepalive flag. Only Kamailio's default name is supported.",
    );
    m.param(
        "partition_column",
        ParamType::Str,
        "partition",
        "Database column holding the partition number. Only Kamailio's default name is supported.",
    );
}
