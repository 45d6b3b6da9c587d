//! The session: shared state, the reader/writer/keepalive/timeout tasks, and the
//! public [`Session`] handle. Semantics follow `yamux:session.go`.

use super::frame::*;
use super::stream::{Stream, StreamCore, StreamState};
use super::{Mode, MuxConfig, MuxError};
use futures_lite::future::{self, poll_fn};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::timer::Timer;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

pub(crate) type CoreRef = Rc<RefCell<StreamCore>>;

/// Bytes read from the transport per syscall (payload is copied out of it at once).
const READ_BUF: usize = 128 * 1024;
/// Largest data frame we send; bigger writes become several frames in the same batch.
pub(crate) const MAX_FRAME: usize = 64 * 1024;
/// The reader and writer yield to other tasks after this many busy rounds in a row, so a
/// saturated session cannot monopolise its shard (glommio is cooperative).
const BUSY_ROUNDS: u32 = 8;
/// How long the writer keeps flushing queued frames after the session closed.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack over the write queue limit for control frames we cannot refuse (ping acks,
/// window updates, RSTs); past it the peer is clearly not reading and the session dies.
const CONTROL_SLACK: usize = 16 * 1024 * 1024;

pub(crate) struct Inner {
    pub(crate) cfg: MuxConfig,
    pub(crate) st: RefCell<State>,
}

#[derive(Default)]
struct PingSlot {
    acked: bool,
    waker: Option<Waker>,
}

pub(crate) struct State {
    next_id: u32,
    pub(crate) streams: HashMap<u32, CoreRef>,
    /// Inbound streams not yet returned by `accept` (hashicorp `acceptCh`).
    backlog: VecDeque<CoreRef>,
    /// Our SYNs not yet acknowledged (hashicorp `synCh`/`inflight`).
    inflight: usize,
    local_goaway: bool,
    remote_goaway: bool,
    pub(crate) closed: Option<MuxError>,

    /// Outbound queue: complete frames, written by the writer task in one go.
    out: Vec<u8>,
    out_limit: usize,
    /// Total bytes ever queued / written; streams compare against these to flush.
    pub(crate) enqueued: u64,
    written: u64,
    writer_idle: bool,
    writer_waker: Option<Waker>,
    reader_waker: Option<Waker>,
    timer_waker: Option<Waker>,
    space_waiters: Vec<CoreRef>,
    flush_waiters: Vec<CoreRef>,
    accept_waiters: Vec<Waker>,
    open_waiters: Vec<Waker>,
    closed_waiters: Vec<Waker>,

    pings: HashMap<u32, PingSlot>,
    next_ping: u32,

    /// Deadlines are a fixed offset from "now", so each queue is sorted by construction.
    open_timeouts: VecDeque<(Instant, u32)>,
    close_timeouts: VecDeque<(Instant, u32)>,
}

fn push_waker(list: &mut Vec<Waker>, w: &Waker) {
    if !list.iter().any(|x| x.will_wake(w)) {
        list.push(w.clone());
    }
}

fn wake_list(list: &mut Vec<Waker>) {
    for w in list.drain(..) {
        w.wake();
    }
}

impl State {
    /// Queue one frame. Never blocks; callers that can wait check `has_space` first.
    pub(crate) fn push_frame(&mut self, typ: u8, flags: u16, id: u32, length: u32, body: &[u8]) {
        self.out
            .extend_from_slice(&Header::new(typ, flags, id, length).encode());
        self.out.extend_from_slice(body);
        self.enqueued += (HEADER_LEN + body.len()) as u64;
        // Wake the writer only when it is idle (or must notice an overflow): a writer
        // blocked on the socket picks new frames up when its current write finishes.
        if self.writer_idle || self.out.len() > self.out_limit + CONTROL_SLACK {
            if let Some(w) = self.writer_waker.take() {
                w.wake();
            }
        }
    }

    pub(crate) fn has_space(&self) -> bool {
        self.out.len() < self.out_limit
    }

    pub(crate) fn out_limit(&self) -> usize {
        self.out_limit
    }

    pub(crate) fn is_flushed(&self, mark: u64) -> bool {
        self.written >= mark
    }

    pub(crate) fn wait_space(&mut self, core: &CoreRef, c: &mut StreamCore, w: &Waker) {
        c.set_write_waker(w);
        if !c.waiting_space {
            c.waiting_space = true;
            self.space_waiters.push(core.clone());
        }
    }

    pub(crate) fn wait_flush(&mut self, core: &CoreRef, c: &mut StreamCore, w: &Waker) {
        c.set_write_waker(w);
        if !c.waiting_flush {
            c.waiting_flush = true;
            self.flush_waiters.push(core.clone());
        }
    }

    /// hashicorp `Stream.sendWindowUpdate`: grant the peer what the reader consumed, but
    /// only once it is at least half the max window, unless flags (SYN/ACK) are pending.
    pub(crate) fn send_window_update(&mut self, c: &mut StreamCore, max: u32) {
        let buffered = u32::try_from(c.buf.len()).unwrap_or(u32::MAX);
        let delta = max.saturating_sub(buffered).saturating_sub(c.recv_window);
        let flags = c.send_flags();
        if delta < max / 2 && flags == 0 {
            return;
        }
        c.recv_window += delta;
        self.push_frame(TYPE_WINDOW_UPDATE, flags, c.id, delta, &[]);
        c.flush_mark = self.enqueued;
    }

    /// hashicorp `Session.closeStream`: forget the stream, returning its SYN credit.
    pub(crate) fn remove_stream(&mut self, c: &mut StreamCore) {
        self.streams.remove(&c.id);
        self.release_inflight(c);
    }

    fn release_inflight(&mut self, c: &mut StreamCore) {
        if c.inflight {
            c.inflight = false;
            self.inflight -= 1;
            wake_list(&mut self.open_waiters);
        }
    }

    /// Send RST and drop the stream (used when nobody can ever read it).
    pub(crate) fn reset_stream(&mut self, c: &mut StreamCore) {
        self.push_frame(TYPE_WINDOW_UPDATE, FLAG_RST, c.id, 0, &[]);
        c.state = StreamState::Reset;
        self.remove_stream(c);
        c.notify();
    }

    pub(crate) fn schedule_close_timeout(&mut self, timeout: Option<Duration>, id: u32) {
        if let Some(d) = timeout {
            if self.close_timeouts.is_empty() {
                if let Some(w) = self.timer_waker.take() {
                    w.wake();
                }
            }
            self.close_timeouts.push_back((Instant::now() + d, id));
            if self.close_timeouts.len() >= 2 * self.streams.len() + 64 {
                // Entries of streams that closed normally are only dropped when they
                // come due (5 min): under churn that is ~R x 300 entries. Drop them
                // now, amortised: at most one entry per live stream survives.
                let streams = &self.streams;
                // A stream borrowed right now is the caller's own: keep its entry.
                self.close_timeouts.retain(|(_, id)| {
                    streams.get(id).is_some_and(|c| {
                        c.try_borrow()
                            .map_or(true, |c| c.state == StreamState::LocalClose)
                    })
                });
            }
        }
    }

    fn schedule_open_timeout(&mut self, timeout: Option<Duration>, id: u32) {
        if let Some(d) = timeout {
            if self.open_timeouts.is_empty() {
                if let Some(w) = self.timer_waker.take() {
                    w.wake();
                }
            }
            self.open_timeouts.push_back((Instant::now() + d, id));
            if self.open_timeouts.len() >= 2 * self.streams.len() + 64 {
                // Acknowledged streams' entries would otherwise wait 75 s (see above).
                let streams = &self.streams;
                self.open_timeouts.retain(|(_, id)| {
                    streams.get(id).is_some_and(|c| {
                        c.try_borrow()
                            .map_or(true, |c| c.inflight && c.state == StreamState::SynSent)
                    })
                });
            }
        }
    }

    /// hashicorp `processFlags`, for a frame the peer sent on stream `c`.
    fn process_flags(&mut self, c: &mut StreamCore, flags: u16) -> Result<(), MuxError> {
        if flags & FLAG_ACK != 0 {
            if c.state == StreamState::SynSent {
                c.state = StreamState::Established;
            }
            self.release_inflight(c);
        }
        if flags & FLAG_FIN != 0 {
            match c.state {
                StreamState::SynSent | StreamState::SynReceived | StreamState::Established => {
                    c.state = StreamState::RemoteClose;
                    c.notify();
                }
                StreamState::LocalClose => {
                    c.state = StreamState::Closed;
                    self.remove_stream(c);
                    c.notify();
                }
                s => {
                    return Err(MuxError::ProtocolError(format!(
                        "unexpected FIN on stream {} in state {s:?}",
                        c.id
                    )))
                }
            }
        }
        if flags & FLAG_RST != 0 {
            c.state = StreamState::Reset;
            self.remove_stream(c);
            c.notify();
        }
        Ok(())
    }
}

impl Inner {
    pub(crate) fn is_closed(&self) -> bool {
        self.st.borrow().closed.is_some()
    }

    /// Kill the session once: record why, optionally queue a GoAway for the writer to
    /// flush, fail every stream and wake everything that waits on the session.
    pub(crate) fn shutdown(&self, reason: MuxError, go_away: Option<u32>) {
        let mut wakers = Vec::new();
        {
            let mut st = self.st.borrow_mut();
            if st.closed.is_some() {
                return;
            }
            if let Some(code) = go_away {
                st.push_frame(TYPE_GO_AWAY, 0, 0, code, &[]);
            }
            log::debug!("yamux session shutting down: {reason}");
            st.closed = Some(reason);
            let streams: Vec<CoreRef> = st.streams.drain().map(|(_, c)| c).collect();
            let waiting = std::mem::take(&mut st.space_waiters)
                .into_iter()
                .chain(std::mem::take(&mut st.flush_waiters));
            for core in streams.into_iter().chain(waiting) {
                let mut c = core.borrow_mut();
                c.force_close();
                wakers.extend(c.read_waker.take());
                wakers.extend(c.write_waker.take());
            }
            st.backlog.clear();
            st.inflight = 0;
            st.open_timeouts.clear();
            st.close_timeouts.clear();
            wakers.append(&mut st.accept_waiters);
            wakers.append(&mut st.open_waiters);
            wakers.append(&mut st.closed_waiters);
            for slot in st.pings.values_mut() {
                wakers.extend(slot.waker.take());
            }
            wakers.extend(st.writer_waker.take());
            wakers.extend(st.reader_waker.take());
            wakers.extend(st.timer_waker.take());
        }
        for w in wakers {
            w.wake();
        }
    }

    // ---- inbound frames (reader task) -------------------------------------------------

    /// Handle one header; returns where its payload (if any) goes.
    fn on_header(&self, h: Header) -> Result<Rx, (MuxError, Option<u32>)> {
        if h.version != VERSION {
            return Err((
                MuxError::ProtocolError(format!("bad version {} in yamux header", h.version)),
                None,
            ));
        }
        match h.typ {
            TYPE_DATA | TYPE_WINDOW_UPDATE => self.on_stream_frame(h),
            TYPE_PING => {
                let mut st = self.st.borrow_mut();
                if h.flags & FLAG_SYN != 0 {
                    st.push_frame(TYPE_PING, FLAG_ACK, 0, h.length, &[]);
                } else if let Some(slot) = st.pings.get_mut(&h.length) {
                    slot.acked = true;
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
                Ok(Rx::Header)
            }
            TYPE_GO_AWAY => match h.length {
                GO_AWAY_NORMAL => {
                    let mut st = self.st.borrow_mut();
                    st.remote_goaway = true;
                    wake_list(&mut st.open_waiters);
                    Ok(Rx::Header)
                }
                code => Err((MuxError::GoAway(code), None)),
            },
            t => Err((
                MuxError::ProtocolError(format!("bad message type {t} in yamux header")),
                None,
            )),
        }
    }

    /// hashicorp `handleStreamMessage`.
    fn on_stream_frame(&self, h: Header) -> Result<Rx, (MuxError, Option<u32>)> {
        let proto = |e| (e, Some(GO_AWAY_PROTO_ERR));
        let mut st = self.st.borrow_mut();
        let id = h.stream_id;
        if h.flags & FLAG_SYN != 0 {
            self.incoming_stream(&mut st, id).map_err(proto)?;
        }
        let Some(core) = st.streams.get(&id).cloned() else {
            // Most likely a stream we reset: drain its data, as hashicorp does.
            if h.typ == TYPE_DATA && h.length > 0 {
                log::trace!(
                    "yamux: discarding {} bytes for missing stream {id}",
                    h.length
                );
                return Ok(Rx::Payload(None, h.length));
            }
            return Ok(Rx::Header);
        };
        let mut c = core.borrow_mut();
        st.process_flags(&mut c, h.flags).map_err(proto)?;
        if h.typ == TYPE_WINDOW_UPDATE {
            c.send_window = c.send_window.saturating_add(h.length);
            if let Some(w) = c.write_waker.take() {
                w.wake();
            }
            return Ok(Rx::Header);
        }
        if h.length == 0 {
            return Ok(Rx::Header);
        }
        if h.length > c.recv_window {
            return Err(proto(MuxError::RecvWindowExceeded { stream: id }));
        }
        if c.dropped && c.state != StreamState::Reset && c.state != StreamState::Closed {
            // Our handle is gone, nobody will read this: reset instead of buffering.
            st.reset_stream(&mut c);
        }
        if c.dropped || c.state == StreamState::Reset {
            return Ok(Rx::Payload(None, h.length));
        }
        drop(c);
        Ok(Rx::Payload(Some(core), h.length))
    }

    /// hashicorp `incomingStream`.
    fn incoming_stream(&self, st: &mut State, id: u32) -> Result<(), MuxError> {
        if st.local_goaway {
            st.push_frame(TYPE_WINDOW_UPDATE, FLAG_RST, id, 0, &[]);
            return Ok(());
        }
        if st.streams.contains_key(&id) {
            return Err(MuxError::ProtocolError(format!(
                "duplicate stream {id} declared"
            )));
        }
        if st.backlog.len() >= self.cfg.accept_backlog || st.streams.len() >= self.cfg.max_streams {
            log::warn!("yamux: backlog exceeded, resetting stream {id}");
            st.push_frame(TYPE_WINDOW_UPDATE, FLAG_RST, id, 0, &[]);
            return Ok(());
        }
        let core = Rc::new(RefCell::new(StreamCore::new(id, StreamState::SynReceived)));
        st.streams.insert(id, core.clone());
        st.backlog.push_back(core);
        wake_list(&mut st.accept_waiters);
        Ok(())
    }
}

/// Receive buffer a stream borrows from the pool when data arrives for it (it grows
/// beyond this only while its reader lags).
const RECV_BUF_FROM_POOL: usize = 64 * 1024;

/// Where the reader is in the inbound byte stream.
enum Rx {
    Header,
    /// Payload bytes still to come for a data frame; `None` discards them.
    Payload(Option<CoreRef>, u32),
}

/// Parse and dispatch everything in `buf[*pos..end]`.
fn process(
    inner: &Inner,
    buf: &[u8],
    pos: &mut usize,
    end: usize,
    rx: &mut Rx,
) -> Result<(), (MuxError, Option<u32>)> {
    loop {
        match rx {
            Rx::Header => {
                let Some(hb) = buf[*pos..end].first_chunk::<HEADER_LEN>() else {
                    return Ok(());
                };
                *pos += HEADER_LEN;
                *rx = inner.on_header(Header::decode(hb))?;
            }
            Rx::Payload(target, remaining) => {
                if *remaining == 0 {
                    *rx = Rx::Header;
                    continue;
                }
                let n = (*remaining as usize).min(end - *pos);
                if n == 0 {
                    return Ok(());
                }
                if let Some(core) = target {
                    let mut c = core.borrow_mut();
                    // Checked against the whole frame up front.
                    c.recv_window = c.recv_window.saturating_sub(n as u32);
                    if !c.dropped {
                        if c.buf.capacity() == 0 {
                            // Drained streams hold no buffer; borrow one from the
                            // shard's pool rather than growing a fresh one.
                            c.buf = crate::conn::pool::take_deque(RECV_BUF_FROM_POOL);
                        }
                        c.buf.extend(&buf[*pos..*pos + n]);
                        if let Some(w) = c.read_waker.take() {
                            w.wake();
                        }
                    }
                }
                *pos += n;
                *remaining -= n as u32;
            }
        }
    }
}

async fn reader_task<T: AsyncRead + Unpin>(inner: Rc<Inner>, io: Rc<RefCell<T>>) {
    let mut buf = vec![0u8; READ_BUF];
    let (mut pos, mut end) = (0usize, 0usize);
    let mut rx = Rx::Header;
    let mut busy = 0;
    loop {
        if let Err((err, go_away)) = process(&inner, &buf, &mut pos, end, &mut rx) {
            log::debug!("yamux: {err}");
            inner.shutdown(err, go_away);
            return;
        }
        // Only a partial header can be left over: move it to the front.
        if pos == end {
            (pos, end) = (0, 0);
        } else if pos > 0 {
            buf.copy_within(pos..end, 0);
            (pos, end) = (0, end - pos);
        }
        let res = poll_fn(|cx| {
            {
                let mut st = inner.st.borrow_mut();
                if st.closed.is_some() {
                    return Poll::Ready(None);
                }
                if !st
                    .reader_waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    st.reader_waker = Some(cx.waker().clone());
                }
            }
            Pin::new(&mut *io.borrow_mut())
                .poll_read(cx, &mut buf[end..])
                .map(Some)
        })
        .await;
        match res {
            None => return,
            Some(Ok(0)) => return inner.shutdown(MuxError::RemoteClosed, None),
            Some(Ok(n)) => end += n,
            Some(Err(e)) => return inner.shutdown(MuxError::Io(e.to_string()), None),
        }
        busy += 1;
        if busy == BUSY_ROUNDS {
            busy = 0;
            future::yield_now().await;
        }
    }
}

/// Write all of `buf`; once the session is closed, give up after `CLOSE_FLUSH_TIMEOUT`.
async fn write_all<T: AsyncWrite + Unpin>(
    inner: &Inner,
    io: &RefCell<T>,
    buf: &[u8],
) -> Result<(), MuxError> {
    let mut pos = 0;
    let mut deadline: Option<Timer> = None;
    poll_fn(|cx| loop {
        if let Some(t) = deadline.as_mut() {
            if Pin::new(t).poll(cx).is_ready() {
                return Poll::Ready(Err(MuxError::Io("flush on close timed out".into())));
            }
        } else if inner.is_closed() {
            deadline = Some(Timer::new(CLOSE_FLUSH_TIMEOUT));
            continue;
        }
        match Pin::new(&mut *io.borrow_mut()).poll_write(cx, &buf[pos..]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(MuxError::Io("write zero".into()))),
            Poll::Ready(Ok(n)) => {
                pos += n;
                if pos == buf.len() {
                    return Poll::Ready(Ok(()));
                }
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(MuxError::Io(e.to_string()))),
            Poll::Pending => {
                let mut st = inner.st.borrow_mut();
                if st.closed.is_none() && st.out.len() > st.out_limit + CONTROL_SLACK {
                    return Poll::Ready(Err(MuxError::QueueOverflow));
                }
                st.writer_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
    })
    .await
}

async fn writer_task<T: AsyncWrite + Unpin>(inner: Rc<Inner>, io: Rc<RefCell<T>>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut busy = 0;
    loop {
        let more = poll_fn(|cx| {
            let mut st = inner.st.borrow_mut();
            if !st.out.is_empty() {
                st.writer_idle = false;
                Poll::Ready(true)
            } else if st.closed.is_some() {
                Poll::Ready(false)
            } else {
                st.writer_idle = true;
                st.writer_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        if !more {
            break;
        }
        {
            // Take the whole batch; streams waiting for room fill the next one meanwhile.
            let mut st = inner.st.borrow_mut();
            std::mem::swap(&mut st.out, &mut buf);
            // Drained in place: the list keeps its capacity (no allocation per batch).
            for core in st.space_waiters.drain(..) {
                let mut c = core.borrow_mut();
                c.waiting_space = false;
                if let Some(w) = c.write_waker.take() {
                    w.wake();
                }
            }
            wake_list(&mut st.open_waiters);
        }
        if let Err(e) = write_all(&inner, &io, &buf).await {
            inner.shutdown(e, None);
            return; // the transport is broken: don't bother closing it gracefully
        }
        {
            let mut st = inner.st.borrow_mut();
            st.written += buf.len() as u64;
            let written = st.written;
            st.flush_waiters.retain(|core| {
                let mut c = core.borrow_mut();
                if c.flush_mark > written {
                    return true;
                }
                c.waiting_flush = false;
                if let Some(w) = c.write_waker.take() {
                    w.wake();
                }
                false
            });
            // Give back memory after a burst (e.g. a storm of control frames).
            buf.clear();
            if buf.capacity() > 4 * st.out_limit {
                buf = Vec::new();
            }
        }
        busy += 1;
        if busy == BUSY_ROUNDS {
            busy = 0;
            future::yield_now().await;
        }
    }
    // Closed: like Go's conn.Close(); for TCP this sends FIN.
    let close = poll_fn(|cx| Pin::new(&mut *io.borrow_mut()).poll_close(cx));
    let _ = future::or(async { close.await.is_ok() }, async {
        glommio::timer::sleep(CLOSE_FLUSH_TIMEOUT).await;
        false
    })
    .await;
}

/// Resolves on the next wake-up of the timeout task or when the session closes.
fn park(inner: &Inner) -> impl Future<Output = ()> + '_ {
    let mut parked = false;
    poll_fn(move |cx| {
        let mut st = inner.st.borrow_mut();
        if parked || st.closed.is_some() {
            return Poll::Ready(());
        }
        parked = true;
        st.timer_waker = Some(cx.waker().clone());
        Poll::Pending
    })
}

/// Stream open/close timeouts (hashicorp `setOpenTimeout`, `closeTimeout`).
async fn timeout_task(inner: Rc<Inner>) {
    loop {
        let next = {
            let st = inner.st.borrow();
            if st.closed.is_some() {
                return;
            }
            let a = st.open_timeouts.front().map(|e| e.0);
            let b = st.close_timeouts.front().map(|e| e.0);
            a.into_iter().chain(b).min()
        };
        match next {
            None => park(&inner).await,
            Some(at) => {
                let now = Instant::now();
                if at > now {
                    future::or(
                        async {
                            Timer::new(at - now).await;
                        },
                        park(&inner),
                    )
                    .await;
                    continue;
                }
                expire_timeouts(&inner, now);
            }
        }
    }
}

fn expire_timeouts(inner: &Inner, now: Instant) {
    let mut st = inner.st.borrow_mut();
    while let Some(&(at, id)) = st.open_timeouts.front() {
        if at > now {
            break;
        }
        st.open_timeouts.pop_front();
        let stuck = st.streams.get(&id).is_some_and(|core| {
            let c = core.borrow();
            c.inflight && c.state == StreamState::SynSent
        });
        if stuck {
            // The peer cannot ACK: force a reconnect, as hashicorp does.
            drop(st);
            log::warn!("yamux: stream {id} not acknowledged, closing session");
            inner.shutdown(MuxError::StreamOpenTimeout { stream: id }, None);
            return;
        }
    }
    while let Some(&(at, id)) = st.close_timeouts.front() {
        if at > now {
            break;
        }
        st.close_timeouts.pop_front();
        let Some(core) = st.streams.get(&id).cloned() else {
            continue;
        };
        let mut c = core.borrow_mut();
        if c.state == StreamState::LocalClose {
            // The peer never sent its FIN: free the stream and tell the peer.
            c.force_close();
            st.push_frame(TYPE_WINDOW_UPDATE, FLAG_RST, id, 0, &[]);
            st.remove_stream(&mut c);
            c.notify();
        }
    }
}

async fn keepalive_task(inner: Rc<Inner>, every: Duration) {
    loop {
        let tick = future::or(
            async {
                glommio::timer::sleep(every).await;
                true
            },
            async {
                wait_closed(&inner).await;
                false
            },
        )
        .await;
        if !tick {
            return;
        }
        match ping(&inner).await {
            Ok(_) => {}
            Err(MuxError::PingTimeout) => {
                log::warn!("yamux: keepalive failed, closing session");
                return inner.shutdown(MuxError::KeepaliveTimeout, None);
            }
            Err(_) => return,
        }
    }
}

fn wait_closed(inner: &Inner) -> impl Future<Output = ()> + '_ {
    poll_fn(move |cx| {
        let mut st = inner.st.borrow_mut();
        if st.closed.is_some() {
            return Poll::Ready(());
        }
        push_waker(&mut st.closed_waiters, cx.waker());
        Poll::Pending
    })
}

/// Removes a ping's slot however the wait ends (ack, timeout, cancellation).
struct PingGuard<'a>(&'a Inner, u32);

impl Drop for PingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.st.try_borrow_mut() {
            st.pings.remove(&self.1);
        }
    }
}

async fn ping(inner: &Inner) -> Result<Duration, MuxError> {
    let id = {
        let mut st = inner.st.borrow_mut();
        if st.closed.is_some() {
            return Err(MuxError::SessionClosed);
        }
        let id = st.next_ping;
        st.next_ping = id.wrapping_add(1);
        st.pings.insert(id, PingSlot::default());
        st.push_frame(TYPE_PING, FLAG_SYN, 0, id, &[]);
        id
    };
    let _guard = PingGuard(inner, id);
    let start = Instant::now();
    let acked = poll_fn(|cx| {
        let mut st = inner.st.borrow_mut();
        if st.closed.is_some() {
            return Poll::Ready(Err(MuxError::SessionClosed));
        }
        match st.pings.get_mut(&id) {
            Some(slot) if slot.acked => Poll::Ready(Ok(())),
            Some(slot) => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            None => Poll::Ready(Err(MuxError::SessionClosed)),
        }
    });
    let timeout = async {
        glommio::timer::sleep(inner.cfg.ping_timeout).await;
        Err(MuxError::PingTimeout)
    };
    future::or(acked, timeout).await?;
    Ok(start.elapsed())
}

/// A yamux session: a cheap `Rc` handle, `!Send`, living on one glommio executor.
///
/// The session runs until [`Session::close`], a transport error or EOF, a protocol error
/// or a keepalive timeout; dropping the handles does not close it.
#[derive(Clone)]
pub struct Session {
    inner: Rc<Inner>,
}

impl Session {
    /// Takes ownership of the transport and spawns the session's tasks (reader, writer,
    /// keepalive, timeouts) on the current glommio executor. Panics outside one.
    pub fn new<T>(io: T, mode: Mode, cfg: MuxConfig) -> Session
    where
        T: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let mut cfg = cfg;
        // hashicorp's VerifyConfig refuses windows below the initial one.
        cfg.max_stream_window = cfg.max_stream_window.max(INITIAL_STREAM_WINDOW);
        cfg.accept_backlog = cfg.accept_backlog.max(1);
        cfg.write_queue_limit = cfg.write_queue_limit.max(16 * 1024);
        let st = State {
            next_id: match mode {
                Mode::Client => 1,
                Mode::Server => 2,
            },
            streams: HashMap::new(),
            backlog: VecDeque::new(),
            inflight: 0,
            local_goaway: false,
            remote_goaway: false,
            closed: None,
            out: Vec::new(),
            out_limit: cfg.write_queue_limit,
            enqueued: 0,
            written: 0,
            writer_idle: false,
            writer_waker: None,
            reader_waker: None,
            timer_waker: None,
            space_waiters: Vec::new(),
            flush_waiters: Vec::new(),
            accept_waiters: Vec::new(),
            open_waiters: Vec::new(),
            closed_waiters: Vec::new(),
            pings: HashMap::new(),
            next_ping: 0,
            open_timeouts: VecDeque::new(),
            close_timeouts: VecDeque::new(),
        };
        let keepalive = cfg.keepalive_interval;
        let timeouts = cfg.stream_open_timeout.is_some() || cfg.stream_close_timeout.is_some();
        let inner = Rc::new(Inner {
            cfg,
            st: RefCell::new(st),
        });
        let io = Rc::new(RefCell::new(io));
        glommio::spawn_local(reader_task(inner.clone(), io.clone())).detach();
        glommio::spawn_local(writer_task(inner.clone(), io)).detach();
        if let Some(every) = keepalive {
            glommio::spawn_local(keepalive_task(inner.clone(), every)).detach();
        }
        if timeouts {
            glommio::spawn_local(timeout_task(inner.clone())).detach();
        }
        Session { inner }
    }

    /// Open a stream: queues WindowUpdate+SYN (granting our extra window) at once, like
    /// hashicorp, without waiting for the ACK. Waits while `accept_backlog` of our SYNs
    /// are unacknowledged or the outbound queue is full.
    pub async fn open(&self) -> Result<Stream, MuxError> {
        let inner = &self.inner;
        poll_fn(|cx| {
            let mut st = inner.st.borrow_mut();
            if st.closed.is_some() {
                return Poll::Ready(Err(MuxError::SessionClosed));
            }
            if st.remote_goaway {
                return Poll::Ready(Err(MuxError::GoAway(GO_AWAY_NORMAL)));
            }
            if st.streams.len() >= inner.cfg.max_streams {
                return Poll::Ready(Err(MuxError::TooManyStreams));
            }
            if st.inflight >= inner.cfg.accept_backlog || !st.has_space() {
                push_waker(&mut st.open_waiters, cx.waker());
                return Poll::Pending;
            }
            let id = st.next_id;
            if id >= u32::MAX - 1 {
                return Poll::Ready(Err(MuxError::StreamsExhausted));
            }
            st.next_id = id + 2;
            let core = Rc::new(RefCell::new(StreamCore::new(id, StreamState::Init)));
            {
                let mut c = core.borrow_mut();
                st.send_window_update(&mut c, inner.cfg.max_stream_window);
                c.inflight = true;
            }
            st.inflight += 1;
            st.streams.insert(id, core.clone());
            st.schedule_open_timeout(inner.cfg.stream_open_timeout, id);
            Poll::Ready(Ok(Stream::new(core, inner.clone())))
        })
        .await
    }

    /// Next inbound stream (its ACK is queued now, as hashicorp's `AcceptStream` does).
    /// `None` once the session is closed.
    pub async fn accept(&self) -> Option<Stream> {
        let inner = &self.inner;
        poll_fn(|cx| {
            let mut st = inner.st.borrow_mut();
            if st.closed.is_some() {
                return Poll::Ready(None);
            }
            let Some(core) = st.backlog.pop_front() else {
                push_waker(&mut st.accept_waiters, cx.waker());
                return Poll::Pending;
            };
            {
                let mut c = core.borrow_mut();
                if c.state != StreamState::Reset && c.state != StreamState::Closed {
                    st.send_window_update(&mut c, inner.cfg.max_stream_window);
                }
            }
            Poll::Ready(Some(Stream::new(core, inner.clone())))
        })
        .await
    }

    /// Tear the session down: streams fail (reads return buffered data, then an error
    /// unless the peer had sent FIN), queued frames get a short grace period to be
    /// written, then the transport is closed. Like Go's `Session.Close`, no GoAway.
    pub fn close(&self) {
        self.inner.shutdown(MuxError::SessionClosed, None);
    }

    /// Send GoAway(normal): the peer may not open new streams; ours keep working and
    /// inbound SYNs are answered with RST.
    pub fn go_away(&self) {
        let mut st = self.inner.st.borrow_mut();
        if st.closed.is_none() && !st.local_goaway {
            st.local_goaway = true;
            st.push_frame(TYPE_GO_AWAY, 0, 0, GO_AWAY_NORMAL, &[]);
        }
    }

    /// Round-trip a Ping; fails with `PingTimeout` after `ping_timeout`.
    pub async fn ping(&self) -> Result<Duration, MuxError> {
        ping(&self.inner).await
    }

    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Resolves when the session dies; then see [`Session::close_reason`].
    pub async fn closed(&self) {
        wait_closed(&self.inner).await
    }

    pub fn close_reason(&self) -> Option<MuxError> {
        self.inner.st.borrow().closed.clone()
    }

    /// Streams the session tracks: open ones, ones waiting for `accept`, and half-closed
    /// ones still waiting for the peer's FIN.
    pub fn num_streams(&self) -> usize {
        self.inner.st.borrow().streams.len()
    }

    /// Pending stream open/close timeout entries (bounded by about twice the live
    /// streams plus 64, however many streams came and went).
    pub fn timeout_entries(&self) -> usize {
        let st = self.inner.st.borrow();
        st.open_timeouts.len() + st.close_timeouts.len()
    }
}
