//! `htable`: Shared in-memory hash tables ($sht) with expiry and optional database load/save.
//!
//! [`table`] is one table (slots with their own locks, expiry, the item cap); [`state`]
//! the tables of a script, database load/write-back and the sweeper; [`pvs`] the
//! pseudo-variables; [`iter`] the script iterators. This file declares the module.

pub mod iter;
pub mod pvs;
pub mod state;
pub mod table;

use bytes::Bytes;
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, MsgContext, ParamType, RouteMask, RpcValue,
    StateSlot, Value, Verdict,
};
use iter::Iterators;
use pvs::{ItemClass, ItemPv, IterClass, RecordClass};
use state::Htable;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use table::{ItemValue, Matcher, Table, WriteError};

/// The `htable` module.
pub struct HtableModule;

/// "table=>key" (or "table=>regexp") split in two.
fn split_spec(spec: &[u8]) -> Result<(&[u8], &[u8]), FnError> {
    let at = spec.windows(2).position(|w| w == b"=>").ok_or_else(|| {
        FnError::new(format!(
            "expected \"table=>...\", got {:?}",
            String::from_utf8_lossy(spec)
        ))
    })?;
    Ok((spec[..at].trim_ascii(), &spec[at + 2..]))
}

fn table<'a>(st: &'a Htable, name: &[u8]) -> Result<&'a Arc<Table>, FnError> {
    st.require(name).map_err(FnError::new)
}

fn write_result(t: &Table, r: Result<(), WriteError>) -> FnResult {
    match r {
        Ok(()) => Ok(Verdict::TRUE),
        Err(WriteError::Full) => {
            if t.note_full() {
                tracing::warn!(
                    table = t.name(),
                    maxsize = t.spec.maxsize,
                    "htable: the table is full (maxsize); new items are refused"
                );
            }
            Ok(Verdict::FALSE)
        }
        Err(_) => Ok(Verdict::FALSE),
    }
}

/// Runs a future to completion on `rt` from synchronous code (the stop hook, RPCs), on a
/// helper thread so that it works whether or not the caller is inside the runtime.
fn block_on<F>(rt: &tokio::runtime::Handle, f: F) -> Result<F::Output, String>
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| rt.block_on(f))
            .join()
            .map_err(|_| "htable: database task panicked".to_string())
    })
}

fn rpc_str(args: &[Value], i: usize, what: &str) -> Result<Bytes, String> {
    args.get(i)
        .and_then(Value::to_bytes)
        .ok_or_else(|| format!("missing parameter {what}"))
}

fn item_rpc(key: &[u8], v: &ItemValue) -> RpcValue {
    RpcValue::Struct(vec![
        (
            "name".into(),
            RpcValue::Str(String::from_utf8_lossy(key).into_owned()),
        ),
        (
            "value".into(),
            match v {
                ItemValue::Int(i) => RpcValue::Int(*i),
                ItemValue::Str(s) => RpcValue::Str(String::from_utf8_lossy(s).into_owned()),
            },
        ),
    ])
}

impl Module for HtableModule {
    fn name(&self) -> &'static str {
        "htable"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Shared in-memory hash tables ($sht) with expiry and optional database load/save (no DMQ replication in this version).");
        m.repeatable_param("htable", ParamType::Str, "Defines a table: \"name=>size=N;autoexpire=S;dbtable=T;...\" (may be given several times).");
        m.param(
            "db_url",
            ParamType::Str,
            Value::Null,
            "Database used to load and save tables with a dbtable attribute.",
        );
        m.param(
            "key_name_column",
            ParamType::Str,
            "key_name",
            "Database column holding the item name.",
        );
        m.param(
            "key_type_column",
            ParamType::Str,
            "key_type",
            "Database column holding the item type (0 single, 1 array).",
        );
        m.param(
            "value_type_column",
            ParamType::Str,
            "value_type",
            "Database column holding the value type (0 string, 1 integer).",
        );
        m.param(
            "key_value_column",
            ParamType::Str,
            "key_value",
            "Database column holding the item value.",
        );
        m.param(
            "expires_column",
            ParamType::Str,
            "expires",
            "Database column holding the item expiry time.",
        );
        m.param(
            "array_size_suffix",
            ParamType::Str,
            "::size",
            "Suffix of the item storing the size of an array loaded from the database.",
        );
        m.param(
            "fetch_rows",
            ParamType::Int,
            100_i64,
            "Rows fetched per database query in Kamailio; Ferrosip reads a table in one query (accepted for compatibility; no effect).",
        );
        m.param(
            "timer_interval",
            ParamType::Int,
            20_i64,
            "Seconds between expiry checks.",
        );
        m.param(
            "db_expires",
            ParamType::Int,
            0_i64,
            "When 1, expiry times are loaded from and saved to the database.",
        );
        m.param(
            "enable_dmq",
            ParamType::Int,
            0_i64,
            "When 1, changes are replicated to other nodes with DMQ.",
        );
        m.param(
            "dmq_init_sync",
            ParamType::Int,
            0_i64,
            "When 1, a node requests the table contents from peers at startup.",
        );
        m.param(
            "timer_procs",
            ParamType::Int,
            0_i64,
            "Number of dedicated expiry processes in Kamailio; Ferrosip always sweeps on one task of its runtime, so any value behaves alike.",
        );
        m.param(
            "event_callback",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of the htable event routes.",
        );
        m.param(
            "event_callback_mode",
            ParamType::Int,
            0_i64,
            "When 1, event_callback also runs for child init (event_callback itself is refused: no KEMI).",
        );
        m.param(
            "dmq_peer_id",
            ParamType::Str,
            "htable",
            "DMQ peer name used for replication (DMQ is refused in this version).",
        );
        let clock = m.clock();
        let state = m.state(move |p| Htable::from_params(p, clock.clone()));
        let runtime: Arc<OnceLock<tokio::runtime::Handle>> = Arc::default();
        declare_pvs(m, &state);
        declare_hooks(m, &state, &runtime);
        declare_functions(m, &state);
        declare_rpcs(m, &state, &runtime);
    }
}

fn declare_pvs(m: &mut ModuleBuilder<'_>, state: &StateSlot<Htable>) {
    let item = |kind: ItemPv, doc: &'static str| ItemClass {
        state: state.clone(),
        kind,
        doc,
    };
    m.pv(
        "sht",
        item(
            ItemPv::Value,
            "Item of a hash table: $sht(table=>key) (writable; $null deletes).",
        ),
    );
    m.pv(
        "shtex",
        item(
            ItemPv::Expires,
            "Seconds until an item expires: $shtex(table=>key) (writable).",
        ),
    );
    m.pv("shtcn", item(ItemPv::CountNames, "Number of items whose name matches: $shtcn(table=>~~re), ~%suffix, %~prefix, ==name, ** (all)."));
    m.pv("shtcv", item(ItemPv::CountValues, "Number of items whose value matches: $shtcv(table=>~~re), ~%, %~, ==str, eqN (integer)."));
    m.pv("shtinc", item(ItemPv::Inc, "Atomic increment, returns the new value ($null when the item is missing and the table has no initval)."));
    m.pv("shtdec", item(ItemPv::Dec, "Atomic decrement, returns the new value ($null when the item is missing and the table has no initval)."));
    m.pv(
        "shtitkey",
        IterClass {
            value: false,
            doc: "Name of the current item of an iterator: $shtitkey(iname).",
        },
    );
    m.pv(
        "shtitval",
        IterClass {
            value: true,
            doc: "Value of the current item of an iterator: $shtitval(iname).",
        },
    );
    m.pv("shtrecord", RecordClass);
}

fn declare_hooks(
    m: &mut ModuleBuilder<'_>,
    state: &StateSlot<Htable>,
    runtime: &Arc<OnceLock<tokio::runtime::Handle>>,
) {
    {
        let state = state.clone();
        let runtime = runtime.clone();
        m.on_start(move |env| {
            let ht = state.get();
            let rt = env.runtime.clone();
            let _ = runtime.set(rt.clone());
            async move {
                let ht = ht.map_err(|e| e.message)?;
                ht.load_all().await?;
                let weak = Arc::downgrade(&ht);
                let every = Duration::from_secs(ht.timer_interval);
                rt.spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        let Some(ht) = weak.upgrade() else {
                            return;
                        };
                        let n = ht.sweep();
                        if n > 0 {
                            tracing::debug!(expired = n, "htable: expired items removed");
                        }
                    }
                });
                Ok(())
            }
        });
    }
    {
        let state = state.clone();
        m.on_ready(move |services| {
            if let Ok(ht) = state.get() {
                ht.set_services(services.clone());
                ht.run_mod_init();
            }
        });
    }
    {
        let state = state.clone();
        m.on_stop(move |rt| {
            let Ok(ht) = state.get() else {
                return;
            };
            if ht
                .order
                .iter()
                .any(|t| t.spec.dbmode == 1 && t.spec.dbtable.is_some())
            {
                match block_on(rt, ht.save_all()) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) | Err(e) => {
                        tracing::error!("htable: write-back at stop failed: {e}")
                    }
                }
            }
        });
    }
}

fn declare_functions(m: &mut ModuleBuilder<'_>, state: &StateSlot<Htable>) {
    m.function("sht_print")
        .routes(RouteMask::ANY)
        .doc("Logs the contents of all tables (debugging); always 1.")
        .handler(state.with(|st: &Htable, _ctx: &mut MsgContext| {
            for t in &st.order {
                tracing::error!("htable[{}] items: {}", t.name(), t.len());
                for (key, item) in t.snapshot() {
                    tracing::error!(
                        "htable[{}] {} => {} (expires {})",
                        t.name(),
                        String::from_utf8_lossy(&key),
                        item.value.to_value(),
                        item.expires
                    );
                }
            }
            Ok(Verdict::TRUE)
        }));
    m.function("sht_rm")
        .args(&["htname", "itname"])
        .routes(RouteMask::ANY)
        .doc("Removes an item from a table; 1 on success, -1 on failure.")
        .handler(
            state.with(|st: &Htable, _ctx: &mut MsgContext, t: Bytes, key: Bytes| {
                table(st, &t)?.delete(&key);
                Ok(Verdict::TRUE)
            }),
        );
    for (name, by_value, doc) in [
        ("sht_rm_name_re", false, "Removes the items whose name matches a regex (\"table=>regex\"); 1 on success, -1 on failure."),
        ("sht_rm_value_re", true, "Removes the items whose value matches a regex (\"table=>regex\"); 1 on success, -1 on failure."),
    ] {
        m.function(name)
            .args(&["htable_regexp"])
            .routes(RouteMask::ANY)
            .doc(doc)
            .handler(state.with(move |st: &Htable, _ctx: &mut MsgContext, spec: Bytes| {
                let (t, re) = split_spec(&spec)?;
                let matcher = Matcher::from_op(b"re", re).map_err(FnError::new)?;
                table(st, t)?.remove_matching(&matcher, by_value);
                Ok(Verdict::TRUE)
            }));
    }
    for (name, by_value, doc) in [
        ("sht_rm_name", false, "Removes the items whose name matches val with op (\"re\", \"sw\", \"ew\", \"in\", \"eq\"); 1 on success, -1 on failure."),
        ("sht_rm_value", true, "Removes the items whose value matches val with op (\"re\", \"sw\", \"ew\", \"in\", \"eq\"); 1 on success, -1 on failure."),
    ] {
        m.function(name)
            .args(&["htable", "op", "val"])
            .routes(RouteMask::ANY)
            .doc(doc)
            .handler(state.with(move |st: &Htable, _ctx: &mut MsgContext, t: Bytes, op: Bytes, val: Bytes| {
                let matcher = Matcher::from_op(&op, &val).map_err(FnError::new)?;
                table(st, &t)?.remove_matching(&matcher, by_value);
                Ok(Verdict::TRUE)
            }));
    }
    for (name, by_value, doc) in [
        ("sht_match_name", false, "True (1) when an item name matches mval with op (\"eq\", \"ne\", \"re\", \"sw\", \"ew\", \"in\"); -1 otherwise."),
        ("sht_has_name", false, "Alias of sht_match_name(); 1 on match, -1 otherwise."),
        ("sht_match_str_value", true, "True (1) when a string value matches mval with op; -1 otherwise."),
        ("sht_has_str_value", true, "Alias of sht_match_str_value(); 1 on match, -1 otherwise."),
    ] {
        m.function(name)
            .args(&["htable", "op", "mval"])
            .routes(RouteMask::ANY)
            .doc(doc)
            .handler(state.with(move |st: &Htable, _ctx: &mut MsgContext, t: Bytes, op: Bytes, val: Bytes| {
                let matcher = Matcher::from_op(&op, &val).map_err(FnError::new)?;
                Ok(Verdict::from(table(st, &t)?.any(&matcher, by_value)))
            }));
    }
    m.function("sht_lock")
        .args(&["htable_key"])
        .routes(RouteMask::ANY)
        .doc("Locks the slot of an item (\"table=>key\") against other messages' sht_lock() (re-entrant for the message); always 1.")
        .handler(state.with(|st: &Htable, ctx: &mut MsgContext, spec: Bytes| {
            let (t, key) = split_spec(&spec)?;
            let t = table(st, t)?.clone();
            let token = st.token(ctx);
            t.script_lock(key, token);
            Ok(Verdict::TRUE)
        }));
    m.function("sht_unlock")
        .args(&["htable_key"])
        .routes(RouteMask::ANY)
        .doc("Unlocks the slot of an item (\"table=>key\"); always 1.")
        .handler(
            state.with(|st: &Htable, ctx: &mut MsgContext, spec: Bytes| {
                let (t, key) = split_spec(&spec)?;
                let t = table(st, t)?.clone();
                let token = st.token(ctx);
                if !t.script_unlock(key, token) {
                    tracing::warn!(
                        table = t.name(),
                        "sht_unlock() of a slot this message did not lock"
                    );
                }
                Ok(Verdict::TRUE)
            }),
        );
    m.function("sht_reset")
        .args(&["htable"])
        .routes(RouteMask::ANY)
        .doc("Removes every item of a table; 1 on success, -1 on failure.")
        .handler(state.with(|st: &Htable, _ctx: &mut MsgContext, t: Bytes| {
            table(st, &t)?.reset();
            Ok(Verdict::TRUE)
        }));
    m.function("sht_iterator_start")
        .args(&["iname", "hname"])
        .routes(RouteMask::ANY)
        .doc("Starts a named iterator over a table (at most 4 per message); 1 on success, -1 on failure.")
        .handler(state.with(|st: &Htable, ctx: &mut MsgContext, iname: Bytes, t: Bytes| {
            let t = table(st, &t)?.clone();
            let its = ctx.ext.get_or_insert_with(Iterators::default);
            if !its.start(iname, t) {
                return Err(FnError::new(format!("no iterator available (at most {})", iter::MAX_ITERATORS)));
            }
            Ok(Verdict::TRUE)
        }));
    m.function("sht_iterator_next")
        .args(&["iname"])
        .routes(RouteMask::ANY)
        .doc("Moves the iterator to the next item; 1 when there is one, -1 at the end.")
        .handler(|ctx: &mut MsgContext, iname: Bytes| {
            let more = ctx
                .ext
                .get_mut::<Iterators>()
                .is_some_and(|i| i.next(&iname));
            Ok(Verdict::from(more))
        });
    m.function("sht_iterator_end")
        .args(&["iname"])
        .routes(RouteMask::ANY)
        .doc("Ends the iterator; always 1.")
        .handler(|ctx: &mut MsgContext, iname: Bytes| {
            if let Some(its) = ctx.ext.get_mut::<Iterators>() {
                its.end(&iname);
            }
            Ok(Verdict::TRUE)
        });
    fn at_iterator(ctx: &MsgContext, iname: &[u8]) -> Result<(Arc<Table>, Bytes), FnError> {
        ctx.ext
            .get::<Iterators>()
            .and_then(|i| i.position(iname))
            .ok_or_else(|| {
                FnError::new(format!(
                    "iterator {:?} has no current item",
                    String::from_utf8_lossy(iname)
                ))
            })
    }
    m.function("sht_iterator_rm")
        .args(&["iname"])
        .routes(RouteMask::ANY)
        .doc("Removes the item at the iterator position; 1 on success, -1 on failure.")
        .handler(|ctx: &mut MsgContext, iname: Bytes| {
            let (t, key) = at_iterator(ctx, &iname)?;
            Ok(Verdict::from(t.delete(&key)))
        });
    m.function("sht_iterator_sets")
        .args(&["iname", "sval"])
        .routes(RouteMask::ANY)
        .doc("Sets a string value for the item at the iterator position; 1 on success, -1 on failure.")
        .handler(|ctx: &mut MsgContext, iname: Bytes, val: Bytes| {
            let (t, key) = at_iterator(ctx, &iname)?;
            write_result(&t, t.set(&key, ItemValue::Str(val), None))
        });
    m.function("sht_iterator_seti")
        .args(&["iname", "ival"])
        .routes(RouteMask::ANY)
        .doc("Sets an integer value for the item at the iterator position; 1 on success, -1 on failure.")
        .handler(|ctx: &mut MsgContext, iname: Bytes, val: i64| {
            let (t, key) = at_iterator(ctx, &iname)?;
            write_result(&t, t.set(&key, ItemValue::Int(val), None))
        });
    m.function("sht_iterator_setex")
        .args(&["iname", "exval"])
        .routes(RouteMask::ANY)
        .doc("Sets the expiry (seconds) of the item at the iterator position (tables with autoexpire); 1 on success, -1 on failure.")
        .handler(|ctx: &mut MsgContext, iname: Bytes, secs: i64| {
            let (t, key) = at_iterator(ctx, &iname)?;
            t.set_expires(&key, secs.max(0) as u64);
            Ok(Verdict::TRUE)
        });
    m.function("sht_setxs")
        .args(&["htname", "itname", "itval", "exval"])
        .routes(RouteMask::ANY)
        .doc("Sets a string item with its own expiry in seconds; 1 on success, -1 on failure.")
        .handler(state.with(
            |st: &Htable, _ctx: &mut MsgContext, t: Bytes, key: Bytes, val: Bytes, secs: i64| {
                let t = table(st, &t)?;
                write_result(
                    t,
                    t.set(&key, ItemValue::Str(val), Some(secs.max(0) as u64)),
                )
            },
        ));
    m.function("sht_setxi")
        .args(&["htname", "itname", "itval", "exval"])
        .routes(RouteMask::ANY)
        .doc("Sets an integer item with its own expiry in seconds; 1 on success, -1 on failure.")
        .handler(state.with(
            |st: &Htable, _ctx: &mut MsgContext, t: Bytes, key: Bytes, val: i64, secs: i64| {
                let t = table(st, &t)?;
                write_result(
                    t,
                    t.set(&key, ItemValue::Int(val), Some(secs.max(0) as u64)),
                )
            },
        ));
    m.function("sht_is_null")
        .args(&["htname", "itname"])
        .routes(RouteMask::ANY)
        .doc("True (1) when the item does not exist; -1 when it exists, -2 when the table does not exist.")
        .handler(state.with(|st: &Htable, _ctx: &mut MsgContext, t: Bytes, key: Bytes| {
            let Some(t) = st.table(&t) else {
                return Ok(Verdict::code(-2));
            };
            Ok(Verdict::from(!t.contains(&key)))
        }));
    for (name, delta, doc) in [
        ("sht_inc", 1, "Increments an integer item (created from the table's initval when missing); 1 on success, -1 on failure."),
        ("sht_dec", -1, "Decrements an integer item (created from the table's initval when missing); 1 on success, -1 on failure."),
    ] {
        m.function(name)
            .args(&["htname", "itname"])
            .routes(RouteMask::ANY)
            .doc(doc)
            .handler(state.with(move |st: &Htable, _ctx: &mut MsgContext, t: Bytes, key: Bytes| {
                let t = table(st, &t)?;
                write_result(t, t.add(&key, delta).map(|_| ()))
            }));
    }
}

fn declare_rpcs(
    m: &mut ModuleBuilder<'_>,
    state: &StateSlot<Htable>,
    runtime: &Arc<OnceLock<tokio::runtime::Handle>>,
) {
    fn rpc_table<'a>(st: &'a Htable, args: &[Value]) -> Result<&'a Arc<Table>, String> {
        st.require(&rpc_str(args, 0, "htable")?)
    }
    let s = state.clone();
    m.rpc(
        "htable.get",
        "One item: htable.get table key.",
        move |args| {
            let st = s.get().map_err(|e| e.message)?;
            let key = rpc_str(args, 1, "key")?;
            let v = rpc_table(&st, args)?.get(&key).ok_or("key not found")?;
            Ok(item_rpc(&key, &v))
        },
    );
    let s = state.clone();
    m.rpc(
        "htable.sets",
        "Sets a string item: htable.sets table key value.",
        move |args| {
            let st = s.get().map_err(|e| e.message)?;
            let t = rpc_table(&st, args)?;
            let key = rpc_str(args, 1, "key")?;
            let val = rpc_str(args, 2, "value")?;
            t.set(&key, ItemValue::Str(val), None)
                .map_err(|e| format!("{e:?}"))?;
            Ok(RpcValue::Null)
        },
    );
    let s = state.clone();
    m.rpc(
        "htable.seti",
        "Sets an integer item: htable.seti table key value.",
        move |args| {
            let st = s.get().map_err(|e| e.message)?;
            let t = rpc_table(&st, args)?;
            let key = rpc_str(args, 1, "key")?;
            let val = args
                .get(2)
                .and_then(Value::as_int)
                .ok_or("the value must be an integer")?;
            t.set(&key, ItemValue::Int(val), None)
                .map_err(|e| format!("{e:?}"))?;
            Ok(RpcValue::Null)
        },
    );
    let s = state.clone();
    m.rpc(
        "htable.delete",
        "Removes an item: htable.delete table key.",
        move |args| {
            let st = s.get().map_err(|e| e.message)?;
            let key = rpc_str(args, 1, "key")?;
            rpc_table(&st, args)?.delete(&key);
            Ok(RpcValue::Null)
        },
    );
    let s = state.clone();
    m.rpc(
        "htable.dump",
        "Every item of a table: htable.dump table.",
        move |args| {
            let st = s.get().map_err(|e| e.message)?;
            let items = rpc_table(&st, args)?.snapshot();
            Ok(RpcValue::Array(
                items.iter().map(|(k, it)| item_rpc(k, &it.value)).collect(),
            ))
        },
    );
    let s = state.clone();
    let rt = runtime.clone();
    m.rpc(
        "htable.reload",
        "Loads a table again from its database table: htable.reload table.",
        move |args| {
            let st = s.get().map_err(|e| e.message)?;
            let t = rpc_table(&st, args)?.clone();
            let rt = rt.get().ok_or("htable.reload needs the running server")?;
            // Load into a scratch table first: a database error leaves the table as it was.
            let scratch = Table::new(t.spec.clone());
            block_on(rt, st.load(&scratch))??;
            t.reset();
            for (key, item) in scratch.snapshot() {
                let _ = t.load_item(key, item);
            }
            Ok(RpcValue::Null)
        },
    );
    let s = state.clone();
    m.rpc(
        "htable.flush",
        "Removes every item of a table: htable.flush table.",
        move |args| {
            let st = s.get().map_err(|e| e.message)?;
            rpc_table(&st, args)?.reset();
            Ok(RpcValue::Null)
        },
    );
    let s = state.clone();
    m.rpc(
        "htable.stats",
        "Per table: name, slots, items, fewest and most items in a slot.",
        move |_args| {
            let st = s.get().map_err(|e| e.message)?;
            Ok(RpcValue::Array(
                st.order
                    .iter()
                    .map(|t| {
                        let s = t.stats();
                        RpcValue::Struct(vec![
                            ("name".into(), RpcValue::Str(t.name().to_string())),
                            ("slots".into(), RpcValue::Int(s.slots as i64)),
                            ("all".into(), RpcValue::Int(s.items as i64)),
                            ("min".into(), RpcValue::Int(s.min_slot as i64)),
                            ("max".into(), RpcValue::Int(s.max_slot as i64)),
                        ])
                    })
                    .collect(),
            ))
        },
    );
    let s = state.clone();
    m.rpc(
        "htable.listTables",
        "Every table with its definition.",
        move |_args| {
            let st = s.get().map_err(|e| e.message)?;
            Ok(RpcValue::Array(
                st.order
                    .iter()
                    .map(|t| {
                        let sp = &t.spec;
                        RpcValue::Struct(vec![
                            ("name".into(), RpcValue::Str(sp.name.clone())),
                            (
                                "dbtable".into(),
                                RpcValue::Str(sp.dbtable.clone().unwrap_or_default()),
                            ),
                            ("dbmode".into(), RpcValue::Int(i64::from(sp.dbmode))),
                            ("expire".into(), RpcValue::Int(sp.autoexpire as i64)),
                            (
                                "updateexpire".into(),
                                RpcValue::Int(i64::from(sp.updateexpire)),
                            ),
                            ("size".into(), RpcValue::Int(i64::from(sp.size))),
                            ("maxsize".into(), RpcValue::Int(sp.maxsize as i64)),
                        ])
                    })
                    .collect(),
            ))
        },
    );
}

#[cfg(test)]
mod tests;
