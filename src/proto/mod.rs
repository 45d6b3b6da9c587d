//! frp v1 wire protocol: frames, messages and auth keys (no I/O). See ../shared/frp-protocol.md.

pub mod auth;
pub mod frame;
pub mod msg;
pub mod v2;

pub use auth::{auth_key, constant_time_eq, Clock, FixedClock, SystemClock};
pub use frame::{decode_frame, encode_frame, FrameError, MAX_BODY_LEN};
pub use msg::*;
