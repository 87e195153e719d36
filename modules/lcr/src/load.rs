//! Reading the three LCR tables into a [`Snapshot`], with Kamailio's checks: a row it
//! would refuse makes the whole load fail (the running snapshot stays), rows it skips
//! (disabled rules, gateways defunct for ever, targets of either) are skipped.

use crate::data::{Gateway, GwTransport, Instance, InstanceBuilder, Snapshot, Target};
use ferrosip_api::ModuleParams;
use ferrosip_db::{Cond, Db, DbValue};
use std::borrow::Cow;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::atomic::AtomicU64;

/// A `defunct` value at or above this means "not in use": the gateway is not loaded.
const DEFUNCT_FOREVER: i64 = 4_294_967_295;

/// Table and column names (module parameters), checked as SQL identifiers at load.
#[derive(Clone, Debug)]
pub struct Tables {
    pub gw_table: String,
    pub rule_table: String,
    pub target_table: String,
    pub id: String,
    pub lcr_id: String,
    pub gw_name: String,
    pub ip_addr: String,
    pub hostname: String,
    pub port: String,
    pub params: String,
    pub uri_scheme: String,
    pub transport: String,
    pub strip: String,
    pub prefix: String,
    pub tag: String,
    pub flags: String,
    pub defunct: String,
    pub from_uri: String,
    pub request_uri: String,
    pub stopper: String,
    pub enabled: String,
    pub rule_id: String,
    pub gw_id: String,
    pub priority: String,
    pub weight: String,
}

impl Tables {
    pub fn from_params(p: &ModuleParams) -> Result<Tables, String> {
        let get = |name: &str| -> Result<String, String> {
            let v = p.string(name);
            ferrosip_db::check_identifier(&v)
                .map(str::to_string)
                .map_err(|e| format!("{name}: {e}"))
        };
        Ok(Tables {
            gw_table: get("lcr_gw_table")?,
            rule_table: get("lcr_rule_table")?,
            target_table: get("lcr_rule_target_table")?,
            id: get("id_column")?,
            lcr_id: get("lcr_id_column")?,
            gw_name: get("gw_name_column")?,
            ip_addr: get("ip_addr_column")?,
            hostname: get("hostname_column")?,
            port: get("port_column")?,
            params: get("params_column")?,
            uri_scheme: get("uri_scheme_column")?,
            transport: get("transport_column")?,
            strip: get("strip_column")?,
            prefix: get("prefix_column")?,
            tag: get("tag_column")?,
            flags: get("flags_column")?,
            defunct: get("defunct_column")?,
            from_uri: get("from_uri_column")?,
            request_uri: get("request_uri_column")?,
            stopper: get("stopper_column")?,
            enabled: get("enabled_column")?,
            rule_id: get("rule_id_column")?,
            gw_id: get("gw_id_column")?,
            priority: get("priority_column")?,
            weight: get("weight_column")?,
        })
    }

    /// Kamailio's default names.
    pub fn kamailio() -> Tables {
        let s = |v: &str| v.to_string();
        Tables {
            gw_table: s("lcr_gw"),
            rule_table: s("lcr_rule"),
            target_table: s("lcr_rule_target"),
            id: s("id"),
            lcr_id: s("lcr_id"),
            gw_name: s("gw_name"),
            ip_addr: s("ip_addr"),
            hostname: s("hostname"),
            port: s("port"),
            params: s("params"),
            uri_scheme: s("uri_scheme"),
            transport: s("transport"),
            strip: s("strip"),
            prefix: s("prefix"),
            tag: s("tag"),
            flags: s("flags"),
            defunct: s("defunct"),
            from_uri: s("from_uri"),
            request_uri: s("request_uri"),
            stopper: s("stopper"),
            enabled: s("enabled"),
            rule_id: s("rule_id"),
            gw_id: s("gw_id"),
            priority: s("priority"),
            weight: s("weight"),
        }
    }
}

/// Limits from the module parameters.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `lcr_count`: instances 1..=lcr_count are loaded.
    pub lcr_count: u32,
    /// `lcr_gw_count`: at most this many gateways per instance (minus one, as Kamailio).
    pub gw_count: u32,
}

/// An integer column (db_text and some drivers give numbers as text).
fn int(v: Option<&DbValue>) -> Option<i64> {
    match v? {
        DbValue::Int(i) | DbValue::Time(i) => Some(*i),
        DbValue::Double(d) => Some(*d as i64),
        DbValue::Str(s) => s.trim().parse().ok(),
        DbValue::Null => None,
    }
}

/// A text column; NULL reads as empty.
fn text(v: Option<&DbValue>) -> String {
    text_ref(v).into_owned()
}

/// A text column without copying it when it is text.
fn text_ref(v: Option<&DbValue>) -> Cow<'_, str> {
    match v {
        None | Some(DbValue::Null) => Cow::Borrowed(""),
        Some(DbValue::Str(s)) => Cow::Borrowed(s),
        Some(other) => Cow::Owned(other.to_string()),
    }
}

/// Loads every instance from the database. Rules and targets are streamed from the
/// database into compact records (no table of rows in memory), while the running
/// snapshot keeps serving.
pub async fn load(db: &Db, t: &Tables, limits: Limits) -> Result<Snapshot, String> {
    let mut instances = vec![Instance::default()];
    let shared = load_gateways(db, t, 0).await?;
    for lcr_id in 1..=limits.lcr_count {
        let mut gws = load_gateways(db, t, lcr_id).await?;
        gws.extend(shared.iter().map(Gateway::duplicate));
        if gws.len() + 1 > limits.gw_count as usize {
            return Err(format!(
                "lcr instance {lcr_id}: {} gateways, more than lcr_gw_count allows ({})",
                gws.len(),
                limits.gw_count
            ));
        }
        let mut builder = InstanceBuilder::default();
        load_rules(db, t, lcr_id, &mut builder).await?;
        load_targets(db, t, lcr_id, &gws, &mut builder).await?;
        instances.push(builder.finish(gws));
    }
    Ok(Snapshot {
        instances,
        loaded_at: now(),
    })
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn load_gateways(db: &Db, t: &Tables, lcr_id: u32) -> Result<Vec<Gateway>, String> {
    let cols = [
        t.id.as_str(),
        &t.gw_name,
        &t.ip_addr,
        &t.hostname,
        &t.port,
        &t.params,
        &t.uri_scheme,
        &t.transport,
        &t.strip,
        &t.prefix,
        &t.tag,
        &t.flags,
        &t.defunct,
    ];
    let rows = db
        .select(
            &t.gw_table,
            &cols,
            &[Cond::eq(&t.lcr_id, i64::from(lcr_id))],
            Some(&t.id),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(gw) = gateway_row(row)? {
            out.push(gw);
        }
    }
    Ok(out)
}

/// One `lcr_gw` row (columns in the order `load_gateways` selects them); `None` for a
/// gateway that is out of use (defunct for ever).
pub(crate) fn gateway_row(row: &[DbValue]) -> Result<Option<Gateway>, String> {
    let id = int(row.first())
        .and_then(|i| u32::try_from(i).ok())
        .ok_or("lcr_gw row without a valid id")?;
    let err = |m: &str| format!("lcr_gw {id}: {m}");
    let defunct = int(row.get(12)).unwrap_or(0);
    if defunct >= DEFUNCT_FOREVER {
        return Ok(None);
    }
    let ip_text = text(row.get(2));
    let ip = match ip_text.trim() {
        "" => None,
        s => Some(
            s.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map_err(|_| err(&format!("ip_addr '{s}' is not an IP address")))?,
        ),
    };
    let hostname = text(row.get(3));
    if ip.is_none() && hostname.is_empty() {
        return Err(err("ip_addr and hostname are both empty"));
    }
    let port = match int(row.get(4)) {
        None => 0,
        Some(p) => u16::try_from(p).map_err(|_| err(&format!("port {p} is out of range")))?,
    };
    let params = text(row.get(5));
    if !params.is_empty() && !params.starts_with(';') {
        return Err(err("params must start with ';'"));
    }
    let scheme_code = int(row.get(6));
    let scheme = match scheme_code {
        None | Some(1) => "sip:",
        Some(2) => "sips:",
        Some(s) => return Err(err(&format!("unknown uri_scheme {s} (1 sip, 2 sips)"))),
    };
    let transport = match int(row.get(7)) {
        None | Some(0) => None,
        Some(c) => Some(GwTransport::from_code(c).ok_or_else(|| {
            err(&format!(
                "unknown transport {c} (1 udp, 2 tcp, 3 tls, 4 sctp)"
            ))
        })?),
    };
    if scheme_code == Some(2) && transport == Some(GwTransport::Udp) {
        return Err(err("a sips gateway cannot use udp"));
    }
    let strip = int(row.get(8)).unwrap_or(0);
    let strip = u32::try_from(strip).map_err(|_| err(&format!("strip {strip} is negative")))?;
    Ok(Some(Gateway {
        id,
        name: text(row.get(1)),
        scheme,
        ip,
        hostname,
        port,
        params,
        transport,
        strip,
        prefix: text(row.get(9)),
        tag: text(row.get(10)),
        flags: int(row.get(11)).unwrap_or(0) as u32,
        defunct_until: AtomicU64::new(defunct.max(0) as u64),
    }))
}

async fn load_rules(
    db: &Db,
    t: &Tables,
    lcr_id: u32,
    builder: &mut InstanceBuilder,
) -> Result<(), String> {
    let cols = [
        t.id.as_str(),
        &t.prefix,
        &t.from_uri,
        &t.request_uri,
        &t.stopper,
        &t.enabled,
    ];
    let mut failed = None;
    db.select_each(
        &t.rule_table,
        &cols,
        &[Cond::eq(&t.lcr_id, i64::from(lcr_id))],
        None,
        |row| match rule_row(row, builder) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    failed.map_or(Ok(()), Err)
}

/// One `lcr_rule` row (columns in the order `load_rules` selects them) into the builder;
/// a disabled rule is skipped.
fn rule_row(row: &[DbValue], builder: &mut InstanceBuilder) -> Result<(), String> {
    let id = int(row.first())
        .and_then(|i| u32::try_from(i).ok())
        .ok_or("lcr_rule row without a valid id")?;
    let flag = |i: usize, name: &str| -> Result<bool, String> {
        match int(row.get(i)) {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            other => Err(format!("lcr rule {id}: {name} is {other:?}, not 0 or 1")),
        }
    };
    if !flag(5, "enabled")? {
        return Ok(());
    }
    let stopper = flag(4, "stopper")?;
    builder.add_rule(
        id,
        text_ref(row.get(1)).as_bytes(),
        &text_ref(row.get(2)),
        &text_ref(row.get(3)),
        stopper,
    )
}

async fn load_targets(
    db: &Db,
    t: &Tables,
    lcr_id: u32,
    gws: &[Gateway],
    builder: &mut InstanceBuilder,
) -> Result<(), String> {
    let cols = [t.rule_id.as_str(), &t.gw_id, &t.priority, &t.weight];
    let mut index: Vec<(u32, u32)> = gws
        .iter()
        .enumerate()
        .map(|(i, g)| (g.id, i as u32))
        .collect();
    index.sort_unstable();
    let mut failed = None;
    db.select_each(
        &t.target_table,
        &cols,
        &[Cond::eq(&t.lcr_id, i64::from(lcr_id))],
        None,
        |row| match target_row(row, &index) {
            Ok(Some((rule_id, target))) => {
                builder.add_target(rule_id, target);
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    failed.map_or(Ok(()), Err)
}

/// One `lcr_rule_target` row; `None` for a target whose gateway is not loaded (out of
/// use, or of another instance), which Kamailio skips. `gw_index` maps gateway ids to
/// their indexes, sorted.
fn target_row(row: &[DbValue], gw_index: &[(u32, u32)]) -> Result<Option<(u32, Target)>, String> {
    let num = |i: usize, name: &str| -> Result<i64, String> {
        int(row.get(i)).ok_or_else(|| format!("lcr_rule_target: {name} is not a number"))
    };
    let rule_id = num(0, "rule_id")? as u32;
    let gw_id = num(1, "gw_id")? as u32;
    let priority = num(2, "priority")?;
    let priority = u8::try_from(priority).map_err(|_| {
        format!("lcr_rule_target rule {rule_id} gw {gw_id}: priority {priority} is not 0-255")
    })?;
    let weight = num(3, "weight")?;
    if !(1..=254).contains(&weight) {
        return Err(format!(
            "lcr_rule_target rule {rule_id} gw {gw_id}: weight {weight} is not 1-254"
        ));
    }
    let Ok(pos) = gw_index.binary_search_by_key(&gw_id, |(id, _)| *id) else {
        return Ok(None);
    };
    Ok(Some((
        rule_id,
        Target {
            gw: gw_index[pos].1,
            priority,
            weight: weight as u8,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> DbValue {
        DbValue::Str(v.into())
    }

    fn row(ip: &str, host: &str, scheme: i64, transport: i64) -> Vec<DbValue> {
        vec![
            DbValue::Int(7),
            s("carrier"),
            s(ip),
            s(host),
            DbValue::Int(5080),
            DbValue::Null,
            DbValue::Int(scheme),
            DbValue::Int(transport),
            DbValue::Int(1),
            s("00"),
            s("tag"),
            DbValue::Int(3),
            DbValue::Null,
        ]
    }

    #[test]
    fn gateway_rows_as_kamailio_checks_them() {
        let g = gateway_row(&row("192.0.2.1", "", 1, 2)).unwrap().unwrap();
        assert_eq!(g.uri(), "sip:192.0.2.1:5080;transport=tcp");
        assert_eq!((g.strip, g.prefix.as_str(), g.flags), (1, "00", 3));
        let g = gateway_row(&row("[2001:db8::1]", "", 2, 3))
            .unwrap()
            .unwrap();
        assert_eq!(g.uri(), "sips:[2001:db8::1]:5080;transport=tls");
        assert!(
            gateway_row(&row("", "", 1, 1)).is_err(),
            "no address at all"
        );
        assert!(gateway_row(&row("not-an-ip", "", 1, 1)).is_err());
        assert!(gateway_row(&row("192.0.2.1", "", 3, 1)).is_err(), "scheme");
        assert!(
            gateway_row(&row("192.0.2.1", "", 1, 9)).is_err(),
            "transport"
        );
        assert!(
            gateway_row(&row("192.0.2.1", "", 2, 1)).is_err(),
            "sips over udp"
        );
        let mut forever = row("192.0.2.1", "", 1, 1);
        forever[12] = DbValue::Int(DEFUNCT_FOREVER);
        assert!(gateway_row(&forever).unwrap().is_none());
        let mut bad_params = row("192.0.2.1", "", 1, 1);
        bad_params[5] = s("user=phone");
        assert!(gateway_row(&bad_params).is_err());
    }
}
