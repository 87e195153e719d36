//! Loading a config: preprocess -> parse -> compile, with errors rendered at the operator's
//! file, line and column.

use crate::compiler::{self, Compiled};
use crate::diag::{Diagnostic, Severity, SourceInfo};
use crate::program::Program;
use ferrosip_api::{ModuleParams, Registry, Span, StartHook, StopHook};
use indexmap::IndexMap;
use std::path::Path;
use std::sync::Arc;

/// How to load a config.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `-A NAME[=value]` defines.
    pub defines: Vec<(String, Option<String>)>,
    /// Load a script that calls declared-only functions or uses declared-only PVs, with a
    /// warning at each use (`check --allow-declared`). Off, each use is a load error: such
    /// a script cannot run, because those calls would fail on every message.
    pub allow_declared: bool,
    /// Leave the modules' init hooks out: a running server reloading its script keeps
    /// the module state those hooks set up (they would reset it).
    pub skip_module_init: bool,
    /// The registry passed to the load, shared: needed by a `cfgengine` other than the
    /// native one, whose engine keeps it while the server runs. A config with
    /// `cfgengine "lua"` loaded without it is refused.
    pub shared_registry: Option<crate::engine::SharedRegistry>,
}

/// A loaded config, ready to run.
pub struct Loaded {
    pub program: Arc<Program>,
    /// Modules in `loadmodule` order (plus the always-loaded ones) with their parameters.
    pub modules: IndexMap<&'static str, ModuleParams>,
    /// Core parameters as written.
    pub globals: IndexMap<String, Vec<crate::ast::GlobalValue>>,
    /// Rendered warnings.
    pub warnings: Vec<String>,
    /// Declared-only functions (`name()`) and PVs (`$name`) the script uses, each once;
    /// only ever non-empty with [`LoadOptions::allow_declared`].
    pub declared_only: Vec<String>,
    /// Start hooks of the loaded modules, in load order, with their parameters.
    pub start_hooks: Vec<(&'static str, Arc<StartHook>)>,
    /// Ready hooks (the server's services exist), in load order.
    pub ready_hooks: Vec<(&'static str, Arc<ferrosip_api::registry::ReadyHook>)>,
    /// Stop hooks, in load order.
    pub stop_hooks: Vec<(&'static str, Arc<StopHook>)>,
    /// Per-branch outbound hooks, in load order.
    pub branch_hooks: Vec<ferrosip_api::registry::BranchHook>,
    /// Transaction observers the loaded modules built, in load order (none when the
    /// module init hooks were skipped).
    pub tm_observers: Vec<Arc<dyn ferrosip_api::TmObserver>>,
    /// Taps of the loaded modules that see every message received and sent.
    pub message_taps: Vec<Arc<dyn ferrosip_api::trace::MessageTap>>,
}

/// Why a config did not load: every problem, rendered with its location.
#[derive(Debug)]
pub struct LoadErrors {
    pub messages: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
    /// How many of the errors are uses of declared-only functions or PVs (which
    /// [`LoadOptions::allow_declared`] turns into warnings).
    pub declared_uses: usize,
}

impl std::fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.messages.join("\n\n"))
    }
}

fn render_all(diags: Vec<Diagnostic>, src: &SourceInfo) -> LoadErrors {
    LoadErrors {
        messages: diags.iter().map(|d| d.render(src)).collect(),
        declared_uses: diags
            .iter()
            .filter(|d| compiler::is_declared_use(d))
            .count(),
        diagnostics: diags,
    }
}

fn finish(compiled: Compiled, src: &SourceInfo, reg: &Registry) -> Loaded {
    let mut start_hooks = Vec::new();
    let mut ready_hooks = Vec::new();
    let mut stop_hooks = Vec::new();
    let mut branch_hooks = Vec::new();
    let mut message_taps = Vec::new();
    for name in compiled.modules.keys() {
        if let Some(def) = reg.module(name) {
            start_hooks.extend(def.start.iter().map(|h| (def.name, h.clone())));
            ready_hooks.extend(def.ready.iter().map(|h| (def.name, h.clone())));
            stop_hooks.extend(def.stop.iter().map(|h| (def.name, h.clone())));
            branch_hooks.extend(def.branch.iter().cloned());
            message_taps.extend(def.taps.iter().cloned());
        }
    }
    let warnings = compiled.warnings.iter().map(|w| w.render(src)).collect();
    Loaded {
        program: Arc::new(compiled.program),
        modules: compiled.modules,
        globals: compiled.globals,
        warnings,
        declared_only: compiled.declared_only,
        start_hooks,
        ready_hooks,
        stop_hooks,
        branch_hooks,
        tm_observers: Vec::new(),
        message_taps,
    }
}

/// Loads a config file.
pub fn load_file(path: &Path, opts: &LoadOptions, reg: &Registry) -> Result<Loaded, LoadErrors> {
    let pp_opts = ferrosip_preprocess::Options {
        defines: opts.defines.clone(),
        ..Default::default()
    };
    let pre = ferrosip_preprocess::preprocess_file(path, &pp_opts).map_err(|errs| LoadErrors {
        messages: errs.iter().map(|e| e.to_string()).collect(),
        diagnostics: Vec::new(),
        declared_uses: 0,
    })?;
    let src = Arc::new(SourceInfo::new(pre.text, pre.map));
    load_preprocessed(src, opts, reg, path.parent())
}

/// The modules a config file loads (`loadmodule`, by registry name), read without a
/// registry, so that a server declares only those (each declared module's code is paged in
/// at start and stays resident). `None` when the file does not preprocess or parse: the
/// full load then says why.
pub fn loaded_module_names(path: &Path, opts: &LoadOptions) -> Option<Vec<String>> {
    let pp_opts = ferrosip_preprocess::Options {
        defines: opts.defines.clone(),
        ..Default::default()
    };
    let pre = ferrosip_preprocess::preprocess_file(path, &pp_opts).ok()?;
    let script = crate::parser::parse_script(&pre.text).ok()?;
    Some(
        script
            .items
            .iter()
            .filter_map(|item| match item {
                crate::ast::Item::LoadModule(l) => Some(compiler::module_name(&l.path).to_string()),
                _ => None,
            })
            .collect(),
    )
}

/// Loads a config given as a string (tests, tools); `name` is used in messages.
pub fn load_str(
    name: &str,
    text: &str,
    opts: &LoadOptions,
    reg: &Registry,
) -> Result<Loaded, LoadErrors> {
    let pp_opts = ferrosip_preprocess::Options {
        defines: opts.defines.clone(),
        ..Default::default()
    };
    let pre =
        ferrosip_preprocess::preprocess_str(name, text, &pp_opts).map_err(|errs| LoadErrors {
            messages: errs.iter().map(|e| e.to_string()).collect(),
            diagnostics: Vec::new(),
            declared_uses: 0,
        })?;
    let src = Arc::new(SourceInfo::new(pre.text, pre.map));
    load_preprocessed(src, opts, reg, None)
}

fn load_preprocessed(
    src: Arc<SourceInfo>,
    opts: &LoadOptions,
    reg: &Registry,
    config_dir: Option<&Path>,
) -> Result<Loaded, LoadErrors> {
    let script = crate::parser::parse_script(src.text()).map_err(|errs| {
        let diags = errs
            .into_iter()
            .map(|e| Diagnostic {
                severity: Severity::Error,
                span: Span::new(e.span.start, e.span.end),
                message: e.message,
                notes: Vec::new(),
            })
            .collect();
        render_all(diags, &src)
    })?;
    let compiled = match compiler::compile(&script, src.clone(), reg, opts.allow_declared) {
        Ok(c) => c,
        Err(diags) => return Err(render_all(diags, &src)),
    };
    // A module that uses another's API needs it loaded first.
    let mut errors = Vec::new();
    let loaded: Vec<&str> = compiled.modules.keys().copied().collect();
    for (i, name) in loaded.iter().enumerate() {
        for need in reg.module(name).map_or(&[][..], |d| &d.needs) {
            if !loaded[..i].contains(need) {
                errors.push(format!(
                    "error: module {name} needs {need}: loadmodule \"{need}.so\" before \"{name}.so\""
                ));
            }
        }
    }
    // Module init hooks see the final parameters; a bad value stops the load.
    // A reload keeps the state those hooks built (`skip_module_init`).
    let mut tm_observers = Vec::new();
    for (name, params) in compiled.modules.iter().filter(|_| !opts.skip_module_init) {
        if let Some(def) = reg.module(name) {
            for hook in &def.init {
                if let Err(e) = hook(params) {
                    errors.push(format!("error: module {name}: {e}"));
                }
            }
            for build in &def.tm_observers {
                match build(params, &ferrosip_api::pv::Binder::new(reg)) {
                    Ok(observer) => tm_observers.extend(observer),
                    Err(e) => errors.push(format!("error: module {name}: {e}")),
                }
            }
        }
    }
    let mut compiled = compiled;
    if errors.is_empty() {
        match attach_engine(&mut compiled, opts, reg, config_dir) {
            Ok(()) => {}
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(LoadErrors {
            messages: errors,
            diagnostics: Vec::new(),
            declared_uses: 0,
        });
    }
    let mut loaded = finish(compiled, &src, reg);
    loaded.tm_observers = tm_observers;
    Ok(loaded)
}

/// The `cfgengine` a config names (`cfgengine "lua"` or `cfgengine = "lua"`), lower-case;
/// `None` for the native language.
pub fn cfgengine(globals: &IndexMap<String, Vec<crate::ast::GlobalValue>>) -> Option<String> {
    let value = globals.get("cfgengine")?.last()?;
    let name = match &value.parsed {
        Some(crate::ast::ParamValue::Str(s)) | Some(crate::ast::ParamValue::Ident(s)) => s.clone(),
        _ => value.raw.trim().trim_matches('"').to_string(),
    };
    let name = name.to_ascii_lowercase();
    (name != "native").then_some(name)
}

/// Builds the engine `cfgengine` names and makes it the program's.
fn attach_engine(
    compiled: &mut Compiled,
    opts: &LoadOptions,
    reg: &Registry,
    config_dir: Option<&Path>,
) -> Result<(), Vec<String>> {
    let Some(name) = cfgengine(&compiled.globals) else {
        return Ok(());
    };
    let Some(engine) = reg
        .api::<crate::engine::CfgEngine>()
        .filter(|e| e.name == name)
    else {
        let hint = if name == "lua" {
            ": loadmodule \"app_lua.so\" and set modparam(\"app_lua\", \"load\", \"FILE.lua\")"
        } else {
            " (Ferrosip has \"native\" and \"lua\")"
        };
        return Err(vec![format!(
            "error: cfgengine \"{name}\" is not available{hint}"
        )]);
    };
    if !compiled.modules.contains_key(engine.module) {
        return Err(vec![format!(
            "error: cfgengine \"{name}\" needs loadmodule \"{}.so\"",
            engine.module
        )]);
    }
    if !compiled.program.routes.is_empty() {
        return Err(vec![format!(
            "error: with cfgengine \"{name}\" the routing comes from the {name} script; remove the route blocks from the config"
        )]);
    }
    let Some(shared) = &opts.shared_registry else {
        return Err(vec![format!(
            "error: cfgengine \"{name}\": this tool loads the config without a shared registry"
        )]);
    };
    if !std::ptr::eq(Arc::as_ptr(&shared.0), reg) {
        return Err(vec![format!(
            "error: cfgengine \"{name}\": the shared registry is not the one loaded against"
        )]);
    }
    let built = (engine.build)(&crate::engine::EngineInput {
        registry: &shared.0,
        modules: &compiled.modules,
        config_dir,
    })?;
    compiled.program.engine = Some(built);
    Ok(())
}
