//! Async plumbing shared by the engine and the embedded relay: reading and writing frp
//! frames on a stream without over-reading, the encrypted control channel, and the
//! bidirectional payload relay.

mod control;
mod error;
mod frames;
mod join;
pub mod pool;
mod splice;
mod wire;

pub use control::{ControlReader, ControlWriter};
pub use error::ConnError;
pub use frames::{read_msg_timeout, write_msg, FrameReader};
pub use join::{join, JoinStats, Transform};
pub use splice::{join_fast, splice_enabled};
pub use wire::{answer_client_hello, ClientHandshake, V2Crypto, Wire};

use futures_lite::{AsyncRead, AsyncWrite};
use std::any::Any;
use std::os::fd::{AsRawFd, RawFd};

/// Anything we can relay bytes over: TCP sockets, TLS streams, yamux streams.
pub trait Io: AsyncRead + AsyncWrite + Unpin + 'static {
    /// The socket's fd when this is a plain glommio TCP stream (no TLS, no yamux, no
    /// buffering in between), so the relay may splice(2) it.
    fn plain_tcp_fd(&self) -> Option<RawFd>;

    /// This stream as a yamux stream, so a plain relay can write its received bytes
    /// straight from the stream's queue.
    fn as_mux_stream(&mut self) -> Option<&mut crate::mux::Stream>;
}

impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Io for T {
    fn plain_tcp_fd(&self) -> Option<RawFd> {
        let any = self as &dyn Any;
        if let Some(tcp) = any.downcast_ref::<glommio::net::TcpStream>() {
            return Some(tcp.as_raw_fd());
        }
        // A boxed stream: ask the stream inside (`**`, or this impl would call itself).
        any.downcast_ref::<Box<dyn Io>>()
            .and_then(|inner| (**inner).plain_tcp_fd())
    }

    fn as_mux_stream(&mut self) -> Option<&mut crate::mux::Stream> {
        let any = self as &mut dyn Any;
        if any.is::<crate::mux::Stream>() {
            return any.downcast_mut::<crate::mux::Stream>();
        }
        any.downcast_mut::<Box<dyn Io>>()
            .and_then(|inner| (**inner).as_mux_stream())
    }
}

/// Run `fut`, failing with `ConnError::Timeout(what)` after `dur`.
pub async fn with_timeout<T>(
    dur: std::time::Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, ConnError>>,
) -> Result<T, ConnError> {
    futures_lite::future::or(fut, async move {
        glommio::timer::sleep(dur).await;
        Err(ConnError::Timeout(what))
    })
    .await
}
