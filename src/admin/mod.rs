//! frpc's admin API (`webServer.*`): the HTTP server the running engine exposes, the
//! `reload` / `status` / `stop` commands that call it, and config diffing for reload.

pub mod client;
pub mod engine;
pub mod reload;
pub mod server;
pub mod status;

pub use server::{AdminBackend, AdminServer, ApiError};
pub use status::{engine_status, ProxyStatus, StatusResp};
