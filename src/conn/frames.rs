use super::{with_timeout, ConnError, Wire};
use crate::proto::v2::{decode_raw_frame, MAGIC};
use crate::proto::{encode_frame, FrameError, Message};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::time::Duration;

/// Reads plain frames (v1, or v2 with [`FrameReader::for_wire`]) from a stream. It may read past the end of a frame (the peer
/// often sends the payload right behind StartWorkConn / NewVisitorConnResp / LoginResp);
/// those bytes stay in the buffer and must be taken with [`FrameReader::take_leftover`]
/// and fed to the next layer.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    wire: Wire,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads messages framed as `wire` says.
    pub fn for_wire(wire: Wire) -> Self {
        FrameReader {
            wire,
            ..Self::default()
        }
    }

    /// Starts with bytes that were already read from the stream.
    pub fn with_bytes(bytes: Vec<u8>) -> Self {
        FrameReader {
            buf: bytes,
            start: 0,
            wire: Wire::V1,
        }
    }

    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// frps's `CheckMagic`: consumes the v2 magic if the stream starts with it and
    /// switches to v2; otherwise leaves every byte in place for v1.
    pub async fn detect_wire<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        waiting_for: &'static str,
    ) -> Result<Wire, ConnError> {
        let is_v2 = self
            .read_with(r, waiting_for, |buf| {
                let n = buf.len().min(MAGIC.len());
                if buf[..n] != MAGIC[..n] {
                    Ok(Some((false, 0)))
                } else if n == MAGIC.len() {
                    Ok(Some((true, MAGIC.len())))
                } else {
                    Ok(None)
                }
            })
            .await?;
        self.wire = if is_v2 { Wire::V2 } else { Wire::V1 };
        Ok(self.wire)
    }

    /// One raw v2 frame (the hellos): its type and payload.
    pub async fn read_v2_frame<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        waiting_for: &'static str,
    ) -> Result<(u16, Vec<u8>), ConnError> {
        self.read_with(r, waiting_for, |buf| {
            Ok(decode_raw_frame(buf)?.map(|(f, used)| ((f.frame_type, f.payload.to_vec()), used)))
        })
        .await
    }

    pub async fn read_msg<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        waiting_for: &'static str,
    ) -> Result<Message, ConnError> {
        let wire = self.wire;
        self.read_with(r, waiting_for, |buf| wire.decode(buf)).await
    }

    /// Reads until `decode` finds a whole item at the read position, then consumes
    /// exactly the bytes it reports.
    async fn read_with<R: AsyncRead + Unpin, T>(
        &mut self,
        r: &mut R,
        waiting_for: &'static str,
        mut decode: impl FnMut(&[u8]) -> Result<Option<(T, usize)>, FrameError>,
    ) -> Result<T, ConnError> {
        loop {
            if let Some((item, used)) = decode(&self.buf[self.start..])? {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                return Ok(item);
            }
            // Compact, then read more. Frames are at most 10 KiB (v1) or 64 KiB (v2).
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
