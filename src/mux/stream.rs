//! One multiplexed stream: hashicorp's state machine (`yamux:stream.go`) plus the
//! `AsyncRead`/`AsyncWrite` glue.

use super::frame::*;
use super::session::{CoreRef, Inner, MAX_FRAME};
use futures_lite::{AsyncRead, AsyncWrite};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// hashicorp's `streamState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamState {
    Init,
    SynSent,
    SynReceived,
    Established,
    /// We sent FIN; we can still read.
    LocalClose,
    /// The peer sent FIN; we can still write.
    RemoteClose,
    Closed,
    Reset,
}

/// Per-stream state shared by the session (reader) and the [`Stream`] handle.
pub(crate) struct StreamCore {
    pub(crate) id: u32,
    pub(crate) state: StreamState,
    /// What the peer may still send us / what we may still send.
    pub(crate) recv_window: u32,
    pub(crate) send_window: u32,
    /// Received, not yet read. Grows only as data arrives; bounded by the window.
    pub(crate) buf: VecDeque<u8>,
    pub(crate) read_waker: Option<Waker>,
    /// Writer-side waits: send window, queue space, flush, close.
    pub(crate) write_waker: Option<Waker>,
    /// `enqueued` position just past our last queued frame.
    pub(crate) flush_mark: u64,
    /// Counted in the session's unacknowledged SYNs.
    pub(crate) inflight: bool,
    /// The handle is gone: nobody will read.
    pub(crate) dropped: bool,
    /// The session died before the peer's FIN: reads end in an error, not EOF.
    pub(crate) aborted: bool,
    pub(crate) waiting_space: bool,
    pub(crate) waiting_flush: bool,
}

impl StreamCore {
    pub(crate) fn new(id: u32, state: StreamState) -> StreamCore {
        StreamCore {
            id,
            state,
            recv_window: INITIAL_STREAM_WINDOW,
            send_window: INITIAL_STREAM_WINDOW,
            buf: VecDeque::new(),
            read_waker: None,
            write_waker: None,
            flush_mark: 0,
            inflight: false,
            dropped: false,
            aborted: false,
            waiting_space: false,
            waiting_flush: false,
        }
    }

    /// hashicorp `sendFlags`: the first frame we send carries SYN (opener) or ACK
    /// (acceptor), and moves the state on.
    pub(crate) fn send_flags(&mut self) -> u16 {
        match self.state {
            StreamState::Init => {
                self.state = StreamState::SynSent;
                FLAG_SYN
            }
            StreamState::SynReceived => {
                self.state = StreamState::Established;
                FLAG_ACK
            }
            _ => 0,
        }
    }

    pub(crate) fn notify(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }

    /// The session is gone (hashicorp `forceClose`). A peer's FIN already seen keeps
    /// reads ending in EOF; otherwise they end in an error.
    pub(crate) fn force_close(&mut self) {
        match self.state {
            StreamState::Reset => return,
            StreamState::RemoteClose | StreamState::Closed => {}
            _ => self.aborted = true,
        }
        self.state = StreamState::Closed;
        self.inflight = false;
        self.waiting_space = false;
        self.waiting_flush = false;
    }

    pub(crate) fn set_write_waker(&mut self, w: &Waker) {
        if !self.write_waker.as_ref().is_some_and(|x| x.will_wake(w)) {
            self.write_waker = Some(w.clone());
        }
    }

    fn set_read_waker(&mut self, w: &Waker) {
        if !self.read_waker.as_ref().is_some_and(|x| x.will_wake(w)) {
            self.read_waker = Some(w.clone());
        }
    }
}

/// A yamux stream. Reads return `Ok(0)` after the peer's FIN; a RST makes reads and
/// writes fail with `ConnectionReset`; a dead session makes them fail with
/// `ConnectionAborted` (after buffered data). `poll_close` half-closes (FIN) and waits
/// until queued data is written. Dropping without closing sends FIN (or RST if received
/// data was left unread), so the peer never leaks the stream.
pub struct Stream {
    core: CoreRef,
    sess: Rc<Inner>,
    id: u32,
}

fn reset_err() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "yamux stream reset")
}

fn closed_err() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "yamux stream closed for writing")
}

impl Stream {
    pub(crate) fn new(core: CoreRef, sess: Rc<Inner>) -> Stream {
        let id = core.borrow().id;
        Stream { core, sess, id }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    fn aborted_err(&self) -> io::Error {
        let why = self.sess.st.borrow().closed.clone();
        let msg = match why {
            Some(e) => format!("yamux session closed: {e}"),
            None => "yamux session closed".to_string(),
        };
        io::Error::new(io::ErrorKind::ConnectionAborted, msg)
    }

    /// Writes received bytes straight from this stream's queue to `dst`, without
    /// copying them into a relay buffer first (the plain relay's fast path).
    /// Ready(Ok(Some(n))): n bytes written; Ready(Ok(None)): the peer closed and
    /// everything was read; Pending: no data yet, or `dst` has no room (either way the
    /// right waker is registered).
    pub fn poll_write_queued_to<D: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut D,
    ) -> Poll<io::Result<Option<usize>>> {
        // The queue is taken out while `dst` writes (no RefCell borrow is held across a
        // call into another stream), and put back before anything else can run: this
        // is one synchronous call on the shard's only thread.
        let mut queued = {
            let mut c = self.core.borrow_mut();
            if c.state == StreamState::Reset {
                return Poll::Ready(Err(reset_err()));
            }
            if c.buf.is_empty() {
                if c.aborted {
                    drop(c);
                    return Poll::Ready(Err(self.aborted_err()));
                }
                if matches!(c.state, StreamState::RemoteClose | StreamState::Closed) {
                    return Poll::Ready(Ok(None));
                }
                c.set_read_waker(cx.waker());
                return Poll::Pending;
            }
            std::mem::take(&mut c.buf)
        };
        let written = Pin::new(&mut *dst).poll_write(cx, queued.as_slices().0);
        let mut st = self.sess.st.borrow_mut();
        let mut c = self.core.borrow_mut();
        let n = match written {
            Poll::Ready(Ok(n)) if n > 0 => n,
            other => {
                c.buf = queued;
                return match other {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                    _ => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                };
            }
        };
        queued.drain(..n);
        if queued.is_empty() {
            // Idle streams hold no buffer; the next data borrows one again.
            crate::conn::pool::give_deque(queued);
        } else {
            c.buf = queued;
        }
        if st.closed.is_none() && c.state != StreamState::Closed {
            st.send_window_update(&mut c, self.sess.cfg.max_stream_window);
        }
        Poll::Ready(Ok(Some(n)))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut st = this.sess.st.borrow_mut();
        let mut c = this.core.borrow_mut();
        if c.state == StreamState::Reset {
            return Poll::Ready(Err(reset_err()));
        }
        if !c.buf.is_empty() {
            let n = c.buf.read(out).unwrap_or(0);
            if c.buf.is_empty() {
                // Idle streams hold no buffer; the next data borrows one again.
                crate::conn::pool::give_deque(std::mem::take(&mut c.buf));
            }
            if st.closed.is_none() && c.state != StreamState::Closed {
                st.send_window_update(&mut c, this.sess.cfg.max_stream_window);
            }
            return Poll::Ready(Ok(n));
        }
        if c.aborted {
            drop(c);
            drop(st);
            return Poll::Ready(Err(this.aborted_err()));
        }
        if matches!(c.state, StreamState::RemoteClose | StreamState::Closed) {
            return Poll::Ready(Ok(0));
        }
        c.set_read_waker(cx.waker());
        Poll::Pending
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut st = this.sess.st.borrow_mut();
        let mut c = this.core.borrow_mut();
        match c.state {
            StreamState::Reset => return Poll::Ready(Err(reset_err())),
            StreamState::LocalClose | StreamState::Closed if c.aborted => {
                drop(c);
                drop(st);
                return Poll::Ready(Err(this.aborted_err()));
            }
            StreamState::LocalClose | StreamState::Closed => return Poll::Ready(Err(closed_err())),
            _ => {}
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if c.send_window == 0 {
            c.set_write_waker(cx.waker());
            return Poll::Pending;
        }
        if !st.has_space() {
            st.wait_space(&this.core, &mut c, cx.waker());
            return Poll::Pending;
        }
        let n = data.len().min(c.send_window as usize).min(st.out_limit());
        let mut flags = c.send_flags();
        for chunk in data[..n].chunks(MAX_FRAME) {
            st.push_frame(TYPE_DATA, flags, c.id, chunk.len() as u32, chunk);
            flags = 0;
        }
        c.send_window -= n as u32;
        c.flush_mark = st.enqueued;
        Poll::Ready(Ok(n))
    }

    /// Waits until everything this stream queued has been written to the transport.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = this.sess.st.borrow_mut();
        let mut c = this.core.borrow_mut();
        if st.is_flushed(c.flush_mark) {
            return Poll::Ready(Ok(()));
        }
        if c.state == StreamState::Reset {
            return Poll::Ready(Err(reset_err()));
        }
        if st.closed.is_some() {
            drop(c);
            drop(st);
            return Poll::Ready(Err(this.aborted_err()));
        }
        st.wait_flush(&this.core, &mut c, cx.waker());
        Poll::Pending
    }

    /// Half-close (hashicorp `Stream.Close`): send FIN, then wait for it to be written.
    /// Reading still works until the peer's FIN.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = this.sess.st.borrow_mut();
        let mut c = this.core.borrow_mut();
        if st.closed.is_some() {
            // Like Go, closing on a dead session is fine, unless our data never made it.
            if st.is_flushed(c.flush_mark) || c.state == StreamState::Reset {
                return Poll::Ready(Ok(()));
            }
            drop(c);
            drop(st);
            return Poll::Ready(Err(this.aborted_err()));
        }
        let fin_needed = matches!(
            c.state,
            StreamState::Init
                | StreamState::SynSent
                | StreamState::SynReceived
                | StreamState::Established
                | StreamState::RemoteClose
        );
        if fin_needed {
            if !st.has_space() {
                st.wait_space(&this.core, &mut c, cx.waker());
                return Poll::Pending;
            }
            send_fin(&mut st, &mut c, this.sess.cfg.stream_close_timeout);
        }
        if c.state == StreamState::Reset || st.is_flushed(c.flush_mark) {
            return Poll::Ready(Ok(()));
        }
        st.wait_flush(&this.core, &mut c, cx.waker());
        Poll::Pending
    }
}

/// hashicorp `Stream.Close` from an open state: FIN (with any pending SYN/ACK), then
/// LocalClose (waiting for the peer's FIN) or Closed if the peer already sent its FIN.
fn send_fin(
    st: &mut super::session::State,
    c: &mut StreamCore,
    close_timeout: Option<std::time::Duration>,
) {
    let remote_closed = c.state == StreamState::RemoteClose;
    let flags = c.send_flags() | FLAG_FIN;
    st.push_frame(TYPE_WINDOW_UPDATE, flags, c.id, 0, &[]);
    c.flush_mark = st.enqueued;
    if remote_closed {
        c.state = StreamState::Closed;
        st.remove_stream(c);
    } else {
        c.state = StreamState::LocalClose;
        st.schedule_close_timeout(close_timeout, c.id);
    }
    c.notify();
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Drops can come from anywhere; never panic on a busy borrow.
        let Ok(mut st) = self.sess.st.try_borrow_mut() else {
            return;
        };
        let Ok(mut c) = self.core.try_borrow_mut() else {
            return;
        };
        c.dropped = true;
        c.read_waker = None;
        c.write_waker = None;
        if st.closed.is_some() {
            return;
        }
        let unread = !c.buf.is_empty();
        match c.state {
            StreamState::Closed | StreamState::Reset => {}
            // Like TCP: closing with unread data resets the stream.
            StreamState::LocalClose if unread => st.reset_stream(&mut c),
            StreamState::LocalClose => {}
            _ if unread && c.state != StreamState::RemoteClose => st.reset_stream(&mut c),
            _ => send_fin(&mut st, &mut c, self.sess.cfg.stream_close_timeout),
        }
        c.buf = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// We need 10,000s of idle streams: keep the per-stream state small.
    #[test]
    fn idle_stream_is_small() {
        let size = std::mem::size_of::<std::cell::RefCell<StreamCore>>();
        assert!(size <= 128, "StreamCore is {size} bytes");
    }
}
