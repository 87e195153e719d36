//! The RPC commands served: every one a loaded module registers, and the core ones.

use crate::json::METHOD_NOT_FOUND;
use ferrosip_api::registry::RpcValue;
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

/// One command: its name, its help text and what runs it.
#[derive(Clone)]
pub struct Method {
    pub name: String,
    pub doc: String,
    pub handler: Handler,
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
        for module in registry.modules() {
            for rpc in &module.rpcs {
                let handler = rpc.handler.clone();
                methods.add(rpc.name, rpc.doc, move |args| {
                    handler(args).map_err(RpcError::failed)
                });
            }
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
        if self.by_name.contains_key(name) {
            tracing::warn!(
                method = name,
                "RPC command declared twice: the later one is served"
            );
        }
        self.by_name.insert(
            name.to_string(),
            Method {
                name: name.to_string(),
                doc: doc.to_string(),
                handler: Arc::new(handler),
            },
        );
    }

    pub fn get(&self, name: &str) -> Option<&Method> {
        self.by_name.get(name)
    }

    /// Names and help texts, sorted by name.
    pub fn list(&self) -> impl Iterator<Item = &Method> {
        self.by_name.values()
    }

    /// Runs a command. Handlers are synchronous and may block (a database reload), so
    /// they run on the runtime's blocking pool, never on a task thread; a handler that
    /// panics is answered as a failure.
    pub async fn call(&self, name: &str, params: Vec<Value>) -> Result<RpcValue, RpcError> {
        let Some(method) = self.get(name) else {
            return Err(RpcError::new(METHOD_NOT_FOUND, "Method Not Found"));
        };
        let handler = method.handler.clone();
        match tokio::task::spawn_blocking(move || handler(&params)).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(method = name, "RPC command failed: {e}");
                Err(RpcError::failed("internal error (the command panicked)"))
            }
        }
    }
}
