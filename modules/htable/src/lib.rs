//! `htable`: Shared in-memory hash tables ($sht) with expiry, optional database load/save and DMQ replication.

use bytes::Bytes;
use ferrosip_api::pv::PvParamRule;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `htable` module.
pub struct HtableModule;

impl Module for HtableModule {
    fn name(&self) -> &'static str {
        "htable"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.pv_declared(
            "sht",
            PvParamRule::Required,
            "Item of a hash table: $sht(table=>key) (writable; $null deletes).",
        );
        m.pv_declared(
            "shtex",
            PvParamRule::Required,
            "Expire time of an item: $shtex(table=>key).",
        );
        m.pv_declared(
            "shtcn",
            PvParamRule::Required,
            "Number of items matching a regex: $shtcn(table=>~~re).",
        );
        m.pv_declared(
            "shtcv",
            PvParamRule::Required,
            "Number of items whose value matches.",
        );
        m.pv_declared(
            "shtinc",
            PvParamRule::Required,
            "Atomic increment, returns the new value.",
        );
        m.pv_declared(
            "shtdec",
            PvParamRule::Required,
            "Atomic decrement, returns the new value.",
        );
        m.doc("Shared in-memory hash tables ($sht) with expiry, optional database load/save and DMQ replication.");
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
            "Rows fetched per database query.",
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
            "Number of dedicated expiry processes (0: use the main timer).",
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
            "When 1, event_callback also runs for child init.",
        );
        m.param(
            "dmq_peer_id",
            ParamType::Str,
            "htable",
            "DMQ peer name used for replication.",
        );
        m.function("sht_print")
            .routes(RouteMask::ANY)
            .doc("Logs the contents of all tables (debugging); always 1.")
            .declared::<()>();
        m.function("sht_rm")
            .args(&["htname", "itname"])
            .routes(RouteMask::ANY)
            .doc("Removes an item from a table; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("sht_rm_name_re")
            .args(&["htable_regexp"])
            .routes(RouteMask::ANY)
            .doc("Removes the items whose name matches a regex (\"table=>regex\"); 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("sht_rm_value_re")
            .args(&["htable_regexp"])
            .routes(RouteMask::ANY)
            .doc("Removes the items whose value matches a regex (\"table=>regex\"); 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("sht_rm_name")
            .args(&["htable", "op", "val"])
            .routes(RouteMask::ANY)
            .doc("Removes the items whose name matches val with op (\"re\", \"sw\", \"ew\", \"in\", \"eq\"); 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("sht_rm_value")
            .args(&["htable", "op", "val"])
            .routes(RouteMask::ANY)
            .doc("Removes the items whose value matches val with op (\"re\", \"sw\", \"ew\", \"in\", \"eq\"); 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("sht_match_name")
            .args(&["htable", "op", "mval"])
            .routes(RouteMask::ANY)
            .doc("True (1) when an item name matches mval with op (\"eq\", \"ne\", \"re\", \"sw\", \"ew\", \"in\"); -1 otherwise.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("sht_has_name")
            .args(&["htable", "op", "mval"])
            .routes(RouteMask::ANY)
            .doc("Alias of sht_match_name(); 1 on match, -1 otherwise.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("sht_match_str_value")
            .args(&["htable", "op", "mval"])
            .routes(RouteMask::ANY)
            .doc("True (1) when a string value matches mval with op; -1 otherwise.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("sht_has_str_value")
            .args(&["htable", "op", "mval"])
            .routes(RouteMask::ANY)
            .doc("Alias of sht_match_str_value(); 1 on match, -1 otherwise.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("sht_lock")
            .args(&["htable_key"])
            .routes(RouteMask::ANY)
            .doc("Locks the slot of an item (\"table=>key\"); always 1.")
            .declared::<(Bytes,)>();
        m.function("sht_unlock")
            .args(&["htable_key"])
            .routes(RouteMask::ANY)
            .doc("Unlocks the slot of an item (\"table=>key\"); always 1.")
            .declared::<(Bytes,)>();
        m.function("sht_reset")
            .args(&["htable"])
            .routes(RouteMask::ANY)
            .doc("Removes every item of a table; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("sht_iterator_start")
            .args(&["iname", "hname"])
            .routes(RouteMask::ANY)
            .doc("Starts a named iterator over a table (locks slots while iterating); 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("sht_iterator_next")
            .args(&["iname"])
            .routes(RouteMask::ANY)
            .doc("Moves the iterator to the next item; 1 when there is one, -1 at the end.")
            .declared::<(Bytes,)>();
        m.function("sht_iterator_end")
            .args(&["iname"])
            .routes(RouteMask::ANY)
            .doc("Ends the iterator and releases its lock; always 1.")
            .declared::<(Bytes,)>();
        m.function("sht_iterator_rm")
            .args(&["iname"])
            .routes(RouteMask::ANY)
            .doc("Removes the item at the iterator position; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("sht_iterator_sets")
            .args(&["iname", "sval"])
            .routes(RouteMask::ANY)
            .doc("Sets a string value for the item at the iterator position; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("sht_iterator_seti")
            .args(&["iname", "ival"])
            .routes(RouteMask::ANY)
            .doc("Sets an integer value for the item at the iterator position; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64)>();
        m.function("sht_iterator_setex")
            .args(&["iname", "exval"])
            .routes(RouteMask::ANY)
            .doc("Sets the expiry (seconds) of the item at the iterator position; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64)>();
        m.function("sht_setxs")
            .args(&["htname", "itname", "itval", "exval"])
            .routes(RouteMask::ANY)
            .doc("Sets a string item with its own expiry in seconds; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes, i64)>();
        m.function("sht_setxi")
            .args(&["htname", "itname", "itval", "exval"])
            .routes(RouteMask::ANY)
            .doc(
                "Sets an integer item with its own expiry in seconds; 1 on success, -1 on failure.",
            )
            .declared::<(Bytes, Bytes, i64, i64)>();
        m.function("sht_is_null")
            .args(&["htname", "itname"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the item does not exist; -1 when it exists, -2 when the table does not exist.")
            .declared::<(Bytes, Bytes)>();
        m.function("sht_inc")
            .args(&["htname", "itname"])
            .routes(RouteMask::ANY)
            .doc("Increments an integer item (created at 1 when missing); 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("sht_dec")
            .args(&["htname", "itname"])
            .routes(RouteMask::ANY)
            .doc("Decrements an integer item; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
    }
}
