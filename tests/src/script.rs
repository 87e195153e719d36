//! One script harness for the modules' unit tests: a config string loaded against the
//! test's registry, and a route of it run on a message, returning the outcome and the
//! message context afterwards.

use bytes::Bytes;
use ferrosip_api::{MsgContext, NetInfo, Registry, RouteKind};
use ferrosip_script::program::RouteId;
use ferrosip_script::vm::{run_blocking, Outcome, Vm};
use ferrosip_script::{load_str, LoadOptions, Loaded};
use ferrosip_sip::SipMessage;

/// A loaded config.
pub struct Script {
    pub loaded: Loaded,
}

impl Script {
    /// Runs the loaded modules' start hooks (database pools, timers) on `runtime`, in load
    /// order, as the server does before it takes traffic; a hook that fails panics.
    pub fn start(&self, runtime: &ferrosip_api::tokio::runtime::Runtime) {
        for (module, hook) in &self.loaded.start_hooks {
            let params = self.loaded.modules.get(module).cloned().unwrap_or_default();
            let env = ferrosip_api::StartEnv {
                params: &params,
                runtime: runtime.handle().clone(),
            };
            runtime
                .block_on(hook(&env))
                .unwrap_or_else(|e| panic!("module {module} does not start: {e}"));
        }
    }

    /// Loads `cfg` against `reg`; panics with the load errors.
    pub fn load(reg: &Registry, cfg: &str) -> Script {
        match load_str("t.cfg", cfg, &LoadOptions::default(), reg) {
            Ok(loaded) => Script { loaded },
            Err(e) => panic!("config loads: {}", e.messages.join("\n")),
        }
    }

    /// Runs the config's `request_route` on `ctx`.
    pub fn run(&self, ctx: MsgContext) -> (Outcome, MsgContext) {
        self.run_main(RouteKind::Request, ctx)
    }

    /// Runs the main route of `kind` (`request_route`, `reply_route`, ...) on `ctx`;
    /// panics when the config has none or the run fails.
    pub fn run_main(&self, kind: RouteKind, ctx: MsgContext) -> (Outcome, MsgContext) {
        let route = self
            .loaded
            .program
            .main_route(kind)
            .unwrap_or_else(|| panic!("the config has no main route of kind {kind:?}"));
        self.run_route(route, ctx)
    }

    /// Runs the route `name` of `kind` (`failure_route[name]`, `route[name]`, ...) on
    /// `ctx`; panics when the config has none or the run fails.
    pub fn run_named(&self, kind: RouteKind, name: &str, ctx: MsgContext) -> (Outcome, MsgContext) {
        let route = self
            .loaded
            .program
            .named_route(kind, name)
            .unwrap_or_else(|| panic!("the config has no route {name} of kind {kind:?}"));
        self.run_route(route, ctx)
    }

    /// [`Script::run`] as a future, for a test that drives it on its own runtime (the
    /// functions it calls wait on that runtime's database or timers).
    pub async fn run_async(&self, mut ctx: MsgContext) -> (Outcome, MsgContext) {
        let route = self
            .loaded
            .program
            .main_route(RouteKind::Request)
            .expect("the config has a request_route");
        let outcome = Vm::new()
            .run(&self.loaded.program, route, &mut ctx)
            .await
            .unwrap_or_else(|e| panic!("route runs: {e}"));
        (outcome, ctx)
    }

    fn run_route(&self, route: RouteId, mut ctx: MsgContext) -> (Outcome, MsgContext) {
        let outcome = run_blocking(&mut Vm::new(), &self.loaded.program, route, &mut ctx)
            .unwrap_or_else(|e| panic!("route runs: {e}"));
        (outcome, ctx)
    }
}

/// A message context for `raw` (a request or a reply; lines may end in `\n`, which
/// becomes CRLF, as a test writes them), received as `net` says, for a route of `kind`.
pub fn message_with(raw: &str, kind: RouteKind, net: NetInfo) -> MsgContext {
    let raw = raw.replace("\r\n", "\n").replace('\n', "\r\n");
    let msg = SipMessage::parse(Bytes::from(raw)).expect("test message parses");
    MsgContext::new(msg, kind, net)
}

/// A request context for `raw`, as [`message_with`] with the default [`NetInfo`].
pub fn request(raw: &str) -> MsgContext {
    message_with(raw, RouteKind::Request, NetInfo::default())
}
