//! The registrar parameters that change behaviour, read once at load.

use ferrosip_api::ModuleParams;

/// Path handling (`path_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathMode {
    /// Store, never return in the reply.
    Off,
    /// Store; return when the UA said `Supported: path`.
    Lazy,
    /// Refuse a Path the UA did not say it supports (420), as RFC 3327 asks.
    Strict,
}

#[derive(Clone, Debug)]
pub struct RegConfig {
    pub default_expires: u32,
    pub default_expires_range: u32,
    pub expires_range: u32,
    pub min_expires: u32,
    /// Refuse a too short expires with 423 instead of raising it.
    pub min_expires_reject: bool,
    pub max_expires: u32,
    /// q given to contacts without one, thousandths (-1: none).
    pub default_q: i16,
    pub append_branches: bool,
    pub case_sensitive: bool,
    pub realm_prefix: Vec<u8>,
    pub received_param: Vec<u8>,
    pub max_contacts: u32,
    pub retry_after: u32,
    pub method_filtering: bool,
    pub use_path: bool,
    pub path_mode: PathMode,
    pub path_use_received: bool,
    pub path_check_local: bool,
    pub contact_max_size: usize,
    pub flow_timer: u32,
    /// Message flag making save() take the socket from `sock_hdr_name`.
    pub sock_flag: Option<u8>,
    pub sock_hdr_name: String,
}

impl Default for RegConfig {
    fn default() -> Self {
        RegConfig {
            default_expires: 3600,
            default_expires_range: 0,
            expires_range: 0,
            min_expires: 60,
            min_expires_reject: false,
            max_expires: 0,
            default_q: 0,
            append_branches: true,
            case_sensitive: false,
            realm_prefix: Vec::new(),
            received_param: b"received".to_vec(),
            max_contacts: 0,
            retry_after: 0,
            method_filtering: false,
            use_path: false,
            path_mode: PathMode::Strict,
            path_use_received: false,
            path_check_local: false,
            contact_max_size: 512,
            flow_timer: 0,
            sock_flag: None,
            sock_hdr_name: String::new(),
        }
    }
}

fn non_negative(p: &ModuleParams, name: &str) -> Result<u32, String> {
    let v = p.int(name);
    u32::try_from(v).map_err(|_| format!("{name} {v} must be 0 or more"))
}

fn percent(p: &ModuleParams, name: &str) -> Result<u32, String> {
    match non_negative(p, name)? {
        v @ 0..=100 => Ok(v),
        v => Err(format!("{name} {v} is not a percentage (0..100)")),
    }
}

impl RegConfig {
    pub fn from_params(p: &ModuleParams) -> Result<RegConfig, String> {
        let default_q = match p.int("default_q") {
            q @ -1..=1000 => q as i16,
            q => return Err(format!("default_q {q} is not in -1..1000")),
        };
        let path_mode = match p.int("path_mode") {
            0 => PathMode::Off,
            1 => PathMode::Lazy,
            2 => PathMode::Strict,
            n => return Err(format!("path_mode {n} is not 0, 1 or 2")),
        };
        let sock_flag = match p.int("sock_flag") {
            -1 => None,
            n @ 0..=63 => Some(n as u8),
            n => return Err(format!("sock_flag {n} is not a flag (0..63) or -1")),
        };
        let outbound = p.int("outbound_mode");
        if !(0..=2).contains(&outbound) {
            return Err(format!("outbound_mode {outbound} is not 0, 1 or 2"));
        }
        Ok(RegConfig {
            default_expires: non_negative(p, "default_expires")?,
            default_expires_range: percent(p, "default_expires_range")?,
            expires_range: percent(p, "expires_range")?,
            min_expires: non_negative(p, "min_expires")?,
            min_expires_reject: p.int("min_expires_mode") == 1,
            max_expires: non_negative(p, "max_expires")?,
            default_q,
            append_branches: p.int("append_branches") != 0,
            case_sensitive: p.int("case_sensitive") != 0,
            realm_prefix: p.string("realm_prefix").into_bytes(),
            received_param: p.string("received_param").into_bytes(),
            max_contacts: non_negative(p, "max_contacts")?,
            retry_after: non_negative(p, "retry_after")?,
            method_filtering: p.int("method_filtering") != 0,
            use_path: p.int("use_path") != 0,
            path_mode,
            path_use_received: p.int("path_use_received") != 0,
            path_check_local: p.int("path_check_local") != 0,
            contact_max_size: non_negative(p, "contact_max_size")? as usize,
            flow_timer: non_negative(p, "flow_timer")?,
            sock_flag,
            sock_hdr_name: p.string("sock_hdr_name"),
        })
    }
}
