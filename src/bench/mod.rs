//! Load generation and measurement: the services it talks to, and the load itself.

pub mod echo;
pub mod load;

pub use echo::{start_service, ServiceHandle, ServiceKind};
