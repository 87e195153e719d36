//! The behaviour of the `rr` functions: Record-Route plans and Route processing.

use crate::record::{DoubleRr, RecordRouteAddress, RecordRoutePlan};
use bytes::Bytes;
use ferrosip_api::rr::{direction_of, Direction, LocalRoute, RouteSendSocket};
use ferrosip_api::{FnError, FnResult, ModuleParams, MsgContext, Proto, Services, Verdict};
use ferrosip_sip::{share_or_copy, CommaList, NameAddr, SipMessage, Uri};
use regex::bytes::Regex;
use smallvec::SmallVec;

/// The module parameters, read once at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RrConfig {
    pub append_fromtag: bool,
    pub double_rr: DoubleRr,
    pub full_lr: bool,
    pub add_username: bool,
    pub force_send_socket: bool,
    pub ignore_sips: bool,
    pub sockname_mode: bool,
    /// The mode `loose_route()` runs with (bit 1: never treat the R-URI as a strict
    /// router's).
    pub loose_route_mode: i64,
    pub socket_mismatch_warning: bool,
}

impl Default for RrConfig {
    /// Kamailio's defaults.
    fn default() -> Self {
        RrConfig {
            append_fromtag: true,
            double_rr: DoubleRr::WhenDifferent,
            full_lr: false,
            add_username: false,
            force_send_socket: false,
            ignore_sips: false,
            sockname_mode: false,
            loose_route_mode: 0,
            socket_mismatch_warning: true,
        }
    }
}

impl RrConfig {
    /// The configuration, or the first parameter whose value is out of its range.
    pub fn from_params(p: &ModuleParams) -> Result<RrConfig, String> {
        let double_rr = p.int("enable_double_rr");
        if !(0..=2).contains(&double_rr) {
            return Err(format!(
                "enable_double_rr must be 0, 1 or 2, not {double_rr}"
            ));
        }
        let mode = p.int("loose_route_mode");
        if !(0..=1).contains(&mode) {
            return Err(format!("loose_route_mode must be 0 or 1, not {mode}"));
        }
        Ok(RrConfig {
            append_fromtag: p.int("append_fromtag") != 0,
            double_rr: DoubleRr::from_param(double_rr),
            full_lr: p.int("enable_full_lr") != 0,
            add_username: p.int("add_username") != 0,
            force_send_socket: p.int("force_send_socket") != 0,
            ignore_sips: p.int("ignore_sips") != 0,
            sockname_mode: p.int("sockname_mode") != 0,
            loose_route_mode: mode,
            socket_mismatch_warning: p.int("enable_socket_mismatch_warning") != 0,
        })
    }
}

/// `loose_route()` outcome when only this proxy's Route entries were in the route set of
/// an initial request (Kamailio's `RR_PRELOADED`).
pub const PRELOADED: i32 = -3;

fn err(what: impl Into<String>) -> FnError {
    FnError::new(what)
}

// ----- Route header access -----

fn is_route_name(n: &[u8]) -> bool {
    n.eq_ignore_ascii_case(b"Route")
}

/// Every Route element, topmost first, sharing the message's buffer.
pub fn route_list(msg: &SipMessage) -> SmallVec<[Bytes; 4]> {
    msg.headers_named("Route")
        .flat_map(CommaList::new)
        .filter(|e| !e.is_empty())
        .map(|e| msg.bytes_of(e))
        .collect()
}

/// Removes the `k`-th Route line.
fn remove_route_line(msg: &mut SipMessage, k: usize) {
    let mut i = 0;
    msg.remove_headers_where(|n, _| {
        if !is_route_name(n) {
            return false;
        }
        let hit = i == k;
        i += 1;
        hit
    });
}

/// The elements of the `k`-th Route line after its first (an empty line has none).
fn line_elements(msg: &SipMessage, k: usize) -> Option<SmallVec<[Bytes; 4]>> {
    let line = msg.headers_named("Route").nth(k)?;
    Some(
        CommaList::new(line)
            .filter(|e| !e.is_empty())
            .map(|e| msg.bytes_of(e))
            .collect(),
    )
}

fn join(elems: &[Bytes]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, e) in elems.iter().enumerate() {
        if i > 0 {
            v.extend_from_slice(b", ");
        }
        v.extend_from_slice(e);
    }
    v
}

/// Removes the topmost Route element. A line holding more elements is rewritten with the
/// rest, still above the other Route lines.
fn pop_first_route(msg: &mut SipMessage) -> Result<Option<Bytes>, FnError> {
    loop {
        let Some(first) = line_elements(msg, 0) else {
            return Ok(None);
        };
        remove_route_line(msg, 0);
        let Some((top, rest)) = first.split_first() else {
            continue; // an empty Route line: dropped
        };
        if !rest.is_empty() {
            msg.insert_header_first("Route", join(rest))
                .map_err(|e| err(format!("cannot rewrite Route: {e}")))?;
        }
        return Ok(Some(top.clone()));
    }
}

/// Removes the last Route element. A line holding more elements is rewritten with the
/// rest, still below the other Route lines.
fn pop_last_route(msg: &mut SipMessage) -> Result<Option<Bytes>, FnError> {
    loop {
        let n = msg.headers_named("Route").count();
        let Some(mut last) = n.checked_sub(1).and_then(|k| line_elements(msg, k)) else {
            return Ok(None);
        };
        remove_route_line(msg, n - 1);
        let Some(bottom) = last.pop() else {
            continue;
        };
        if !last.is_empty() {
            msg.add_header("Route", join(&last))
                .map_err(|e| err(format!("cannot rewrite Route: {e}")))?;
        }
        return Ok(Some(bottom));
    }
}

/// What loose routing needs from one Route element (or the R-URI).
#[derive(Clone, Debug)]
struct RouteUri {
    /// The URI without `<>` and header parameters.
    uri: Bytes,
    /// URI parameters with their leading `;`.
    params: Option<Bytes>,
    host: Option<Bytes>,
    port: Option<u16>,
    sips: bool,
    transport: Option<Proto>,
    lr: bool,
    r2: bool,
    gruu: bool,
    maddr: Option<Bytes>,
    sockname: Option<Bytes>,
}

impl RouteUri {
    /// `u` parsed from `owner`: every part shares `owner`'s storage.
    fn from_uri(u: &Uri<'_>, owner: &Bytes) -> RouteUri {
        let sub = |s: &[u8]| share_or_copy(owner, s);
        let mut r = RouteUri {
            uri: sub(u.as_bytes()),
            params: None,
            host: u.host().map(sub),
            port: u.port(),
            sips: u.scheme().eq_ignore_ascii_case(b"sips"),
            transport: None,
            lr: false,
            r2: false,
            gruu: false,
            maddr: None,
            sockname: None,
        };
        if let Some(p) = u.params_raw() {
            // The raw parameters follow their `;` in the URI: keep it with them.
            let uri = u.as_bytes();
            let at = p.as_ptr() as usize - uri.as_ptr() as usize;
            r.params = Some(match at.checked_sub(1).map(|i| uri[i]) {
                Some(b';') => sub(&uri[at - 1..at + p.len()]),
                _ => {
                    let mut v = Vec::with_capacity(p.len() + 1);
                    v.push(b';');
                    v.extend_from_slice(p);
                    Bytes::from(v)
                }
            });
        }
        // One pass over the parameters; the first occurrence of a name counts.
        let (mut transport, mut lr, mut r2, mut gr, mut maddr, mut sn) =
            (false, false, false, false, false, false);
        let value = |v: Option<&[u8]>| v.filter(|v| !v.is_empty()).map(sub);
        for (name, v) in u.params() {
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            if !transport && is("transport") {
                transport = true;
                r.transport = v.and_then(Proto::from_bytes);
            } else if !lr && is("lr") {
                lr = true;
                r.lr = true;
            } else if !r2 && is("r2") {
                r2 = true;
                r.r2 = true;
            } else if !gr && is("gr") {
                gr = true;
                r.gruu = true;
            } else if !maddr && is("maddr") {
                maddr = true;
                r.maddr = value(v);
            } else if !sn && is("sn") {
                sn = true;
                r.sockname = value(v);
            }
        }
        r
    }

    fn parse_element(elem: &Bytes) -> Result<RouteUri, FnError> {
        let na = NameAddr::parse(elem).map_err(|e| {
            err(format!(
                "invalid Route value \"{}\": {e}",
                String::from_utf8_lossy(elem)
            ))
        })?;
        Ok(RouteUri::from_uri(na.uri(), elem))
    }

    fn parse_uri(uri: &Bytes) -> Result<RouteUri, FnError> {
        let u = Uri::parse(uri).map_err(|e| {
            err(format!(
                "invalid URI \"{}\": {e}",
                String::from_utf8_lossy(uri)
            ))
        })?;
        Ok(RouteUri::from_uri(&u, uri))
    }

    /// The port a URI without one means.
    fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(
            if self.sips || matches!(self.transport, Some(Proto::Tls | Proto::Wss)) {
                5061
            } else {
                5060
            },
        )
    }

    /// The URI to send to: `sip:maddr[:port]` when it has `maddr`, else itself.
    fn target(&self) -> Bytes {
        match &self.maddr {
            Some(m) => {
                let mut v = b"sip:".to_vec();
                v.extend_from_slice(m);
                if let Some(p) = self.port {
                    v.extend_from_slice(format!(":{p}").as_bytes());
                }
                Bytes::from(v)
            }
            None => self.uri.clone(),
        }
    }

    fn send_socket(&self) -> Option<RouteSendSocket> {
        Some(RouteSendSocket {
            proto: self.transport,
            host: self.host.clone()?,
            port: self.port,
            name: self.sockname.clone(),
        })
    }
}

/// This proxy's address (host and port, the scheme's default port when absent); never a
/// GRUU, which names a user agent even when it carries our host.
fn is_myself(services: &dyn Services, r: &RouteUri) -> bool {
    match &r.host {
        Some(h) if !r.gruu => services.is_myself(h, Some(r.port_or_default())),
        _ => false,
    }
}

fn set_ruri(msg: &mut SipMessage, uri: &[u8]) -> Result<(), FnError> {
    msg.set_request_uri(uri)
        .map_err(|e| err(format!("cannot set the R-URI: {e}")))
}

// ----- loose routing -----

/// `loose_route_mode(mode)` (and `loose_route()` with the `loose_route_mode` parameter):
/// RFC 3261 §16.4 and §16.12 route-set processing.
///
/// - no Route header: -1;
/// - an initial request (no To-tag) whose only Route entries were this proxy's: they
///   are removed and the result is -3 ([`PRELOADED`], false);
/// - otherwise 1: this proxy's top entry (two with `;r2=on`) is removed and the next hop
///   taken from the next entry: `$du` for a loose router, the R-URI for a strict one (the
///   old R-URI then goes to the end of the route set). When the R-URI of an in-dialog
///   request is this proxy (the previous hop was a strict router, unless `mode` has bit
///   1), the route set's last entry becomes the R-URI again.
///
/// What this proxy's entry held is kept in a [`LocalRoute`] extension.
pub fn loose_route(ctx: &mut MsgContext, cfg: &RrConfig, mode: i64) -> FnResult {
    ctx.ext.remove::<LocalRoute>();
    ctx.ext.remove::<RouteSendSocket>();
    if !ctx.msg.is_request() {
        return Ok(Verdict::FALSE);
    }
    let routes = route_list(&ctx.msg);
    if routes.is_empty() {
        return Ok(Verdict::FALSE);
    }
    let services = ctx.services("loose_route")?;
    // Every entry is checked before the message is touched.
    let routes = routes
        .iter()
        .map(RouteUri::parse_element)
        .collect::<Result<SmallVec<[RouteUri; 4]>, _>>()?;
    // The tag comes from the parse cache; only a request without one reads To in full,
    // for the error when there is no To to read.
    let preloaded = match ctx.msg.to_tag() {
        Some(tag) => tag.is_empty(),
        None => {
            ctx.msg
                .to()
                .map_err(|e| err(format!("cannot read the To header: {e}")))?;
            true
        }
    };
    let ruri = ctx
        .msg
        .request_uri_bytes()
        .as_ref()
        .map(RouteUri::parse_uri)
        .transpose()?
        .ok_or_else(|| err("no Request-URI"))?;
    let rc = if !preloaded && mode & 1 == 0 && is_myself(&*services, &ruri) {
        after_strict(ctx, cfg, &*services, &routes, ruri)?
    } else {
        after_loose(ctx, cfg, &*services, &routes, preloaded)?
    };
    Ok(Verdict::code(rc))
}

/// The previous hop was a loose router (or the request is initial).
fn after_loose(
    ctx: &mut MsgContext,
    cfg: &RrConfig,
    services: &dyn Services,
    routes: &[RouteUri],
    preloaded: bool,
) -> Result<i32, FnError> {
    let first = &routes[0];
    let mut local = LocalRoute::default();
    let mut next = 0;
    if is_myself(services, first) {
        local.params = Some(first.params.clone().unwrap_or_default());
        pop_first_route(&mut ctx.msg)?;
        next = 1;
        let mut socket = cfg.force_send_socket.then(|| first.send_socket()).flatten();
        if first.r2 && next < routes.len() {
            // Double record-routing: the second entry is this proxy's other interface,
            // the one facing the next hop.
            let second = &routes[next];
            let mine = is_myself(services, second);
            if cfg.socket_mismatch_warning && !mine {
                tracing::warn!(
                    route = %String::from_utf8_lossy(&second.uri),
                    "loose_route: the Route entry after this proxy's r2=on entry is not this proxy"
                );
            }
            if cfg.double_rr != DoubleRr::Off || mine {
                socket = second.send_socket();
                pop_first_route(&mut ctx.msg)?;
                next += 1;
            }
        }
        if let Some(s) = socket {
            ctx.ext.insert(s);
        }
        if next >= routes.len() {
            ctx.ext.insert(local);
            return Ok(if preloaded { PRELOADED } else { 1 });
        }
        local.next_hop_route = true;
    }
    let hop = &routes[next];
    if hop.lr {
        ctx.dst_uri = Some(hop.target());
    } else {
        // The next hop is a strict router: it wants itself in the R-URI, and the R-URI
        // travels as the last Route entry.
        let old = ctx
            .msg
            .request_uri_bytes()
            .ok_or_else(|| err("no Request-URI"))?;
        let mut saved = Vec::with_capacity(old.len() + 2);
        saved.push(b'<');
        saved.extend_from_slice(&old);
        saved.push(b'>');
        ctx.msg
            .add_header("Route", saved)
            .map_err(|e| err(format!("cannot add Route: {e}")))?;
        set_ruri(&mut ctx.msg, &hop.target())?;
        pop_first_route(&mut ctx.msg)?;
    }
    ctx.ext.insert(local);
    Ok(1)
}

/// The R-URI is this proxy: the previous hop was a strict router, which put this proxy's
/// Record-Route entry there and the real R-URI at the end of the route set.
fn after_strict(
    ctx: &mut MsgContext,
    cfg: &RrConfig,
    services: &dyn Services,
    routes: &[RouteUri],
    ruri: RouteUri,
) -> Result<i32, FnError> {
    let local = LocalRoute {
        params: Some(ruri.params.clone().unwrap_or_default()),
        next_hop_route: false,
    };
    ctx.ext.insert(local);
    let mut next = 0;
    let first = &routes[0];
    if cfg.double_rr != DoubleRr::Off && first.r2 && is_myself(services, first) {
        if let Some(s) = first.send_socket() {
            ctx.ext.insert(s);
        }
        pop_first_route(&mut ctx.msg)?;
        next = 1;
        if next >= routes.len() {
            return Ok(-1);
        }
    }
    let hop = &routes[next];
    if !hop.lr {
        // Strict router again: behave as one.
        set_ruri(&mut ctx.msg, &hop.target())?;
        pop_first_route(&mut ctx.msg)?;
    } else {
        ctx.dst_uri = Some(hop.target());
        let last = pop_last_route(&mut ctx.msg)?
            .ok_or_else(|| err("no Route entry left to restore the Request-URI from"))?;
        let last = RouteUri::parse_element(&last)?;
        set_ruri(&mut ctx.msg, &last.target())?;
    }
    Ok(1)
}

/// `loose_route_preloaded()`: 1 when [`loose_route`] found an initial request whose route
/// set was only this proxy's entries (-3), -1 otherwise.
pub fn loose_route_preloaded(ctx: &mut MsgContext, cfg: &RrConfig) -> FnResult {
    let rc = loose_route(ctx, cfg, cfg.loose_route_mode)?.rc();
    Ok(Verdict::from(rc == PRELOADED))
}

/// This proxy's Route entry: what `loose_route()` kept, else (before it ran) the top
/// Route when it is this proxy's.
pub fn local_route(ctx: &MsgContext) -> Option<LocalRoute> {
    if let Some(l) = ctx.ext.get::<LocalRoute>() {
        return Some(l.clone());
    }
    let services = ctx.services.as_ref()?;
    let first = route_list(&ctx.msg).into_iter().next()?;
    let r = RouteUri::parse_element(&first).ok()?;
    is_myself(&**services, &r).then(|| LocalRoute {
        params: Some(r.params.unwrap_or_default()),
        next_hop_route: false,
    })
}

/// The direction of an in-dialog request, from the `ftag` of this proxy's Route entry.
pub fn direction(ctx: &MsgContext) -> Direction {
    match local_route(ctx) {
        Some(l) => direction_of(l.param("ftag"), ctx.msg.from_tag()),
        None => Direction::Downstream,
    }
}

/// `check_route_param(re)`: 1 when the parameters of this proxy's Route entry (with the
/// leading `;`, e.g. `;lr;ftag=a;nat=yes`) match `re`, -1 otherwise.
pub fn check_route_param(ctx: &mut MsgContext, re: &Regex) -> FnResult {
    let params = local_route(ctx).and_then(|l| l.params);
    Ok(Verdict::from(
        params.is_some_and(|p| !p.is_empty() && re.is_match(&p)),
    ))
}

/// `is_direction(dir)`: 1 when the request flows in direction `dir` ("downstream":
/// caller to callee, "upstream": callee to caller), -1 otherwise.
pub fn is_direction(ctx: &mut MsgContext, cfg: &RrConfig, dir: &[u8]) -> FnResult {
    let want = if dir.eq_ignore_ascii_case(b"downstream") {
        Direction::Downstream
    } else if dir.eq_ignore_ascii_case(b"upstream") {
        Direction::Upstream
    } else {
        return Err(err(format!(
            "unknown direction \"{}\": use \"downstream\" or \"upstream\"",
            String::from_utf8_lossy(dir)
        )));
    };
    if !cfg.append_fromtag {
        return Err(err(
            "is_direction() needs the rr parameter append_fromtag enabled",
        ));
    }
    Ok(Verdict::from(direction(ctx) == want))
}

/// `rr_next_hop_route()`: 1 when `loose_route()` took the next hop from a Route entry
/// after this proxy's own, -1 otherwise.
pub fn rr_next_hop_route(ctx: &mut MsgContext) -> FnResult {
    Ok(Verdict::from(
        ctx.ext
            .get::<LocalRoute>()
            .is_some_and(|l| l.next_hop_route),
    ))
}

/// The URI of the top Route entry, for `$route_uri`.
pub fn top_route_uri(msg: &SipMessage) -> Option<Bytes> {
    let first = route_list(msg).into_iter().next()?;
    NameAddr::parse(&first)
        .ok()
        .map(|na| Bytes::copy_from_slice(na.uri_bytes()))
}

// ----- Record-Route -----

/// `;a=1;b` from `a=1;b` or `;a=1;b`, checked as URI parameters.
fn normalize_params(p: &[u8]) -> Result<Bytes, FnError> {
    let p = p.trim_ascii();
    if p.is_empty() {
        return Ok(Bytes::new());
    }
    let mut v = Vec::with_capacity(p.len() + 1);
    if p[0] != b';' {
        v.push(b';');
    }
    v.extend_from_slice(p);
    let mut probe = b"sip:x".to_vec();
    probe.extend_from_slice(&v);
    Uri::parse(&probe).map_err(|e| {
        err(format!(
            "invalid Record-Route parameters \"{}\": {e}",
            String::from_utf8_lossy(p)
        ))
    })?;
    Ok(Bytes::from(v))
}

/// An address for the advertised/preset forms: `host[:port][;params]`, or a whole
/// `sip:`/`sips:` URI.
fn check_address(addr: &[u8]) -> Result<Bytes, FnError> {
    let a = addr.trim_ascii();
    let has_scheme = a.len() > 4
        && (a[..4].eq_ignore_ascii_case(b"sip:")
            || a.get(..5).is_some_and(|s| s.eq_ignore_ascii_case(b"sips:")));
    let probe = if has_scheme {
        a.to_vec()
    } else {
        [&b"sip:"[..], a].concat()
    };
    let ok = Uri::parse(&probe).is_ok_and(|u| u.host().is_some() && u.headers_raw().is_none());
    if a.is_empty() || !ok {
        return Err(err(format!(
            "invalid Record-Route address \"{}\"",
            String::from_utf8_lossy(addr)
        )));
    }
    Ok(Bytes::copy_from_slice(a))
}

/// Fills in the Record-Route plan's address and the parts taken from the request now.
fn plan_record_route(
    ctx: &mut MsgContext,
    cfg: &RrConfig,
    address: RecordRouteAddress,
    params: Bytes,
    direction_aware_ftag: bool,
) -> FnResult {
    if !ctx.msg.is_request() {
        return Err(err("Record-Route is for requests"));
    }
    if ctx
        .ext
        .get::<RecordRoutePlan>()
        .is_some_and(RecordRoutePlan::is_active)
    {
        return Err(err("double attempt to record-route"));
    }
    let ruri = ctx.msg.request_uri_parsed();
    let sips = !cfg.ignore_sips
        && ruri
            .as_ref()
            .is_some_and(|u| u.scheme().eq_ignore_ascii_case(b"sips"));
    let user = if cfg.add_username {
        ruri.as_ref()
            .and_then(|u| u.user())
            .filter(|u| !u.is_empty())
            .map(Bytes::copy_from_slice)
    } else {
        None
    };
    let ftag = if cfg.append_fromtag {
        // In-dialog requests going upstream carry the caller's tag in To.
        let upstream = direction_aware_ftag && direction(ctx) == Direction::Upstream;
        let tag = if upstream {
            ctx.msg.to_tag()
        } else {
            ctx.msg.from_tag()
        };
        tag.filter(|t| !t.is_empty()).map(Bytes::copy_from_slice)
    } else {
        None
    };
    let plan = ctx.ext.get_or_insert_with(RecordRoutePlan::default);
    plan.address = Some(address);
    plan.sips = sips;
    plan.user = user;
    plan.ftag = ftag;
    plan.params = params;
    plan.full_lr = cfg.full_lr;
    plan.double = cfg.double_rr;
    plan.sockname = cfg.sockname_mode;
    Ok(Verdict::TRUE)
}

/// `record_route([params])`: plans a Record-Route with the address of the socket the
/// request arrives on (and, with double record-routing, the one it leaves on).
pub fn record_route(ctx: &mut MsgContext, cfg: &RrConfig, params: Option<&[u8]>) -> FnResult {
    let params = normalize_params(params.unwrap_or_default())?;
    plan_record_route(ctx, cfg, RecordRouteAddress::Socket, params, true)
}

/// `record_route_preset(address[, second_address])`: plans Record-Route header(s) with the
/// given address(es) as they are written.
pub fn record_route_preset(
    ctx: &mut MsgContext,
    cfg: &RrConfig,
    first: &[u8],
    second: Option<&[u8]>,
) -> FnResult {
    let second = second.filter(|s| !s.trim_ascii().is_empty());
    if second.is_some() && cfg.double_rr == DoubleRr::Off {
        return Err(err(
            "record_route_preset() with two addresses needs enable_double_rr",
        ));
    }
    let first = check_address(first)?;
    let second = second.map(check_address).transpose()?;
    plan_record_route(
        ctx,
        cfg,
        RecordRouteAddress::Preset(first, second),
        Bytes::new(),
        false,
    )
}

/// `record_route_advertised_address(address)`: plans a Record-Route with `address` (two
/// with double record-routing when the transport changes).
pub fn record_route_advertised_address(
    ctx: &mut MsgContext,
    cfg: &RrConfig,
    address: &[u8],
) -> FnResult {
    let address = check_address(address)?;
    plan_record_route(
        ctx,
        cfg,
        RecordRouteAddress::Advertised(address),
        Bytes::new(),
        true,
    )
}

/// `add_rr_param(param)`: adds a URI parameter to the Record-Route this proxy writes,
/// whether `record_route()` ran already or runs later.
pub fn add_rr_param(ctx: &mut MsgContext, param: &[u8]) -> FnResult {
    let p = normalize_params(param)?;
    ctx.ext
        .get_or_insert_with(RecordRoutePlan::default)
        .extra_params
        .extend_from_slice(&p);
    Ok(Verdict::TRUE)
}

/// `remove_record_route()`: forgets the planned Record-Route and its parameters.
pub fn remove_record_route(ctx: &mut MsgContext) -> FnResult {
    ctx.ext.remove::<RecordRoutePlan>();
    Ok(Verdict::TRUE)
}
