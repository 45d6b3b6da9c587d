//! Reaching frps: TCP with a dial timeout and keepalive, then (with tcpMux) a yamux
//! client session per shard whose streams each carry one frp connection, or (without
//! tcpMux) a fresh TCP connection per frp connection.

use crate::config::ClientConfig;
use crate::conn::{with_timeout, ConnError, Io};
use crate::mux::{Mode, MuxConfig, MuxError, Session};
use crate::tls::{client_tls, ClientTls, FRP_TLS_HEAD_BYTE};
use futures_lite::AsyncWriteExt;
use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// How long opening one yamux stream may wait for room (unacknowledged SYNs, full queue).
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// How to dial frps, resolved once from the config.
#[derive(Clone)]
pub struct DialConfig {
    pub server: String,
    pub timeout: Duration,
    pub keepalive: Option<Duration>,
    pub tcp_mux: bool,
    pub mux: MuxConfig,
    pub tls: Option<Arc<ClientTls>>,
}

impl DialConfig {
    /// Fails on TLS files that cannot be read, so a bad config stops the start.
    pub fn from_config(cfg: &ClientConfig) -> Result<DialConfig, String> {
        let mut mux = MuxConfig::default();
        mux.keepalive_interval = (cfg.transport.tcp_mux_keepalive_interval > 0)
            .then(|| Duration::from_secs(cfg.transport.tcp_mux_keepalive_interval as u64));
        let tls = if cfg.transport.tls.enable {
            Some(Arc::new(client_tls(&cfg.transport.tls, &cfg.server_addr)?))
        } else {
            None
        };
        Ok(DialConfig {
            server: format!("{}:{}", cfg.server_addr, cfg.server_port),
            timeout: Duration::from_secs(cfg.transport.dial_server_timeout.max(1) as u64),
            keepalive: (cfg.transport.dial_server_keepalive > 0)
                .then(|| Duration::from_secs(cfg.transport.dial_server_keepalive as u64)),
            tcp_mux: cfg.transport.tcp_mux,
            mux,
            tls,
        })
    }
}

/// Resolves `host:port` (IP literals never block; names use the system resolver).
pub fn resolve(addr: &str) -> Result<SocketAddr, ConnError> {
    addr.to_socket_addrs()
        .map_err(|e| ConnError::Other(format!("cannot resolve {addr}: {e}")))?
        .next()
        .ok_or_else(|| ConnError::Other(format!("{addr} resolves to no address")))
}

/// Dials a TCP connection with frpc's socket options.
pub async fn dial_tcp(
    addr: &str,
    timeout: Duration,
    keepalive: Option<Duration>,
) -> Result<glommio::net::TcpStream, ConnError> {
    let sa = resolve(addr)?;
    let stream = glommio::net::TcpStream::connect_timeout(sa, timeout)
        .await
        .map_err(|e| ConnError::Other(format!("dial {addr}: {e}")))?;
    // Go sets TCP_NODELAY by default, so frpc has it; so do we.
    let _ = stream.set_nodelay(true);
    if let Some(ka) = keepalive {
        set_keepalive(&stream, ka);
    }
    Ok(stream)
}

fn set_keepalive(stream: &glommio::net::TcpStream, idle: Duration) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    // Borrow the fd through socket2 without taking ownership of it.
    let sock = std::mem::ManuallyDrop::new(unsafe {
        <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(fd)
    });
    let ka = socket2::TcpKeepalive::new().with_time(idle);
    let _ = sock.set_tcp_keepalive(&ka);
}

/// A dialled connection to frps (TLS is layered here when configured).
pub async fn dial_frps(cfg: &DialConfig) -> Result<Box<dyn Io>, ConnError> {
    let mut tcp = dial_tcp(&cfg.server, cfg.timeout, cfg.keepalive).await?;
    let Some(tls) = &cfg.tls else {
        return Ok(Box::new(tcp));
    };
    // A server that accepts but never answers must not hold the dial forever.
    let handshake = async {
        if tls.custom_first_byte {
            tcp.write_all(&[FRP_TLS_HEAD_BYTE]).await?;
        }
        futures_rustls::TlsConnector::from(tls.config.clone())
            .connect(tls.server_name.clone(), tcp)
            .await
            .map_err(|e| ConnError::Other(format!("TLS handshake with {}: {e}", cfg.server)))
    };
    let conn = with_timeout(cfg.timeout, "the TLS handshake with frps", handshake).await?;
    Ok(Box::new(conn))
}

/// One shard's way to frps: a lazily (re)connected yamux session, or fresh connections.
pub struct Link {
    cfg: DialConfig,
    session: RefCell<Option<Session>>,
    /// Serialises session dials so a burst of connections makes one dial, not hundreds.
    dialing: glommio::sync::Semaphore,
    /// Throttles the log line for refusals at `MuxConfig::max_streams`.
    stream_limit_log: super::limits::ConnLimit,
}

impl Link {
    pub fn new(cfg: DialConfig) -> Link {
        Link {
            cfg,
            session: RefCell::new(None),
            dialing: glommio::sync::Semaphore::new(1),
            stream_limit_log: super::limits::ConnLimit::new(None),
        }
    }

    /// A new frp connection: a yamux stream, or a fresh TCP connection without tcpMux.
    pub async fn open(&self) -> Result<Box<dyn Io>, ConnError> {
        // The dial (TCP, then maybe a TLS handshake) is a large future; boxed, it does
        // not sit inline in every relay's task for the connection's whole life.
        if !self.cfg.tcp_mux {
            return Box::pin(dial_frps(&self.cfg)).await;
        }
        let session = self.session().await?;
        // open() waits while frps leaves our SYNs unacknowledged (a black-holed peer).
        let opened = with_timeout(STREAM_OPEN_TIMEOUT, "a yamux stream to frps", async {
            session.open().await.map_err(|e| match e {
                MuxError::TooManyStreams => {
                    let max = self.cfg.mux.max_streams;
                    if let Some(n) = self.stream_limit_log.note_refusal() {
                        log::warn!("yamux stream limit ({max}, --max-streams-per-session) reached on a shard's session to frps: refused {n} connection(s) since the last report");
                    }
                    ConnError::Limit(format!("yamux stream limit {max} reached"))
                }
                e => ConnError::Other(format!("open yamux stream: {e}")),
            })
        })
        .await;
        if opened.is_err() && session.is_closed() {
            // A dead session is replaced on the next open; a live one at its stream
            // limit is kept (dropping its handle would leak it with its streams).
            self.session.borrow_mut().take();
        }
        Ok(Box::new(opened?))
    }

    async fn session(&self) -> Result<Session, ConnError> {
        if let Some(s) = self.live_session() {
            return Ok(s);
        }
        let _permit = self
            .dialing
            .acquire_permit(1)
            .await
            .map_err(|_| ConnError::Other("link closed".into()))?;
        if let Some(s) = self.live_session() {
            return Ok(s);
        }
        let io = Box::pin(dial_frps(&self.cfg)).await?;
        let s = Session::new(io, Mode::Client, self.cfg.mux.clone());
        *self.session.borrow_mut() = Some(s.clone());
        Ok(s)
    }

    fn live_session(&self) -> Option<Session> {
        let mut slot = self.session.borrow_mut();
        match &*slot {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                slot.take();
                None
            }
            None => None,
        }
    }

    /// Closes the session and every stream on it (shutdown).
    pub fn reset(&self) {
        if let Some(s) = self.session.borrow_mut().take() {
            s.close();
        }
    }

    /// Stops using the current session for new streams (after a re-login frps may be a
    /// new process, or the old session black-holed). Streams still relaying on it carry
    /// on; the session is closed once they have all ended.
    pub fn retire(&self) {
        let Some(old) = self.session.borrow_mut().take() else {
            return;
        };
        glommio::spawn_local(async move {
            while !old.is_closed() && old.num_streams() > 0 {
                futures_lite::future::or(
                    old.closed(),
                    glommio::timer::sleep(Duration::from_secs(1)),
                )
                .await;
            }
            old.close();
        })
        .detach();
    }
}
