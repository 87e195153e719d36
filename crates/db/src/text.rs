//! Kamailio's db_text: a directory with one text file per table.
//!
//! File format (as Kamailio's db_text reads and writes it):
//! - first line: the columns, separated by spaces, each `name(type[,null|,auto])` with
//!   type `int`, `double`, `str`/`string`, `time`/`datetime` (unix seconds written as an
//!   integer) or `blob`;
//! - then one row per line, fields separated by `:`; in text fields `\:` `\\` `\n` `\r`
//!   `\t` `\0` are escapes; an empty field is NULL (and an empty string in a non-null text
//!   column).
//!
//! Each table is kept in memory and reloaded when the file's modification time or size
//! changes (an operator edited it); every change rewrites the file through a temporary file
//! and a rename, so a reader never sees half a table.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::time::{format_local, parse_local};
use crate::url::DbUrl;
use crate::{Cond, DbError, DbValue, Op, OrderBy, Row};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ColType {
    Int,
    Double,
    Str,
    Time,
    Blob,
}

#[derive(Clone, Debug)]
pub(crate) struct Column {
    pub name: String,
    pub ty: ColType,
    /// The type as the file spells it (`str` or `string`, `time`…), kept on rewrite.
    pub type_word: String,
    pub nullable: bool,
    pub auto: bool,
}

impl Column {
    pub(crate) fn new(name: &str, ty: ColType, nullable: bool, auto: bool) -> Column {
        let type_word = match ty {
            ColType::Int => "int",
            ColType::Double => "double",
            ColType::Str => "string",
            ColType::Time => "time",
            ColType::Blob => "blob",
        };
        Column {
            name: name.to_string(),
            ty,
            type_word: type_word.to_string(),
            nullable,
            auto,
        }
    }
}

struct Table {
    cols: Vec<Column>,
    rows: Vec<Row>,
    /// Modification time and size of the file this was loaded from or last written to.
    stamp: (SystemTime, u64),
}

pub(crate) struct TextDb {
    dir: PathBuf,
    url: String,
    tables: Mutex<HashMap<String, Table>>,
}

impl TextDb {
    pub(crate) fn open(url: &DbUrl, shown: &str) -> Result<TextDb, DbError> {
        let dir = url.path.clone().unwrap_or_default();
        if !dir.is_dir() {
            return Err(DbError::Connect {
                url: shown.to_string(),
                message: format!("{} is not a directory", dir.display()),
            });
        }
        Ok(TextDb {
            dir,
            url: shown.to_string(),
            tables: Mutex::new(HashMap::new()),
        })
    }

    fn err(&self, table: &str, message: impl Into<String>) -> DbError {
        DbError::Invalid {
            url: self.url.clone(),
            table: table.to_string(),
            message: message.into(),
        }
    }

    fn io_err(&self, table: &str, path: &Path, e: std::io::Error) -> DbError {
        DbError::Query {
            url: self.url.clone(),
            table: table.to_string(),
            message: format!("{}: {e}", path.display()),
            connection_lost: false,
            statement_refused: false,
        }
    }

    /// Runs `f` on the table, loaded or reloaded from its file as needed; when `f` returns
    /// `true` as its second value the table is written back.
    fn with_table<R>(
        &self,
        table: &str,
        f: impl FnOnce(&mut Table) -> Result<(R, bool), DbError>,
    ) -> Result<R, DbError> {
        let path = self.dir.join(table);
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let meta = fs::metadata(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                self.err(
                    table,
                    format!("no such table ({} is missing)", path.display()),
                )
            } else {
                self.io_err(table, &path, e)
            }
        })?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if !matches!(tables.get(table), Some(t) if t.stamp == stamp) {
            let text = fs::read(&path).map_err(|e| self.io_err(table, &path, e))?;
            let (cols, rows) = parse_table(&String::from_utf8_lossy(&text))
                .map_err(|m| self.err(table, format!("{}: {m}", path.display())))?;
            tables.insert(table.to_string(), Table { cols, rows, stamp });
        }
        let t = tables.get_mut(table).expect("inserted above");
        let (r, changed) = f(t)?;
        if changed {
            let text = render_table(&t.cols, &t.rows);
            t.stamp = self
                .write_atomically(&path, text.as_bytes())
                .map_err(|e| self.io_err(table, &path, e))?;
        }
        Ok(r)
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> std::io::Result<(SystemTime, u64)> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("table");
        let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
        let old_perms = fs::metadata(path).ok().map(|m| m.permissions());
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            if let Some(p) = old_perms {
                fs::set_permissions(&tmp, p)?;
            }
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        let meta = fs::metadata(path)?;
        Ok((
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        ))
    }

    /// Creates an empty table file unless one exists; returns whether it created it.
    pub(crate) fn create_table(&self, table: &str, cols: &[Column]) -> Result<bool, DbError> {
        let path = self.dir.join(table);
        if path.exists() {
            return Ok(false);
        }
        self.write_atomically(&path, render_table(cols, &[]).as_bytes())
            .map_err(|e| self.io_err(table, &path, e))?;
        Ok(true)
    }

    pub(crate) fn select(
        &self,
        table: &str,
        cols: &[&str],
        conds: &[Cond<'_>],
        order: Option<OrderBy<'_>>,
    ) -> Result<Vec<Row>, DbError> {
        self.with_table(table, |t| {
            let proj: Vec<usize> = if cols.is_empty() {
                (0..t.cols.len()).collect()
            } else {
                cols.iter()
                    .map(|c| self.col_index(table, t, c))
                    .collect::<Result<_, _>>()?
            };
            let filter = self.compile_conds(table, t, conds)?;
            let mut hits: Vec<&Row> = t.rows.iter().filter(|r| row_matches(r, &filter)).collect();
            if let Some(o) = order {
                let i = self.col_index(table, t, o.col)?;
                hits.sort_by(|a, b| {
                    let ord = compare_cells(&a[i], &b[i]);
                    if o.desc {
                        ord.reverse()
                    } else {
                        ord
                    }
                });
            }
            let rows = hits
                .into_iter()
                .map(|r| proj.iter().map(|&i| r[i].clone()).collect())
                .collect();
            Ok((rows, false))
        })
    }

    pub(crate) fn insert(
        &self,
        table: &str,
        cols: &[&str],
        vals: &[DbValue],
    ) -> Result<u64, DbError> {
        self.with_table(table, |t| {
            let row = self.new_row(table, t, cols, vals)?;
            t.rows.push(row);
            Ok((1, true))
        })
    }

    pub(crate) fn replace(
        &self,
        table: &str,
        key_cols: &[&str],
        cols: &[&str],
        vals: &[DbValue],
    ) -> Result<(), DbError> {
        self.with_table(table, |t| {
            let keys: Vec<Cond<'_>> = key_cols
                .iter()
                .map(|k| {
                    let i = cols.iter().position(|c| c == k).unwrap_or_default();
                    Cond::eq(k, vals[i].clone())
                })
                .collect();
            let filter = self.compile_conds(table, t, &keys)?;
            match t.rows.iter().position(|r| row_matches(r, &filter)) {
                Some(pos) => {
                    let updates = self.coerce_set(table, t, cols.iter().copied().zip(vals))?;
                    for (i, v) in updates {
                        t.rows[pos][i] = v;
                    }
                }
                None => {
                    let row = self.new_row(table, t, cols, vals)?;
                    t.rows.push(row);
                }
            }
            Ok(((), true))
        })
    }

    pub(crate) fn update(
        &self,
        table: &str,
        conds: &[Cond<'_>],
        set: &[(&str, DbValue)],
    ) -> Result<u64, DbError> {
        self.with_table(table, |t| {
            let filter = self.compile_conds(table, t, conds)?;
            let updates = self.coerce_set(table, t, set.iter().map(|(c, v)| (*c, v)))?;
            let mut n = 0;
            for r in t.rows.iter_mut().filter(|r| row_matches(r, &filter)) {
                for (i, v) in &updates {
                    r[*i] = v.clone();
                }
                n += 1;
            }
            Ok((n, n > 0))
        })
    }

    pub(crate) fn delete(&self, table: &str, conds: &[Cond<'_>]) -> Result<u64, DbError> {
        self.with_table(table, |t| {
            let filter = self.compile_conds(table, t, conds)?;
            let before = t.rows.len();
            t.rows.retain(|r| !row_matches(r, &filter));
            let n = (before - t.rows.len()) as u64;
            Ok((n, n > 0))
        })
    }

    fn col_index(&self, table: &str, t: &Table, col: &str) -> Result<usize, DbError> {
        t.cols
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(col))
            .ok_or_else(|| self.err(table, format!("no column {col}")))
    }

    fn compile_conds<'c>(
        &self,
        table: &str,
        t: &Table,
        conds: &'c [Cond<'_>],
    ) -> Result<Vec<(usize, Op, &'c DbValue)>, DbError> {
        conds
            .iter()
            .map(|c| Ok((self.col_index(table, t, c.col)?, c.op, &c.val)))
            .collect()
    }

    fn coerce_set<'v>(
        &self,
        table: &str,
        t: &Table,
        set: impl Iterator<Item = (&'v str, &'v DbValue)>,
    ) -> Result<Vec<(usize, DbValue)>, DbError> {
        set.map(|(c, v)| {
            let i = self.col_index(table, t, c)?;
            let v = coerce(&t.cols[i], v).map_err(|m| self.err(table, m))?;
            Ok((i, v))
        })
        .collect()
    }

    fn new_row(
        &self,
        table: &str,
        t: &Table,
        cols: &[&str],
        vals: &[DbValue],
    ) -> Result<Row, DbError> {
        let mut row: Row = t
            .cols
            .iter()
            .map(|c| match c.ty {
                _ if c.nullable || c.auto => DbValue::Null,
                ColType::Int => DbValue::Int(0),
                ColType::Double => DbValue::Double(0.0),
                ColType::Time => DbValue::Time(0),
                ColType::Str | ColType::Blob => DbValue::Str(String::new()),
            })
            .collect();
        for (i, v) in self.coerce_set(table, t, cols.iter().copied().zip(vals))? {
            row[i] = v;
        }
        for (i, c) in t.cols.iter().enumerate() {
            if c.auto && row[i].is_null() {
                let max = t
                    .rows
                    .iter()
                    .filter_map(|r| r[i].as_int())
                    .max()
                    .unwrap_or(0);
                row[i] = DbValue::Int(max + 1);
            }
        }
        Ok(row)
    }
}

/// Converts a value to what the column holds; errors on text that is not a number for a
/// numeric column and on NULL for a non-null one.
fn coerce(col: &Column, v: &DbValue) -> Result<DbValue, String> {
    let bad = || {
        format!(
            "column {}: {v:?} does not fit type {}",
            col.name, col.type_word
        )
    };
    Ok(match (col.ty, v) {
        (_, DbValue::Null) if col.nullable || col.auto => DbValue::Null,
        (_, DbValue::Null) => return Err(format!("column {} cannot be NULL", col.name)),
        (ColType::Int, DbValue::Int(i) | DbValue::Time(i)) => DbValue::Int(*i),
        (ColType::Int, DbValue::Double(d)) => DbValue::Int(*d as i64),
        (ColType::Int, DbValue::Str(s)) => DbValue::Int(s.trim().parse().map_err(|_| bad())?),
        (ColType::Time, DbValue::Int(i) | DbValue::Time(i)) => DbValue::Time(*i),
        (ColType::Time, DbValue::Double(d)) => DbValue::Time(*d as i64),
        (ColType::Time, DbValue::Str(s)) => DbValue::Time(
            s.trim()
                .parse()
                .ok()
                .or_else(|| parse_local(s))
                .ok_or_else(bad)?,
        ),
        (ColType::Double, DbValue::Double(d)) => DbValue::Double(*d),
        (ColType::Double, DbValue::Int(i) | DbValue::Time(i)) => DbValue::Double(*i as f64),
        (ColType::Double, DbValue::Str(s)) => DbValue::Double(s.trim().parse().map_err(|_| bad())?),
        (ColType::Str | ColType::Blob, DbValue::Str(s)) => DbValue::Str(s.clone()),
        (ColType::Str | ColType::Blob, DbValue::Time(t)) => DbValue::Str(format_local(*t)),
        (ColType::Str | ColType::Blob, v) => DbValue::Str(v.to_string()),
    })
}

fn row_matches(row: &Row, filter: &[(usize, Op, &DbValue)]) -> bool {
    filter.iter().all(|(i, op, val)| {
        let cell = &row[*i];
        if val.is_null() {
            return cell.is_null() == (*op == Op::Eq);
        }
        if cell.is_null() {
            return false;
        }
        let ord = compare_values(cell, val);
        match op {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
        }
    })
}

/// Orders two non-null values: numerically when both are (or parse as) numbers, else as
/// text.
fn compare_values(a: &DbValue, b: &DbValue) -> Ordering {
    fn num(v: &DbValue) -> Option<f64> {
        match v {
            DbValue::Int(i) | DbValue::Time(i) => Some(*i as f64),
            DbValue::Double(d) => Some(*d),
            DbValue::Str(s) => s.trim().parse().ok(),
            DbValue::Null => None,
        }
    }
    match (a, b) {
        (DbValue::Str(x), DbValue::Str(y)) => x.cmp(y),
        (DbValue::Int(x) | DbValue::Time(x), DbValue::Int(y) | DbValue::Time(y)) => x.cmp(y),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => a.to_string().cmp(&b.to_string()),
        },
    }
}

/// Sort order with NULL first, as SQL databases mostly do for ascending order.
fn compare_cells(a: &DbValue, b: &DbValue) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => compare_values(a, b),
    }
}

fn parse_header(line: &str) -> Result<Vec<Column>, String> {
    let mut cols = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let open = rest
            .find('(')
            .ok_or_else(|| format!("column definition without '(': {rest}"))?;
        let close = rest[open..]
            .find(')')
            .map(|i| open + i)
            .ok_or_else(|| format!("column definition without ')': {rest}"))?;
        let name = rest[..open].trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("bad column name '{name}'"));
        }
        let mut spec = rest[open + 1..close].split(',').map(str::trim);
        let type_word = spec.next().unwrap_or_default().to_string();
        let lower = type_word.to_ascii_lowercase();
        // Kamailio decides by the first letter; `datetime` and `timestamp` are spelled out
        // first so they are not taken for a double and a text column.
        let ty = match lower.as_str() {
            "datetime" | "timestamp" | "time" => ColType::Time,
            _ => match lower.chars().next() {
                Some('i') => ColType::Int,
                Some('d') => ColType::Double,
                Some('s') => ColType::Str,
                Some('b') => ColType::Blob,
                Some('t') => ColType::Time,
                _ => return Err(format!("column {name}: unknown type '{type_word}'")),
            },
        };
        let mut col = Column {
            name: name.to_string(),
            ty,
            type_word,
            nullable: false,
            auto: false,
        };
        for flag in spec {
            match flag.to_ascii_lowercase().chars().next() {
                Some('n') => col.nullable = true,
                Some('a') if ty == ColType::Int => col.auto = true,
                _ => return Err(format!("column {name}: unknown attribute '{flag}'")),
            }
        }
        cols.push(col);
        rest = rest[close + 1..].trim_start();
    }
    if cols.is_empty() {
        return Err("empty header line".into());
    }
    Ok(cols)
}

fn parse_table(text: &str) -> Result<(Vec<Column>, Vec<Row>), String> {
    let mut lines = text.split('\n');
    let cols = parse_header(lines.next().unwrap_or_default())?;
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        // Kamailio escapes a CR inside a value, so a bare one ends a CRLF line.
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let fields = split_fields(line);
        if fields.len() != cols.len() {
            return Err(format!(
                "line {}: {} fields, the header has {} columns",
                n + 2,
                fields.len(),
                cols.len()
            ));
        }
        let row = cols
            .iter()
            .zip(fields)
            .map(|(c, f)| parse_field(c, f).map_err(|m| format!("line {}: {m}", n + 2)))
            .collect::<Result<Row, _>>()?;
        rows.push(row);
    }
    Ok((cols, rows))
}

/// Splits a row on unescaped ':' and undoes the escapes.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("never empty");
        match c {
            ':' => fields.push(String::new()),
            '\\' => match chars.next() {
                Some('n') => field.push('\n'),
                Some('r') => field.push('\r'),
                Some('t') => field.push('\t'),
                Some('0') => field.push('\0'),
                Some(other) => field.push(other),
                None => field.push('\\'),
            },
            c => field.push(c),
        }
    }
    fields
}

fn parse_field(col: &Column, f: String) -> Result<DbValue, String> {
    if f.is_empty() {
        return Ok(match col.ty {
            ColType::Str | ColType::Blob if !col.nullable => DbValue::Str(f),
            _ => DbValue::Null,
        });
    }
    let bad = |f: &str| format!("column {}: '{f}' is not a {}", col.name, col.type_word);
    Ok(match col.ty {
        ColType::Int => DbValue::Int(f.trim().parse().map_err(|_| bad(&f))?),
        ColType::Time => DbValue::Time(
            f.trim()
                .parse()
                .ok()
                .or_else(|| parse_local(&f))
                .ok_or_else(|| bad(&f))?,
        ),
        ColType::Double => DbValue::Double(f.trim().parse().map_err(|_| bad(&f))?),
        ColType::Str | ColType::Blob => DbValue::Str(f),
    })
}

fn render_table(cols: &[Column], rows: &[Row]) -> String {
    let mut out = String::new();
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&c.name);
        out.push('(');
        out.push_str(&c.type_word);
        if c.nullable {
            out.push_str(",null");
        } else if c.auto {
            out.push_str(",auto");
        }
        out.push(')');
    }
    out.push('\n');
    for r in rows {
        for (i, v) in r.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            match v {
                DbValue::Null => {}
                DbValue::Int(n) | DbValue::Time(n) => out.push_str(&n.to_string()),
                // Display never uses exponents, which Kamailio's reader does not take.
                DbValue::Double(d) if d.is_finite() => out.push_str(&d.to_string()),
                DbValue::Double(_) => out.push('0'),
                DbValue::Str(s) => escape_into(&mut out, s),
            }
        }
        out.push('\n');
    }
    out
}

/// Parses a db_text table file and renders it back as this module writes it: the
/// fuzz targets (crates/fuzz-check) check that nothing a file holds panics the reader and
/// that a rendered table reads back to the same table.
#[doc(hidden)]
pub fn reparse_table_text(text: &str) -> Result<String, String> {
    let (cols, rows) = parse_table(text)?;
    Ok(render_table(&cols, &rows))
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            ':' => out.push_str("\\:"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kamctl_header_with_trailing_space() {
        let cols = parse_header("id(int,auto) table_name(string) table_version(int) ").unwrap();
        assert_eq!(cols.len(), 3);
        assert!(cols[0].auto && cols[0].ty == ColType::Int);
        assert_eq!(cols[1].ty, ColType::Str);
        assert_eq!(cols[1].type_word, "string");
        let cols =
            parse_header("a(str,null) b(double) c(datetime) d(time) e( int , null )").unwrap();
        assert!(cols[0].nullable);
        assert_eq!(cols[1].ty, ColType::Double);
        assert_eq!(cols[2].ty, ColType::Time);
        assert_eq!(cols[3].ty, ColType::Time);
        assert!(cols[4].nullable && cols[4].ty == ColType::Int);
        assert!(parse_header("a(int").is_err());
        assert!(parse_header("a(float)").is_err());
        assert!(parse_header("a(str,auto)").is_err());
    }

    #[test]
    fn escapes_round_trip() {
        let cols = parse_header("id(int,auto) s(str,null) n(str)").unwrap();
        let tricky = "a:b\\c\nd\re\tf\0g:::";
        let rows = vec![
            vec![
                DbValue::Int(1),
                DbValue::Str(tricky.into()),
                DbValue::Str(String::new()),
            ],
            vec![DbValue::Int(2), DbValue::Null, DbValue::Str("x".into())],
        ];
        let text = render_table(&cols, &rows);
        assert_eq!(text.lines().count(), 3, "{text}");
        let (_, back) = parse_table(&text).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn field_count_mismatch_is_an_error() {
        let e = parse_table("a(int) b(str)\n1:x\n2\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
    }
}
