//! The embedded frps-compatible relay: the STCP subset of frps v0.70 (login, stcp
//! proxies, work-connection pools, visitor connections), behaving like frps on the wire,
//! in its checks and in its error strings. It powers `stcp-engine relay`, the demo and
//! the integration tests. The real frps stays the reference: where they differ, this is
//! the bug.
//!
//! Everything runs on one glommio executor thread; state is `Rc<RefCell<..>>`.

mod config;
mod handlers;
mod registry;

use crate::mux::MuxConfig;
use std::net::SocketAddr;
use std::time::Duration;

pub use config::from_frps_toml;
pub use registry::RelayStats;

/// frps's version string, sent in LoginResp.
pub const FRPS_VERSION: &str = "0.70.1";

#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub bind: SocketAddr,
    pub token: String,
    /// frps `transport.tcpMux` (default true): every connection is a yamux session.
    pub tcp_mux: bool,
    /// frps `transport.maxPoolCount` (default 5).
    pub max_pool_count: u32,
    /// frps: the first message of each connection must arrive within this (10 s).
    pub handshake_timeout: Duration,
    /// frps `userConnTimeout` (default 10 s): how long a visitor waits for a work conn.
    pub user_conn_timeout: Duration,
    /// frps `transport.heartbeatTimeout`: -1 (off) with tcpMux, 90 without.
    pub heartbeat_timeout: i64,
    /// frps `auth.additionalScopes` contains "NewWorkConns" / "HeartBeats".
    pub auth_new_work_conns: bool,
    pub auth_heartbeats: bool,
    /// Beyond frps, opt-in: reject visitor sign keys older than this or reused within it.
    pub freshness_window: Option<Duration>,
    /// frps `detailedErrorsToClient` (default true).
    pub detailed_errors: bool,
    /// Accept TLS on the same port (first byte 0x16, or frp's 0x17 prefix), as frps.
    pub tls: RelayTls,
    /// frps `transport.tls.force`: refuse plain connections.
    pub tls_force: bool,
    pub mux: MuxConfig,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            bind: "127.0.0.1:7000".parse().expect("static address"),
            token: String::new(),
            tcp_mux: true,
            max_pool_count: 5,
            handshake_timeout: Duration::from_secs(10),
            user_conn_timeout: Duration::from_secs(10),
            heartbeat_timeout: -1,
            auth_new_work_conns: false,
            auth_heartbeats: false,
            freshness_window: None,
            detailed_errors: true,
            tls: RelayTls::SelfSigned,
            tls_force: false,
            mux: MuxConfig::default(),
        }
    }
}

/// Where the relay's TLS certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayTls {
    /// Plain connections only.
    Off,
    /// A fresh self-signed certificate per start (frps's default).
    SelfSigned,
    /// PEM files: certificate chain, private key.
    Files(String, String),
}

impl RelayConfig {
    /// frps's defaulting: the heartbeat timeout depends on tcpMux.
    pub fn with_tcp_mux(mut self, on: bool) -> Self {
        self.tcp_mux = on;
        self.heartbeat_timeout = if on { -1 } else { 90 };
        self
    }
}

/// A relay running on its own thread. Dropping the handle stops it.
pub struct RelayHandle {
    addr: SocketAddr,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
    stats: std::sync::Arc<RelayStats>,
}

impl RelayHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    /// Stops accepting, drops every connection and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds and starts a relay on a new thread (optionally pinned to `cpu`).
pub fn start(cfg: RelayConfig, cpu: Option<usize>) -> std::io::Result<RelayHandle> {
    crate::sys::check_io_uring().map_err(std::io::Error::other)?;
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let stats = std::sync::Arc::new(RelayStats::default());
    let stats2 = stats.clone();
    let tls = match &cfg.tls {
        RelayTls::Off => None,
        RelayTls::SelfSigned => Some(crate::tls::server_tls(None).map_err(std::io::Error::other)?),
        RelayTls::Files(c, k) => {
            Some(crate::tls::server_tls(Some((c, k))).map_err(std::io::Error::other)?)
        }
    };
    let placement = match cpu {
        Some(c) => glommio::Placement::Fixed(c),
        None => glommio::Placement::Unbound,
    };
    let thread = crate::sys::executor(placement, "stcp-relay")
        .spawn(move || async move {
            let listener = match glommio::net::TcpListener::bind(cfg.bind) {
                Ok(l) => l,
                Err(e) => {
                    let _ = addr_tx.send(Err(std::io::Error::other(format!(
                        "cannot bind relay on {}: {e}",
                        cfg.bind
                    ))));
                    return;
                }
            };
            let addr = listener
                .local_addr()
                .expect("bound listener has an address");
            let _ = addr_tx.send(Ok(addr));
            handlers::serve(listener, cfg, tls, stats2, stop_rx).await;
        })
        .map_err(|e| std::io::Error::other(format!("cannot start relay executor: {e}")))?;
    let addr = addr_rx
        .recv()
        .map_err(|_| std::io::Error::other("relay thread exited during start"))??;
    Ok(RelayHandle {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
        stats,
    })
}
