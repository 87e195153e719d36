//! wip
mod chars;
mod error;
mod header_name;
mod list;
mod message;
mod method;
mod name_addr;
mod params;
mod scalars;
mod uri;
mod via;

pub use error::ParseError;
pub use header_name::HeaderName;
pub use list::CommaList;
pub use message::{keepalive_len, SipMessage, MAX_BUFFER};
pub use method::Method;
pub use name_addr::NameAddr;
pub use params::{ParamIter, Params};
pub use scalars::CSeq;
pub use uri::{Scheme, Uri};
pub use via::Via;
mod edit;
mod frame;
mod validate;
pub use frame::frame_len;
mod reply;
pub use reply::ReplyBuilder;
