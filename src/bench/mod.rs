//! Load generation and measurement: the services it talks to, the load itself, and the
//! `stcp-engine bench` command around them.

pub mod command;
pub mod cpu;
pub mod echo;
pub mod embedded;
pub mod load;
pub mod report;
pub mod split;

pub use command::BenchArgs;
pub use echo::{start_service, ServiceHandle, ServiceKind};
