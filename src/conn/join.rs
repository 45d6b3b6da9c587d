//! The bidirectional relay between two legs (user/local socket <-> frps stream).
//!
//! One future owns both legs and polls both directions, so no stream is ever split or
//! locked. Each direction reads into its own buffer, applies its [`Transform`] (snappy
//! and/or AES-CFB, in frp's layer order) and writes everything out before reading
//! again: a slow reader therefore stalls its writer instead of growing a buffer
//! (backpressure). As in frp's `libio.Join`, when either direction ends both legs are
//! closed (after flushing what that direction already read).
//!
//! A plain direction whose source is a yamux stream skips the buffer and writes from the
//! stream's receive queue. Plain TCP on both legs is `splice.rs`'s job.

use super::{pool, Io};
use crate::codec::{CipherKey, DecryptStream, EncryptStream, SnappyDecoder, SnappyEncoder};
use futures_lite::{AsyncWrite, AsyncWriteExt};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Buffers start small so that idle connections cost little, and grow while reads fill them.
const FIRST_BUF: usize = 2 * 1024;
const MAX_BUF: usize = 64 * 1024;
/// Chunks moved per poll before yielding, so one busy relay cannot starve its shard.
pub(super) const CHUNKS_PER_POLL: usize = 16;

/// What happens to bytes travelling in one direction: first the incoming leg's layers are
/// removed (`open`: decrypt, then decompress), then the outgoing leg's layers are added
/// (`seal`: compress, then encrypt). The engine uses one of the two; the embedded relay,
/// which terminates both legs like frps, uses both.
///
/// The layers are boxed: a snappy encoder alone is 2 KiB (its hash table), and every
/// idle relay's future would carry that inline, twice, even with no layer in use.
#[derive(Default)]
pub struct Transform {
    decrypt: Option<Box<DecryptStream>>,
    decompress: Option<Box<SnappyDecoder>>,
    compress: Option<Box<SnappyEncoder>>,
    encrypt: Option<Box<EncryptStream>>,
}

impl Transform {
    /// Bytes copied as they are.
    pub fn plain() -> Transform {
        Transform::default()
    }

    /// For bytes going out onto an frp work/visitor stream.
    pub fn seal(key: Option<&CipherKey>, compress: bool) -> Transform {
        Transform {
            compress: compress.then(|| Box::new(SnappyEncoder::new())),
            encrypt: key.map(|k| Box::new(EncryptStream::new(k))),
            ..Transform::default()
        }
    }

    /// For bytes coming in from an frp work/visitor stream.
    pub fn open(key: Option<&CipherKey>, compress: bool) -> Transform {
        Transform {
            decrypt: key.map(|k| Box::new(DecryptStream::new(k))),
            decompress: compress.then(|| Box::new(SnappyDecoder::new())),
            ..Transform::default()
        }
    }

    /// Open one leg's layers, then seal the other's.
    pub fn open_then_seal(open: Transform, seal: Transform) -> Transform {
        Transform {
            decrypt: open.decrypt,
            decompress: open.decompress,
            compress: seal.compress,
            encrypt: seal.encrypt,
        }
    }

    pub fn is_plain(&self) -> bool {
        self.decrypt.is_none()
            && self.decompress.is_none()
            && self.compress.is_none()
            && self.encrypt.is_none()
    }
}

/// Where a direction's pending output lives.
#[derive(Clone, Copy)]
enum Pending {
    None,
    /// `buf[start..end]`: plain copies and in-place decryption need no second buffer.
    InBuf(usize, usize),
    /// `mid[start..]`: decompressed bytes.
    InMid(usize),
    /// `out[start..]`: compressed bytes, or the first encrypted chunk behind its IV.
    InOut(usize),
}

struct Direction {
    transform: Transform,
    buf: Vec<u8>,
    mid: Vec<u8>,
    out: Vec<u8>,
    pending: Pending,
    /// Bytes already in `buf[..n]` that were read before the relay started.
    preread: usize,
    /// Read size this direction has grown to (FIRST_BUF .. MAX_BUF).
    want: usize,
    eof: bool,
    moved: u64,
}

impl Direction {
    fn new(transform: Transform, preread: Vec<u8>) -> Self {
        let n = preread.len();
        Direction {
            transform,
            buf: preread,
            mid: Vec::new(),
            out: Vec::new(),
            pending: Pending::None,
            preread: n,
            want: FIRST_BUF,
            eof: false,
            moved: 0,
        }
    }

    fn release_buffers(&mut self) {
        pool::release(&mut self.buf);
        pool::release(&mut self.mid);
        pool::release(&mut self.out);
    }

    /// Applies the transform to `buf[..n]` and records where the output is.
    fn transform(&mut self, n: usize) -> io::Result<()> {
        self.moved += n as u64;
        let t = &mut self.transform;
        // Incoming leg: decrypt in place, then decompress into `mid`.
        let range = match &mut t.decrypt {
            Some(dec) => dec.decrypt(&mut self.buf[..n]),
            None => 0..n,
        };
        let mut at = match &mut t.decompress {
            Some(snappy) => {
                if self.mid.capacity() < MAX_BUF {
                    self.mid = pool::take(MAX_BUF);
                }
                self.mid.clear();
                snappy
                    .decode(&self.buf[range], &mut self.mid)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Pending::InMid(0)
            }
            None => Pending::InBuf(range.start, range.end),
        };
        // Outgoing leg: compress into `out` (16 bytes reserved in front for an IV).
        if let Some(snappy) = &mut t.compress {
            // Worst case snappy output for n bytes, plus chunk headers and the IV room.
            let room = 16 + n + n / 6 + 64;
            if self.out.capacity() < room {
                pool::give(std::mem::replace(
                    &mut self.out,
                    pool::take(room.max(MAX_BUF)),
                ));
            }
            self.out.clear();
            self.out.extend_from_slice(&[0u8; 16]);
            let app = match at {
                Pending::InBuf(s, e) => &self.buf[s..e],
                Pending::InMid(s) => &self.mid[s..],
                _ => &[],
            };
            if !app.is_empty() {
                snappy.encode(app, &mut self.out);
            }
            at = Pending::InOut(16);
        }
        if let Some(enc) = &mut t.encrypt {
            let body = match at {
                Pending::InBuf(s, e) => &mut self.buf[s..e],
                Pending::InMid(s) => &mut self.mid[s..],
                Pending::InOut(s) => &mut self.out[s..],
                Pending::None => &mut [],
            };
            if !body.is_empty() {
                if let Some(iv) = enc.encrypt(body) {
                    // First chunk of this direction: the IV goes out right in front of it.
                    at = match at {
                        Pending::InOut(_) => {
                            self.out[..16].copy_from_slice(&iv);
                            Pending::InOut(0)
                        }
                        _ => {
                            let mut first = Vec::with_capacity(16 + body.len());
                            first.extend_from_slice(&iv);
                            first.extend_from_slice(body);
                            self.out = first;
                            Pending::InOut(0)
                        }
                    };
                }
            }
        }
        self.pending = at;
        Ok(())
    }

    fn pending_bytes(&self) -> &[u8] {
        match self.pending {
            Pending::None => &[],
            Pending::InBuf(s, e) => &self.buf[s..e],
            Pending::InMid(s) => &self.mid[s..],
            Pending::InOut(s) => &self.out[s..],
        }
    }

    fn advance(&mut self, n: usize) {
        self.pending = match self.pending {
            Pending::None => Pending::None,
            Pending::InBuf(s, e) if s + n < e => Pending::InBuf(s + n, e),
            Pending::InMid(s) if s + n < self.mid.len() => Pending::InMid(s + n),
            Pending::InOut(s) if s + n < self.out.len() => Pending::InOut(s + n),
            _ => Pending::None,
        };
    }

    /// Ready(Ok) once the source hit EOF and everything read was written.
    fn poll_copy<S: Io, D: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut S,
        dst: &mut D,
    ) -> Poll<io::Result<()>> {
        // A yamux stream already holds its bytes in memory: with nothing to transform
        // (and nothing of ours pending), write them from there, skipping one copy.
        if self.transform.is_plain() && self.preread == 0 && matches!(self.pending, Pending::None) {
            if let Some(stream) = src.as_mux_stream() {
                return self.poll_from_mux(cx, stream, dst);
            }
        }
        for _ in 0..CHUNKS_PER_POLL {
            if self.preread > 0 {
                let n = std::mem::take(&mut self.preread);
                self.transform(n)?;
            }
            while !self.pending_bytes().is_empty() {
                let n = match Pin::new(&mut *dst).poll_write(cx, self.pending_bytes()) {
                    Poll::Ready(r) => r?,
                    Poll::Pending => return Poll::Pending,
                };
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.advance(n);
            }
            self.pending = Pending::None;
            if self.eof {
                return Pin::new(&mut *dst).poll_flush(cx);
            }
            if self.buf.len() < self.want {
                // Take a pooled buffer of the size this direction has grown to.
                let mut b = pool::take(self.want);
                if b.len() < self.want {
                    b.resize(self.want, 0);
                }
                pool::give(std::mem::replace(&mut self.buf, b));
            }
            let n = match Pin::new(&mut *src).poll_read(cx, &mut self.buf) {
                Poll::Ready(r) => r?,
                Poll::Pending => {
                    // Idle: hand the buffers back to the shard's pool, and make sure
                    // what we wrote is on its way.
                    self.release_buffers();
                    let _ = Pin::new(&mut *dst).poll_flush(cx)?;
                    return Poll::Pending;
                }
            };
            if n == 0 {
                self.eof = true;
                continue;
            }
            self.transform(n)?;
            if n == self.buf.len() && self.want < MAX_BUF {
                // Reads fill the buffer: this direction is busy, use bigger reads.
                self.want = (self.want * 4).min(MAX_BUF);
            }
        }
        // Budget spent with work left: yield to the shard's other tasks, come back soon.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// [`Direction::poll_copy`] for a plain yamux source: queue -> `dst`, no relay buffer.
    fn poll_from_mux<D: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut crate::mux::Stream,
        dst: &mut D,
    ) -> Poll<io::Result<()>> {
        self.release_buffers();
        for _ in 0..CHUNKS_PER_POLL {
            match src.poll_write_queued_to(cx, dst) {
                Poll::Ready(Ok(Some(n))) => self.moved += n as u64,
                Poll::Ready(Ok(None)) => {
                    self.eof = true;
                    return Pin::new(&mut *dst).poll_flush(cx);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let _ = Pin::new(&mut *dst).poll_flush(cx)?;
                    return Poll::Pending;
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// How a relay ended.
#[derive(Debug, Default, Clone)]
pub struct JoinStats {
    /// Bytes read from `a` (as they came off that leg).
    pub a_to_b: u64,
    pub b_to_a: u64,
    /// The first error, if a direction failed (EOF is not an error).
    pub error: Option<String>,
    /// Of the bytes above, those that went socket -> pipe -> socket by splice(2).
    pub spliced: u64,
}

struct Join<'a, A, B> {
    a: &'a mut A,
    b: &'a mut B,
    ab: &'a mut Direction,
    ba: &'a mut Direction,
}

impl<A: Io, B: Io> Future for Join<'_, A, B> {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Either direction finishing (or failing) ends the relay, as in frp.
        if let Poll::Ready(r) = this.ab.poll_copy(cx, this.a, this.b) {
            return Poll::Ready(r);
        }
        if let Poll::Ready(r) = this.ba.poll_copy(cx, this.b, this.a) {
            return Poll::Ready(r);
        }
        Poll::Pending
    }
}

/// Relays between `a` and `b` until either side ends, then closes both.
/// `a_pre`/`b_pre` are bytes already read from `a`/`b` (leftovers behind a handshake);
/// `ab` transforms what flows from a to b, `ba` the other way.
pub async fn join<A: Io, B: Io>(
    mut a: A,
    mut b: B,
    a_pre: Vec<u8>,
    b_pre: Vec<u8>,
    ab: Transform,
    ba: Transform,
) -> JoinStats {
    let mut ab = Direction::new(ab, a_pre);
    let mut ba = Direction::new(ba, b_pre);
    let result = Join {
        a: &mut a,
        b: &mut b,
        ab: &mut ab,
        ba: &mut ba,
    }
    .await;
    let _ = futures_lite::future::zip(a.close(), b.close()).await;
    JoinStats {
        a_to_b: ab.moved,
        b_to_a: ba.moved,
        error: result.err().map(|e| e.to_string()),
        spliced: 0,
    }
}
