//! stcp-engine: a thread-per-core STCP data plane that speaks frp v0.70's wire protocol.
//!
//! Layers, bottom up (each folder is one idea):
//! * [`proto`]  – v1 frames, the 18 message types, auth keys. Pure, no I/O.
//! * [`codec`]  – AES-128-CFB streams and Go-compatible snappy framing. Pure, incremental.
//! * [`mux`]    – hashicorp-compatible yamux sessions on glommio (client and server).
//! * [`config`] – frpc.toml / legacy INI / flags -> one validated config.

pub mod codec;
pub mod config;
pub mod mux;
pub mod proto;
