//! Async plumbing shared by the engine and the embedded relay: reading and writing frp
//! frames on a stream without over-reading, the encrypted control channel, and the
//! bidirectional payload relay.

mod control;
mod error;
mod frames;
mod join;
pub mod pool;
mod wire;

pub use control::{ControlReader, ControlWriter};
pub use error::ConnError;
pub use frames::{read_msg_timeout, write_msg, FrameReader};
pub use join::{join, JoinStats, Transform};
pub use wire::{answer_client_hello, ClientHandshake, V2Crypto, Wire};

use futures_lite::{AsyncRead, AsyncWrite};

/// Anything we can relay bytes over: TCP sockets, TLS streams, yamux streams.
pub trait Io: AsyncRead + AsyncWrite + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Io for T {}

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
