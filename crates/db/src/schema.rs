//! Kamailio 5.6-compatible tables: the same names, columns, types, defaults, indexes and
//! `version` rows as Kamailio's `kamdbctl create`, so data and tooling (kamctl, Siremis)
//! carry over. The tables are described once here and rendered per dialect.

use crate::text::{ColType, Column};
use crate::{Cond, Db, DbError, DbKind, DbValue};

/// A column type, as Kamailio's schema XML names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// Auto-increment integer primary key.
    Id,
    Int,
    UInt,
    SmallUInt,
    TinyUInt,
    Varchar(u16),
    DateTime,
    /// MySQL `FLOAT(m,d)`, REAL elsewhere.
    Float(u8, u8),
}

/// A column default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DefaultValue {
    Null,
    Int(i64),
    /// A literal as Kamailio writes it (`1.0`).
    Number(&'static str),
    Str(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub struct ColumnDef {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
    pub default: Option<DefaultValue>,
}

#[derive(Clone, Copy, Debug)]
pub struct TableDef {
    pub name: &'static str,
    /// The row Kamailio puts in `version` for this table.
    pub version: i64,
    pub columns: &'static [ColumnDef],
    /// (constraint name, columns); PostgreSQL and SQLite prefix the name with the table's.
    pub unique: &'static [(&'static str, &'static [&'static str])],
    /// (index name, columns), named like `unique`.
    pub indexes: &'static [(&'static str, &'static [&'static str])],
}

/// The tables one Kamailio module uses (`kamdbctl`'s grouping).
#[derive(Clone, Copy, Debug)]
pub struct ModuleTables {
    pub module: &'static str,
    pub tables: &'static [TableDef],
}

const fn c(name: &'static str, ty: ColumnType, default: DefaultValue) -> ColumnDef {
    ColumnDef {
        name,
        ty,
        nullable: matches!(default, DefaultValue::Null),
        default: Some(default),
    }
}
/// NOT NULL without a default.
const fn req(name: &'static str, ty: ColumnType) -> ColumnDef {
    ColumnDef {
        name,
        ty,
        nullable: false,
        default: None,
    }
}
/// Nullable without a DEFAULT clause.
const fn opt(name: &'static str, ty: ColumnType) -> ColumnDef {
    ColumnDef {
        name,
        ty,
        nullable: true,
        default: None,
    }
}
const ID: ColumnDef = req("id", ColumnType::Id);

use ColumnType::{DateTime, Float, Int, SmallUInt, TinyUInt, UInt, Varchar};
use DefaultValue::{Int as DInt, Null as DNull, Number as DNum, Str as DStr};

const VERSION: TableDef = TableDef {
    name: "version",
    version: 1,
    columns: &[
        ID,
        req("table_name", Varchar(32)),
        c("table_version", UInt, DInt(0)),
    ],
    unique: &[("table_name_idx", &["table_name"])],
    indexes: &[],
};

const SUBSCRIBER: TableDef = TableDef {
    name: "subscriber",
    version: 7,
    columns: &[
        ID,
        c("username", Varchar(64), DStr("")),
        c("domain", Varchar(64), DStr("")),
        c("password", Varchar(64), DStr("")),
        c("ha1", Varchar(128), DStr("")),
        c("ha1b", Varchar(128), DStr("")),
    ],
    unique: &[("account_idx", &["username", "domain"])],
    indexes: &[("username_idx", &["username"])],
};

/// `location` and registrar's `aliases` share these columns (aliases has shorter
/// contact/received).
const fn location_columns(contact: u16, received: u16) -> [ColumnDef; 23] {
    [
        ID,
        c("ruid", Varchar(64), DStr("")),
        c("username", Varchar(64), DStr("")),
        c("domain", Varchar(64), DNull),
        c("contact", Varchar(contact), DStr("")),
        c("received", Varchar(received), DNull),
        c("path", Varchar(512), DNull),
        c("expires", DateTime, DStr("2030-05-28 21:32:15")),
        c("q", Float(10, 2), DNum("1.0")),
        c("callid", Varchar(255), DStr("Default-Call-ID")),
        c("cseq", Int, DInt(1)),
        c("last_modified", DateTime, DStr("2000-01-01 00:00:01")),
        c("flags", Int, DInt(0)),
        c("cflags", Int, DInt(0)),
        c("user_agent", Varchar(255), DStr("")),
        c("socket", Varchar(64), DNull),
        c("methods", Int, DNull),
        c("instance", Varchar(255), DNull),
        c("reg_id", Int, DInt(0)),
        c("server_id", Int, DInt(0)),
        c("connection_id", Int, DInt(0)),
        c("keepalive", Int, DInt(0)),
        c("partition", Int, DInt(0)),
    ]
}
const LOCATION_COLUMNS: [ColumnDef; 23] = location_columns(512, 128);
const ALIASES_COLUMNS: [ColumnDef; 23] = location_columns(255, 255);

const LOCATION: TableDef = TableDef {
    name: "location",
    version: 9,
    columns: &LOCATION_COLUMNS,
    unique: &[("ruid_idx", &["ruid"])],
    indexes: &[
        ("account_contact_idx", &["username", "domain", "contact"]),
        ("expires_idx", &["expires"]),
        ("tcpcon_idx", &["connection_id"]),
        ("connection_idx", &["server_id", "connection_id"]),
    ],
};

const LOCATION_ATTRS: TableDef = TableDef {
    name: "location_attrs",
    version: 1,
    columns: &[
        ID,
        c("ruid", Varchar(64), DStr("")),
        c("username", Varchar(64), DStr("")),
        c("domain", Varchar(64), DNull),
        c("aname", Varchar(64), DStr("")),
        c("atype", Int, DInt(0)),
        c("avalue", Varchar(512), DStr("")),
        c("last_modified", DateTime, DStr("2000-01-01 00:00:01")),
    ],
    unique: &[],
    indexes: &[
        ("account_record_idx", &["username", "domain", "ruid"]),
        ("last_modified_idx", &["last_modified"]),
    ],
};

const ALIASES: TableDef = TableDef {
    name: "aliases",
    version: 8,
    columns: &ALIASES_COLUMNS,
    unique: &[("ruid_idx", &["ruid"])],
    indexes: &[
        ("account_contact_idx", &["username", "domain", "contact"]),
        ("expires_idx", &["expires"]),
    ],
};

const ACC_COLUMNS: [ColumnDef; 8] = [
    ID,
    c("method", Varchar(16), DStr("")),
    c("from_tag", Varchar(128), DStr("")),
    c("to_tag", Varchar(128), DStr("")),
    c("callid", Varchar(255), DStr("")),
    c("sip_code", Varchar(3), DStr("")),
    c("sip_reason", Varchar(128), DStr("")),
    req("time", DateTime),
];

const ACC: TableDef = TableDef {
    name: "acc",
    version: 5,
    columns: &ACC_COLUMNS,
    unique: &[],
    indexes: &[("callid_idx", &["callid"])],
};

const ACC_CDRS: TableDef = TableDef {
    name: "acc_cdrs",
    version: 2,
    columns: &[
        ID,
        c("start_time", DateTime, DStr("2000-01-01 00:00:00")),
        c("end_time", DateTime, DStr("2000-01-01 00:00:00")),
        c("duration", Float(10, 3), DInt(0)),
    ],
    unique: &[],
    indexes: &[("start_time_idx", &["start_time"])],
};

const MISSED_CALLS: TableDef = TableDef {
    name: "missed_calls",
    version: 4,
    columns: &ACC_COLUMNS,
    unique: &[],
    indexes: &[("callid_idx", &["callid"])],
};

const DISPATCHER: TableDef = TableDef {
    name: "dispatcher",
    version: 4,
    columns: &[
        ID,
        c("setid", Int, DInt(0)),
        c("destination", Varchar(192), DStr("")),
        c("flags", Int, DInt(0)),
        c("priority", Int, DInt(0)),
        c("attrs", Varchar(128), DStr("")),
        c("description", Varchar(64), DStr("")),
    ],
    unique: &[],
    indexes: &[],
};

const LCR_GW: TableDef = TableDef {
    name: "lcr_gw",
    version: 3,
    columns: &[
        ID,
        req("lcr_id", SmallUInt),
        opt("gw_name", Varchar(128)),
        opt("ip_addr", Varchar(50)),
        opt("hostname", Varchar(64)),
        opt("port", SmallUInt),
        opt("params", Varchar(64)),
        opt("uri_scheme", TinyUInt),
        opt("transport", TinyUInt),
        opt("strip", TinyUInt),
        c("prefix", Varchar(16), DNull),
        c("tag", Varchar(64), DNull),
        c("flags", UInt, DInt(0)),
        c("defunct", UInt, DNull),
    ],
    unique: &[],
    indexes: &[("lcr_id_idx", &["lcr_id"])],
};

const LCR_RULE_TARGET: TableDef = TableDef {
    name: "lcr_rule_target",
    version: 1,
    columns: &[
        ID,
        req("lcr_id", SmallUInt),
        req("rule_id", UInt),
        req("gw_id", UInt),
        req("priority", TinyUInt),
        c("weight", UInt, DInt(1)),
    ],
    unique: &[("rule_id_gw_id_idx", &["rule_id", "gw_id"])],
    indexes: &[("lcr_id_idx", &["lcr_id"])],
};

const LCR_RULE: TableDef = TableDef {
    name: "lcr_rule",
    version: 3,
    columns: &[
        ID,
        req("lcr_id", SmallUInt),
        c("prefix", Varchar(16), DNull),
        c("from_uri", Varchar(64), DNull),
        c("request_uri", Varchar(64), DNull),
        c("mt_tvalue", Varchar(128), DNull),
        c("stopper", UInt, DInt(0)),
        c("enabled", UInt, DInt(1)),
    ],
    unique: &[(
        "lcr_id_prefix_from_uri_idx",
        &["lcr_id", "prefix", "from_uri"],
    )],
    indexes: &[],
};

const HTABLE: TableDef = TableDef {
    name: "htable",
    version: 2,
    columns: &[
        ID,
        c("key_name", Varchar(64), DStr("")),
        c("key_type", Int, DInt(0)),
        c("value_type", Int, DInt(0)),
        c("key_value", Varchar(128), DStr("")),
        c("expires", Int, DInt(0)),
    ],
    unique: &[],
    indexes: &[],
};

const TRUSTED: TableDef = TableDef {
    name: "trusted",
    version: 6,
    columns: &[
        ID,
        req("src_ip", Varchar(50)),
        req("proto", Varchar(4)),
        c("from_pattern", Varchar(64), DNull),
        c("ruri_pattern", Varchar(64), DNull),
        opt("tag", Varchar(64)),
        c("priority", Int, DInt(0)),
    ],
    unique: &[],
    indexes: &[("peer_idx", &["src_ip"])],
};

const ADDRESS: TableDef = TableDef {
    name: "address",
    version: 6,
    columns: &[
        ID,
        c("grp", UInt, DInt(1)),
        req("ip_addr", Varchar(50)),
        c("mask", Int, DInt(32)),
        c("port", SmallUInt, DInt(0)),
        opt("tag", Varchar(64)),
    ],
    unique: &[],
    indexes: &[],
};

const DBALIASES: TableDef = TableDef {
    name: "dbaliases",
    version: 1,
    columns: &[
        ID,
        c("alias_username", Varchar(64), DStr("")),
        c("alias_domain", Varchar(64), DStr("")),
        c("username", Varchar(64), DStr("")),
        c("domain", Varchar(64), DStr("")),
    ],
    unique: &[],
    indexes: &[
        ("alias_user_idx", &["alias_username"]),
        ("alias_idx", &["alias_username", "alias_domain"]),
        ("target_idx", &["username", "domain"]),
    ],
};

const DOMAIN: TableDef = TableDef {
    name: "domain",
    version: 2,
    columns: &[
        ID,
        req("domain", Varchar(64)),
        c("did", Varchar(64), DNull),
        c("last_modified", DateTime, DStr("2000-01-01 00:00:01")),
    ],
    unique: &[("domain_idx", &["domain"])],
    indexes: &[],
};

const DOMAIN_ATTRS: TableDef = TableDef {
    name: "domain_attrs",
    version: 1,
    columns: &[
        ID,
        req("did", Varchar(64)),
        req("name", Varchar(32)),
        req("type", UInt),
        req("value", Varchar(255)),
        c("last_modified", DateTime, DStr("2000-01-01 00:00:01")),
    ],
    unique: &[],
    indexes: &[("domain_attrs_idx", &["did", "name"])],
};

const SPEED_DIAL: TableDef = TableDef {
    name: "speed_dial",
    version: 2,
    columns: &[
        ID,
        c("username", Varchar(64), DStr("")),
        c("domain", Varchar(64), DStr("")),
        c("sd_username", Varchar(64), DStr("")),
        c("sd_domain", Varchar(64), DStr("")),
        c("new_uri", Varchar(128), DStr("")),
        c("fname", Varchar(64), DStr("")),
        c("lname", Varchar(64), DStr("")),
        c("description", Varchar(64), DStr("")),
    ],
    unique: &[(
        "speed_dial_idx",
        &["username", "domain", "sd_domain", "sd_username"],
    )],
    indexes: &[],
};

const DIALOG: TableDef = TableDef {
    name: "dialog",
    version: 7,
    columns: &[
        ID,
        req("hash_entry", UInt),
        req("hash_id", UInt),
        req("callid", Varchar(255)),
        req("from_uri", Varchar(255)),
        req("from_tag", Varchar(128)),
        req("to_uri", Varchar(255)),
        req("to_tag", Varchar(128)),
        req("caller_cseq", Varchar(20)),
        req("callee_cseq", Varchar(20)),
        opt("caller_route_set", Varchar(512)),
        opt("callee_route_set", Varchar(512)),
        req("caller_contact", Varchar(255)),
        req("callee_contact", Varchar(255)),
        req("caller_sock", Varchar(64)),
        req("callee_sock", Varchar(64)),
        req("state", UInt),
        req("start_time", UInt),
        c("timeout", UInt, DInt(0)),
        c("sflags", UInt, DInt(0)),
        c("iflags", UInt, DInt(0)),
        opt("toroute_name", Varchar(32)),
        req("req_uri", Varchar(255)),
        opt("xdata", Varchar(512)),
    ],
    unique: &[],
    indexes: &[("hash_idx", &["hash_entry", "hash_id"])],
};

const DIALOG_VARS: TableDef = TableDef {
    name: "dialog_vars",
    version: 1,
    columns: &[
        ID,
        req("hash_entry", UInt),
        req("hash_id", UInt),
        req("dialog_key", Varchar(128)),
        req("dialog_value", Varchar(512)),
    ],
    unique: &[],
    indexes: &[("hash_idx", &["hash_entry", "hash_id"])],
};

const UACREG: TableDef = TableDef {
    name: "uacreg",
    version: 5,
    columns: &[
        ID,
        c("l_uuid", Varchar(64), DStr("")),
        c("l_username", Varchar(64), DStr("")),
        c("l_domain", Varchar(64), DStr("")),
        c("r_username", Varchar(64), DStr("")),
        c("r_domain", Varchar(64), DStr("")),
        c("realm", Varchar(64), DStr("")),
        c("auth_username", Varchar(64), DStr("")),
        c("auth_password", Varchar(64), DStr("")),
        c("auth_ha1", Varchar(128), DStr("")),
        c("auth_proxy", Varchar(255), DStr("")),
        c("expires", Int, DInt(0)),
        c("flags", Int, DInt(0)),
        c("reg_delay", Int, DInt(0)),
        c("contact_addr", Varchar(255), DStr("")),
        c("socket", Varchar(128), DStr("")),
    ],
    unique: &[("l_uuid_idx", &["l_uuid"])],
    indexes: &[],
};

const USR_PREFERENCES: TableDef = TableDef {
    name: "usr_preferences",
    version: 2,
    columns: &[
        ID,
        c("uuid", Varchar(64), DStr("")),
        c("username", Varchar(255), DInt(0)),
        c("domain", Varchar(64), DStr("")),
        c("attribute", Varchar(32), DStr("")),
        c("type", Int, DInt(0)),
        c("value", Varchar(128), DStr("")),
        c("last_modified", DateTime, DStr("2000-01-01 00:00:01")),
    ],
    unique: &[],
    indexes: &[
        ("ua_idx", &["uuid", "attribute"]),
        ("uda_idx", &["username", "domain", "attribute"]),
    ],
};

/// Every module with tables, in `kamdbctl create` order. `standard` (the `version` table)
/// is always created.
pub const MODULES: &[ModuleTables] = &[
    ModuleTables {
        module: "standard",
        tables: &[VERSION],
    },
    ModuleTables {
        module: "auth_db",
        tables: &[SUBSCRIBER],
    },
    ModuleTables {
        module: "usrloc",
        tables: &[LOCATION, LOCATION_ATTRS],
    },
    ModuleTables {
        module: "registrar",
        tables: &[ALIASES],
    },
    ModuleTables {
        module: "acc",
        tables: &[ACC, ACC_CDRS, MISSED_CALLS],
    },
    ModuleTables {
        module: "dispatcher",
        tables: &[DISPATCHER],
    },
    ModuleTables {
        module: "lcr",
        tables: &[LCR_GW, LCR_RULE_TARGET, LCR_RULE],
    },
    ModuleTables {
        module: "htable",
        tables: &[HTABLE],
    },
    ModuleTables {
        module: "permissions",
        tables: &[TRUSTED, ADDRESS],
    },
    ModuleTables {
        module: "alias_db",
        tables: &[DBALIASES],
    },
    ModuleTables {
        module: "domain",
        tables: &[DOMAIN, DOMAIN_ATTRS],
    },
    ModuleTables {
        module: "speeddial",
        tables: &[SPEED_DIAL],
    },
    ModuleTables {
        module: "dialog",
        tables: &[DIALOG, DIALOG_VARS],
    },
    ModuleTables {
        module: "uac",
        tables: &[UACREG],
    },
    ModuleTables {
        module: "avpops",
        tables: &[USR_PREFERENCES],
    },
];

/// The table definition named `name`, from any module.
pub fn table(name: &str) -> Option<&'static TableDef> {
    MODULES
        .iter()
        .flat_map(|m| m.tables.iter())
        .find(|t| t.name == name)
}

/// The tables of `modules` (all when `None`), `version` first; errors on an unknown
/// module name.
pub fn tables_for(modules: Option<&[&str]>) -> Result<Vec<&'static TableDef>, String> {
    let mut out = vec![&MODULES[0].tables[0]];
    match modules {
        None => out.extend(MODULES[1..].iter().flat_map(|m| m.tables.iter())),
        Some(names) => {
            for name in names {
                let name = name.trim();
                let m = MODULES.iter().find(|m| m.module == name).ok_or_else(|| {
                    let known: Vec<_> = MODULES.iter().map(|m| m.module).collect();
                    format!(
                        "no tables for module '{name}' (known: {})",
                        known.join(", ")
                    )
                })?;
                for t in m.tables {
                    if !out.iter().any(|o| o.name == t.name) {
                        out.push(t);
                    }
                }
            }
        }
    }
    Ok(out)
}

fn quote(kind: DbKind, ident: &str) -> String {
    if kind == DbKind::Mysql {
        format!("`{ident}`")
    } else {
        ident.to_string()
    }
}

fn sql_type(kind: DbKind, ty: ColumnType) -> String {
    match (kind, ty) {
        (DbKind::Mysql, ColumnType::Id) => "INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY".into(),
        (DbKind::Postgres, ColumnType::Id) => "SERIAL PRIMARY KEY".into(),
        (_, ColumnType::Id) => "INTEGER PRIMARY KEY".into(),
        (DbKind::Mysql, ColumnType::Int) => "INT(11)".into(),
        (DbKind::Mysql, ColumnType::UInt) => "INT UNSIGNED".into(),
        (DbKind::Mysql, ColumnType::SmallUInt) => "SMALLINT UNSIGNED".into(),
        (DbKind::Mysql, ColumnType::TinyUInt) => "TINYINT UNSIGNED".into(),
        (_, ColumnType::Int | ColumnType::UInt) => "INTEGER".into(),
        // PostgreSQL has no unsigned types and its SMALLINT stops at 32767: a port (as in
        // lcr_gw.port) needs INTEGER to hold the 0-65535 that MySQL's SMALLINT UNSIGNED
        // holds. Kamailio's own PostgreSQL script says SMALLINT and fails on high ports.
        (DbKind::Postgres, ColumnType::SmallUInt) => "INTEGER".into(),
        (_, ColumnType::SmallUInt | ColumnType::TinyUInt) => "SMALLINT".into(),
        (_, ColumnType::Varchar(n)) => format!("VARCHAR({n})"),
        (DbKind::Mysql, ColumnType::DateTime) => "DATETIME".into(),
        (_, ColumnType::DateTime) => "TIMESTAMP WITHOUT TIME ZONE".into(),
        (DbKind::Mysql, ColumnType::Float(m, d)) => format!("FLOAT({m},{d})"),
        (_, ColumnType::Float(..)) => "REAL".into(),
    }
}

/// The `CREATE TABLE` and `CREATE INDEX` statements of `t` for an SQL backend.
pub fn create_statements(kind: DbKind, t: &TableDef) -> Vec<String> {
    // Index and constraint names are per table in MySQL but per schema in PostgreSQL
    // (and SQLite), so Kamailio prefixes them with the table name there.
    let index_name = |n: &str| {
        if kind == DbKind::Mysql {
            n.to_string()
        } else {
            format!("{}_{n}", t.name)
        }
    };
    let cols_list = |cols: &[&str]| {
        cols.iter()
            .map(|c| quote(kind, c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut lines: Vec<String> = t
        .columns
        .iter()
        .map(|col| {
            let mut l = format!("    {} {}", quote(kind, col.name), sql_type(kind, col.ty));
            match col.default {
                Some(DefaultValue::Null) => l.push_str(" DEFAULT NULL"),
                Some(DefaultValue::Int(i)) => l.push_str(&format!(" DEFAULT {i}")),
                Some(DefaultValue::Number(n)) => l.push_str(&format!(" DEFAULT {n}")),
                Some(DefaultValue::Str(s)) => {
                    l.push_str(&format!(" DEFAULT '{}'", s.replace('\'', "''")))
                }
                None => {}
            }
            if !col.nullable {
                l.push_str(" NOT NULL");
            }
            l
        })
        .collect();
    for (name, cols) in t.unique {
        lines.push(format!(
            "    CONSTRAINT {} UNIQUE ({})",
            index_name(name),
            cols_list(cols)
        ));
    }
    let mut out = vec![format!(
        "CREATE TABLE {} (\n{}\n)",
        quote(kind, t.name),
        lines.join(",\n")
    )];
    for (name, cols) in t.indexes {
        out.push(format!(
            "CREATE INDEX {} ON {} ({})",
            index_name(name),
            quote(kind, t.name),
            cols_list(cols)
        ));
    }
    out
}

/// The full script for `modules` (all when `None`), as `kamdbctl` would run it: every
/// table, then the `version` rows.
pub fn create_script(kind: DbKind, modules: Option<&[&str]>) -> Result<String, String> {
    let mut out = String::new();
    for t in tables_for(modules)? {
        for s in create_statements(kind, t) {
            out.push_str(&s);
            out.push_str(";\n");
        }
        out.push_str(&format!(
            "INSERT INTO version (table_name, table_version) VALUES ('{}', {});\n\n",
            t.name, t.version
        ));
    }
    Ok(out)
}

/// The db_text header of `t`, as Kamailio's `utils/kamctl/dbtext` files declare it
/// (DATETIME columns as `int`, like kamctl).
fn text_columns(t: &TableDef) -> Vec<Column> {
    t.columns
        .iter()
        .map(|col| {
            let ty = match col.ty {
                ColumnType::Varchar(_) => ColType::Str,
                ColumnType::Float(..) => ColType::Double,
                _ => ColType::Int,
            };
            Column::new(col.name, ty, col.nullable, col.ty == ColumnType::Id)
        })
        .collect()
}

async fn table_exists(db: &Db, table: &str) -> Result<bool, DbError> {
    // Probing with a query that returns no row works the same on every SQL backend; a
    // missing table is the only error it gives on a healthy connection.
    match db
        .select(table, &[], &[Cond::eq("id", DbValue::Int(-1))], None)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_connection_error() => Err(e),
        Err(DbError::Query { message, .. }) if is_missing_table(&message) => Ok(false),
        Err(DbError::Invalid { message, .. }) if message.contains("no such table") => Ok(false),
        Err(e) => Err(e),
    }
}

fn is_missing_table(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("no such table") // SQLite
        || m.contains("doesn't exist") // MariaDB 1146
        || (m.contains("relation") && m.contains("does not exist")) // PostgreSQL 42P01
}

/// Creates the tables of `modules` (all when `None`; `version` always) that do not exist
/// yet, and records each created table's version in `version`. Returns the tables created;
/// existing tables and their rows are left alone, so running it twice is harmless.
pub async fn init(db: &Db, modules: Option<&[&str]>) -> Result<Vec<String>, DbError> {
    let tables = tables_for(modules).map_err(|m| DbError::Invalid {
        url: db.url().to_string(),
        table: String::new(),
        message: m,
    })?;
    let mut created = Vec::new();
    for t in tables {
        let made = match db.text_backend() {
            Some(text) => text.create_table(t.name, &text_columns(t))?,
            None => {
                if table_exists(db, t.name).await? {
                    false
                } else {
                    db.execute_ddl(t.name, &create_statements(db.kind(), t))
                        .await?;
                    true
                }
            }
        };
        if made {
            db.replace(
                "version",
                &["table_name"],
                &["table_name", "table_version"],
                &[DbValue::Str(t.name.into()), DbValue::Int(t.version)],
            )
            .await?;
            created.push(t.name.to_string());
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kamailio_versions() {
        for (t, v) in [
            ("version", 1),
            ("subscriber", 7),
            ("location", 9),
            ("location_attrs", 1),
            ("aliases", 8),
            ("acc", 5),
            ("missed_calls", 4),
            ("dispatcher", 4),
            ("lcr_gw", 3),
            ("lcr_rule", 3),
            ("lcr_rule_target", 1),
            ("htable", 2),
            ("address", 6),
            ("trusted", 6),
            ("dbaliases", 1),
            ("domain", 2),
            ("domain_attrs", 1),
            ("speed_dial", 2),
            ("dialog", 7),
            ("dialog_vars", 1),
            ("uacreg", 5),
            ("usr_preferences", 2),
        ] {
            assert_eq!(table(t).map(|t| t.version), Some(v), "{t}");
        }
    }

    #[test]
    fn location_renders_like_kamailio() {
        let my = create_statements(DbKind::Mysql, &LOCATION);
        assert!(my[0].starts_with("CREATE TABLE `location` (\n    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,"));
        assert!(my[0].contains("`expires` DATETIME DEFAULT '2030-05-28 21:32:15' NOT NULL"));
        assert!(my[0].contains("`q` FLOAT(10,2) DEFAULT 1.0 NOT NULL"));
        assert!(my[0].contains("`domain` VARCHAR(64) DEFAULT NULL,"));
        assert!(my[0].contains("CONSTRAINT ruid_idx UNIQUE (`ruid`)"));
        assert_eq!(
            my[1],
            "CREATE INDEX account_contact_idx ON `location` (`username`, `domain`, `contact`)"
        );
        let pg = create_statements(DbKind::Postgres, &LOCATION);
        assert!(pg[0].contains("id SERIAL PRIMARY KEY NOT NULL"));
        assert!(pg[0].contains(
            "expires TIMESTAMP WITHOUT TIME ZONE DEFAULT '2030-05-28 21:32:15' NOT NULL"
        ));
        assert!(pg[0].contains("CONSTRAINT location_ruid_idx UNIQUE (ruid)"));
        assert_eq!(pg.len(), 5);
        let lite = create_statements(DbKind::Sqlite, &LCR_GW);
        assert!(lite[0].contains("lcr_id SMALLINT NOT NULL"));
        assert!(lite[0].contains("gw_name VARCHAR(128),"));
        let pg = create_statements(DbKind::Postgres, &LCR_GW);
        assert!(pg[0].contains("port INTEGER,"), "ports above 32767 fit");
        assert!(pg[0].contains("transport SMALLINT,"));
    }

    #[test]
    fn uacreg_and_usr_preferences_render_like_kamailio() {
        let my = create_statements(DbKind::Mysql, &UACREG);
        assert!(my[0].contains("`auth_proxy` VARCHAR(255) DEFAULT '' NOT NULL,"));
        assert!(
            my[0].contains("`reg_delay` INT(11) DEFAULT 0 NOT NULL,")
                || my[0].contains("`reg_delay` INT DEFAULT 0 NOT NULL,")
        );
        assert!(my[0].contains("CONSTRAINT l_uuid_idx UNIQUE (`l_uuid`)"));
        let my = create_statements(DbKind::Mysql, &USR_PREFERENCES);
        assert!(
            my[0].contains("`username` VARCHAR(255) DEFAULT 0 NOT NULL,"),
            "{}",
            my[0]
        );
        assert_eq!(
            my[1],
            "CREATE INDEX ua_idx ON `usr_preferences` (`uuid`, `attribute`)"
        );
    }

    #[test]
    fn module_selection() {
        let names = |m: Option<&[&str]>| -> Vec<&str> {
            tables_for(m).unwrap().iter().map(|t| t.name).collect()
        };
        assert_eq!(
            names(Some(&["usrloc", "auth_db"])),
            ["version", "location", "location_attrs", "subscriber"]
        );
        assert!(names(None).len() >= 18);
        assert!(tables_for(Some(&["nosuch"]))
            .unwrap_err()
            .contains("usrloc"));
    }
}
