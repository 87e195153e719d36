//! `rtpengine`: Media relaying and manipulation through the rtpengine control protocol (ng).

use bytes::Bytes;
use ferrosip_api::args::PvOut;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `rtpengine` module.
pub struct RtpengineModule;

impl Module for RtpengineModule {
    fn name(&self) -> &'static str {
        "rtpengine"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Media relaying and manipulation through the rtpengine control protocol (ng).");
        m.param("rtpengine_sock", ParamType::Str, Value::Null, "Control socket(s) of rtpengine instances (\"udp:host:port\", \"=setid\" prefixes, weights).");
        m.param(
            "rtpengine_disable_tout",
            ParamType::Int,
            60_i64,
            "Seconds an unreachable instance stays disabled.",
        );
        m.param(
            "aggressive_redetection",
            ParamType::Int,
            0_i64,
            "When 1, all instances are re-tried when every one is disabled.",
        );
        m.param(
            "rtpengine_retr",
            ParamType::Int,
            5_i64,
            "Retries of a control command before an instance is disabled.",
        );
        m.param(
            "rtpengine_tout_ms",
            ParamType::Int,
            1000_i64,
            "Milliseconds to wait for an instance's answer.",
        );
        m.param(
            "queried_nodes_limit",
            ParamType::Int,
            10_i64,
            "Maximum number of instances tried for one command.",
        );
        m.param(
            "rtpengine_allow_op",
            ParamType::Int,
            0_i64,
            "When 1, calls continue on instances being disabled by the administrator.",
        );
        m.param(
            "ping_mode",
            ParamType::Int,
            1_i64,
            "When 1, instances are pinged periodically.",
        );
        m.param(
            "ping_interval",
            ParamType::Int,
            60_i64,
            "Seconds between pings of instances.",
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
            "rtpengine",
            "Table of instances.",
        );
        m.param(
            "extra_id_pv",
            ParamType::Str,
            Value::Null,
            "Variable whose value is sent as extra call id (flag \"b\").",
        );
        m.param(
            "setid_avp",
            ParamType::Str,
            Value::Null,
            "AVP receiving the selected set id.",
        );
        m.param(
            "force_send_interface",
            ParamType::Str,
            Value::Null,
            "Local address used to talk to instances.",
        );
        m.param(
            "rtp_inst_pvar",
            ParamType::Str,
            Value::Null,
            "Variable receiving the address of the selected instance.",
        );
        m.param(
            "write_sdp_pv",
            ParamType::Str,
            Value::Null,
            "Variable receiving the rewritten SDP instead of the message body.",
        );
        m.param(
            "read_sdp_pv",
            ParamType::Str,
            Value::Null,
            "Variable from which the SDP is read instead of the message body.",
        );
        m.param(
            "hash_table_tout",
            ParamType::Int,
            3600_i64,
            "Seconds a call-to-instance mapping is kept.",
        );
        m.param(
            "hash_table_size",
            ParamType::Int,
            256_i64,
            "Size of the call-to-instance hash table.",
        );
        m.param("setid_default", ParamType::Int, 0_i64, "Default set id.");
        m.param(
            "media_duration",
            ParamType::Str,
            Value::Null,
            "Variable receiving the duration of played media.",
        );
        m.param(
            "hash_algo",
            ParamType::Int,
            2_i64,
            "Hash used to pick an instance per call: 0 sum, 1 crc32, 2 crc32 of Call-ID.",
        );
        m.param(
            "dtmf_events_sock",
            ParamType::Str,
            Value::Null,
            "Socket receiving DTMF events from rtpengine.",
        );
        m.param(
            "event_callback",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of event_route[rtpengine:dtmf-event].",
        );
        m.param(
            "enable_dmq",
            ParamType::Int,
            0_i64,
            "When 1, call-to-instance mappings are replicated with DMQ.",
        );
        m.param(
            "wsapi",
            ParamType::Str,
            Value::Null,
            "WebSocket API URL of rtpengine (for ws control sockets).",
        );
        m.param(
            "dmq_peer_id",
            ParamType::Str,
            "rtpengine",
            "DMQ peer name used for replication.",
        );
        m.param(
            "mos_min_pv",
            ParamType::Str,
            Value::Null,
            "Variable receiving the minimum MOS reported on delete.",
        );
        m.param(
            "mos_max_pv",
            ParamType::Str,
            Value::Null,
            "Variable receiving the maximum MOS reported on delete.",
        );
        m.param(
            "mos_average_pv",
            ParamType::Str,
            Value::Null,
            "Variable receiving the average MOS reported on delete.",
        );
        const FLAGS_VIA_BRANCH: &[&str] = &["flags", "via_branch"];
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<()>("rtpengine_manage", &[], RouteMask::ANY, "Offers, answers or deletes the session as suited to the message (INVITE/200/ACK/BYE...); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpengine_manage", &["flags"], RouteMask::ANY, "As rtpengine_manage() with ng flags (\"replace-origin trust-address RTP/AVP ...\"); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_manage", FLAGS_VIA_BRANCH, RouteMask::ANY, "As rtpengine_manage() with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpengine_offer", &[], RouteMask::ANY, "Sends an offer for the SDP of the message and rewrites it; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpengine_offer", &["flags"], RouteMask::ANY, "Sends an offer with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_offer", FLAGS_VIA_BRANCH, RouteMask::ANY, "Sends an offer with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpengine_answer", &[], RouteMask::ANY, "Sends an answer for the SDP of the message and rewrites it; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpengine_answer", &["flags"], RouteMask::ANY, "Sends an answer with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_answer", FLAGS_VIA_BRANCH, RouteMask::ANY, "Sends an answer with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpengine_delete", &[], RouteMask::ANY, "Deletes the media session; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpengine_delete", &["flags"], RouteMask::ANY, "Deletes the media session with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_delete", FLAGS_VIA_BRANCH, RouteMask::ANY, "Deletes with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpengine_destroy", &[], RouteMask::ANY, "Deletes the media session and ends the call at rtpengine; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpengine_destroy", &["flags"], RouteMask::ANY, "As rtpengine_destroy() with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_destroy", FLAGS_VIA_BRANCH, RouteMask::ANY, "As rtpengine_destroy() with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpengine_query", &[], RouteMask::ANY, "Queries session statistics (used for MOS variables); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpengine_query", &["flags"], RouteMask::ANY, "Queries session statistics with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_query", FLAGS_VIA_BRANCH, RouteMask::ANY, "Queries with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpengine_info", &[], RouteMask::ANY, "Sends session information to rtpengine; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpengine_info", &["flags"], RouteMask::ANY, "Sends session information with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_info", FLAGS_VIA_BRANCH, RouteMask::ANY, "Sends session information with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("set_rtpengine_set", &["setid"], RouteMask::ANY, "Selects the rtpengine set for the next command; 1 on success, -1 on failure."),
            FnRow::declared::<(i64, i64)>("set_rtpengine_set", &["setid", "setid2"], RouteMask::ANY, "Selects the sets for the offer and the answer side; 1 on success, -1 on failure."),
            FnRow::declared::<()>("start_recording", &[], RouteMask::ANY, "Starts call recording at rtpengine; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("start_recording", &["flags"], RouteMask::ANY, "Starts call recording with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("stop_recording", &[], RouteMask::ANY, "Stops call recording; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("stop_recording", &["flags"], RouteMask::ANY, "Stops call recording with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("block_dtmf", &[], RouteMask::ANY, "Blocks DTMF events of the call; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("block_dtmf", &["flags"], RouteMask::ANY, "Blocks DTMF with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("unblock_dtmf", &[], RouteMask::ANY, "Unblocks DTMF events of the call; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("unblock_dtmf", &["flags"], RouteMask::ANY, "Unblocks DTMF with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("block_media", &[], RouteMask::ANY, "Blocks the media of the call; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("block_media", &["flags"], RouteMask::ANY, "Blocks media with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("unblock_media", &[], RouteMask::ANY, "Unblocks the media of the call; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("unblock_media", &["flags"], RouteMask::ANY, "Unblocks media with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("silence_media", &[], RouteMask::ANY, "Replaces the media with silence; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("silence_media", &["flags"], RouteMask::ANY, "Silences media with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("unsilence_media", &[], RouteMask::ANY, "Stops silencing the media; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("unsilence_media", &["flags"], RouteMask::ANY, "Stops silencing with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("start_forwarding", &[], RouteMask::ANY, "Starts forwarding media to the recording daemon; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("start_forwarding", &["flags"], RouteMask::ANY, "Starts forwarding with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("stop_forwarding", &[], RouteMask::ANY, "Stops forwarding media; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("stop_forwarding", &["flags"], RouteMask::ANY, "Stops forwarding with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("play_media", &["flags"], RouteMask::ANY, "Plays a media file or prompt into the call; 1 on success, -1 on failure."),
            FnRow::declared::<()>("stop_media", &[], RouteMask::ANY, "Stops media playback; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("stop_media", &["flags"], RouteMask::ANY, "Stops media playback with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("play_dtmf", &["flags"], RouteMask::ANY, "Injects DTMF tones into the call; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, PvOut)>("rtpengine_query_v", &["fmt", "var"], RouteMask::ANY, "Queries session statistics into a variable (\"j\" JSON format); 1 on success, -1 on failure."),
        ]);
    }
}
