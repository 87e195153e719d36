//! Health of destinations: the keepalive check (a trait; SIP OPTIONS is the one
//! implementation), which destinations `ds_probing_mode` probes, and how probe outcomes
//! and `ds_mark_dst()` move a destination between active, trying and inactive.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrosip_api::registry::BoxFuture;
use ferrosip_api::services::{LocalOutcome, LocalRequest};
use ferrosip_api::Services;

use crate::list::flag;
use crate::sets::Destination;

/// Whether a destination answered a probe as a live one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    Down,
}

/// A keepalive check of one destination.
pub trait HealthCheck: Send + Sync {
    fn check(&self, dest: &Destination) -> BoxFuture<'static, Health>;
}

/// `ds_ping_reply_codes`: which replies besides 200 count as alive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyCodes {
    codes: Vec<u16>,
    classes: Vec<u16>,
}

impl ReplyCodes {
    /// Parses `class=2;code=403;code=488`.
    pub fn parse(text: &str) -> Result<ReplyCodes, String> {
        let mut r = ReplyCodes::default();
        for item in text
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("ds_ping_reply_codes: \"{item}\" is not name=value"))?;
            let v: u16 = value
                .trim()
                .parse()
                .map_err(|_| format!("ds_ping_reply_codes: \"{value}\" is not a number"))?;
            match name.trim() {
                "code" if (100..700).contains(&v) => r.codes.push(v),
                "class" if (1..7).contains(&v) => r.classes.push(v),
                _ => return Err(format!("ds_ping_reply_codes: bad item \"{item}\"")),
            }
        }
        Ok(r)
    }

    pub fn accepts(&self, code: u16) -> bool {
        code == 200 || self.codes.contains(&code) || self.classes.contains(&(code / 100))
    }
}

/// Probes with a SIP request (OPTIONS by default) sent by the server.
pub struct OptionsCheck {
    pub services: Arc<dyn Services>,
    pub method: Bytes,
    pub from: Bytes,
    pub outbound_proxy: Option<Bytes>,
    pub timeout: Option<Duration>,
    pub codes: ReplyCodes,
}

impl HealthCheck for OptionsCheck {
    fn check(&self, dest: &Destination) -> BoxFuture<'static, Health> {
        let request = LocalRequest {
            method: self.method.clone(),
            uri: dest.uri.clone(),
            dst_uri: dest.attrs.obproxy.clone().or(self.outbound_proxy.clone()),
            from: dest.attrs.ping_from.clone().unwrap_or(self.from.clone()),
            timeout: self.timeout,
            ..LocalRequest::default()
        };
        let codes = self.codes.clone();
        let uri = String::from_utf8_lossy(&dest.uri).into_owned();
        match self.services.send_request(request) {
            Ok(reply) => Box::pin(async move {
                let LocalOutcome { code, local, .. } = reply.await;
                tracing::debug!(destination = %uri, code, local, "dispatcher probe answered");
                if codes.accepts(code) {
                    Health::Up
                } else {
                    Health::Down
                }
            }),
            Err(e) => {
                tracing::warn!(destination = %uri, "dispatcher probe not sent: {}", e.message);
                Box::pin(std::future::ready(Health::Down))
            }
        }
    }
}

/// `ds_probing_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbingMode {
    /// 0: destinations flagged for probing; the flag is cleared once one answers.
    Flagged,
    /// 1: every destination.
    All,
    /// 2: inactive destinations flagged for probing.
    InactiveFlagged,
    /// 3: destinations flagged for probing, the flag kept.
    FlaggedKept,
}

impl ProbingMode {
    pub fn from_param(v: i64) -> Result<ProbingMode, String> {
        Ok(match v {
            0 => ProbingMode::Flagged,
            1 => ProbingMode::All,
            2 => ProbingMode::InactiveFlagged,
            3 => ProbingMode::FlaggedKept,
            _ => return Err(format!("ds_probing_mode {v} is not 0..3")),
        })
    }

    /// Whether `dest` gets a probe this round.
    pub fn wants(self, dest: &Destination) -> bool {
        let f = dest.flags();
        if f & (flag::DISABLED | flag::NO_PING) != 0 {
            return false;
        }
        match self {
            ProbingMode::All => true,
            ProbingMode::Flagged | ProbingMode::FlaggedKept => f & flag::PROBING != 0,
            ProbingMode::InactiveFlagged => f & flag::PROBING != 0 && f & flag::INACTIVE != 0,
        }
    }
}

/// Thresholds of the state machine.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Failures before inactive (`ds_probing_threshold`).
    pub down_after: u32,
    /// Successes before active again (`ds_inactive_threshold`).
    pub up_after: u32,
}

/// A change of selectability, for the `dispatcher:dst-down` / `dst-up` event routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Down,
    Up,
}

fn transition(old: u32, new: u32) -> Option<Transition> {
    let off = |f: u32| f & (flag::INACTIVE | flag::DISABLED) != 0;
    match (off(old), off(new)) {
        (false, true) => Some(Transition::Down),
        (true, false) => Some(Transition::Up),
        _ => None,
    }
}

/// Applies a probe's outcome.
pub fn on_probe(
    dest: &Destination,
    health: Health,
    mode: ProbingMode,
    th: Thresholds,
) -> Option<Transition> {
    let old = dest.flags();
    let probing = old & flag::PROBING;
    let new = match health {
        Health::Up => {
            let n = dest.count_success();
            let was_down = old & flag::INACTIVE != 0;
            if was_down && n < th.up_after.max(1) {
                return None;
            }
            // Mode 0 stops probing a destination once it answers.
            if mode == ProbingMode::Flagged {
                0
            } else {
                probing
            }
        }
        Health::Down => {
            if old & flag::INACTIVE != 0 {
                dest.count_failure();
                return None;
            }
            let n = dest.count_failure();
            if n >= th.down_after.max(1) {
                // Inactive and probed, so that it comes back when it answers again.
                flag::INACTIVE | flag::PROBING
            } else {
                flag::TRYING | probing
            }
        }
    };
    let old = dest.set_state(new);
    transition(old, new)
}

/// `ds_mark_dst()` / `ds_mark_addr()` / `dispatcher.set_state` states: `a`, `i`, `t`,
/// `d`, each optionally followed by `p` (probe it).
pub fn parse_state(s: &[u8]) -> Result<(u8, bool), String> {
    let lower = s.to_ascii_lowercase();
    let (&first, rest) = lower
        .split_first()
        .ok_or_else(|| "empty state".to_string())?;
    let probe = match rest {
        [] => false,
        [b'p'] => true,
        _ => return Err(format!("bad state \"{}\"", String::from_utf8_lossy(s))),
    };
    if !matches!(first, b'a' | b'i' | b't' | b'd') || (first == b'd' && probe) {
        return Err(format!(
            "bad state \"{}\" (a, i, t or d, optionally followed by p)",
            String::from_utf8_lossy(s)
        ));
    }
    Ok((first, probe))
}

/// Sets a destination's state as an operator or the script asked.
pub fn mark(dest: &Destination, state: u8, probe: bool, th: Thresholds) -> Option<Transition> {
    let p = if probe { flag::PROBING } else { 0 };
    let new = match state {
        b'a' => {
            dest.reset_counters();
            p
        }
        b'i' => flag::INACTIVE | p,
        b'd' => flag::DISABLED,
        _ => {
            if dest.count_failure() >= th.down_after.max(1) {
                flag::INACTIVE | p
            } else {
                flag::TRYING | p
            }
        }
    };
    let old = dest.set_state(new);
    transition(old, new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::parse_list;
    use crate::sets::Sets;

    fn dest(flags: u32) -> Arc<Destination> {
        let sets = Sets::build(&parse_list(&format!("1 sip:127.0.0.1:5080 {flags}\n")).unwrap());
        sets.get(1).unwrap().dests[0].clone()
    }

    const TH: Thresholds = Thresholds {
        down_after: 2,
        up_after: 2,
    };

    #[test]
    fn reply_codes() {
        let r = ReplyCodes::parse("class=2;code=403; code=488").unwrap();
        assert!(r.accepts(200) && r.accepts(202) && r.accepts(403) && r.accepts(488));
        assert!(!r.accepts(404) && !r.accepts(408));
        assert!(ReplyCodes::default().accepts(200));
        assert!(!ReplyCodes::default().accepts(202));
        assert!(ReplyCodes::parse("code=99").is_err());
        assert!(ReplyCodes::parse("klass=2").is_err());
        assert!(ReplyCodes::parse("").unwrap() == ReplyCodes::default());
    }

    #[test]
    fn probe_failures_go_trying_then_inactive_and_successes_bring_it_back() {
        let d = dest(0);
        assert_eq!(on_probe(&d, Health::Down, ProbingMode::All, TH), None);
        assert_eq!(d.state_letters(), "TX");
        assert!(d.usable());
        assert_eq!(
            on_probe(&d, Health::Down, ProbingMode::All, TH),
            Some(Transition::Down)
        );
        assert_eq!(d.state_letters(), "IP");
        assert_eq!(on_probe(&d, Health::Down, ProbingMode::All, TH), None);
        assert_eq!(on_probe(&d, Health::Up, ProbingMode::All, TH), None);
        assert_eq!(d.state_letters(), "IP");
        assert_eq!(
            on_probe(&d, Health::Up, ProbingMode::All, TH),
            Some(Transition::Up)
        );
        assert_eq!(d.state_letters(), "AP");
    }

    #[test]
    fn a_success_clears_trying_and_mode_0_stops_probing() {
        let d = dest(flag::PROBING);
        on_probe(&d, Health::Down, ProbingMode::Flagged, TH);
        assert_eq!(d.state_letters(), "TP");
        assert_eq!(on_probe(&d, Health::Up, ProbingMode::Flagged, TH), None);
        assert_eq!(d.state_letters(), "AX");
        assert!(!ProbingMode::Flagged.wants(&d));
        assert!(ProbingMode::All.wants(&d));
        let kept = dest(flag::PROBING);
        on_probe(&kept, Health::Up, ProbingMode::FlaggedKept, TH);
        assert_eq!(kept.state_letters(), "AP");
    }

    #[test]
    fn which_destinations_are_probed() {
        let inactive_probing = dest(flag::INACTIVE | flag::PROBING);
        let active_probing = dest(flag::PROBING);
        let disabled = dest(flag::DISABLED | flag::PROBING);
        let no_ping = dest(flag::NO_PING);
        assert!(ProbingMode::InactiveFlagged.wants(&inactive_probing));
        assert!(!ProbingMode::InactiveFlagged.wants(&active_probing));
        assert!(!ProbingMode::All.wants(&disabled));
        assert!(!ProbingMode::All.wants(&no_ping));
        assert!(ProbingMode::from_param(4).is_err());
    }

    #[test]
    fn marking() {
        assert_eq!(parse_state(b"ip").unwrap(), (b'i', true));
        assert_eq!(parse_state(b"A").unwrap(), (b'a', false));
        assert!(parse_state(b"x").is_err());
        assert!(parse_state(b"dp").is_err());
        assert!(parse_state(b"").is_err());
        let d = dest(0);
        assert_eq!(mark(&d, b'i', true, TH), Some(Transition::Down));
        assert_eq!(d.state_letters(), "IP");
        assert_eq!(mark(&d, b'a', false, TH), Some(Transition::Up));
        assert_eq!(mark(&d, b't', false, TH), None);
        assert_eq!(d.state_letters(), "TX");
        assert_eq!(mark(&d, b't', false, TH), Some(Transition::Down));
        assert_eq!(d.state_letters(), "IX");
        assert_eq!(mark(&d, b'd', false, TH), None);
        assert_eq!(d.state_letters(), "DX");
    }
}
