//! `ferrosip lcr import`: a carrier rate sheet (CSV) turned into the rules and targets of
//! one LCR instance, cheapest carrier first for every prefix.
//!
//! The sheet has a header line naming its columns (any order): `carrier`, `prefix`, `rate`
//! and optionally `effective_date` (`YYYY-MM-DD`, optionally followed by ` HH:MM:SS`,
//! UTC). Fields are RFC 4180 CSV (a field in double quotes may hold commas and doubled
//! quotes); spaces around a field are dropped. A carrier is an existing `lcr_gw` row with
//! that `gw_name` in the instance or in instance 0; the import never creates gateways (a
//! misspelt carrier is an error, not a new gateway). Rows whose effective date is still to
//! come are skipped; when a carrier has several current rates for one prefix, the one with
//! the latest date applies.
//!
//! For each prefix the carriers are ordered by rate: the cheapest gets priority 0 (in LCR,
//! a lower value is a higher priority), the next rate priority 1, and so on; carriers with
//! the same rate share a priority (and weight 1), so calls spread over them at random.
//! Every rule and target of the instance is replaced in one transaction.
//!
//! A deck of a million prefixes is ordinary, so nothing here makes a heap object per row:
//! carriers are interned, a prefix is one `u128`, and the plan is three flat vectors.

use crate::load::Tables;
use ferrosip_db::{Cond, Db, DbValue};
use std::collections::HashMap;
use std::ops::ControlFlow;

/// Rows per batch handed to the database's bulk insert.
const BATCH_ROWS: usize = 10_000;

/// Kamailio's `lcr_rule.prefix` is VARCHAR(16).
const MAX_PREFIX_LEN: usize = 16;

/// A prefix of at most 16 bytes packed big-endian into a `u128`, zero-padded: since a
/// prefix holds no control byte, the integer order is the prefix's byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(u128);

impl Prefix {
    /// `None` when it is longer than 16 bytes or holds whitespace, a control byte or `|`.
    pub fn new(s: &str) -> Option<Prefix> {
        let b = s.as_bytes();
        if b.len() > MAX_PREFIX_LEN || b.iter().any(|&c| c <= b' ' || c == b'|' || c == 0x7f) {
            return None;
        }
        let mut bytes = [0u8; MAX_PREFIX_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Some(Prefix(u128::from_be_bytes(bytes)))
    }

    pub fn to_str(self) -> String {
        let bytes = self.0.to_be_bytes();
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(MAX_PREFIX_LEN);
        String::from_utf8_lossy(&bytes[..len]).into_owned()
    }
}

impl std::fmt::Debug for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_str())
    }
}

/// One line of the sheet.
#[derive(Clone, Debug, PartialEq)]
pub struct RateRow {
    pub line: u64,
    /// Index into [`Sheet::carriers`].
    pub carrier: u32,
    pub prefix: Prefix,
    pub rate: f64,
    /// Unix seconds (UTC) from which the rate applies.
    pub effective: Option<i64>,
}

/// A parsed sheet: its rows, and the carrier names they point to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sheet {
    pub carriers: Vec<String>,
    pub rows: Vec<RateRow>,
    carrier_ids: HashMap<String, u32>,
}

impl Sheet {
    /// Adds one row; `line` is where it was read, for messages.
    pub fn push(
        &mut self,
        line: u64,
        carrier: &str,
        prefix: &str,
        rate: f64,
        effective: Option<i64>,
    ) -> Result<(), String> {
        if carrier.is_empty() {
            return Err(format!("line {line}: empty carrier"));
        }
        let prefix = Prefix::new(prefix).ok_or_else(|| {
            format!(
                "line {line}: prefix '{prefix}' (at most {MAX_PREFIX_LEN} characters, no spaces)"
            )
        })?;
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(format!("line {line}: rate '{rate}' is not a number >= 0"));
        }
        let carrier = match self.carrier_ids.get(carrier) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(self.carriers.len())
                    .map_err(|_| format!("line {line}: too many carriers"))?;
                self.carriers.push(carrier.to_string());
                self.carrier_ids.insert(carrier.to_string(), id);
                id
            }
        };
        self.rows.push(RateRow {
            line,
            carrier,
            prefix,
            rate,
            effective,
        });
        Ok(())
    }

    pub fn carrier(&self, row: &RateRow) -> &str {
        &self.carriers[row.carrier as usize]
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD[ HH:MM[:SS]]` (or with `T`) as unix seconds, UTC.
pub fn parse_date(s: &str) -> Result<i64, String> {
    let bad = || format!("'{s}' is not a date (YYYY-MM-DD[ HH:MM:SS])");
    let (date, time) = match s.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(t) = time {
        let hms: Vec<&str> = t.split(':').collect();
        if !(2..=3).contains(&hms.len()) {
            return Err(bad());
        }
        let mut mult = 3600;
        for part in hms {
            let v: i64 = part.parse().map_err(|_| bad())?;
            if !(0..60).contains(&v) || (mult == 3600 && v > 23) {
                return Err(bad());
            }
            secs += v * mult;
            mult /= 60;
        }
    }
    Ok(secs)
}

/// One field of a record as text, for messages and parsing.
fn field(rec: &csv::ByteRecord, i: usize, line: u64) -> Result<&str, String> {
    std::str::from_utf8(&rec[i]).map_err(|_| format!("line {line}: field {} is not UTF-8", i + 1))
}

/// Parses a rate sheet. Blank lines and lines starting with `#` are ignored.
pub fn parse_csv(text: &str) -> Result<Sheet, String> {
    // The csv crate's reader (RFC 4180 quoting, one reused record buffer) rather than a
    // hand-written splitter: rate decks come from many exporters.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut rec = csv::ByteRecord::new();
    // The reader's own line count skips some blank and comment lines, and a record's
    // offset is where the reader started, before the blank and comment lines it passed
    // over: lines are counted here from the first byte of the record itself, walking the
    // text once in all.
    let (mut counted_to, mut lines_before) = (0usize, 0u64);
    let bytes = text.as_bytes();
    let mut line_of = |rec: &csv::ByteRecord| {
        let mut at = rec
            .position()
            .map_or(0, |p| p.byte() as usize)
            .min(text.len());
        loop {
            match bytes.get(at) {
                Some(b'\r' | b'\n') => at += 1,
                Some(b'#') if at == 0 || bytes[at - 1] == b'\n' => {
                    at = bytes[at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(bytes.len(), |n| at + n + 1);
                }
                _ => break,
            }
        }
        if at >= counted_to {
            lines_before += bytes[counted_to..at]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            counted_to = at;
        }
        lines_before + 1
    };
    let skip = |rec: &csv::ByteRecord| {
        (rec.len() == 1 && rec[0].is_empty()) || rec.get(0).is_some_and(|f| f.starts_with(b"#"))
    };
    let read = |reader: &mut csv::Reader<&[u8]>, rec: &mut csv::ByteRecord| {
        reader
            .read_byte_record(rec)
            .map_err(|e| match e.position() {
                Some(p) => {
                    let at = (p.byte() as usize).min(text.len());
                    let line = 1 + text.as_bytes()[..at]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count();
                    format!("line {line}: {e}")
                }
                None => e.to_string(),
            })
    };
    let names: Vec<String> = loop {
        if !read(&mut reader, &mut rec)? {
            return Err("the file is empty (no header line)".into());
        }
        if !skip(&rec) {
            break rec
                .iter()
                .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
                .collect();
        }
    };
    let hline = line_of(&rec);
    let col = |name: &str| names.iter().position(|n| n == name);
    let (Some(c_carrier), Some(c_prefix), Some(c_rate)) =
        (col("carrier"), col("prefix"), col("rate"))
    else {
        return Err(format!(
            "line {hline}: the header must name the columns carrier, prefix, rate \
             [, effective_date]; found: {}",
            names.join(",")
        ));
    };
    let c_date = col("effective_date");
    let mut sheet = Sheet::default();
    while read(&mut reader, &mut rec)? {
        if skip(&rec) {
            continue;
        }
        let n = line_of(&rec);
        if rec.len() != names.len() {
            return Err(format!(
                "line {n}: {} fields, the header has {}",
                rec.len(),
                names.len()
            ));
        }
        let rate_text = field(&rec, c_rate, n)?;
        let rate: f64 = rate_text
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| format!("line {n}: rate '{rate_text}' is not a number >= 0"))?;
        let effective = match c_date.map(|c| field(&rec, c, n)).transpose()? {
            None | Some("") => None,
            Some(d) => Some(parse_date(d).map_err(|e| format!("line {n}: {e}"))?),
        };
        sheet.push(
            n,
            field(&rec, c_carrier, n)?,
            field(&rec, c_prefix, n)?,
            rate,
            effective,
        )?;
    }
    Ok(sheet)
}

/// The rules to write: for each prefix (in order), its carriers with their priority.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub carriers: Vec<String>,
    prefixes: Vec<Prefix>,
    /// `targets[starts[i]..starts[i + 1]]` are the carriers of `prefixes[i]`, best first.
    starts: Vec<u32>,
    /// (index into `carriers`, priority)
    targets: Vec<(u32, u8)>,
    /// Rows skipped because their effective date is after `now`.
    pub future_rows: usize,
}

impl Plan {
    /// How many rules (prefixes) it writes.
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    fn targets_at(&self, i: usize) -> &[(u32, u8)] {
        &self.targets[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// The carriers of one prefix with their priority, best first.
    pub fn targets_of(&self, prefix: &str) -> Option<Vec<(&str, u8)>> {
        let i = self.prefixes.binary_search(&Prefix::new(prefix)?).ok()?;
        Some(
            self.targets_at(i)
                .iter()
                .map(|&(c, p)| (self.carriers[c as usize].as_str(), p))
                .collect(),
        )
    }
}

/// Orders the carriers of every prefix by the rate in force at `now` (unix seconds).
pub fn plan(sheet: &Sheet, now: i64) -> Result<Plan, String> {
    let mut current: Vec<&RateRow> = Vec::with_capacity(sheet.rows.len());
    let mut future_rows = 0;
    for r in &sheet.rows {
        if r.effective.is_some_and(|t| t > now) {
            future_rows += 1;
        } else {
            current.push(r);
        }
    }
    // Equal rates are ordered by carrier name, so the plan does not depend on row order.
    let mut by_name: Vec<u32> = (0..sheet.carriers.len() as u32).collect();
    by_name.sort_unstable_by(|&a, &b| sheet.carriers[a as usize].cmp(&sheet.carriers[b as usize]));
    let mut name_rank = vec![0u32; by_name.len()];
    for (rank, &c) in by_name.iter().enumerate() {
        name_rank[c as usize] = rank as u32;
    }
    // Each (prefix, carrier) group starts with its latest-dated row.
    current.sort_unstable_by(|a, b| {
        (a.prefix, a.carrier)
            .cmp(&(b.prefix, b.carrier))
            .then(b.effective.cmp(&a.effective))
            .then(a.line.cmp(&b.line))
    });
    let mut plan = Plan {
        carriers: sheet.carriers.clone(),
        future_rows,
        ..Plan::default()
    };
    plan.starts.push(0);
    let mut of_prefix: Vec<(f64, u32)> = Vec::new();
    let mut k = 0;
    while k < current.len() {
        let prefix = current[k].prefix;
        of_prefix.clear();
        while k < current.len() && current[k].prefix == prefix {
            let first = current[k];
            of_prefix.push((first.rate, first.carrier));
            k += 1;
            if let Some(next) = current.get(k) {
                if next.prefix == prefix && next.carrier == first.carrier {
                    if next.effective == first.effective {
                        return Err(format!(
                            "lines {} and {}: two rates of {} for prefix '{}' with the same date",
                            first.line,
                            next.line,
                            sheet.carrier(first),
                            prefix.to_str()
                        ));
                    }
                    while k < current.len()
                        && current[k].prefix == prefix
                        && current[k].carrier == first.carrier
                    {
                        k += 1;
                    }
                }
            }
        }
        of_prefix.sort_unstable_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(name_rank[a.1 as usize].cmp(&name_rank[b.1 as usize]))
        });
        let mut priority: i64 = -1;
        let mut last_rate = None;
        for &(rate, carrier) in &of_prefix {
            if last_rate != Some(rate) {
                priority += 1;
                last_rate = Some(rate);
            }
            let p = u8::try_from(priority).map_err(|_| {
                format!(
                    "prefix '{}': more than 256 different rates",
                    prefix.to_str()
                )
            })?;
            plan.targets.push((carrier, p));
        }
        plan.prefixes.push(prefix);
        plan.starts.push(
            u32::try_from(plan.targets.len()).map_err(|_| "more than 2^32 targets".to_string())?,
        );
    }
    Ok(plan)
}

/// What an import wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub rules: usize,
    pub targets: usize,
    pub future_rows: usize,
    pub replaced_rules: u64,
}

/// Replaces every rule and target of instance `lcr_id` with `plan`, in one transaction:
/// a server reloading meanwhile sees the old rules or the new ones, never a mix.
pub async fn write(db: &Db, t: &Tables, lcr_id: u32, plan: &Plan) -> Result<Summary, String> {
    let lcr = i64::from(lcr_id);
    let gws = db
        .select(&t.gw_table, &[&t.id, &t.gw_name, &t.lcr_id], &[], None)
        .await
        .map_err(|e| e.to_string())?;
    let mut by_name: HashMap<String, i64> = HashMap::new();
    for g in &gws {
        let instance = g.get(2).and_then(DbValue::as_int);
        if instance != Some(lcr) && instance != Some(0) {
            continue;
        }
        let (Some(id), Some(name)) = (g.first().and_then(DbValue::as_int), g.get(1)) else {
            continue;
        };
        let name = name.to_string();
        if let Some(other) = by_name.insert(name.clone(), id) {
            return Err(format!(
                "two gateways are named '{name}' (ids {other} and {id}) in instance {lcr_id} or 0"
            ));
        }
    }
    let mut used = vec![false; plan.carriers.len()];
    for &(c, _) in &plan.targets {
        used[c as usize] = true;
    }
    let gw_of: Vec<Option<i64>> = plan
        .carriers
        .iter()
        .map(|c| by_name.get(c).copied())
        .collect();
    let mut unknown: Vec<&str> = plan
        .carriers
        .iter()
        .zip(&gw_of)
        .zip(&used)
        .filter(|((_, gw), used)| **used && gw.is_none())
        .map(|((c, _), _)| c.as_str())
        .collect();
    unknown.sort_unstable();
    if !unknown.is_empty() {
        return Err(format!(
            "no gateway named {} in {} (lcr_id {lcr_id} or 0); add the carriers' gateways first",
            unknown.join(", "),
            t.gw_table
        ));
    }
    let mut tx = db.transaction().await.map_err(|e| e.to_string())?;
    tx.delete(&t.target_table, &[Cond::eq(&t.lcr_id, lcr)])
        .await
        .map_err(|e| e.to_string())?;
    let replaced_rules = tx
        .delete(&t.rule_table, &[Cond::eq(&t.lcr_id, lcr)])
        .await
        .map_err(|e| e.to_string())?;
    // The bulk path: multi-row INSERTs of the rules, their ids read back by prefix (unique
    // in the plan), then multi-row INSERTs of the targets; batches bound the memory.
    let rule_cols = [t.lcr_id.as_str(), &t.prefix, &t.stopper, &t.enabled];
    let mut batch: Vec<DbValue> = Vec::with_capacity(BATCH_ROWS * 5);
    for prefix in &plan.prefixes {
        batch.extend([
            DbValue::Int(lcr),
            DbValue::Str(prefix.to_str()),
            DbValue::Int(0),
            DbValue::Int(1),
        ]);
        if batch.len() >= BATCH_ROWS * rule_cols.len() {
            tx.insert_rows(&t.rule_table, &rule_cols, &batch)
                .await
                .map_err(|e| e.to_string())?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        tx.insert_rows(&t.rule_table, &rule_cols, &batch)
            .await
            .map_err(|e| e.to_string())?;
        batch.clear();
    }
    let mut rule_ids = vec![-1i64; plan.prefixes.len()];
    let mut failed = None;
    tx.select_each(
        &t.rule_table,
        &[&t.id, &t.prefix],
        &[Cond::eq(&t.lcr_id, lcr)],
        |row| {
            let id = row.first().and_then(DbValue::as_int);
            let text = row.get(1).and_then(DbValue::as_str).unwrap_or_default();
            let at = Prefix::new(text).and_then(|p| plan.prefixes.binary_search(&p).ok());
            match (id, at) {
                (Some(id), Some(k)) if rule_ids[k] < 0 => {
                    rule_ids[k] = id;
                    ControlFlow::Continue(())
                }
                _ => {
                    failed = Some(format!(
                        "{}: a rule with prefix '{text}' appeared that the import did not \
                         write once (another writer?)",
                        t.rule_table
                    ));
                    ControlFlow::Break(())
                }
            }
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    if let Some(e) = failed {
        return Err(e);
    }
    if rule_ids.contains(&-1) {
        return Err(format!(
            "{}: some imported rules did not read back",
            t.rule_table
        ));
    }
    let target_cols = [
        t.lcr_id.as_str(),
        &t.rule_id,
        &t.gw_id,
        &t.priority,
        &t.weight,
    ];
    for (i, rule_id) in rule_ids.iter().enumerate() {
        for &(carrier, priority) in plan.targets_at(i) {
            let gw = gw_of[carrier as usize].expect("every used carrier has a gateway");
            batch.extend([
                DbValue::Int(lcr),
                DbValue::Int(*rule_id),
                DbValue::Int(gw),
                DbValue::Int(i64::from(priority)),
                DbValue::Int(1),
            ]);
        }
        if batch.len() >= BATCH_ROWS * target_cols.len() {
            tx.insert_rows(&t.target_table, &target_cols, &batch)
                .await
                .map_err(|e| e.to_string())?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        tx.insert_rows(&t.target_table, &target_cols, &batch)
            .await
            .map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(Summary {
        rules: plan.len(),
        targets: plan.targets.len(),
        future_rows: plan.future_rows,
        replaced_rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_and_header() {
        let sheet = parse_csv(
            "# daily sheet\nPrefix,Carrier,Rate,Effective_Date\r\n49,alpha,0.010,2020-01-01\n\n \
             4930 ,\"beta, \"\"the\"\" carrier\",0.0085,\n   \n",
        )
        .unwrap();
        assert_eq!(sheet.rows.len(), 2);
        let (a, b) = (&sheet.rows[0], &sheet.rows[1]);
        assert_eq!(sheet.carrier(a), "alpha");
        assert_eq!(a.prefix, Prefix::new("49").unwrap());
        assert_eq!(a.effective, Some(parse_date("2020-01-01").unwrap()));
        assert_eq!(sheet.carrier(b), "beta, \"the\" carrier");
        assert_eq!(b.prefix.to_str(), "4930");
        assert_eq!(b.effective, None);
        assert_eq!(b.line, 5);
        assert!(parse_csv("").is_err());
        assert!(parse_csv("# only a comment\n").is_err());
        assert!(
            parse_csv("carrier,prefix\nx,1\n").is_err(),
            "no rate column"
        );
        let e = parse_csv("carrier,prefix,rate\nx,1,cheap\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(parse_csv("carrier,prefix,rate\nx,1,-1\n").is_err());
        let e = parse_csv("carrier,prefix,rate\nx,1,1\ny,2\n").unwrap_err();
        assert!(e.contains("line 3"), "short line: {e}");
        assert!(parse_csv("carrier,prefix,rate\nx,12345678901234567,1\n").is_err());
        assert!(parse_csv("carrier,prefix,rate\nx,1 2,1\n").is_err());
        assert!(
            parse_csv("carrier,prefix,rate\n,1,1\n").is_err(),
            "empty carrier"
        );
        assert!(parse_csv("carrier,prefix,rate,effective_date\nx,1,1,2024-13-01\n").is_err());
        let e = parse_csv("carrier,prefix,rate\n\n# note\nx,1,1\ny,\"2,1\n").unwrap_err();
        assert!(e.contains("line 5"), "{e}");
    }

    #[test]
    fn prefixes_order_as_their_bytes() {
        let mut v: Vec<Prefix> = ["49", "4", "+49", "490", "5", "1234567890123456", "A1"]
            .iter()
            .map(|s| Prefix::new(s).unwrap())
            .collect();
        v.sort();
        let s: Vec<String> = v.iter().map(|p| p.to_str()).collect();
        let mut want = vec!["49", "4", "+49", "490", "5", "1234567890123456", "A1"];
        want.sort();
        assert_eq!(s, want);
        assert!(Prefix::new("12345678901234567").is_none());
        assert!(Prefix::new("1\u{0}").is_none());
        assert!(Prefix::new("1|2").is_none());
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("2000-03-01").unwrap(), 951_868_800);
        assert_eq!(parse_date("2024-02-29 12:30:15").unwrap(), 1_709_209_815);
        assert_eq!(parse_date("2024-02-29T12:30").unwrap(), 1_709_209_800);
        assert!(parse_date("2024-02-29 25:00").is_err());
        assert!(parse_date("2024-02-29-01").is_err());
        assert!(parse_date("yesterday").is_err());
    }

    fn sheet(rows: &[(u64, &str, &str, f64, Option<&str>)]) -> Sheet {
        let mut s = Sheet::default();
        for &(line, carrier, prefix, rate, date) in rows {
            s.push(
                line,
                carrier,
                prefix,
                rate,
                date.map(|d| parse_date(d).unwrap()),
            )
            .unwrap();
        }
        s
    }

    #[test]
    fn cheapest_first_per_prefix() {
        let now = parse_date("2025-06-01").unwrap();
        let rows = sheet(&[
            (2, "alpha", "49", 0.010, None),
            (3, "beta", "49", 0.012, None),
            (4, "alpha", "4930", 0.020, None),
            (5, "gamma", "4930", 0.008, None),
            (6, "beta", "4930", 0.008, None),
            // alpha's newest current rate for 49 wins over the older one...
            (7, "alpha", "49", 0.015, Some("2025-05-01")),
            // ...and a future one is skipped.
            (8, "beta", "49", 0.001, Some("2025-07-01")),
            (9, "beta", "4930", 0.5, Some("2024-01-01")),
        ]);
        let p = plan(&rows, now).unwrap();
        assert_eq!(p.future_rows, 1);
        assert_eq!(p.len(), 2);
        assert_eq!(p.targets_of("49").unwrap(), vec![("beta", 0), ("alpha", 1)]);
        // An undated rate counts as the oldest: beta's rate dated 2024 (0.5) applies to
        // 4930, not its undated 0.008.
        assert_eq!(
            p.targets_of("4930").unwrap(),
            vec![("gamma", 0), ("alpha", 1), ("beta", 2)]
        );
        let dup = sheet(&[(2, "a", "1", 1.0, None), (3, "a", "1", 2.0, None)]);
        let e = plan(&dup, now).unwrap_err();
        assert!(e.contains("lines 2 and 3"), "{e}");
        // An older duplicate under a newer rate is no error.
        let older = sheet(&[
            (2, "a", "1", 1.0, Some("2020-01-01")),
            (3, "a", "1", 2.0, Some("2020-01-01")),
            (4, "a", "1", 3.0, Some("2021-01-01")),
        ]);
        assert_eq!(
            plan(&older, now).unwrap().targets_of("1").unwrap(),
            vec![("a", 0)]
        );
    }
}
