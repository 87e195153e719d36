//! `path`: Path headers (RFC 3327) for an edge proxy relaying REGISTERs to a registrar
//! behind it, so that requests for the registered users come back through the proxy.
//!
//! The header names the socket the REGISTER leaves from, known only once it is sent: the
//! functions leave a [`PathPlan`] in the message's extensions and a per-branch hook
//! writes the header (as `rr` does Record-Route).

use bytes::Bytes;
use ferrosip_api::registry::{ModuleParams, OutgoingBranch};
use ferrosip_api::rr::SocketDesc;
use ferrosip_api::{
    Extensions, FnError, FnResult, Module, ModuleBuilder, MsgContext, ParamType, Proto, RouteMask,
    Verdict,
};

#[cfg(test)]
mod tests;

/// What the script asked the Path header of a REGISTER to be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathPlan {
    /// The URI's user part (`add_path("user")`).
    pub user: Option<Bytes>,
    /// `;received=` value (`add_path_received()`): the REGISTER's source, escaped.
    pub received: Option<String>,
    /// `enable_double_path`: two headers when the sockets differ.
    pub double: bool,
}

/// The module parameters.
struct PathConfig {
    double: bool,
}

impl PathConfig {
    fn from_params(p: &ModuleParams) -> Result<PathConfig, String> {
        if p.int("use_received") != 0 {
            return Err("use_received: routing by the received parameter of the Route header needs an rr callback Ferrosip does not have; route by the Contact alias instead (nathelper add_contact_alias()/handle_ruri_alias())".into());
        }
        Ok(PathConfig {
            double: p.int("enable_double_path") != 0,
        })
    }
}

/// Escapes a URI for a URI parameter value (RFC 3261 `pvalue`).
fn escape_param(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.bytes() {
        if c.is_ascii_alphanumeric() || b"-_.!~*'()[]/:&+$".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// `sip:IP:PORT[;transport=x]` of the message's source.
fn source_uri(ctx: &MsgContext) -> String {
    let src = ctx.net.source;
    let host = match src.ip() {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    let mut uri = format!("sip:{host}:{}", src.port());
    if ctx.net.proto != Proto::Udp {
        uri.push_str(";transport=");
        uri.push_str(ctx.net.proto.name());
    }
    uri
}

fn plan(cfg: &PathConfig, ctx: &mut MsgContext, user: Option<Bytes>, received: bool) -> FnResult {
    if ctx.ext.get::<PathPlan>().is_some() {
        // One Path entry per proxy: a second call is a script error, not a second header.
        return Ok(Verdict::FALSE);
    }
    if let Some(u) = &user {
        if u.is_empty() || u.iter().any(|c| b"@;<>\" ,\r\n".contains(c)) {
            return Err(FnError::new(format!(
                "add_path: \"{}\" is not a URI user part",
                String::from_utf8_lossy(u)
            )));
        }
    }
    let received = received.then(|| escape_param(&source_uri(ctx)));
    ctx.ext.insert(PathPlan {
        user,
        received,
        double: cfg.double,
    });
    Ok(Verdict::TRUE)
}

/// One Path value for `socket`.
fn path_value(plan: &PathPlan, socket: &SocketDesc, double: bool, received: bool) -> String {
    let mut v = String::from("<sip:");
    if let Some(u) = &plan.user {
        v.push_str(&String::from_utf8_lossy(u));
        v.push('@');
    }
    let host = String::from_utf8_lossy(&socket.host);
    if host.contains(':') && !host.starts_with('[') {
        v.push_str(&format!("[{host}]"));
    } else {
        v.push_str(&host);
    }
    v.push_str(&format!(":{}", socket.port));
    if socket.proto != Proto::Udp {
        v.push_str(";transport=");
        v.push_str(socket.proto.name());
    }
    if double {
        v.push_str(";r2=on");
    }
    v.push_str(";lr");
    if received {
        if let Some(r) = &plan.received {
            v.push_str(";received=");
            v.push_str(r);
        }
    }
    v.push('>');
    v
}

/// The Path values to put on top of a REGISTER leaving on `outbound` that arrived on
/// `inbound`, topmost first: the outbound socket (the one the registrar reaches), and
/// with double Path the inbound one after it.
pub fn path_headers(plan: &PathPlan, inbound: &SocketDesc, outbound: &SocketDesc) -> Vec<String> {
    if plan.double && !inbound.same_realm(outbound) {
        vec![
            path_value(plan, outbound, true, false),
            path_value(plan, inbound, true, true),
        ]
    } else {
        vec![path_value(plan, outbound, false, true)]
    }
}

fn branch_hook(branch: &mut OutgoingBranch<'_>) -> Result<(), FnError> {
    let Some(plan) = branch.ext.get::<PathPlan>() else {
        return Ok(());
    };
    let values = path_headers(plan, &branch.sockets.inbound(), &branch.sockets.outbound());
    for v in values.iter().rev() {
        branch
            .request
            .insert_header_first("Path", v)
            .map_err(|e| FnError::new(format!("path: {e}")))?;
    }
    Ok(())
}

fn keep_plan(from: &Extensions, to: &mut Extensions) {
    if let Some(plan) = from.get::<PathPlan>() {
        to.insert(plan.clone());
    }
}

/// The `path` module.
pub struct PathModule;

impl Module for PathModule {
    fn name(&self) -> &'static str {
        "path"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Path headers (RFC 3327) for an edge proxy relaying REGISTERs to a registrar behind it: add_path() names this proxy (the socket the REGISTER leaves from) so that the registrar (registrar's use_path) routes requests for the user back through it.");
        m.example(include_str!("../example.cfg"));
        m.param(
            "use_received",
            ParamType::Int,
            0_i64,
            "Kamailio routes a request whose Route has a received parameter to that address; not available here (1 fails the load).",
        );
        m.param(
            "enable_double_path",
            ParamType::Int,
            1_i64,
            "When 1 and the REGISTER leaves on another socket (address, port or transport) than it came in on, two Path headers are added (each with ;r2=on): the outbound socket's, then the inbound one's.",
        );
        let cfg = m.state(PathConfig::from_params);
        m.on_branch(branch_hook, keep_plan);
        const ROUTES: RouteMask = RouteMask::REQUEST.union(RouteMask::BRANCH);
        m.function("add_path")
            .routes(ROUTES)
            .doc("Adds a Path header with this proxy's address (the socket the request leaves from, ;lr, ;transport when not UDP) on top of the request when it is sent. 1 on success; -1 when a Path was already asked for this request.")
            .handler(cfg.with(|c: &PathConfig, ctx: &mut MsgContext| plan(c, ctx, None, false)));
        m.function("add_path")
            .args(&["user"])
            .routes(ROUTES)
            .doc("add_path() with `user` as the user part of the Path URI. 1 on success; -1 when a Path was already asked for; an error (-1) when user is not a URI user part.")
            .handler(cfg.with(|c: &PathConfig, ctx: &mut MsgContext, user: Bytes| plan(c, ctx, Some(user), false)));
        m.function("add_path_received")
            .routes(ROUTES)
            .doc("add_path() with a ;received= parameter holding the REGISTER's source (sip:IP:PORT, ;transport unless UDP, escaped): a registrar with path_use_received stores it as the contact's received address. Same return codes.")
            .handler(cfg.with(|c: &PathConfig, ctx: &mut MsgContext| plan(c, ctx, None, true)));
        m.function("add_path_received")
            .args(&["user"])
            .routes(ROUTES)
            .doc("add_path_received() with `user` as the user part of the Path URI. Same return codes.")
            .handler(cfg.with(|c: &PathConfig, ctx: &mut MsgContext, user: Bytes| plan(c, ctx, Some(user), true)));
    }
}
