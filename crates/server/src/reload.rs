//! Reloading the routing script while the server runs (SIGHUP today, the control
//! interface next): the same file is compiled again with the same `-A` defines and the
//! same registry. Any error keeps the running program and is logged at its file, line
//! and column; success swaps the program atomically. Module state is kept: init hooks do
//! not run again, and data with its own RPC reload (dispatcher lists, lcr) is untouched.

use crate::config::{Globals, STARTUP_GLOBALS};
use crate::script::ScriptScope;
use crate::server::Server;
use arc_swap::ArcSwap;
use ferrosip_api::{ModuleParams, Registry};
use ferrosip_script::{LoadOptions, Loaded};
use indexmap::IndexMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Everything needed to compile the script again as the server was started.
pub struct Reloader {
    path: PathBuf,
    options: LoadOptions,
    registry: Arc<Registry>,
    /// What the server started with: core parameters read at start and the modules
    /// (with their parameters) whose state is running.
    globals: Globals,
    modules: IndexMap<&'static str, ModuleParams>,
    /// One reload at a time (a signal and the control interface may ask together).
    busy: Mutex<()>,
    /// The registry of every module, to word the errors of a script that does not load
    /// (the server's own registry has only the modules it started with).
    explain: Option<fn() -> Registry>,
}

/// A reload that took effect.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// The new program's generation (1 is the one the server started with).
    pub generation: u64,
    pub routes: usize,
    /// Changes the new script makes that the running server ignores until a restart.
    pub needs_restart: Vec<String>,
}

impl Reloader {
    /// For a server started from `path` with `options` and `registry`; `started` is
    /// what that load gave.
    pub fn new(
        path: PathBuf,
        options: LoadOptions,
        registry: Arc<Registry>,
        started: &Loaded,
    ) -> Reloader {
        Reloader {
            path,
            options,
            registry,
            globals: started.globals.clone(),
            modules: started.modules.clone(),
            busy: Mutex::new(()),
            explain: None,
        }
    }

    /// Words load errors with `full` (a registry of every module), so a call to a
    /// function of a module the server did not load names that module.
    /// The script file the server was started from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn explained_by(mut self, full: fn() -> Registry) -> Reloader {
        self.explain = Some(full);
        self
    }

    /// The modules the new file loads that the running server did not start: their
    /// init and start never ran, so they cannot serve the script.
    fn added_modules(&self, options: &LoadOptions) -> Vec<String> {
        ferrosip_script::loaded_module_names(&self.path, options)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| !self.modules.contains_key(m.as_str()) && self.registry.module(m).is_none())
            .collect()
    }

    /// The changes of `new` that only a restart applies, as an operator would name them.
    fn restart_changes(&self, new: &Loaded) -> Vec<String> {
        let raw = |g: &Globals, name: &str| -> Vec<String> {
            g.get(name)
                .map(|v| v.iter().map(|x| x.raw.trim().to_string()).collect())
                .unwrap_or_default()
        };
        let mut changes: Vec<String> = STARTUP_GLOBALS
            .iter()
            .filter(|name| raw(&self.globals, name) != raw(&new.globals, name))
            .map(|name| format!("{name}="))
            .collect();
        for (name, old_params) in &self.modules {
            let Some(new_params) = new.modules.get(name) else {
                changes.push(format!("loadmodule \"{name}\" removed"));
                continue;
            };
            let Some(def) = self.registry.module(name) else {
                continue;
            };
            for p in &def.params {
                if old_params.all(p.name) != new_params.all(p.name) {
                    changes.push(format!("modparam(\"{name}\", \"{}\")", p.name));
                }
            }
        }
        changes
    }
}

impl Reloader {
    /// Compiles the script again and, when it loads, makes it `current`, the program new
    /// messages run on `server`; transactions in flight finish with the program they
    /// started with. Every outcome is logged; the error messages carry their
    /// file:line:col.
    pub fn reload(
        &self,
        current: &ArcSwap<ScriptScope>,
        server: &Arc<Server>,
    ) -> Result<ReloadReport, Vec<String>> {
        let reloader = self;
        let _one_at_a_time = reloader.busy.lock().unwrap_or_else(|e| e.into_inner());
        // Compiling touched the loader's code again, whatever the outcome.
        let _release = crate::residency::ReleaseOnDrop;
        let file = reloader.path.display().to_string();
        let options = LoadOptions {
            skip_module_init: true,
            ..reloader.options.clone()
        };
        let added = reloader.added_modules(&options);
        if !added.is_empty() {
            let why = format!(
                "{file}: loads modules the running server did not start ({}): needs a restart",
                added.join(", ")
            );
            tracing::error!("script not reloaded: {why}; the running script stays");
            return Err(vec![why]);
        }
        let loaded = match ferrosip_script::load_file(&reloader.path, &options, &reloader.registry)
        {
            Ok(l) => l,
            Err(errors) => {
                let errors = match reloader.explain {
                    Some(full) => {
                        // A `cfgengine` engine keeps the registry it loads against.
                        let full = Arc::new(full());
                        let options = LoadOptions {
                            shared_registry: Some(ferrosip_script::SharedRegistry(full.clone())),
                            ..options.clone()
                        };
                        ferrosip_script::load_file(&reloader.path, &options, &full)
                            .err()
                            .unwrap_or(errors)
                    }
                    None => errors,
                };
                for m in &errors.messages {
                    tracing::error!("{m}");
                }
                tracing::error!(
                    file = %file,
                    errors = errors.messages.len(),
                    "script not reloaded: the running script stays"
                );
                return Err(errors.messages);
            }
        };
        let added: Vec<&str> = loaded
            .modules
            .keys()
            .filter(|m| !reloader.modules.contains_key(*m))
            .copied()
            .collect();
        if !added.is_empty() {
            // A module whose init and start never ran cannot serve the script.
            let why = format!(
                "{file}: loads modules the running server did not start ({}): needs a restart",
                added.join(", ")
            );
            tracing::error!("script not reloaded: {why}; the running script stays");
            return Err(vec![why]);
        }
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let needs_restart = reloader.restart_changes(&loaded);
        let generation = current.load().generation + 1;
        let routes = loaded.program.routes.len();
        current.store(ScriptScope::new(loaded.program, generation, server.clone()));
        if !needs_restart.is_empty() {
            tracing::warn!(
                changes = %needs_restart.join(", "),
                "the reloaded script changes settings the running server keeps: each needs a restart and is ignored until then"
            );
        }
        tracing::info!(file = %file, generation, routes, "script reloaded");
        Ok(ReloadReport {
            generation,
            routes,
            needs_restart,
        })
    }
}
