//! The zero-copy relay: splice(2) through a pipe when both legs are plain TCP sockets
//! (tcpMux off, no TLS, no encryption, no compression). Bytes then move socket -> pipe
//! -> socket inside the kernel, as page references, instead of being copied into our
//! buffer and back out: two copies fewer per byte per hop.
//!
//! Small messages are still copied: a direction reads into a 4 KiB user-space buffer
//! first and only switches to splice when a read fills it (the source is streaming),
//! because for a 64-byte request two splices cost more than one copy. It switches back
//! when the source runs dry.
//!
//! glommio 0.9 has no splice op and no public readiness API, so readiness comes from
//! the streams' own reads and writes:
//! * source dry (splice says EAGAIN): the direction goes back to `poll_read` into its
//!   buffer. Pending means glommio now polls the socket for us.
//! * destination full: take the pipe's first byte out and `poll_write` it. Once it is
//!   written the socket has room again and the rest of the pipe follows.
//!
//! The sockets are switched to O_NONBLOCK for this: a splice on a blocking socket
//! waits in the kernel (SPLICE_F_NONBLOCK only covers the pipe side), which would stall
//! the whole shard. glommio itself always passes MSG_DONTWAIT, so it does not mind.

use super::join::CHUNKS_PER_POLL;
use super::{join, pool, Io, JoinStats, Transform};
use futures_lite::{AsyncRead, AsyncWrite};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

/// Bytes asked for per splice into the pipe; the pipe's room (64 KiB) caps it.
const SPLICE_LEN: usize = 1 << 20;
/// Reads smaller than this go through user space (a copy is cheaper than two splices for
/// a small message); a read that fills it switches the direction to splice.
const COPY_READ: usize = 4 * 1024;
/// Empty pipes cached per shard. A pipe is only held while its direction has bytes in
/// flight, so this bounds the fds kept after a burst, not the connections.
const MAX_CACHED_PIPES: usize = 64;

/// Whether the engine may splice: on unless `STCP_ENGINE_SPLICE=off` (or `--no-splice`,
/// which sets it) was given, to compare against the copying path.
pub fn splice_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        !matches!(
            std::env::var("STCP_ENGINE_SPLICE").as_deref(),
            Ok("off" | "0" | "false")
        )
    })
}

/// [`join`], but with splice(2) when both legs are plain TCP and neither direction
/// transforms its bytes (and splicing is enabled); otherwise exactly `join`.
///
/// Not an `async fn`: the returned future is one of the two relays, so an idle
/// connection's task carries only the larger of them, not both side by side.
pub fn join_fast<A: Io, B: Io>(
    a: A,
    b: B,
    a_pre: Vec<u8>,
    b_pre: Vec<u8>,
    ab: Transform,
    ba: Transform,
) -> impl Future<Output = JoinStats> {
    let fds = match (a.plain_tcp_fd(), b.plain_tcp_fd()) {
        (Some(fa), Some(fb)) if ab.is_plain() && ba.is_plain() && splice_enabled() => {
            match set_nonblocking(fa).and_then(|_| set_nonblocking(fb)) {
                Ok(()) => Some((fa, fb)),
                Err(e) => {
                    log::debug!(
                        "cannot make the sockets non-blocking for splice ({e}), copying instead"
                    );
                    None
                }
            }
        }
        _ => None,
    };
    match fds {
        Some((fa, fb)) => JoinFast::Splice(SpliceJoin {
            a,
            b,
            fa,
            fb,
            ab: SpliceDir::new(a_pre),
            ba: SpliceDir::new(b_pre),
            result: None,
            closed: (false, false),
        }),
        None => JoinFast::Copy(join(a, b, a_pre, b_pre, ab, ba)),
    }
}

enum JoinFast<S, C> {
    Splice(S),
    Copy(C),
}

impl<S: Future<Output = JoinStats> + Unpin, C: Future<Output = JoinStats>> Future
    for JoinFast<S, C>
{
    type Output = JoinStats;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<JoinStats> {
        // SAFETY: structural pinning; the variant is never moved out or replaced while
        // pinned, and `Copy`'s future is only ever used through this pinned reference.
        match unsafe { self.get_unchecked_mut() } {
            JoinFast::Splice(s) => Pin::new(s).poll(cx),
            JoinFast::Copy(c) => unsafe { Pin::new_unchecked(c) }.poll(cx),
        }
    }
}

/// The spliced relay: both directions until either ends, then both legs closed (as
/// frp's `libio.Join`), then the stats.
struct SpliceJoin<A, B> {
    a: A,
    b: B,
    fa: RawFd,
    fb: RawFd,
    ab: SpliceDir,
    ba: SpliceDir,
    /// Set when a direction ended; the legs are being closed.
    result: Option<io::Result<()>>,
    closed: (bool, bool),
}

impl<A: Io, B: Io> Future for SpliceJoin<A, B> {
    type Output = JoinStats;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<JoinStats> {
        let this = &mut *self;
        if this.result.is_none() {
            // Either direction finishing (or failing) ends the relay, as in frp.
            if let Poll::Ready(r) =
                this.ab
                    .poll_move(cx, &mut this.a, this.fa, &mut this.b, this.fb)
            {
                this.result = Some(r);
            } else if let Poll::Ready(r) =
                this.ba
                    .poll_move(cx, &mut this.b, this.fb, &mut this.a, this.fa)
            {
                this.result = Some(r);
            } else {
                return Poll::Pending;
            }
        }
        // Close errors are not the relay's result (as `join`).
        if !this.closed.0 {
            this.closed.0 = Pin::new(&mut this.a).poll_close(cx).is_ready();
        }
        if !this.closed.1 {
            this.closed.1 = Pin::new(&mut this.b).poll_close(cx).is_ready();
        }
        if !(this.closed.0 && this.closed.1) {
            return Poll::Pending;
        }
        let error = match this.result.take() {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        };
        Poll::Ready(JoinStats {
            a_to_b: this.ab.moved,
            b_to_a: this.ba.moved,
            error,
            spliced: this.ab.spliced + this.ba.spliced,
        })
    }
}

/// One direction of a spliced relay.
struct SpliceDir {
    /// Held only while bytes are in flight; returned to the shard's cache when empty.
    pipe: Option<Pipe>,
    in_pipe: usize,
    /// User-space bytes `held[held_at..held_end]` that go out before the pipe's: what
    /// was read before the relay started, a small read, or the pipe's first byte while
    /// waiting for the destination. A pooled buffer, given back when the source is dry.
    held: Vec<u8>,
    held_at: usize,
    held_end: usize,
    /// The last read filled its buffer (or splice moved bytes): the source is streaming,
    /// so the next bytes go by splice. Otherwise they are read into `held`, which is
    /// cheaper for small messages than two splices (page allocation, pipe bookkeeping).
    streaming: bool,
    /// splice(2) was refused on this socket: copy for the rest of the relay.
    copy_only: bool,
    eof: bool,
    moved: u64,
    /// Of `moved`, the bytes that went by splice.
    spliced: u64,
}

impl SpliceDir {
    fn new(preread: Vec<u8>) -> Self {
        SpliceDir {
            pipe: None,
            in_pipe: 0,
            moved: preread.len() as u64,
            held_end: preread.len(),
            held: preread,
            held_at: 0,
            streaming: false,
            copy_only: false,
            eof: false,
            spliced: 0,
        }
    }

    /// `held` as an empty read buffer of COPY_READ bytes (from the shard's pool).
    fn read_buf(&mut self) -> &mut [u8] {
        if self.held.len() < COPY_READ {
            let mut b = pool::take(COPY_READ);
            if b.len() < COPY_READ {
                b.resize(COPY_READ, 0);
            }
            pool::give(std::mem::replace(&mut self.held, b));
        }
        self.held_at = 0;
        self.held_end = 0;
        &mut self.held[..COPY_READ]
    }

    /// Splices what the source has into the (empty) pipe. Ok(true): bytes moved, or EOF.
    /// Ok(false): the source is dry, or no pipe could be had (out of fds?) or splice is
    /// refused here (seccomp, an odd socket): then this chunk, or this direction for
    /// good, is copied instead.
    fn splice_in(&mut self, src_fd: RawFd) -> io::Result<bool> {
        if self.pipe.is_none() {
            match take_pipe() {
                Ok(p) => self.pipe = Some(p),
                Err(e) => {
                    log::debug!("no pipe for splice ({e}), copying this chunk");
                    return Ok(false);
                }
            }
        }
        let pipe_w = self.pipe.as_ref().expect("pipe held").write.as_raw_fd();
        match splice(src_fd, pipe_w, SPLICE_LEN) {
            Ok(0) => self.eof = true,
            Ok(n) => {
                self.in_pipe = n;
                self.moved += n as u64;
                self.spliced += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.streaming = false;
                give_pipe(self.pipe.take());
                return Ok(false);
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::EPERM | libc::ENOSYS | libc::EOPNOTSUPP)
                ) =>
            {
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    log::warn!(
                        "splice(2) refused ({e}): plain TCP relays copy through user space instead"
                    );
                }
                self.copy_only = true;
                give_pipe(self.pipe.take());
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        Ok(true)
    }

    /// Ready(Ok) once the source hit EOF and everything read was written.
    fn poll_move<S: AsyncRead + Unpin, D: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut S,
        src_fd: RawFd,
        dst: &mut D,
        dst_fd: RawFd,
    ) -> Poll<io::Result<()>> {
        for _ in 0..CHUNKS_PER_POLL {
            // 1. User-space bytes go first.
            while self.held_at < self.held_end {
                let bytes = &self.held[self.held_at..self.held_end];
                match Pin::new(&mut *dst).poll_write(cx, bytes) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => self.held_at += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            // 2. Then the pipe's.
            while self.in_pipe > 0 {
                let pipe_r = self
                    .pipe
                    .as_ref()
                    .expect("bytes in a pipe we hold")
                    .read
                    .as_raw_fd();
                match splice(pipe_r, dst_fd, self.in_pipe) {
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => self.in_pipe -= n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Destination full: its stream's poll_write waits for room with
                        // the pipe's first byte.
                        let first = &mut self.read_buf()[..1];
                        if read_fd(pipe_r, first)? != 1 {
                            return Poll::Ready(Err(io::Error::other("pipe lost its bytes")));
                        }
                        self.in_pipe -= 1;
                        self.held_end = 1;
                        match Pin::new(&mut *dst).poll_write(cx, &self.held[..1]) {
                            Poll::Ready(Ok(0)) => {
                                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()))
                            }
                            Poll::Ready(Ok(_)) => self.held_at = 1,
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            if self.eof {
                return Pin::new(&mut *dst).poll_flush(cx);
            }
            // 3. Next bytes: spliced while the source streams...
            if self.streaming && !self.copy_only {
                match self.splice_in(src_fd) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            // ...otherwise read into user space; the stream's poll_read also waits for
            // data when there is none (glommio polls the socket).
            let buf = self.read_buf();
            match Pin::new(&mut *src).poll_read(cx, buf) {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(n)) => {
                    self.held_end = n;
                    self.moved += n as u64;
                    self.streaming = n == COPY_READ;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Idle: this direction holds no buffer and no pipe.
                    pool::release(&mut self.held);
                    return Poll::Pending;
                }
            }
        }
        // Budget spent with work left: yield to the shard's other tasks, come back soon.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for SpliceDir {
    fn drop(&mut self) {
        // A pipe with bytes still in it is closed, never cached for another relay.
        if self.in_pipe == 0 {
            give_pipe(self.pipe.take());
        }
    }
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

thread_local! {
    static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

fn take_pipe() -> io::Result<Pipe> {
    if let Some(p) = PIPES.with(|c| c.borrow_mut().pop()) {
        return Ok(p);
    }
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and belong to nobody else.
    Ok(unsafe {
        Pipe {
            read: OwnedFd::from_raw_fd(fds[0]),
            write: OwnedFd::from_raw_fd(fds[1]),
        }
    })
}

/// Caches an empty pipe for this shard's next relay (closes it when the cache is full).
fn give_pipe(pipe: Option<Pipe>) {
    let Some(pipe) = pipe else { return };
    PIPES.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < MAX_CACHED_PIPES {
            c.push(pipe);
        }
    });
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd the caller's stream owns for the whole relay.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    loop {
        // SAFETY: plain fds, no offsets (both ends are sockets or pipes).
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                flags,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reads into a buffer we own.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_goes_back_to_the_cache_only_when_empty() {
        let mut full = SpliceDir::new(Vec::new());
        full.pipe = Some(take_pipe().unwrap());
        full.in_pipe = 3;
        let before = PIPES.with(|c| c.borrow().len());
        drop(full);
        assert_eq!(PIPES.with(|c| c.borrow().len()), before);
        let mut empty = SpliceDir::new(Vec::new());
        empty.pipe = Some(take_pipe().unwrap());
        drop(empty);
        assert_eq!(PIPES.with(|c| c.borrow().len()), before + 1);
    }

    /// Every idle relay's task carries this future: picking the relay must not make it
    /// carry both (an `async fn` holding either await did: 1,128 bytes against 624).
    #[test]
    fn the_relay_future_is_no_bigger_than_the_copying_one() {
        use futures_lite::io::Cursor;
        let leg = || Cursor::new(Vec::<u8>::new());
        let plain = Transform::plain;
        let fast = join_fast(leg(), leg(), Vec::new(), Vec::new(), plain(), plain());
        let copy = join(leg(), leg(), Vec::new(), Vec::new(), plain(), plain());
        let (fast, copy) = (std::mem::size_of_val(&fast), std::mem::size_of_val(&copy));
        assert!(fast <= copy + 16, "join_fast {fast} bytes, join {copy}");
    }
}
