//! The RPC commands served: every one a loaded module registers, and the core ones.

use crate::json::METHOD_NOT_FOUND;
use ferrosip_api::registry::{RpcCallable, RpcDef, RpcValue};
use ferrosip_api::{Registry, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An RPC error: a code (JSON-RPC's, or 500 as Kamailio's RPCs fail) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// A command's own failure (what Kamailio's `rpc->fault(c, 500, ...)` answers).
    pub fn failed(message: impl Into<String>) -> RpcError {
        RpcError::new(500, message)
    }
}

pub type Handler = Arc<dyn Fn(&[Value]) -> Result<RpcValue, RpcError> + Send + Sync>;

/// What runs a command.
#[derive(Clone)]
pub enum Runs {
    /// A module's command, sync or async ([`RpcDef::call`]).
    Module(RpcDef),
    /// A core command: synchronous, run on the blocking pool.
    Core(Handler),
}

/// One command: its name, its help text and what runs it.
#[derive(Clone)]
pub struct Method {
    pub name: String,
    pub doc: String,
    pub runs: Runs,
}

impl Method {
    /// Runs the command on the current thread, for a caller already on the blocking
    /// pool (a core command reading a module's): an async command is driven to its end
    /// on the runtime.
    pub fn call_blocking(&self, args: &[Value]) -> Result<RpcValue, RpcError> {
        match &self.runs {
            Runs::Core(h) => h(args),
            Runs::Module(def) => match &def.handler {
                RpcCallable::Sync(h) => h(args).map_err(RpcError::failed),
                RpcCallable::Async(h) => tokio::runtime::Handle::try_current()
                    .map_err(|_| RpcError::failed("no runtime for an async command"))?
                    .block_on(h(args.to_vec()))
                    .map_err(RpcError::failed),
            },
        }
    }
}

/// Every command served, by name.
#[derive(Clone, Default)]
pub struct Methods {
    by_name: BTreeMap<String, Method>,
}

impl Methods {
    /// The commands the registry's modules declare.
    pub fn from_registry(registry: &Registry) -> Methods {
        let mut methods = Methods::default();
        for rpc in registry.rpcs() {
            methods.insert(Method {
                name: rpc.name.to_string(),
                doc: rpc.doc.to_string(),
                runs: Runs::Module(rpc.clone()),
            });
        }
        methods
    }

    /// Adds (or replaces) a command.
    pub fn add(
        &mut self,
        name: &str,
        doc: &str,
        handler: impl Fn(&[Value]) -> Result<RpcValue, RpcError> + Send + Sync + 'static,
    ) {
        self.insert(Method {
            name: name.to_string(),
            doc: doc.to_string(),
            runs: Runs::Core(Arc::new(handler)),
        });
    }

    fn insert(&mut self, method: Method) {
        if self.by_name.contains_key(&method.name) {
            tracing::warn!(
                method = method.name,
                "RPC command declared twice: the later one is served"
            );
        }
        self.by_name.insert(method.name.clone(), method);
    }

    pub fn get(&self, name: &str) -> Option<&Method> {
        self.by_name.get(name)
    }

    /// Names and help texts, sorted by name.
    pub fn list(&self) -> impl Iterator<Item = &Method> {
        self.by_name.values()
    }

    /// Runs a command. A module's runs as [`RpcDef::call`] runs it (a sync handler on the
    /// blocking pool, an async one as a task); a core one, which may block (a script
    /// reload compiles), on the blocking pool. A handler that panics is answered as a
    /// failure.
    pub async fn call(&self, name: &str, params: Vec<Value>) -> Result<RpcValue, RpcError> {
        let Some(method) = self.get(name) else {
            return Err(RpcError::new(METHOD_NOT_FOUND, "Method Not Found"));
        };
        let handler = match &method.runs {
            Runs::Module(def) => return def.call(params).await.map_err(RpcError::failed),
            Runs::Core(h) => h.clone(),
        };
        match tokio::task::spawn_blocking(move || handler(&params)).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(method = name, "RPC command failed: {e}");
                Err(RpcError::failed("internal error (the command panicked)"))
            }
        }
    }
}
