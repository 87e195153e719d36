//! Destination records from the `dispatcher` table (Kamailio's schema: id, setid,
//! destination, flags, priority, attrs, description).

use bytes::Bytes;
use ferrosip_db::{Db, DbValue};

use crate::list::{check_uri, DestSpec};

/// Reads every row of `table`; column names as the `*_col` parameters say.
pub async fn read(url: &str, table: &str, cols: &[String; 5]) -> Result<Vec<DestSpec>, String> {
    let db = Db::connect(url)
        .await
        .map_err(|e| format!("dispatcher database: {e}"))?;
    let names: Vec<&str> = cols.iter().map(String::as_str).collect();
    let rows = db
        .select(table, &names, &[], None)
        .await
        .map_err(|e| format!("dispatcher table {table}: {e}"))?;
    let int = |v: &DbValue| {
        v.as_int()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    };
    let mut out = Vec::with_capacity(rows.len());
    for (n, row) in rows.iter().enumerate() {
        let at = |what: &str| format!("{table} row {}: {what}", n + 1);
        let [setid, uri, flags, priority, attrs] = row.as_slice() else {
            return Err(at("wrong number of columns"));
        };
        let setid = int(setid)
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| at("setid is not a number"))?;
        let uri = uri
            .as_str()
            .ok_or_else(|| at("destination is not text"))?
            .trim();
        check_uri(uri.as_bytes()).map_err(|e| at(&format!("\"{uri}\": {e}")))?;
        out.push(DestSpec {
            setid,
            uri: Bytes::copy_from_slice(uri.as_bytes()),
            flags: int(flags).and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
            priority: int(priority)
                .and_then(|v| i32::try_from(v).ok())
                .unwrap_or(0),
            attrs: Bytes::copy_from_slice(attrs.as_str().unwrap_or_default().as_bytes()),
        });
    }
    Ok(out)
}
