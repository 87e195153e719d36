//! `presence`: SIP presence server: PUBLISH and SUBSCRIBE handling, NOTIFY generation (event packages from other modules).

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `presence` module.
pub struct PresenceModule;

impl Module for PresenceModule {
    fn name(&self) -> &'static str {
        "presence"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("SIP presence server: PUBLISH and SUBSCRIBE handling, NOTIFY generation (event packages from other modules).");
        m.param(
            "db_url",
            ParamType::Str,
            Value::Null,
            "Database for presentity and subscription storage.",
        );
        m.param(
            "presentity_table",
            ParamType::Str,
            "presentity",
            "Table of published states.",
        );
        m.param(
            "active_watchers_table",
            ParamType::Str,
            "active_watchers",
            "Table of active subscriptions.",
        );
        m.param(
            "watchers_table",
            ParamType::Str,
            "watchers",
            "Table of watcher authorization states.",
        );
        m.param(
            "clean_period",
            ParamType::Int,
            100_i64,
            "Seconds between cleanups of expired publications and subscriptions (<= 0: off).",
        );
        m.param(
            "db_update_period",
            ParamType::Int,
            100_i64,
            "Seconds between writes of in-memory subscriptions to the database.",
        );
        m.param(
            "waitn_time",
            ParamType::Int,
            5_i64,
            "Maximum seconds between a publication and the NOTIFYs it triggers.",
        );
        m.param(
            "notifier_poll_rate",
            ParamType::Int,
            10_i64,
            "Polls per waitn_time period of the notifier processes.",
        );
        m.param(
            "notifier_processes",
            ParamType::Int,
            1_i64,
            "Number of notifier processes.",
        );
        m.param(
            "force_delete",
            ParamType::Int,
            0_i64,
            "When 1, expired presentities are deleted without notifying.",
        );
        m.param(
            "startup_mode",
            ParamType::Int,
            1_i64,
            "When 1, subscriptions are loaded from the database at startup.",
        );
        m.param(
            "expires_offset",
            ParamType::Int,
            0_i64,
            "Seconds subtracted from the expires returned to subscribers.",
        );
        m.param(
            "max_expires",
            ParamType::Int,
            3600_i64,
            "Maximum accepted expires of SUBSCRIBE and PUBLISH.",
        );
        m.param(
            "min_expires",
            ParamType::Int,
            0_i64,
            "Minimum accepted expires of SUBSCRIBE and PUBLISH.",
        );
        m.param(
            "min_expires_action",
            ParamType::Int,
            1_i64,
            "What to do below min_expires: 1 reply 423, 2 raise to min_expires.",
        );
        m.param(
            "server_address",
            ParamType::Str,
            Value::Null,
            "Contact address of the presence server in NOTIFYs.",
        );
        m.param(
            "subs_htable_size",
            ParamType::Int,
            9_i64,
            "Power of two of the subscription hash table size.",
        );
        m.param(
            "pres_htable_size",
            ParamType::Int,
            9_i64,
            "Power of two of the presentity hash table size.",
        );
        m.param(
            "subs_db_mode",
            ParamType::Int,
            2_i64,
            "Subscription storage: 0 memory, 1 write-through, 2 write-back, 3 database only.",
        );
        m.param(
            "publ_cache",
            ParamType::Int,
            1_i64,
            "When 1, publications are cached in memory.",
        );
        m.param(
            "enable_sphere_check",
            ParamType::Int,
            0_i64,
            "When 1, the sphere of the presentity is checked for authorization.",
        );
        m.param(
            "timeout_rm_subs",
            ParamType::Int,
            1_i64,
            "When 1, a subscription is removed after a NOTIFY timeout.",
        );
        m.param(
            "send_fast_notify",
            ParamType::Int,
            1_i64,
            "When 1, NOTIFY is sent right after the SUBSCRIBE reply.",
        );
        m.param(
            "fetch_rows",
            ParamType::Int,
            500_i64,
            "Rows fetched per database query.",
        );
        m.param(
            "db_table_lock_type",
            ParamType::Int,
            1_i64,
            "Table lock used during updates (1 write lock).",
        );
        m.param(
            "local_log_level",
            ParamType::Int,
            2_i64,
            "Log level of the module's informational messages.",
        );
        m.param(
            "subs_remove_match",
            ParamType::Int,
            0_i64,
            "How subscriptions are matched for removal: 0 dialog, 1 also the callid.",
        );
        m.param(
            "xavp_cfg",
            ParamType::Str,
            Value::Null,
            "XAVP with per-request presence settings.",
        );
        m.param(
            "retrieve_order",
            ParamType::Int,
            0_i64,
            "Order of presentities when several exist: 0 by received time, 1 by retrieve_order_by.",
        );
        m.param(
            "retrieve_order_by",
            ParamType::Str,
            "priority",
            "Column used to order presentities when retrieve_order is 1.",
        );
        m.param(
            "sip_uri_match",
            ParamType::Int,
            0_i64,
            "URI comparison: 0 case-sensitive, 1 case-insensitive.",
        );
        m.param(
            "cseq_offset",
            ParamType::Int,
            0_i64,
            "Initial CSeq offset of NOTIFYs.",
        );
        m.param(
            "enable_dmq",
            ParamType::Int,
            0_i64,
            "When 1, subscriptions and presentities are replicated with DMQ.",
        );
        m.param(
            "pres_subs_mode",
            ParamType::Int,
            1_i64,
            "When 1, SUBSCRIBEs are checked against presentity ids.",
        );
        m.param(
            "delete_same_subs",
            ParamType::Int,
            0_i64,
            "When 1, a new subscription replaces older ones with the same dialog parameters.",
        );
        m.param(
            "timer_mode",
            ParamType::Int,
            1_i64,
            "When 1, the cleanup timer runs in its own process.",
        );
        m.param(
            "subs_respond_200",
            ParamType::Int,
            1_i64,
            "When 1, SUBSCRIBE gets 200 OK; when 0, 202 Accepted.",
        );
        m.param(
            "default_expires",
            ParamType::Int,
            3600_i64,
            "Expires used when SUBSCRIBE/PUBLISH carry none.",
        );
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<()>("handle_publish", &[], REQ_EVENT, "Processes a PUBLISH and replies to it; 1 on success, negative on error (reply sent)."),
            FnRow::declared::<(Bytes,)>("handle_publish", &["sender_uri"], REQ_EVENT, "As handle_publish() for a sender URI that must match the presentity; 1 on success, negative on error."),
            FnRow::declared::<()>("handle_subscribe", &[], REQ_EVENT, "Processes a SUBSCRIBE, replies and sends the first NOTIFY; 1 on success, negative on error."),
            FnRow::declared::<(Bytes,)>("handle_subscribe", &["watcher_uri"], REQ_EVENT, "As handle_subscribe() with the watcher URI given; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, Bytes)>("pres_auth_status", &["watcher_uri", "presentity_uri"], REQ_EVENT, "Returns the authorization status of a watcher for a presentity (1 active, 2 pending, 3 terminated...), negative on error."),
            FnRow::declared::<(Bytes, Bytes, i64)>("pres_refresh_watchers", &["uri", "event", "type"], RouteMask::ANY, "Sends NOTIFYs to the watchers of a presentity after a state change (type 0 presence, 1 authorization); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, i64, Bytes, Bytes)>("pres_refresh_watchers", &["uri", "event", "type", "file_uri", "filename"], RouteMask::ANY, "As pres_refresh_watchers() with the new state taken from a file; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("pres_update_watchers", &["uri", "event"], RouteMask::ANY, "Re-evaluates authorization of the watchers of a presentity; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("pres_has_subscribers", &["presentity_uri", "event"], RouteMask::ANY, "True (1) when the presentity has active subscribers for the event; -1 otherwise."),
        ]);
    }
}
