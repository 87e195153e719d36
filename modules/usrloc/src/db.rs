//! The `location` table in Kamailio 5.6's layout, through `ferrosip-db`.

use crate::contact::{Contact, ContactInfo, ALL_METHODS};
use crate::store::Change;
use ferrosip_db::{Cond, Db, DbValue};

/// Columns read and written, in this order.
pub const COLUMNS: [&str; 22] = [
    "ruid",
    "username",
    "domain",
    "contact",
    "received",
    "path",
    "expires",
    "q",
    "callid",
    "cseq",
    "last_modified",
    "flags",
    "cflags",
    "user_agent",
    "socket",
    "methods",
    "instance",
    "reg_id",
    "server_id",
    "connection_id",
    "keepalive",
    "partition",
];

/// Splits an address of record into the `username` and `domain` columns.
pub fn split_aor(aor: &[u8], use_domain: bool) -> (String, Option<String>) {
    let text = String::from_utf8_lossy(aor);
    if use_domain {
        if let Some((user, domain)) = text.split_once('@') {
            return (user.to_string(), Some(domain.to_string()));
        }
    }
    (text.into_owned(), None)
}

/// The address of record a row belongs to.
pub fn aor_of_row(row: &[DbValue], use_domain: bool) -> Option<Vec<u8>> {
    let user = row.get(1)?.as_str()?;
    let mut aor = user.as_bytes().to_vec();
    if use_domain {
        if let Some(d) = row
            .get(2)
            .and_then(|v| v.as_str())
            .filter(|d| !d.is_empty())
        {
            aor.push(b'@');
            aor.extend_from_slice(d.as_bytes());
        }
    }
    Some(aor)
}

fn text(v: &[u8]) -> DbValue {
    DbValue::Str(String::from_utf8_lossy(v).into_owned())
}

fn text_or_null(v: &[u8]) -> DbValue {
    if v.is_empty() {
        DbValue::Null
    } else {
        text(v)
    }
}

/// The column values of a contact, in [`COLUMNS`] order.
pub fn row_of(aor: &[u8], c: &ContactInfo, use_domain: bool, server_id: i64) -> Vec<DbValue> {
    let (user, domain) = split_aor(aor, use_domain);
    let q = if c.q < 0 {
        -1.0
    } else {
        f64::from(c.q) / 1000.0
    };
    vec![
        text(&c.ruid),
        DbValue::Str(user),
        domain.map_or(DbValue::Null, DbValue::Str),
        text(&c.uri),
        text_or_null(&c.received),
        text_or_null(&c.path),
        DbValue::Time(c.expires),
        DbValue::Double(q),
        text(&c.callid),
        DbValue::Int(i64::from(c.cseq)),
        DbValue::Time(c.last_modified),
        DbValue::Int(i64::from(c.flags)),
        DbValue::Int(i64::from(c.cflags as i32)),
        text(&c.user_agent),
        text_or_null(&c.socket),
        if c.methods == ALL_METHODS {
            DbValue::Null
        } else {
            DbValue::Int(i64::from(c.methods))
        },
        text_or_null(&c.instance),
        DbValue::Int(i64::from(c.reg_id)),
        DbValue::Int(server_id),
        DbValue::Int(-1),
        DbValue::Int(0),
        DbValue::Int(0),
    ]
}

fn col_bytes(row: &[DbValue], i: usize) -> Vec<u8> {
    row.get(i)
        .and_then(|v| v.as_str())
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_default()
}

fn col_int(row: &[DbValue], i: usize) -> i64 {
    row.get(i)
        .and_then(|v| v.as_int().or_else(|| v.as_f64().map(|f| f as i64)))
        .unwrap_or(0)
}

/// A contact from a row read with [`COLUMNS`]; `None` for a row without a contact URI.
pub fn contact_of_row(row: &[DbValue]) -> Option<Contact> {
    let uri = col_bytes(row, 3);
    if uri.is_empty() {
        return None;
    }
    let q = match row.get(7).and_then(|v| v.as_f64()) {
        Some(q) if q >= 0.0 => (q * 1000.0).round().clamp(0.0, 1000.0) as i16,
        _ => -1,
    };
    let methods = match row.get(15) {
        Some(DbValue::Null) | None => ALL_METHODS,
        Some(v) => v.as_int().map_or(ALL_METHODS, |m| m as u32),
    };
    let info = ContactInfo {
        ruid: col_bytes(row, 0),
        uri,
        received: col_bytes(row, 4),
        path: col_bytes(row, 5),
        expires: row.get(6).and_then(|v| v.as_time()).unwrap_or(0),
        q,
        callid: col_bytes(row, 8),
        cseq: col_int(row, 9) as u32,
        last_modified: row.get(10).and_then(|v| v.as_time()).unwrap_or(0),
        flags: col_int(row, 11) as u32,
        cflags: col_int(row, 12) as u32,
        user_agent: col_bytes(row, 13),
        socket: col_bytes(row, 14),
        methods,
        instance: col_bytes(row, 16),
        reg_id: col_int(row, 17) as u32,
    };
    Contact::new(&info).ok()
}

/// Conditions selecting the rows of one address of record.
pub fn aor_conds(aor: &[u8], use_domain: bool) -> Vec<Cond<'static>> {
    let (user, domain) = split_aor(aor, use_domain);
    let mut conds = vec![Cond::eq("username", user)];
    if use_domain {
        conds.push(Cond::eq("domain", domain));
    }
    conds
}

/// Writes changes in order.
pub async fn apply(
    db: &Db,
    table: &str,
    changes: &[Change],
    use_domain: bool,
    server_id: i64,
) -> Result<(), String> {
    for change in changes {
        match change {
            Change::Upsert { aor, info } => {
                let vals = row_of(aor, info, use_domain, server_id);
                db.replace(table, &["ruid"], &COLUMNS, &vals)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Change::Delete { ruid } => {
                db.delete(table, &[Cond::eq("ruid", text(ruid))])
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// The contacts of one address of record.
pub async fn fetch(
    db: &Db,
    table: &str,
    aor: &[u8],
    use_domain: bool,
) -> Result<Vec<Contact>, String> {
    let rows = db
        .select(table, &COLUMNS, &aor_conds(aor, use_domain), None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows.iter().filter_map(|r| contact_of_row(r)).collect())
}

/// Deletes the rows expired at `now` (a row with expires 0 is permanent).
pub async fn delete_expired(db: &Db, table: &str, now: i64) -> Result<u64, String> {
    db.delete(
        table,
        &[
            Cond::lt("expires", DbValue::Time(now)),
            Cond::ne("expires", DbValue::Time(0)),
        ],
    )
    .await
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_round_trip() {
        let info = ContactInfo {
            uri: b"sip:alice@10.0.0.1".to_vec(),
            received: Vec::new(),
            path: b"<sip:edge;lr>".to_vec(),
            callid: b"cid".to_vec(),
            user_agent: b"ua".to_vec(),
            socket: b"udp:127.0.0.1:5060".to_vec(),
            instance: Vec::new(),
            ruid: b"uloc-x-1".to_vec(),
            expires: 1_700_000_000,
            last_modified: 1_699_999_000,
            q: 500,
            cseq: 3,
            flags: 0,
            cflags: 64,
            methods: ALL_METHODS,
            reg_id: 0,
        };
        let row = row_of(b"alice@example.com", &info, true, 0);
        assert_eq!(row.len(), COLUMNS.len());
        assert_eq!(row[1], DbValue::Str("alice".into()));
        assert_eq!(row[2], DbValue::Str("example.com".into()));
        assert_eq!(row[4], DbValue::Null);
        assert_eq!(row[15], DbValue::Null);
        let back = contact_of_row(&row).unwrap();
        assert_eq!(back.info(), info);
        assert_eq!(
            aor_of_row(&row, true).unwrap(),
            b"alice@example.com".to_vec()
        );
        assert_eq!(aor_of_row(&row, false).unwrap(), b"alice".to_vec());
    }
}
