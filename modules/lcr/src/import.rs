//! `ferrosip lcr import`: a carrier rate sheet (CSV) turned into the rules and targets of
//! one LCR instance, cheapest carrier first for every prefix.
//!
//! The sheet has a header line naming its columns (any order): `carrier`, `prefix`, `rate`
//! and optionally `effective_date` (`YYYY-MM-DD`, optionally followed by ` HH:MM:SS`,
//! UTC). A carrier is an existing `lcr_gw` row with that `gw_name` in the instance or in
//! instance 0; the import never creates gateways (a misspelt carrier is an error, not a
//! new gateway). Rows whose effective date is still to come are skipped; when a carrier
//! has several current rates for one prefix, the one with the latest date applies.
//!
//! For each prefix the carriers are ordered by rate: the cheapest gets priority 0 (in LCR,
//! a lower value is a higher priority), the next rate priority 1, and so on; carriers with
//! the same rate share a priority (and weight 1), so calls spread over them at random.
//! Every rule and target of the instance is replaced in one transaction.

use crate::load::Tables;
use ferrosip_db::{Cond, Db, DbValue};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

/// Rows per batch handed to the database's bulk insert.
const BATCH_ROWS: usize = 10_000;

/// Kamailio's `lcr_rule.prefix` is VARCHAR(16).
const MAX_PREFIX_LEN: usize = 16;

/// One line of the sheet.
#[derive(Clone, Debug, PartialEq)]
pub struct RateRow {
    pub line: usize,
    pub carrier: String,
    pub prefix: String,
    pub rate: f64,
    /// Unix seconds (UTC) from which the rate applies.
    pub effective: Option<i64>,
}

/// Splits one CSV line: commas separate fields; a field in double quotes may hold commas
/// and doubled quotes.
fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.trim().is_empty() && !was_quoted => {
                cur.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut cur).trim().to_string());
                was_quoted = false;
            }
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(cur.trim().to_string());
    Ok(fields)
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
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
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

/// Parses a rate sheet. Blank lines and lines starting with `#` are ignored.
pub fn parse_csv(text: &str) -> Result<Vec<RateRow>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let (hline, header) = lines.next().ok_or("the file is empty (no header line)")?;
    let names: Vec<String> = split_csv_line(header)
        .map_err(|e| format!("line {hline}: {e}"))?
        .into_iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let col = |name: &str| names.iter().position(|n| n == name);
    let (Some(c_carrier), Some(c_prefix), Some(c_rate)) =
        (col("carrier"), col("prefix"), col("rate"))
    else {
        return Err(format!(
            "line {hline}: the header must name the columns carrier, prefix, rate \
             [, effective_date]; found: {header}"
        ));
    };
    let c_date = col("effective_date");
    let mut rows = Vec::new();
    for (n, line) in lines {
        let f = split_csv_line(line).map_err(|e| format!("line {n}: {e}"))?;
        if f.len() != names.len() {
            return Err(format!(
                "line {n}: {} fields, the header has {}",
                f.len(),
                names.len()
            ));
        }
        let carrier = f[c_carrier].clone();
        if carrier.is_empty() {
            return Err(format!("line {n}: empty carrier"));
        }
        let prefix = f[c_prefix].clone();
        if prefix.len() > MAX_PREFIX_LEN
            || prefix.bytes().any(|b| b.is_ascii_whitespace() || b == b'|')
        {
            return Err(format!(
                "line {n}: prefix '{prefix}' (at most {MAX_PREFIX_LEN} characters, no spaces)"
            ));
        }
        let rate: f64 = f[c_rate]
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| format!("line {n}: rate '{}' is not a number >= 0", f[c_rate]))?;
        let effective = match c_date.map(|c| f[c].as_str()) {
            None | Some("") => None,
            Some(d) => Some(parse_date(d).map_err(|e| format!("line {n}: {e}"))?),
        };
        rows.push(RateRow {
            line: n,
            carrier,
            prefix,
            rate,
            effective,
        });
    }
    Ok(rows)
}

/// The rules to write: for each prefix, the carriers with their priority.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// prefix -> (carrier, priority), best first.
    pub rules: BTreeMap<String, Vec<(String, u8)>>,
    /// Rows skipped because their effective date is after `now`.
    pub future_rows: usize,
}

/// Orders the carriers of every prefix by the rate in force at `now` (unix seconds).
pub fn plan(rows: &[RateRow], now: i64) -> Result<Plan, String> {
    let mut current: HashMap<(&str, &str), &RateRow> = HashMap::new();
    let mut future_rows = 0;
    for r in rows {
        if r.effective.is_some_and(|t| t > now) {
            future_rows += 1;
            continue;
        }
        let key = (r.prefix.as_str(), r.carrier.as_str());
        match current.get(&key) {
            Some(prev) if prev.effective.unwrap_or(i64::MIN) > r.effective.unwrap_or(i64::MIN) => {}
            Some(prev) if prev.effective == r.effective => {
                return Err(format!(
                    "lines {} and {}: two rates of {} for prefix '{}' with the same date",
                    prev.line, r.line, r.carrier, r.prefix
                ));
            }
            _ => {
                current.insert(key, r);
            }
        }
    }
    let mut by_prefix: BTreeMap<String, Vec<(&str, f64)>> = BTreeMap::new();
    for ((prefix, carrier), r) in current {
        by_prefix
            .entry(prefix.to_string())
            .or_default()
            .push((carrier, r.rate));
    }
    let mut rules = BTreeMap::new();
    for (prefix, mut carriers) in by_prefix {
        carriers.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
        let mut out = Vec::with_capacity(carriers.len());
        let mut priority: i64 = -1;
        let mut last_rate = None;
        for (carrier, rate) in carriers {
            if last_rate != Some(rate) {
                priority += 1;
                last_rate = Some(rate);
            }
            let p = u8::try_from(priority)
                .map_err(|_| format!("prefix '{prefix}': more than 256 different rates"))?;
            out.push((carrier.to_string(), p));
        }
        rules.insert(prefix, out);
    }
    Ok(Plan { rules, future_rows })
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
    let mut unknown: Vec<&str> = plan
        .rules
        .values()
        .flatten()
        .map(|(c, _)| c.as_str())
        .filter(|c| !by_name.contains_key(*c))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
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
    for prefix in plan.rules.keys() {
        batch.extend([
            DbValue::Int(lcr),
            DbValue::Str(prefix.clone()),
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
    let prefixes: Vec<&str> = plan.rules.keys().map(String::as_str).collect();
    let mut rule_ids = vec![-1i64; prefixes.len()];
    let mut failed = None;
    tx.select_each(
        &t.rule_table,
        &[&t.id, &t.prefix],
        &[Cond::eq(&t.lcr_id, lcr)],
        |row| {
            let id = row.first().and_then(DbValue::as_int);
            let prefix = row.get(1).and_then(DbValue::as_str).unwrap_or_default();
            match (id, prefixes.binary_search(&prefix)) {
                (Some(id), Ok(k)) if rule_ids[k] < 0 => {
                    rule_ids[k] = id;
                    ControlFlow::Continue(())
                }
                _ => {
                    failed = Some(format!(
                        "{}: a rule with prefix '{prefix}' appeared that the import did not                          write once (another writer?)",
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
    let mut targets = 0;
    for (carriers, rule_id) in plan.rules.values().zip(&rule_ids) {
        for (carrier, priority) in carriers {
            batch.extend([
                DbValue::Int(lcr),
                DbValue::Int(*rule_id),
                DbValue::Int(by_name[carrier]),
                DbValue::Int(i64::from(*priority)),
                DbValue::Int(1),
            ]);
            targets += 1;
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
        rules: plan.rules.len(),
        targets,
        future_rows: plan.future_rows,
        replaced_rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_and_header() {
        assert_eq!(
            split_csv_line(r#"a, "b,c" ,"d""e",,f"#).unwrap(),
            vec!["a", "b,c", "d\"e", "", "f"]
        );
        assert!(split_csv_line(r#"a,"b"#).is_err());
        let rows = parse_csv(
            "# daily sheet\nPrefix,Carrier,Rate,Effective_Date\r\n49,alpha,0.010,2020-01-01\n\n4930,beta,0.0085,\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].carrier, "alpha");
        assert_eq!(rows[0].prefix, "49");
        assert_eq!(rows[0].effective, Some(parse_date("2020-01-01").unwrap()));
        assert_eq!(rows[1].effective, None);
        assert_eq!(rows[1].line, 5);
        assert!(parse_csv("").is_err());
        assert!(
            parse_csv("carrier,prefix\nx,1\n").is_err(),
            "no rate column"
        );
        let e = parse_csv("carrier,prefix,rate\nx,1,cheap\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(parse_csv("carrier,prefix,rate\nx,1,-1\n").is_err());
        assert!(
            parse_csv("carrier,prefix,rate\nx,1\n").is_err(),
            "short line"
        );
        assert!(parse_csv("carrier,prefix,rate\nx,12345678901234567,1\n").is_err());
        assert!(parse_csv("carrier,prefix,rate,effective_date\nx,1,1,2024-13-01\n").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("2000-03-01").unwrap(), 951_868_800);
        assert_eq!(parse_date("2024-02-29 12:30:15").unwrap(), 1_709_209_815);
        assert_eq!(parse_date("2024-02-29T12:30").unwrap(), 1_709_209_800);
        assert!(parse_date("2024-02-29 25:00").is_err());
        assert!(parse_date("yesterday").is_err());
    }

    fn row(line: usize, carrier: &str, prefix: &str, rate: f64, date: Option<&str>) -> RateRow {
        RateRow {
            line,
            carrier: carrier.into(),
            prefix: prefix.into(),
            rate,
            effective: date.map(|d| parse_date(d).unwrap()),
        }
    }

    #[test]
    fn cheapest_first_per_prefix() {
        let now = parse_date("2025-06-01").unwrap();
        let rows = vec![
            row(2, "alpha", "49", 0.010, None),
            row(3, "beta", "49", 0.012, None),
            row(4, "alpha", "4930", 0.020, None),
            row(5, "beta", "4930", 0.008, None),
            row(6, "gamma", "4930", 0.008, None),
            // alpha's newest current rate for 49 wins over the older one...
            row(7, "alpha", "49", 0.015, Some("2025-05-01")),
            // ...and a future one is skipped.
            row(8, "beta", "49", 0.001, Some("2025-07-01")),
        ];
        let p = plan(&rows, now).unwrap();
        assert_eq!(p.future_rows, 1);
        assert_eq!(
            p.rules["49"],
            vec![("beta".to_string(), 0), ("alpha".to_string(), 1)]
        );
        assert_eq!(
            p.rules["4930"],
            vec![
                ("beta".to_string(), 0),
                ("gamma".to_string(), 0),
                ("alpha".to_string(), 1)
            ]
        );
        let dup = vec![row(2, "a", "1", 1.0, None), row(3, "a", "1", 2.0, None)];
        assert!(plan(&dup, now).is_err());
    }
}
