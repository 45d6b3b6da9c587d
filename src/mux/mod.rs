//! yamux (hashicorp spec) sessions running on a glommio executor.
//!
//! Wire-compatible with `hashicorp/yamux` as used by frp v0.70 (the `fatedier` fork has
//! no wire change). One [`Session`] multiplexes a transport into [`Stream`]s; it runs as
//! a few tasks on the current glommio executor and is `!Send` (`Rc`/`RefCell`, no locks).
//!
//! Design, and why:
//! * **Reader task** parses frames out of one reused buffer and copies payload straight
//!   into the target stream's receive buffer. It never waits on a stream consumer (the
//!   peer's send window bounds what a stream can buffer), so pings are answered even when
//!   every stream is stalled.
//! * **Writer task** owns nothing but a spare buffer: streams append complete frames
//!   (header + payload) to the session's outbound queue; the writer swaps the queue out
//!   and writes it with as few syscalls as possible, while streams fill the next batch.
//!   Stream writes wait when the queue is over [`MuxConfig::write_queue_limit`], so the
//!   buffering stays bounded.
//! * Stream state mirrors hashicorp's state machine (`stream.go`) so window updates,
//!   flags and close handshakes are byte-for-byte what a Go peer expects.
//!
//! Deliberate differences from hashicorp (none visible on the wire in normal operation):
//! * A stream write returns once its frames are queued; `flush`/`close` wait until they
//!   are written to the transport (Go's `Write` waits for the socket write itself).
//! * Dropping a [`Stream`] without closing it sends FIN, or RST if received data was left
//!   unread (like TCP); data arriving later for a dropped stream is answered with RST.
//! * When the session dies, streams that had not seen the peer's FIN end their reads with
//!   `ConnectionAborted` instead of a clean EOF, so truncation is visible.
//! * [`Session::close`] gives queued frames up to 5 s to be written before closing the
//!   transport (Go drops them). Like Go, it sends no GoAway.
//! * `max_streams` caps live streams; more than 16 MiB of control frames queued for a
//!   peer that does not read ends the session (`QueueOverflow`).
//!
//! Sessions are not closed by dropping the handles: call [`Session::close`].

pub mod frame;
mod session;
mod stream;

pub use session::Session;
pub use stream::Stream;

use std::time::Duration;

/// Which side of the session we are. Only affects stream ids: hashicorp's client opens
/// odd ids from 1, the server even ids from 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Client,
    Server,
}

/// Session settings. Defaults are frp v0.70's (see `frp-protocol.md` §11.1).
#[derive(Clone, Debug)]
pub struct MuxConfig {
    /// Receive window granted to the peer per stream (hashicorp `MaxStreamWindowSize`).
    /// frp uses 6 MiB. Values below the 256 KiB initial window are raised to it.
    pub max_stream_window: u32,
    /// Send a Ping SYN this often; `None` disables keepalive (hashicorp `KeepAliveInterval`).
    pub keepalive_interval: Option<Duration>,
    /// A keepalive ping not acknowledged within this time kills the session
    /// (hashicorp `ConnectionWriteTimeout`, 10 s).
    pub ping_timeout: Duration,
    /// Cap on live streams (both directions). Over it, `open` fails with
    /// `TooManyStreams` and inbound SYNs are answered with RST.
    pub max_streams: usize,
    /// Inbound streams waiting for `accept`; beyond it SYNs are RST (hashicorp 256). It also
    /// caps our own unacknowledged opens, as hashicorp's `synCh` does.
    pub accept_backlog: usize,
    /// An opened stream not acknowledged within this time kills the session
    /// (hashicorp `StreamOpenTimeout`, 75 s).
    pub stream_open_timeout: Option<Duration>,
    /// After our FIN, how long we wait for the peer's FIN before sending RST and forgetting
    /// the stream (hashicorp `StreamCloseTimeout`, 5 min).
    pub stream_close_timeout: Option<Duration>,
    /// Outbound bytes queued before stream writes wait (backpressure); also the most one
    /// stream write may queue at once. Control frames are never held back.
    pub write_queue_limit: usize,
}

impl Default for MuxConfig {
    fn default() -> Self {
        MuxConfig {
            max_stream_window: 6 * 1024 * 1024,
            keepalive_interval: Some(Duration::from_secs(30)),
            ping_timeout: Duration::from_secs(10),
            max_streams: 1_000_000,
            accept_backlog: 256,
            stream_open_timeout: Some(Duration::from_secs(75)),
            stream_close_timeout: Some(Duration::from_secs(300)),
            write_queue_limit: 256 * 1024,
        }
    }
}

/// Why a session operation failed or a session died.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    /// Closed locally with [`Session::close`] (or an operation on a dead session).
    #[error("yamux session closed")]
    SessionClosed,
    /// The peer closed the transport (EOF). frps's `Session.Close` sends no GoAway.
    #[error("yamux transport closed by peer")]
    RemoteClosed,
    #[error("yamux protocol error: {0}")]
    ProtocolError(String),
    #[error("yamux keepalive timeout: no ping ack")]
    KeepaliveTimeout,
    #[error("yamux ping timed out")]
    PingTimeout,
    #[error("yamux stream {stream} was not acknowledged in time")]
    StreamOpenTimeout { stream: u32 },
    #[error("yamux receive window exceeded on stream {stream}")]
    RecvWindowExceeded { stream: u32 },
    #[error("yamux transport I/O error: {0}")]
    Io(String),
    /// GoAway from the peer: code 0 (normal) refuses new streams, 1 (protocol error),
    /// 2 (internal error) and others end the session.
    #[error("yamux go away from peer (code {0})")]
    GoAway(u32),
    #[error("too many yamux streams")]
    TooManyStreams,
    #[error("yamux stream ids exhausted")]
    StreamsExhausted,
    /// The peer stopped reading while we had to queue control frames for it.
    #[error("yamux outbound queue overflow: peer is not reading")]
    QueueOverflow,
}
