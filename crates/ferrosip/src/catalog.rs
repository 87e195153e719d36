//! Every module built into this binary, and the operator docs generated from them.
//!
//! [`MODULES`] is the list of the modules this workspace builds in; a [`Catalog`] is that
//! list plus the modules a custom binary adds (`ferrosip::Server::builder().module(..)`):
//! the one place `loadmodule`, `check`, `docs` and the error messages take module names
//! from.

use ferrosip_api::{Callable, Module, Registry, RouteMask};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// How a built-in module is declared into a registry.
pub type Declare = fn(&mut Registry);

/// Every built-in module by the name `loadmodule` gives, with how to declare it.
pub const MODULES: &[(&str, Declare)] = &[
    ("acc", |r| r.register(&ferrosip_mod_acc::AccModule)),
    ("app_lua", |r| {
        r.register(&ferrosip_mod_app_lua::AppLuaModule)
    }),
    ("alias_db", |r| {
        r.register(&ferrosip_mod_alias_db::AliasDbModule)
    }),
    ("auth", |r| {
        r.register(&ferrosip_mod_auth::AuthModule::new())
    }),
    ("auth_db", |r| {
        r.register(&ferrosip_mod_auth_db::AuthDbModule)
    }),
    ("avpops", |r| r.register(&ferrosip_mod_avpops::AvpopsModule)),
    ("cfgutils", |r| {
        r.register(&ferrosip_mod_cfgutils::CfgutilsModule)
    }),
    ("core", |r| r.register(&ferrosip_mod_core::CoreModule)),
    ("corex", |r| r.register(&ferrosip_mod_corex::CorexModule)),
    ("counters", |r| {
        r.register(&ferrosip_mod_counters::CountersModule)
    }),
    ("ctl", |r| r.register(&ferrosip_mod_ctl::CtlModule)),
    ("dialog", |r| r.register(&ferrosip_mod_dialog::DialogModule)),
    ("debugger", |r| {
        r.register(&ferrosip_mod_debugger::DebuggerModule)
    }),
    ("dispatcher", |r| {
        r.register(&ferrosip_mod_dispatcher::DispatcherModule)
    }),
    ("dlgs", |r| r.register(&ferrosip_mod_dlgs::DlgsModule)),
    ("domain", |r| r.register(&ferrosip_mod_domain::DomainModule)),
    ("htable", |r| r.register(&ferrosip_mod_htable::HtableModule)),
    ("jsonrpcs", |r| {
        r.register(&ferrosip_mod_jsonrpcs::JsonrpcsModule)
    }),
    ("kex", |r| r.register(&ferrosip_mod_kex::KexModule)),
    ("lcr", |r| r.register(&ferrosip_mod_lcr::LcrModule)),
    ("maxfwd", |r| r.register(&ferrosip_mod_maxfwd::MaxfwdModule)),
    ("nathelper", |r| {
        r.register(&ferrosip_mod_nathelper::NathelperModule)
    }),
    ("path", |r| r.register(&ferrosip_mod_path::PathModule)),
    ("permissions", |r| {
        r.register(&ferrosip_mod_permissions::PermissionsModule)
    }),
    ("pike", |r| r.register(&ferrosip_mod_pike::PikeModule)),
    ("presence", |r| {
        r.register(&ferrosip_mod_presence::PresenceModule)
    }),
    ("presence_xml", |r| {
        r.register(&ferrosip_mod_presence_xml::PresenceXmlModule)
    }),
    ("pv", |r| r.register(&ferrosip_mod_pv::PvModule)),
    ("registrar", |r| {
        r.register(&ferrosip_mod_registrar::RegistrarModule)
    }),
    ("rr", |r| r.register(&ferrosip_mod_rr::RrModule)),
    ("rtpengine", |r| {
        r.register(&ferrosip_mod_rtpengine::RtpengineModule)
    }),
    ("rtpproxy", |r| {
        r.register(&ferrosip_mod_rtpproxy::RtpproxyModule)
    }),
    ("sanity", |r| r.register(&ferrosip_mod_sanity::SanityModule)),
    ("siptrace", |r| {
        r.register(&ferrosip_mod_siptrace::SiptraceModule)
    }),
    ("siputils", |r| {
        r.register(&ferrosip_mod_siputils::SiputilsModule)
    }),
    ("sl", |r| r.register(&ferrosip_mod_sl::SlModule)),
    ("speeddial", |r| {
        r.register(&ferrosip_mod_speeddial::SpeeddialModule)
    }),
    ("sqlops", |r| r.register(&ferrosip_mod_sqlops::SqlopsModule)),
    ("textops", |r| {
        r.register(&ferrosip_mod_textops::TextopsModule)
    }),
    ("textopsx", |r| {
        r.register(&ferrosip_mod_textopsx::TextopsxModule)
    }),
    ("tls", |r| r.register(&ferrosip_mod_tls::TlsModule)),
    ("tm", |r| r.register(&ferrosip_mod_tm::TmModule)),
    ("tmx", |r| r.register(&ferrosip_mod_tmx::TmxModule)),
    ("uac", |r| r.register(&ferrosip_mod_uac::UacModule)),
    ("usrloc", |r| r.register(&ferrosip_mod_usrloc::UsrlocModule)),
    ("websocket", |r| {
        r.register(&ferrosip_mod_websocket::WebsocketModule)
    }),
    ("xhttp", |r| r.register(&ferrosip_mod_xhttp::XhttpModule)),
    ("xhttp_prom", |r| {
        r.register(&ferrosip_mod_xhttp_prom::XhttpPromModule)
    }),
    ("xlog", |r| r.register(&ferrosip_mod_xlog::XlogModule)),
];

/// The script's own PVs and transformations and the modules whose work the core does.
fn core_registry() -> Registry {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    ferrosip_mod_absorbed::register_absorbed(&mut reg);
    reg
}

/// The registry with every built-in module (`check`, docs, error messages).
pub fn registry() -> Registry {
    Catalog::builtin().registry()
}

/// The registry a server needs for a script loading `modules`: the core and those modules
/// only (an absorbed module needs nothing declared). Declaring a module builds its functions' entry points, which pages its code in;
/// a stateless proxy that declared all ~40 started with ~3 MiB more resident.
pub fn registry_for(modules: &[String]) -> Registry {
    Catalog::builtin().registry_for(modules)
}

/// A module a [`Catalog`] declares on demand.
type DeclareModule = Arc<dyn Fn(&mut Registry) + Send + Sync>;

/// The modules of one binary, by the name `loadmodule "NAME.so"` gives: the built-in
/// [`MODULES`] and those a custom binary adds with [`Catalog::add`].
#[derive(Clone)]
pub struct Catalog {
    modules: Vec<(&'static str, DeclareModule)>,
}

impl Catalog {
    /// The modules this workspace builds in.
    pub fn builtin() -> Catalog {
        Catalog {
            modules: MODULES
                .iter()
                .map(|(name, declare)| {
                    let declare = *declare;
                    (*name, Arc::new(declare) as DeclareModule)
                })
                .collect(),
        }
    }

    /// Adds a module; refused, naming it, when the catalog already has a module of that
    /// name (a script's `loadmodule` must mean one module).
    pub fn add<M: Module>(&mut self, module: M) -> Result<(), String> {
        let name = module.name();
        if self.modules.iter().any(|(n, _)| *n == name) {
            return Err(format!(
                "module {name} is already in this binary; give the added module another name"
            ));
        }
        let module = Arc::new(module);
        self.modules
            .push((name, Arc::new(move |r: &mut Registry| r.register(&*module))));
        Ok(())
    }

    /// The names of the modules, in the order they are declared.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.modules.iter().map(|(n, _)| *n)
    }

    /// The registry with every module of the catalog (`check`, docs, error messages).
    pub fn registry(&self) -> Registry {
        let mut reg = core_registry();
        for (_, declare) in &self.modules {
            declare(&mut reg);
        }
        reg
    }

    /// The registry for a script loading `modules`: the core and those modules only (see
    /// [`registry_for`]).
    pub fn registry_for(&self, modules: &[String]) -> Registry {
        let mut reg = core_registry();
        for (name, declare) in &self.modules {
            // `core` is always loaded: every script has its functions.
            if *name == "core" || modules.iter().any(|m| m == name) {
                declare(&mut reg);
            }
        }
        reg
    }
}

/// How a Lua script calls `def` (app_lua's `KSR` table is generated from the registry):
/// the core's functions are at the top of `KSR`, a module's under its name.
fn ksr_name(def: &ferrosip_api::FunctionDef) -> String {
    let args: Vec<&str> = def.arg_names.to_vec();
    let call = if def.module == "core" {
        format!("`KSR.{}({})`", def.name, args.join(", "))
    } else {
        format!("`KSR.{}.{}({})`", def.module, def.name, args.join(", "))
    };
    match def.call {
        Callable::Declared => format!("{call}, declared only (`ferrosip check` reports the call)"),
        Callable::Async(_) => format!("{call}, returns an int; waits without blocking the worker"),
        Callable::Sync(_) => format!("{call}, returns an int (negative is false)"),
    }
}

fn routes_text(mask: RouteMask) -> String {
    if mask == RouteMask::ALL {
        "any route".to_string()
    } else if mask == RouteMask::ANY {
        "any route but onsend_route".to_string()
    } else {
        mask.to_string()
    }
}

/// How the docs mark a declared-only function or PV.
const NOT_IMPLEMENTED: &str = "*not implemented: `run` refuses a script using it*";

const INDEX_HEAD: &str = "# Modules

Generated by `ferrosip docs` from the module registry, so it always matches the code.

Every module declares Kamailio's functions with each overload (by arity), argument types,
allowed route kinds and return codes, and its parameters with Kamailio's defaults, so that
`ferrosip check` reads existing configs. A function or pseudo-variable marked *not
implemented* is declared only: `check` reports each use as an error (`--allow-declared`
makes them warnings for configs not meant to run) and `run` refuses to start a script that
uses it. A module with nothing implemented accepts its parameters, and `run` warns at each
`modparam` of it that it has no effect.
";

const INDEX_AUTHORS: &str = "
## For module authors

One crate per Kamailio module: `modules/<name>` is package `ferrosip-mod-<name>` (lib
`ferrosip_mod_<name>`), exporting `pub struct <Name>Module` that implements
`ferrosip_api::Module`, registered in `crates/ferrosip/src/catalog.rs`. A module kept
outside this repository is built into a custom binary
(`ferrosip::Server::builder().module(..).run()`); `docs/dev/modules.md` is the guide and
`templates/` holds a module and a binary to start from.

Route kinds: Kamailio's `EVENT_ROUTE` is `REQUEST_ROUTE | ONEVENT_ROUTE`, so every function
Kamailio allows in `REQUEST_ROUTE` also runs in `event_route` blocks (the stock config calls
`xhttp_reply()`, `jsonrpc_dispatch()` and `set_reply_close()` from
`event_route[xhttp:request]`). Declarations use `RouteMask::REQUEST | RouteMask::EVENT`
wherever Kamailio says `REQUEST_ROUTE` or `EVENT_ROUTE`.
";

/// Overloads of a module's functions: (implemented, declared only).
fn overload_counts(reg: &Registry, m: &ferrosip_api::ModuleDef) -> (usize, usize) {
    let defs = m
        .functions
        .iter()
        .flat_map(|f| reg.function(f).unwrap_or(&[]));
    defs.fold((0, 0), |(done, declared), d| match d.call {
        Callable::Declared => (done, declared + 1),
        _ => (done + 1, declared),
    })
}

/// Writes one Markdown page per built-in module (parameters, functions, PVs, RPC) and an
/// index.
pub fn write_docs(dir: &Path) -> std::io::Result<usize> {
    write_docs_of(&registry(), dir)
}

/// Writes one Markdown page per module of `reg` and an index (`ferrosip docs`).
pub fn write_docs_of(reg: &Registry, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut mods: Vec<_> = reg.modules().collect();
    mods.sort_by_key(|m| m.name);
    let (all_done, all_declared) = mods.iter().fold((0, 0), |(a, b), m| {
        let (d, n) = overload_counts(reg, m);
        (a + d, b + n)
    });
    let mut index = String::from(INDEX_HEAD);
    let _ = write!(
        index,
        "\n{all_done} of {} function signatures (overloads) are implemented.\n\n| module | functions implemented | declared only | what it does |\n|---|---|---|---|\n",
        all_done + all_declared
    );
    let mut n = 0;
    for m in mods {
        n += 1;
        let declared_only = reg.module_is_declared_only(m.name);
        let (done, declared) = overload_counts(reg, m);
        let summary = m.doc.lines().next().unwrap_or("");
        let summary = if declared_only {
            format!("*Not implemented yet.* {summary}")
        } else {
            summary.to_string()
        };
        let _ = writeln!(
            index,
            "| [{}]({}.md) | {done} | {declared} | {summary} |",
            m.name, m.name
        );
        let mut page = format!("# {}\n\n{}\n\n", m.name, m.doc);
        if declared_only {
            page.push_str("**Not implemented yet.** Everything below is declared with Kamailio's signatures so that `ferrosip check` reads configs using it, but nothing of the module is built: `run` refuses a script that calls its functions or uses its pseudo-variables, and its parameters have no effect (`run` warns at each `modparam`).\n\n");
        } else if declared > 0 {
            let _ = writeln!(
                page,
                "{done} of {} function signatures implemented; the others are marked {NOT_IMPLEMENTED}.\n",
                done + declared
            );
        }
        if m.absorbed && m.params.is_empty() {
            page.push_str("Ferrosip's core does this module's work: `loadmodule` accepts it and it adds nothing; its `modparam`s are accepted and ignored.\n");
        } else if m.absorbed {
            page.push_str("Ferrosip's core does this module's work: `loadmodule` accepts it; the parameters below take effect, any other `modparam` of it is accepted and ignored.\n\n");
        }
        if m.always_loaded {
            page.push_str("Always loaded (no `loadmodule` needed).\n\n");
        }
        if !m.params.is_empty() {
            page.push_str(
                "## Parameters\n\n| name | type | default | description |\n|---|---|---|---|\n",
            );
            for p in &m.params {
                let ty = match p.ty {
                    ferrosip_api::ParamType::Int => "int",
                    ferrosip_api::ParamType::Str => "string",
                };
                let default = if p.repeatable {
                    "(repeatable)".to_string()
                } else {
                    format!("`{}`", p.default)
                };
                let effect = if declared_only {
                    "*No effect yet.* "
                } else {
                    ""
                };
                let _ = writeln!(
                    page,
                    "| `{}` | {ty} | {default} | {effect}{} |",
                    p.name,
                    p.doc.replace('|', "\\|")
                );
            }
            page.push('\n');
        }
        if !m.functions.is_empty() {
            page.push_str("## Functions\n\n");
            for f in &m.functions {
                let own = reg.function(f).unwrap_or(&[]).iter();
                for def in own.filter(|d| d.module == m.name) {
                    let status = match def.call {
                        Callable::Declared => format!(" — {NOT_IMPLEMENTED}"),
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        page,
                        "### `{}`{status}\n\n{}\n\nAllowed in: {}.\n\nLua (app_lua): {}.\n",
                        def.signature(),
                        def.doc,
                        routes_text(def.routes),
                        ksr_name(def)
                    );
                }
            }
        }
        if !m.pvs.is_empty() {
            page.push_str("## Pseudo-variables\n\n");
            for pv in &m.pvs {
                let class = reg.pv_class(pv);
                let doc = class.as_ref().map(|c| c.doc()).unwrap_or_default();
                let status = if class.as_ref().is_some_and(|c| c.declared()) {
                    format!(" ({NOT_IMPLEMENTED})")
                } else {
                    String::new()
                };
                let _ = writeln!(page, "- `${pv}`{status} — {doc}");
            }
            page.push('\n');
        }
        if !m.rpcs.is_empty() {
            page.push_str("## RPC commands\n\n");
            for r in &m.rpcs {
                let _ = writeln!(page, "- `{}` — {}", r.name, r.doc);
            }
            page.push('\n');
        }
        if !m.example.is_empty() {
            let _ = write!(page, "## Example\n\n```\n{}```\n", m.example);
        }
        std::fs::write(dir.join(format!("{}.md", m.name)), page)?;
    }
    index.push_str(INDEX_AUTHORS);
    std::fs::write(dir.join("README.md"), index)?;
    Ok(n)
}
