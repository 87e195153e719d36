//! `presence_xml`: XML-based presence event packages (presence, presence.winfo, dialog;sla) for the presence module.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `presence_xml` module.
pub struct PresenceXmlModule;

impl Module for PresenceXmlModule {
    fn name(&self) -> &'static str {
        "presence_xml"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("XML-based presence event packages (presence, presence.winfo, dialog;sla) for the presence module.");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailio:kamailiorw@localhost/kamailio",
            "Database holding the XCAP documents.",
        );
        m.param(
            "xcap_table",
            ParamType::Str,
            "xcap",
            "Table of XCAP documents (authorization rules).",
        );
        m.param(
            "force_active",
            ParamType::Int,
            0_i64,
            "When 1, every subscription is authorized without checking pres-rules.",
        );
        m.param(
            "integrated_xcap_server",
            ParamType::Int,
            0_i64,
            "When 1, XCAP documents are read from the database instead of an XCAP server.",
        );
        m.param(
            "xcap_server",
            ParamType::Str,
            Value::Null,
            "XCAP server address (repeatable in Kamailio).",
        );
        m.param(
            "disable_presence",
            ParamType::Int,
            0_i64,
            "When 1, the presence event package is not registered.",
        );
        m.param(
            "disable_winfo",
            ParamType::Int,
            0_i64,
            "When 1, the presence.winfo event package is not registered.",
        );
        m.param(
            "disable_bla",
            ParamType::Int,
            1_i64,
            "When 1, the dialog;sla event package is not registered.",
        );
        m.param(
            "disable_xcapdiff",
            ParamType::Int,
            0_i64,
            "When 1, the xcap-diff event package is not registered.",
        );
        m.param(
            "passive_mode",
            ParamType::Int,
            0_i64,
            "When 1, only the XML helpers are provided, no event package.",
        );
        m.param(
            "force_dummy_presence",
            ParamType::Int,
            0_i64,
            "When 1, a dummy open status is sent for presentities without publication.",
        );
        m.param(
            "force_presence_single_body",
            ParamType::Int,
            0_i64,
            "When 1, only one body (chosen by priorities) is sent instead of a merged document.",
        );
        m.param(
            "default_expires",
            ParamType::Int,
            3600_i64,
            "Expires of generated presence documents.",
        );
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<(Bytes, Bytes)>("pres_check_basic", &["presentity_uri", "status"], RouteMask::ANY, "True (1) when the presentity's basic status equals status (\"open\"/\"closed\"); -1 otherwise, -2 when no presentity."),
            FnRow::declared::<(Bytes, Bytes)>("pres_check_activities", &["presentity_uri", "activity"], RouteMask::ANY, "True (1) when the presentity's document lists the activity; -1 otherwise, -2 when no presentity."),
        ]);
    }
}
