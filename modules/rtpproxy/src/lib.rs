//! `rtpproxy`: Media relaying through rtpproxy instances.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `rtpproxy` module.
pub struct RtpproxyModule;

impl Module for RtpproxyModule {
    fn name(&self) -> &'static str {
        "rtpproxy"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Media relaying through rtpproxy instances.");
        m.param("rtpproxy_sock", ParamType::Str, Value::Null, "Control socket(s) of rtpproxy instances (\"udp:host:port\", \"unix:/path\", with set ids).");
        m.param(
            "rtpproxy_disable_tout",
            ParamType::Int,
            60_i64,
            "Seconds an unreachable instance stays disabled.",
        );
        m.param(
            "rtpproxy_retr",
            ParamType::Int,
            5_i64,
            "Retries of a control command before an instance is disabled.",
        );
        m.param(
            "rtpproxy_tout",
            ParamType::Int,
            1_i64,
            "Seconds to wait for an instance's answer.",
        );
        m.param(
            "nortpproxy_str",
            ParamType::Str,
            "a=nortpproxy:yes\r\n",
            "SDP line marking that no RTP relay is needed.",
        );
        m.param(
            "timeout_socket",
            ParamType::Str,
            "",
            "Socket rtpproxy notifies of media timeouts.",
        );
        m.param(
            "timeout_tag_pv",
            ParamType::Str,
            "",
            "Variable with the tag for timeout notifications.",
        );
        m.param(
            "ice_candidate_priority_avp",
            ParamType::Str,
            Value::Null,
            "AVP with the ICE candidate priority to use.",
        );
        m.param(
            "extra_id_pv",
            ParamType::Str,
            Value::Null,
            "Variable whose value is sent as extra call id.",
        );
        m.param(
            "db_url",
            ParamType::Str,
            Value::Null,
            "Database holding the instance list.",
        );
        m.param(
            "table_name",
            ParamType::Str,
            "rtpproxy",
            "Table of instances.",
        );
        m.param(
            "rtp_inst_pvar",
            ParamType::Str,
            Value::Null,
            "Variable receiving the address of the selected instance.",
        );
        const FLAGS_IP_ADDRESS: &[&str] = &["flags", "ip_address"];
        const PROMPT_NAME_COUNT: &[&str] = &["prompt_name", "count"];
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<()>("rtpproxy_manage", &[], RouteMask::ANY, "Offers, answers or deletes the session as suited to the message; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpproxy_manage", &["flags"], RouteMask::ANY, "As rtpproxy_manage() with flags (\"c\" change c=, \"o\" change o=, \"r\" trust address, \"i\"/\"e\" directions...); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("rtpproxy_manage", FLAGS_IP_ADDRESS, RouteMask::ANY, "As rtpproxy_manage() with flags and the address to put into the SDP; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpproxy_offer", &[], RouteMask::ANY, "Sends an offer for the SDP and rewrites it; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpproxy_offer", &["flags"], RouteMask::ANY, "Sends an offer with flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("rtpproxy_offer", FLAGS_IP_ADDRESS, RouteMask::ANY, "Sends an offer with flags and a new SDP address; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpproxy_answer", &[], RouteMask::ANY, "Sends an answer for the SDP and rewrites it; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpproxy_answer", &["flags"], RouteMask::ANY, "Sends an answer with flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("rtpproxy_answer", FLAGS_IP_ADDRESS, RouteMask::ANY, "Sends an answer with flags and a new SDP address; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpproxy_destroy", &[], RouteMask::ANY, "Deletes the media session; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpproxy_destroy", &["flags"], RouteMask::ANY, "Deletes the media session with flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("unforce_rtp_proxy", &[], RouteMask::ANY, "Alias of rtpproxy_destroy(); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("unforce_rtp_proxy", &["flags"], RouteMask::ANY, "Alias of rtpproxy_destroy(flags); 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("set_rtp_proxy_set", &["setid"], RouteMask::ANY, "Selects the rtpproxy set for the next command; 1 on success, -1 on failure."),
            FnRow::declared::<()>("start_recording", &[], RouteMask::ANY, "Starts recording the media of the session; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64)>("rtpproxy_stream2uac", PROMPT_NAME_COUNT, RouteMask::ANY, "Streams a prerecorded prompt to the caller count times (-1 forever); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64)>("rtpproxy_stream2uas", PROMPT_NAME_COUNT, RouteMask::ANY, "Streams a prerecorded prompt to the callee count times (-1 forever); 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpproxy_stop_stream2uac", &[], RouteMask::ANY, "Stops streaming to the caller; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpproxy_stop_stream2uas", &[], RouteMask::ANY, "Stops streaming to the callee; 1 on success, -1 on failure."),
        ]);
    }
}
