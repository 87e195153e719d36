//! The `dlg.*` RPC commands.

use bytes::Bytes;
use ferrosip_api::registry::RpcValue;
use ferrosip_api::{ModuleBuilder, Value};
use std::sync::Arc;

use crate::table::{now_ms, Dialog, DlgState};
use crate::{EndReason, Shared};

fn s(b: &Bytes) -> RpcValue {
    RpcValue::Str(String::from_utf8_lossy(b).into_owned())
}

fn routes(r: &[Bytes]) -> RpcValue {
    let v: Vec<String> = r
        .iter()
        .map(|u| format!("<{}>", String::from_utf8_lossy(u)))
        .collect();
    RpcValue::Str(v.join(","))
}

fn int_arg(args: &[Value], i: usize, what: &str) -> Result<i64, String> {
    args.get(i)
        .and_then(|v| {
            v.as_int().or_else(|| {
                v.to_bytes()
                    .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse().ok())
            })
        })
        .ok_or_else(|| format!("{what}: an integer is needed"))
}

fn str_arg(args: &[Value], i: usize) -> Option<String> {
    args.get(i)
        .filter(|v| !v.is_null())
        .and_then(Value::to_bytes)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// One dialog as `dlg.list` shows it (the members Kamailio's list has).
fn describe(d: &Dialog) -> RpcValue {
    let live = d.live().clone();
    let now = now_ms();
    let timeout = live.expires_ms.map_or(0, |e| e / 1000);
    let profiles: Vec<RpcValue> = live
        .profiles
        .iter()
        .map(|(p, v)| {
            RpcValue::Struct(vec![(
                p.to_string(),
                RpcValue::Str(String::from_utf8_lossy(v).into_owned()),
            )])
        })
        .collect();
    let vars: Vec<RpcValue> = live
        .vars
        .iter()
        .map(|(k, v)| {
            RpcValue::Struct(vec![(
                String::from_utf8_lossy(k).into_owned(),
                RpcValue::Str(String::from_utf8_lossy(v).into_owned()),
            )])
        })
        .collect();
    RpcValue::Struct(vec![
        ("h_entry".into(), RpcValue::Int(i64::from(d.h_entry))),
        ("h_id".into(), RpcValue::Int(i64::from(d.h_id))),
        ("call-id".into(), s(&d.callid)),
        ("from_uri".into(), s(&d.from_uri)),
        ("to_uri".into(), s(&d.to_uri)),
        ("state".into(), RpcValue::Int(live.state.code())),
        ("start_ts".into(), RpcValue::Int(live.start_ts)),
        ("init_ts".into(), RpcValue::Int(live.created)),
        ("timeout".into(), RpcValue::Int(timeout)),
        (
            "remaining".into(),
            RpcValue::Int(live.expires_ms.map_or(0, |e| ((e - now) / 1000).max(0))),
        ),
        ("lifetime".into(), RpcValue::Int(i64::from(live.lifetime))),
        ("sflags".into(), RpcValue::Int(i64::from(live.sflags))),
        ("iflags".into(), RpcValue::Int(i64::from(live.timeout_bye))),
        (
            "caller".into(),
            RpcValue::Struct(vec![
                ("tag".into(), s(&d.from_tag)),
                ("contact".into(), s(&d.caller_contact)),
                ("cseq".into(), RpcValue::Str(live.caller_cseq.to_string())),
                ("route_set".into(), routes(&d.caller_route_set)),
                ("socket".into(), s(&d.caller_sock)),
            ]),
        ),
        (
            "callee".into(),
            RpcValue::Struct(vec![
                ("tag".into(), s(&live.to_tag)),
                ("contact".into(), s(&live.callee_contact)),
                ("cseq".into(), RpcValue::Str(live.callee_cseq.to_string())),
                ("route_set".into(), routes(&live.callee_route_set)),
                ("socket".into(), s(&live.callee_sock)),
            ]),
        ),
        ("profiles".into(), RpcValue::Array(profiles)),
        ("variables".into(), RpcValue::Array(vars)),
    ])
}

pub fn declare(m: &mut ModuleBuilder<'_>, shared: &Arc<Shared>) {
    {
        let sh = shared.clone();
        m.rpc("dlg.list", "Every tracked dialog: ids, Call-ID, URIs, state, times, both sides (tag, contact, cseq, route set, socket), profiles and variables.", move |_args| {
            Ok(RpcValue::Array(sh.table.all().iter().map(|d| describe(d)).collect()))
        });
    }
    {
        let sh = shared.clone();
        m.rpc("dlg.end_dlg", "dlg.end_dlg h_entry h_id: ends the dialog with a BYE sent to both sides (an unconfirmed one is only forgotten).", move |args| {
            let e = int_arg(args, 0, "h_entry")?;
            let i = int_arg(args, 1, "h_id")?;
            let d = sh
                .table
                .get(e as u32, i as u32)
                .ok_or_else(|| "Dialog not found".to_string())?;
            let confirmed = d.live().state >= DlgState::ConfirmedNa;
            sh.bye(&d, confirmed, confirmed, EndReason::Rpc);
            Ok(RpcValue::Null)
        });
    }
    {
        let sh = shared.clone();
        m.rpc(
            "dlg.profile_get_size",
            "dlg.profile_get_size profile [value]: live dialogs in the profile (with that value).",
            move |args| {
                let p = str_arg(args, 0).ok_or("a profile name is needed")?;
                let v = str_arg(args, 1);
                Ok(RpcValue::Int(
                    sh.table.profile_size(&p, v.as_deref().map(str::as_bytes)) as i64,
                ))
            },
        );
    }
    {
        let sh = shared.clone();
        m.rpc("dlg.profile_list", "dlg.profile_list profile [value]: the dialogs in the profile (with that value), as dlg.list shows them.", move |args| {
            let p = str_arg(args, 0).ok_or("a profile name is needed")?;
            let v = str_arg(args, 1);
            let list = sh
                .table
                .all()
                .into_iter()
                .filter(|d| {
                    d.live().profiles.iter().any(|(name, val)| {
                        **name == *p && v.as_deref().is_none_or(|x| x.as_bytes() == val)
                    })
                })
                .map(|d| describe(&d))
                .collect();
            Ok(RpcValue::Array(list))
        });
    }
    {
        let sh = shared.clone();
        m.rpc("dlg.stats_active", "Tracked dialogs by state: starting (unconfirmed), connecting (early), answering (2xx without ACK), ongoing (confirmed), all.", move |_args| {
            let mut n = [0i64; 4];
            for d in sh.table.all() {
                match d.live().state {
                    DlgState::Unconfirmed => n[0] += 1,
                    DlgState::Early => n[1] += 1,
                    DlgState::ConfirmedNa => n[2] += 1,
                    DlgState::Confirmed => n[3] += 1,
                    DlgState::Deleted => {}
                }
            }
            Ok(RpcValue::Struct(vec![
                ("starting".into(), RpcValue::Int(n[0])),
                ("connecting".into(), RpcValue::Int(n[1])),
                ("answering".into(), RpcValue::Int(n[2])),
                ("ongoing".into(), RpcValue::Int(n[3])),
                ("all".into(), RpcValue::Int(n.iter().sum())),
            ]))
        });
    }
}
