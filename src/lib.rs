//! stcp-engine: a thread-per-core STCP data plane that speaks frp v0.70's wire protocol.
//!
//! Layers, bottom up (each folder is one idea):
//! * [`proto`]  – v1 and v2 frames, the 18 message types, auth keys. Pure, no I/O.
//! * [`codec`]  – AES-128-CFB streams, Go-compatible snappy framing, the v2 AEAD
//!   streams. Pure, incremental.
//! * [`mux`]    – hashicorp-compatible yamux sessions on glommio (client and server).
//! * [`conn`]   – frames over streams, the encrypted control channel, the relay loop.
//! * [`config`] – frpc.toml / legacy INI -> one validated config.
//! * [`engine`] – the control executor and the per-core shards (both STCP roles).
//! * [`relay`]  – the embedded frps-compatible relay (STCP subset of frps).
//! * [`admin`]  – frpc's admin API (`webServer`: status, reload, stop) and its commands.
//! * [`serve_thread`] – the blocking accept thread under the admin API and the metrics.
//! * [`bench`]  – load generation and measurement; [`demo`] runs everything in one process.

pub mod admin;
pub mod bench;
pub mod codec;
pub mod config;
pub mod conn;
pub mod demo;
pub mod engine;
pub mod logging;
pub mod metrics;
pub mod mux;
pub mod proto;
pub mod relay;
pub mod serve_thread;
pub mod signals;
pub mod sys;
pub mod tls;
