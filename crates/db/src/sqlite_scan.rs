//! A SELECT on SQLite read on the caller's thread, row after row.
//!
//! sqlx runs each SQLite connection on a worker thread and hands every row over a
//! channel: for the large reads of a module's load (a million LCR rules, every usrloc
//! contact) most of the time went into that hand-over (an allocation per row and a
//! thread wake-up for nearly every one). SQLite is a library working on a local file, so
//! here the connection's handle is borrowed from its worker (sqlx's `lock_handle`, made
//! for direct calls into SQLite) and the statement is stepped in place, one reused row
//! buffer for the whole result.

use crate::time::{format_local, parse_local};
use crate::DbValue;
use libsqlite3_sys as ffi;
use std::collections::HashSet;
use std::ffi::{c_char, c_int, CStr};
use std::ops::ControlFlow;
use std::ptr::NonNull;

/// An SQLite error while preparing, binding or stepping.
#[derive(Debug)]
pub(crate) struct ScanError {
    pub message: String,
    /// Rows handed out before it.
    pub rows: u64,
}

/// The prepared statement, finalized when dropped (also on an early return).
struct Statement(*mut ffi::sqlite3_stmt);

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful sqlite3_prepare_v2 and is finalized
        // once, here.
        unsafe { ffi::sqlite3_finalize(self.0) };
    }
}

fn last_error(db: *mut ffi::sqlite3, what: &str, rows: u64) -> ScanError {
    // SAFETY: `db` is an open connection; sqlite3_errmsg returns a NUL-terminated string
    // owned by SQLite, copied before any other call on the connection.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
        .to_string_lossy()
        .into_owned();
    ScanError {
        message: format!("{what}: {message}"),
        rows,
    }
}

/// The bytes of column `i` of the current row (TEXT or BLOB).
///
/// # Safety
/// `stmt` must be positioned on a row (sqlite3_step returned SQLITE_ROW) and `i` a
/// column of it; the slice is valid until the next call on the statement.
unsafe fn column_bytes<'a>(stmt: *mut ffi::sqlite3_stmt, i: c_int, text: bool) -> &'a [u8] {
    let ptr = if text {
        ffi::sqlite3_column_text(stmt, i).cast::<u8>()
    } else {
        ffi::sqlite3_column_blob(stmt, i).cast::<u8>()
    };
    let len = ffi::sqlite3_column_bytes(stmt, i);
    if ptr.is_null() || len <= 0 {
        return &[];
    }
    std::slice::from_raw_parts(ptr, len as usize)
}

/// Runs `sql` with `binds` on the connection `db` (which the caller has locked out of
/// sqlx's worker for the duration) and hands each row to `each` until it breaks. Columns
/// named in `time_cols` (lower case) are read as times, as the sqlx path reads them.
pub(crate) fn scan(
    db: NonNull<ffi::sqlite3>,
    sql: &str,
    binds: &[&DbValue],
    time_cols: &HashSet<String>,
    each: &mut dyn FnMut(&[DbValue]) -> ControlFlow<()>,
) -> Result<u64, ScanError> {
    let db = db.as_ptr();
    let sql_len = c_int::try_from(sql.len()).map_err(|_| ScanError {
        message: "statement longer than 2 GiB".into(),
        rows: 0,
    })?;
    let mut raw: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
    // SAFETY: `db` is open and locked for this thread; the SQL text is passed with its
    // length, so it needs no NUL terminator.
    let rc = unsafe {
        ffi::sqlite3_prepare_v2(
            db,
            sql.as_ptr().cast::<c_char>(),
            sql_len,
            &mut raw,
            std::ptr::null_mut(),
        )
    };
    if rc != ffi::SQLITE_OK || raw.is_null() {
        return Err(last_error(db, "prepare", 0));
    }
    let stmt = Statement(raw);
    for (n, v) in binds.iter().enumerate() {
        let idx = n as c_int + 1;
        let time_text;
        // SAFETY: `stmt.0` is a prepared statement; text is copied by SQLite
        // (SQLITE_TRANSIENT) before the call returns.
        let rc = unsafe {
            match *v {
                DbValue::Null => ffi::sqlite3_bind_null(stmt.0, idx),
                DbValue::Int(i) => ffi::sqlite3_bind_int64(stmt.0, idx, *i),
                DbValue::Double(d) => ffi::sqlite3_bind_double(stmt.0, idx, *d),
                DbValue::Str(s) => bind_text(stmt.0, idx, s),
                DbValue::Time(t) => {
                    // Kamailio's db_sqlite convention, as the sqlx path binds it.
                    time_text = format_local(*t);
                    bind_text(stmt.0, idx, &time_text)
                }
            }
        };
        if rc != ffi::SQLITE_OK {
            return Err(last_error(db, "bind", 0));
        }
    }
    // SAFETY: a prepared statement.
    let ncols = unsafe { ffi::sqlite3_column_count(stmt.0) };
    let is_time: Vec<bool> = (0..ncols)
        .map(|i| {
            // SAFETY: `i` is a column of the statement; the name is copied at once.
            let name = unsafe { ffi::sqlite3_column_name(stmt.0, i) };
            !name.is_null()
                && time_cols.contains(
                    &unsafe { CStr::from_ptr(name) }
                        .to_string_lossy()
                        .to_ascii_lowercase(),
                )
        })
        .collect();
    let mut row: Vec<DbValue> = Vec::with_capacity(ncols as usize);
    let mut rows = 0u64;
    loop {
        // SAFETY: a prepared statement, stepped on the thread that holds the connection.
        match unsafe { ffi::sqlite3_step(stmt.0) } {
            ffi::SQLITE_ROW => {}
            ffi::SQLITE_DONE => return Ok(rows),
            _ => return Err(last_error(db, "step", rows)),
        }
        row.clear();
        for i in 0..ncols {
            let time = is_time[i as usize];
            // SAFETY: the statement is on a row and `i` is one of its columns; the bytes
            // are copied into the value before the next call on the statement.
            let v = unsafe {
                match ffi::sqlite3_column_type(stmt.0, i) {
                    ffi::SQLITE_NULL => DbValue::Null,
                    ffi::SQLITE_INTEGER if time => {
                        DbValue::Time(ffi::sqlite3_column_int64(stmt.0, i))
                    }
                    ffi::SQLITE_INTEGER => DbValue::Int(ffi::sqlite3_column_int64(stmt.0, i)),
                    ffi::SQLITE_FLOAT if time => {
                        DbValue::Time(ffi::sqlite3_column_double(stmt.0, i) as i64)
                    }
                    ffi::SQLITE_FLOAT => DbValue::Double(ffi::sqlite3_column_double(stmt.0, i)),
                    ffi::SQLITE_BLOB => {
                        DbValue::Str(String::from_utf8_lossy(column_bytes(stmt.0, i, false)).into())
                    }
                    _ => {
                        let s = String::from_utf8_lossy(column_bytes(stmt.0, i, true));
                        match time.then(|| parse_local(&s)).flatten() {
                            Some(t) => DbValue::Time(t),
                            None => DbValue::Str(s.into_owned()),
                        }
                    }
                }
            };
            row.push(v);
        }
        rows += 1;
        if each(&row).is_break() {
            return Ok(rows);
        }
    }
}

/// # Safety
/// `stmt` must be a prepared statement and `idx` one of its parameters.
unsafe fn bind_text(stmt: *mut ffi::sqlite3_stmt, idx: c_int, s: &str) -> c_int {
    // Longer than 2 GiB cannot be bound: SQLite's own limit refuses it anyway.
    let Ok(len) = c_int::try_from(s.len()) else {
        return ffi::SQLITE_TOOBIG;
    };
    ffi::sqlite3_bind_text(
        stmt,
        idx,
        s.as_ptr().cast::<c_char>(),
        len,
        ffi::SQLITE_TRANSIENT(),
    )
}
