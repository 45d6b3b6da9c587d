use super::{with_timeout, ConnError};
use crate::proto::{decode_frame, encode_frame, Message};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::time::Duration;

/// Reads plain v1 frames from a stream. It may read past the end of a frame (the peer
/// often sends the payload right behind StartWorkConn / NewVisitorConnResp / LoginResp);
/// those bytes stay in the buffer and must be taken with [`FrameReader::take_leftover`]
/// and fed to the next layer.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts with bytes that were already read from the stream.
    pub fn with_bytes(bytes: Vec<u8>) -> Self {
        FrameReader {
            buf: bytes,
            start: 0,
        }
    }

    pub async fn read_msg<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        waiting_for: &'static str,
    ) -> Result<Message, ConnError> {
        loop {
            if let Some((msg, used)) = decode_frame(&self.buf[self.start..])? {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                return Ok(msg);
            }
            // Compact, then read more. Frames are at most ~10 KiB so this stays small.
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let old = self.buf.len();
            self.buf.resize(old + 4096, 0);
            let n = r.read(&mut self.buf[old..]).await;
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e.into());
                }
            };
            self.buf.truncate(old + n);
            if n == 0 {
                return Err(ConnError::Eof(waiting_for));
            }
        }
    }

    /// Bytes read from the stream beyond the last decoded frame.
    pub fn take_leftover(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.buf);
        v.drain(..self.start);
        self.start = 0;
        v
    }
}

/// Writes one frame in a single write, as Go's `msg.WriteMsg` does.
pub async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message) -> Result<(), ConnError> {
    let mut out = Vec::with_capacity(128);
    encode_frame(msg, &mut out);
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame with a deadline (frp uses 10 s for handshake replies).
pub async fn read_msg_timeout<R: AsyncRead + Unpin>(
    reader: &mut FrameReader,
    r: &mut R,
    dur: Duration,
    waiting_for: &'static str,
) -> Result<Message, ConnError> {
    with_timeout(dur, waiting_for, reader.read_msg(r, waiting_for)).await
}
