//! Ferrosip's testkit, shared by the integration tests in `tests/tests/` and by the
//! modules' unit tests (as a dev-dependency): the `ferrosip` binary built fresh for the
//! test's profile ([`bin`]), a proxy started on a config and stopped by PID
//! ([`proxy`]), free ports, SIPp ([`sipp`]), plain-socket SIP peers ([`peer`]), rtpengine as a media relay ([`rtpengine`]), test databases ([`db`]), private database servers to stop and restart ([`private_db`]), one fake
//! [`Services`](ferrosip_api::Services) ([`services`]) and one script harness
//! ([`script`]).

pub mod bin;
pub mod db;
pub mod packaged;
pub mod peer;
pub mod private_db;
pub mod proxy;
pub mod rtpengine;
pub mod script;
pub mod services;
pub mod sipp;

pub use bin::ferrosip_bin;
pub use packaged::{
    kamailio, kamailio_release, kamailio_releases, kamailio_sql_dir, kamailio_stock_cfg,
    kamctl_command, packaged_path, promtool, Kamailio, KAMAILIO_RELEASES,
    KAMAILIO_RELEASES_FROM_GIT,
};
pub use peer::{header, recv_text, uas_reply};
pub use proxy::{free_port, start_proxy, Launch, Proxy};
pub use rtpengine::{free_udp_port, Rtpengine};
pub use script::Script;
pub use services::FakeServices;
pub use sipp::{have_sipp, log_tails, traced_sipp, wait_exit};
