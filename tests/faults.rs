//! Fault tests: frps killed, black-holed or hostile; local services that refuse, reset or
//! never read; users that send nothing or vanish mid-handshake; connection churn.
//!
//! Each test checks that no byte is corrupted, that connections of other proxies and
//! visitors are unharmed, that file descriptors return to their baseline (counted in
//! /proc/self/fd: engine, relay and test clients share this process) and that memory
//! does too (see "Memory" below). Tests hold a process-wide lock so that one test's
//! sockets and buffers never count against another's baseline. Figures (recovery time,
//! fds, RSS) are printed: `cargo test --release --test faults -- --nocapture`.

mod common;
use common::*;
use stcp_engine::bench::{start_service, ServiceKind};
use stcp_engine::config::{ClientConfig, StcpProxyConfig, StcpVisitorConfig};
use stcp_engine::demo::{demo_config, free_port, wait_for_listener};
use stcp_engine::engine::state::EngineStats;
use stcp_engine::engine::EngineHandle;
use stcp_engine::metrics::{Role, ERROR_KINDS};
use stcp_engine::proto::{encode_frame, LoginResp, Message, Pong};
use stcp_engine::relay::{self, RelayConfig};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Deadlines
//
// Every wait polls its condition and returns as soon as it holds, so a deadline costs
// nothing when the engine is healthy; it only bounds how long a broken engine keeps the
// suite busy. Each is at least 3x the slowest figure seen on a 2-core machine loaded
// with two busy-loop hogs, and fails naming the wait, the time waited and the state it
// saw.

/// A rig's first working connection (quiet: well under a second).
const START: Duration = Duration::from_secs(20);
/// Echo traffic to make progress (quiet: milliseconds).
const PROGRESS: Duration = Duration::from_secs(30);
/// A fresh connection to work again once the fault is gone (quiet: 0.3 s after a relay
/// restart; the black hole below has its own).
const RECOVERY: Duration = Duration::from_secs(30);
/// A black hole to be detected and a new login made. With tcpMux the engine pings every
/// second and gives up after hashicorp yamux's fixed 10 s without an answer (seen:
/// 10.6-11.2 s); without tcpMux frp's heartbeat times out after 3 s (seen: 3.0-4.1 s).
const BLACK_HOLE_DETECTION: Duration = Duration::from_secs(40);
/// Relays to end once their users left or their session died (quiet: < 1 s).
const RELAYS_END: Duration = Duration::from_secs(30);
/// fds to be closed once the relays ended (quiet: immediate).
const FDS_BACK: Duration = Duration::from_secs(30);
/// Memory to be freed (threads exiting, handlers dropping buffers) once fds are back.
const MEMORY_BACK: Duration = Duration::from_secs(15);
/// The fd count must hold still this long to count as settled...
const FDS_STILL: Duration = Duration::from_secs(1);
/// ...within this.
const FDS_SETTLE: Duration = Duration::from_secs(15);
/// A healthy echo round trip; a test that asserts "no error" uses this, so only a stall
/// (not a slow, loaded machine) counts as harm.
const HEALTHY_IO: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Measuring

static SERIAL: Mutex<()> = Mutex::new(());

/// One fault test at a time: fd counts and RSS are per process.
fn serial() -> MutexGuard<'static, ()> {
    install_panic_counter();
    tune_allocator();
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    warm_up_executors();
    guard
}

/// glommio keeps a few process-wide fds (eventfds) from the first executors on, and the
/// first chain initialises process-wide state (logging, TLS, allocator arenas); make
/// them exist before any baseline is taken.
fn warm_up_executors() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        for _ in 0..2 {
            let relay = start_relay(false);
            relay.stop();
        }
        let c = chain(opts(true, true, false, 1));
        let _ = echo_through(c.visitor, b"warm up", HEALTHY_IO);
    });
}

/// Makes glibc's memory use measurable. Its mmap and trim thresholds are fixed at their
/// defaults (128 KiB): left dynamic, glibc raises them after the first large free (up to
/// 32 and 64 MiB), memory freed at the top of a thread's arena then stays resident and
/// `malloc_trim` does not release it (it trims only the main arena's top), so RSS would
/// count freed memory as held. Arenas are capped at 4 (default: 8 per core): each new
/// one keeps some memory for the life of the process, and with a few the warm-up makes
/// them, rather than whichever test first runs many threads at once.
fn tune_allocator() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: mallopt only sets glibc's tunables.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
            libc::mallopt(libc::M_ARENA_MAX, 4);
        }
    });
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on every thread (engine and relay executors included), so a test can
/// assert that a hostile peer caused none.
fn install_panic_counter() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            prev(info);
        }));
    });
}

/// Polls `cond` until it holds; fails naming the wait, the time waited and `state()`.
fn wait_until(
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> bool,
    state: impl Fn() -> String,
) -> Duration {
    let t = Instant::now();
    loop {
        if cond() {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < within,
            "{what}: not within {within:?} (waited {:.1}s); {}",
            t.elapsed().as_secs_f64(),
            state()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The open fds of this process, each with what it points to. eventfds are left out:
/// glommio 0.9 leaks one per executor that ever ran (DataDog/glommio#448), which the
/// tests that restart a relay or fail a login would otherwise count against the engine.
/// Sockets, pipes, io_uring instances and files all count.
struct Fds(BTreeMap<u32, String>);

impl Fds {
    fn now() -> Fds {
        let mut open = BTreeMap::new();
        if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
            for e in d.flatten() {
                let Ok(fd) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                if let Ok(t) = std::fs::read_link(e.path()) {
                    let t = t.to_string_lossy().into_owned();
                    // The eventfds, and the handle of this very listing.
                    if t != "anon_inode:[eventfd]" && !t.ends_with("/fd") {
                        open.insert(fd, t);
                    }
                }
            }
        }
        Fds(open)
    }

    fn count(&self) -> usize {
        self.0.len()
    }

    /// What is open now and was not at `base` (+), and what was and is gone (-), with
    /// the ports and state of TCP sockets.
    fn diff(&self, base: &Fds) -> String {
        let mut out = Vec::new();
        for (fd, t) in &self.0 {
            if base.0.get(fd) != Some(t) {
                out.push(format!("+{fd}={t}{}", describe_socket(t)));
            }
        }
        for (fd, t) in &base.0 {
            if self.0.get(fd) != Some(t) {
                out.push(format!("-{fd}={t}"));
            }
        }
        if out.is_empty() {
            "no fd differs".into()
        } else {
            out.join(" ")
        }
    }
}

/// ` local->remote st=XX` of a TCP socket fd target (from /proc/self/net/tcp); empty for
/// anything else.
fn describe_socket(target: &str) -> String {
    target
        .strip_prefix("socket:[")
        .and_then(|i| i.strip_suffix(']'))
        .and_then(tcp_socket)
        .unwrap_or_default()
}

/// ` local->remote st=XX` of a TCP socket inode (st: 01 established, 08 close-wait...).
fn tcp_socket(inode: &str) -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/net/tcp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(9) == Some(&inode)).then(|| {
            let port = |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap_or(""), 16);
            format!(
                " {}->{} st={}",
                port(f[1]).unwrap_or(0),
                port(f[2]).unwrap_or(0),
                f[3]
            )
        })
    })
}

/// Sockets in CLOSE_WAIT (the peer closed, this end never did) that glommio keeps: a
/// stopped executor never drops the tasks it still had (DataDog/glommio#448), nor the
/// sockets they hold. They hold no data and are not counted.
struct Stale<'a> {
    /// Sockets with these local ports: a stopped relay's or echo service's ends.
    local: &'a [u16],
    /// Sockets to these ports: once the engine itself is stopped, its ends.
    remote: &'a [u16],
}

const NONE_STALE: Stale = Stale {
    local: &[],
    remote: &[],
};

fn stale_count(fds: &Fds, stale: &Stale) -> usize {
    fds.0
        .values()
        .filter(|t| {
            let desc = describe_socket(t);
            desc.ends_with(" st=08")
                && (stale
                    .local
                    .iter()
                    .any(|p| desc.starts_with(&format!(" {p}->")))
                    || stale
                        .remote
                        .iter()
                        .any(|p| desc.contains(&format!("->{p} "))))
        })
        .count()
}

/// The open fds once their count has held still for [`FDS_STILL`] (pools refilled,
/// handshakes done).
fn settled_fds() -> Fds {
    let t = Instant::now();
    let (mut last, mut since) = (Fds::now(), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = Fds::now();
        if now.count() != last.count() {
            since = Instant::now();
        } else if since.elapsed() >= FDS_STILL {
            return now;
        }
        if t.elapsed() > FDS_SETTLE {
            eprintln!(
                "note: the fd count did not hold still for {FDS_STILL:?} within {FDS_SETTLE:?}; baseline {}",
                now.count()
            );
            return now;
        }
        last = now;
    }
}

/// Polls until the fd count is back at (or below) `base`'s; fails with the fds that
/// differ.
fn assert_fds_back(base: &Fds, what: &str) -> usize {
    assert_fds_back_except(base, what, &NONE_STALE)
}

/// As [`assert_fds_back`], not counting the `stale` sockets of stopped executors.
fn assert_fds_back_except(base: &Fds, what: &str, stale: &Stale) -> usize {
    let t = Instant::now();
    loop {
        let fds = Fds::now();
        let now = fds.count() - stale_count(&fds, stale);
        if now <= base.count() {
            return now;
        }
        assert!(
            t.elapsed() < FDS_BACK,
            "{what}: {now} fds open {FDS_BACK:?} after the relays ended, baseline {}; {}",
            base.count(),
            fds.diff(base)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// Memory
//
// Memory is the process's anonymous resident memory (RssAnon: heap, stacks, glommio's
// buffers; not the pages of the test binary itself) read right after `malloc_trim(0)`,
// with glibc's thresholds fixed (see [`tune_allocator`]): free pages go back to the
// kernel, so what remains is memory something still holds, not memory freed and kept
// by the allocator. Two checks:
//
// * live, once a fault's relays ended and the engine still runs: RSS may exceed the
//   baseline (taken once the rig worked) by what the engine keeps by design, the buffer
//   pools ([`pool_retention_kib`]), plus [`NOISE_KIB`], plus [`LEAK_PER_CONN`] for each
//   connection the fault made. A leak of one relay buffer per connection exceeds it.
// * teardown, once the engine, relay, echo service and test servers are stopped: RSS
//   must be back within [`TEARDOWN_SLACK_KIB`] of what it was before they started. The
//   pools are gone with their threads, so this one is tight: nothing may outlive them.

/// Allocator and runtime noise: the top of each of glibc's 4 arenas (up to the 128 KiB
/// trim threshold), cached thread stacks (test threads come and go), glommio's memory
/// per executor. A third of one 6 MiB yamux window.
const NOISE_KIB: u64 = 2 * 1024;

/// What may outlive a stopped rig: glommio keeps the tasks of a finished executor alive
/// (DataDog/glommio#448), glibc keeps the stacks of exited threads and the tops of
/// their arenas. A third of a 6 MiB stream window, so a leaked full receive buffer, a
/// leaked session's buffers or a thousand leaked 2 KiB relay buffers fail it.
const TEARDOWN_SLACK_KIB: u64 = 2 * 1024;

/// Per connection beyond what the pools keep: half the smallest relay buffer (the 2 KiB
/// a relay direction starts with), so leaking any buffer per connection fails. What the
/// engine does keep per connection, its yamux sessions' open/close timeout entries
/// (16 bytes each on both ends of both streams, dropped only when the 75 s / 5 min
/// timeout comes due), measures about 100 bytes.
const LEAK_PER_CONN: u64 = 512;

/// What a connection can leave in the buffer pools (src/conn/pool.rs), KiB: three
/// relays (the engine's visitor and proxy side, the relay's) each with two directions of
/// up to three 64 KiB buffers (read, decompress, compress+IV room; 80 KiB to cover the
/// compressed worst case), and four yamux receive buffers of 64 KiB (two streams, seen
/// from both ends).
const POOL_PER_CONN_KIB: u64 = 3 * 2 * 3 * 80 + 4 * 64;

/// A pool keeps at most 16 MiB (MAX_CACHED_BYTES), on each thread that relays: here the
/// engine's one shard and the relay.
const POOL_CAP_KIB: u64 = 2 * 16 * 1024;

/// What the pools may keep after `peak` connections were open at once.
fn pool_retention_kib(peak: u64) -> u64 {
    (peak * POOL_PER_CONN_KIB).min(POOL_CAP_KIB)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Anonymous RSS in KiB once glibc returned its free pages.
fn mem_kib() -> u64 {
    // SAFETY: malloc_trim only walks glibc's own arenas, under their locks.
    unsafe { libc::malloc_trim(0) };
    status_kib("RssAnon:")
}

/// Bytes glibc has handed out and not had back (all arenas plus mmapped blocks), for
/// failure messages: it tells a leak from memory that is merely resident.
fn heap_in_use_kib() -> u64 {
    // SAFETY: mallinfo2 only reads glibc's counters.
    let m = unsafe { libc::mallinfo2() };
    ((m.uordblks + m.hblkhd) / 1024) as u64
}

/// Polls until [`mem_kib`] is at most `base + allowance` (frees can lag: threads exit,
/// handlers drop buffers); fails with the figures and `why` (how the allowance is made).
fn assert_mem_within(base: u64, allowance: u64, what: &str, why: &str) -> u64 {
    let t = Instant::now();
    loop {
        let now = mem_kib();
        if now <= base + allowance {
            return now;
        }
        assert!(
            t.elapsed() < MEMORY_BACK,
            "{what}: RSS {now} KiB is {} KiB over the baseline {base} KiB, more than the {allowance} KiB allowed ({why}); glibc heap in use {} KiB",
            now - base,
            heap_in_use_kib()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// fds and memory before a rig (or a hostile engine) started.
struct Before {
    fds: Fds,
    mem: u64,
}

impl Before {
    fn now() -> Before {
        Before {
            fds: Fds::now(),
            mem: mem_kib(),
        }
    }

    /// Once everything started after `self` is stopped: fds and memory back (CLOSE_WAIT
    /// sockets from and to `server_ports` aside, see [`Stale`]). Returns (fds, KiB)
    /// after.
    fn assert_back(&self, what: &str, server_ports: &[u16]) -> (usize, u64) {
        let stale = Stale {
            local: server_ports,
            remote: server_ports,
        };
        let fds = assert_fds_back_except(&self.fds, what, &stale);
        let mem = assert_mem_within(
            self.mem,
            TEARDOWN_SLACK_KIB,
            &format!("{what}, everything stopped"),
            "TEARDOWN_SLACK_KIB",
        );
        (fds, mem)
    }
}

// ---------------------------------------------------------------------------------------
// Engine state

fn active(engine: &EngineHandle) -> u64 {
    EngineStats::get(&engine.shared().stats.active)
}

fn logins(engine: &EngineHandle) -> u64 {
    EngineStats::get(&engine.shared().stats.logins)
}

/// The engine's counters, for failure messages.
fn engine_state(engine: &EngineHandle) -> String {
    let s = &engine.shared().stats;
    let g = EngineStats::get;
    format!(
        "engine: {} relays open, {} logins, work conns {} ({} errors), visitor conns {} ({} errors)",
        g(&s.active),
        g(&s.logins),
        g(&s.work_conns),
        g(&s.work_errors),
        g(&s.visitor_conns),
        g(&s.visitor_errors)
    )
}

/// Waits until the engine has no relay open.
fn wait_relays_end(engine: &EngineHandle) {
    wait_until(
        "relays to end",
        RELAYS_END,
        || active(engine) == 0,
        || engine_state(engine),
    );
}

/// Waits until a fresh connection through `addr` echoes correctly; returns how long.
fn wait_working(engine: &EngineHandle, addr: SocketAddr, within: Duration) -> Duration {
    let last = Mutex::new(String::from("no attempt finished"));
    wait_until(
        "a working connection",
        within,
        || {
            let r = echo_through(addr, b"are you back?", Duration::from_secs(3));
            let ok = matches!(&r, Ok(g) if g == b"are you back?");
            *last.lock().unwrap() = format!("last attempt: {r:?}");
            ok
        },
        || format!("{}; {}", last.lock().unwrap(), engine_state(engine)),
    )
}

/// The user connection must end (EOF or reset) without receiving a byte.
fn assert_closed_without_data(addr: SocketAddr, send: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(RELAYS_END)).unwrap();
    let _ = s.write_all(send);
    let mut buf = [0u8; 64];
    let t = Instant::now();
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("connection to {addr} received {n} bytes it should not have"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "connection to {addr} was not closed after {:.1}s: {e}",
            t.elapsed().as_secs_f64()
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Traffic

#[derive(Default)]
struct StreamCounts {
    verified: AtomicU64,
    errors: AtomicU64,
    corrupt: AtomicU64,
    last_error: Mutex<String>,
}

/// Echo traffic in 16 KiB round trips, checking every byte; reconnects after errors.
struct Streamer {
    stop: Arc<AtomicBool>,
    counts: Arc<StreamCounts>,
    thread: Option<JoinHandle<()>>,
}

impl Streamer {
    /// `io_timeout` is how long the user waits for a round trip before giving up on the
    /// connection (and counting an error).
    fn start(addr: SocketAddr, seed: u64, io_timeout: Duration) -> Streamer {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(StreamCounts::default());
        let (st, c) = (stop.clone(), counts.clone());
        let thread = std::thread::spawn(move || {
            let error = |what: String| {
                c.errors.fetch_add(1, Ordering::SeqCst);
                *c.last_error.lock().unwrap() = what;
            };
            let mut round = 0u64;
            while !st.load(Ordering::SeqCst) {
                let mut s = match TcpStream::connect_timeout(&addr, io_timeout) {
                    Ok(s) => s,
                    Err(e) => {
                        error(format!("connect: {e}"));
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                let _ = s.set_read_timeout(Some(io_timeout));
                let _ = s.set_write_timeout(Some(io_timeout));
                let mut back = vec![0u8; 16 * 1024];
                while !st.load(Ordering::SeqCst) {
                    round += 1;
                    let data = payload(back.len(), seed.wrapping_mul(1_000_003) ^ round);
                    if let Err(e) = s.write_all(&data).and_then(|_| s.read_exact(&mut back)) {
                        error(format!("round trip {round}: {e}"));
                        break;
                    }
                    if back != data {
                        c.corrupt.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    c.verified.fetch_add(data.len() as u64, Ordering::SeqCst);
                }
            }
        });
        Streamer {
            stop,
            counts,
            thread: Some(thread),
        }
    }

    fn verified(&self) -> u64 {
        self.counts.verified.load(Ordering::SeqCst)
    }

    fn state(&self) -> String {
        let c = &self.counts;
        format!(
            "echo traffic: {} bytes verified, {} errors (last: {:?}), {} corrupt",
            c.verified.load(Ordering::SeqCst),
            c.errors.load(Ordering::SeqCst),
            c.last_error.lock().unwrap(),
            c.corrupt.load(Ordering::SeqCst)
        )
    }

    fn wait_progress(&self, engine: &EngineHandle) {
        let from = self.verified();
        wait_until(
            "echo traffic to make progress",
            PROGRESS,
            || self.verified() > from,
            || format!("{}; {}", self.state(), engine_state(engine)),
        );
    }

    /// Stops; returns (bytes verified, errors, corrupted round trips, last error).
    fn finish(mut self) -> (u64, u64, u64, String) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("streamer thread");
        }
        let c = &self.counts;
        (
            c.verified.load(Ordering::SeqCst),
            c.errors.load(Ordering::SeqCst),
            c.corrupt.load(Ordering::SeqCst),
            c.last_error.lock().unwrap().clone(),
        )
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Test servers on plain threads

/// A TCP server running `handle` for each connection on its own thread; dropping it
/// stops accepting, tells the handlers to stop and joins the threads.
struct ScriptServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptServer {
    fn start(handle: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static) -> ScriptServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let handle = Arc::new(handle);
        let thread = std::thread::spawn(move || {
            let mut workers = Vec::new();
            for c in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                let (h, st2) = (handle.clone(), st.clone());
                workers.push(std::thread::spawn(move || h(c, &st2)));
            }
            for w in workers {
                let _ = w.join();
            }
        });
        ScriptServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        // Handlers watch `stop` (they read with short timeouts); wake the accept.
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads until EOF, an error or the server stops (never writes).
fn drain_until_closed(mut c: TcpStream, stop: &AtomicBool) {
    let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        match c.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// A forwarding TCP proxy between the engine and the relay that can black-hole every
/// connection it holds (data is swallowed, sockets stay open, no FIN or RST passes),
/// as a dead NAT mapping or a frozen frps does. Connections made after `freeze` forward.
struct Freezer {
    server: ScriptServer,
    frozen_generation: Arc<AtomicU64>,
}

impl Freezer {
    fn start(upstream: SocketAddr) -> Freezer {
        let generation = Arc::new(AtomicU64::new(0));
        let g = generation.clone();
        let server = ScriptServer::start(move |down, stop| {
            let born = g.load(Ordering::SeqCst);
            let Ok(up) = TcpStream::connect(upstream) else {
                return;
            };
            let _ = up.set_nodelay(true);
            let _ = down.set_nodelay(true);
            let pump = |mut from: TcpStream, mut to: TcpStream, g: Arc<AtomicU64>| {
                let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let holed = g.load(Ordering::SeqCst) > born;
                    match from.read(&mut buf) {
                        Ok(0) => {
                            if !holed {
                                let _ = to.shutdown(Shutdown::Write);
                                return;
                            }
                            break;
                        }
                        Ok(n) => {
                            if !holed && to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
                // The engine closed a black-holed connection: release the frps side too,
                // so the test does not wait for the relay's own timeouts.
                if g.load(Ordering::SeqCst) > born {
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                }
            };
            let (d2, u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            let g2 = g.clone();
            std::thread::scope(|s| {
                s.spawn(|| pump(down, up, g.clone()));
                s.spawn(|| pump(u2, d2, g2));
            });
        });
        Freezer {
            server,
            frozen_generation: generation,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Black-holes every connection open now.
    fn freeze(&self) {
        self.frozen_generation.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// Chains

struct Rig {
    engine: Option<EngineHandle>,
    relay: Option<relay::RelayHandle>,
    visitor: SocketAddr,
    echo: Option<stcp_engine::bench::ServiceHandle>,
    /// Before the relay, echo service and engine started.
    before: Before,
    /// Where the relay, the echo service and the engine's frps address listen (CLOSE_WAIT
    /// sockets from and to them after a stop are glommio's, see [`Stale`]).
    server_ports: Vec<u16>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            e.stop();
        }
        if let Some(r) = self.relay.take() {
            r.stop();
        }
        self.echo.take();
    }
}

impl Rig {
    fn engine(&self) -> &EngineHandle {
        self.engine.as_ref().unwrap()
    }

    /// Stops everything, runs `then` (to drop what the test added, e.g. a Freezer) and
    /// checks that fds and memory are back to what they were before the rig.
    /// Returns the figures for the test's report.
    fn tear_down(mut self, what: &str, then: impl FnOnce()) -> String {
        let empty = Before {
            fds: Fds(BTreeMap::new()),
            mem: 0,
        };
        let before = std::mem::replace(&mut self.before, empty);
        let ports = std::mem::take(&mut self.server_ports);
        drop(self);
        then();
        let (fds, mem) = before.assert_back(&format!("{what}, rig stopped"), &ports);
        format!(
            "rig stopped: fds {} -> {fds}, RSS {} -> {mem} KiB",
            before.fds.count(),
            before.mem
        )
    }
}

/// One shard, so there is one session per side and fd counts are stable.
fn rig(mux: bool, tweak: impl FnOnce(&mut ClientConfig, SocketAddr) -> SocketAddr) -> Rig {
    let before = Before::now();
    let relay = start_relay(mux);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let mut server_ports = vec![relay.addr().port(), echo.addr().port()];
    let vport = free_port().unwrap();
    let mut cfg = demo_config(
        relay.addr(),
        TOKEN,
        echo.addr(),
        vport,
        &opts(mux, true, false, 1),
    );
    let server = tweak(&mut cfg, relay.addr());
    cfg.server_addr = server.ip().to_string();
    cfg.server_port = server.port();
    server_ports.push(server.port());
    let engine = start_engine(cfg, Some(1));
    let visitor: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
    wait_for_listener(visitor).unwrap();
    let r = Rig {
        engine: Some(engine),
        relay: Some(relay),
        visitor,
        echo: Some(echo),
        before,
        server_ports,
    };
    wait_working(r.engine(), r.visitor, START);
    r
}

fn add_pair(cfg: &mut ClientConfig, name: &str, local: SocketAddr) -> SocketAddr {
    let vport = free_port().unwrap();
    cfg.proxies.push(StcpProxyConfig {
        name: name.into(),
        secret_key: "demo-secret".into(),
        local_ip: local.ip().to_string(),
        local_port: local.port(),
        ..Default::default()
    });
    cfg.visitors.push(StcpVisitorConfig {
        name: format!("{name}-visitor"),
        server_name: name.into(),
        secret_key: "demo-secret".into(),
        bind_addr: "127.0.0.1".into(),
        bind_port: i32::from(vport),
        ..Default::default()
    });
    format!("127.0.0.1:{vport}").parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// Faults

#[test]
fn relay_killed_and_restarted_while_traffic_flows() {
    let _g = serial();
    for mux in [true, false] {
        let mut r = rig(mux, |_, relay| relay);
        let base_fds = settled_fds();
        let base_mem = mem_kib();
        let traffic = Streamer::start(r.visitor, 1, HEALTHY_IO);
        traffic.wait_progress(r.engine());
        let addr = r.relay.as_ref().unwrap().addr();
        let logins_before = logins(r.engine());
        r.relay.take().unwrap().stop();
        r.relay = Some(
            relay::start(
                RelayConfig {
                    bind: addr,
                    token: TOKEN.into(),
                    ..RelayConfig::default().with_tcp_mux(mux)
                },
                None,
            )
            .expect("relay restarts on the same port"),
        );
        let recovery = wait_working(r.engine(), r.visitor, RECOVERY);
        traffic.wait_progress(r.engine());
        let (verified, errors, corrupt, last) = traffic.finish();
        assert_eq!(corrupt, 0, "corrupted echo round trips across the restart");
        assert!(
            logins(r.engine()) > logins_before,
            "no re-login; {}",
            engine_state(r.engine())
        );
        wait_relays_end(r.engine());
        let stale = Stale {
            local: &[addr.port()],
            remote: &[],
        };
        let fds = assert_fds_back_except(&base_fds, "relay restart", &stale);
        // Open at once: the streamer's connection, a recovery probe, and one of each cut
        // by the restart. The stopped relay's executor is one more for NOISE_KIB.
        let peak = 4;
        let mem = assert_mem_within(
            base_mem,
            pool_retention_kib(peak) + NOISE_KIB,
            &format!("relay restart (mux={mux})"),
            "pool_retention_kib(4) + NOISE_KIB",
        );
        let down = r.tear_down(&format!("relay restart (mux={mux})"), || {});
        println!(
            "relay restart (mux={mux}): working again {:.2}s after restart; traffic {verified} bytes verified, {errors} broken connection(s) (last: {last:?}), 0 corrupt; fds {} -> {fds}; RSS {base_mem} -> {mem} KiB; {down}",
            recovery.as_secs_f64(),
            base_fds.count(),
        );
    }
}

#[test]
fn black_holed_frps_is_detected_and_replaced() {
    let _g = serial();
    for mux in [false, true] {
        let freezer: Arc<Mutex<Option<Freezer>>> = Arc::default();
        let f2 = freezer.clone();
        let r = rig(mux, move |cfg, relay| {
            // Quick detection: yamux pings every second (then hashicorp's 10 s ack
            // timeout) with tcpMux; frp heartbeats every second, 3 s timeout without.
            cfg.transport.tcp_mux_keepalive_interval = 1;
            if !mux {
                cfg.transport.heartbeat_interval = 1;
                cfg.transport.heartbeat_timeout = 3;
            }
            let f = Freezer::start(relay);
            let addr = f.addr();
            *f2.lock().unwrap() = Some(f);
            addr
        });
        let base_fds = settled_fds();
        let base_mem = mem_kib();
        // A user that gives up after 3 s: without tcpMux that is what ends a connection
        // caught in the black hole (its visitor and work connections are TCP
        // connections of their own, which the re-login does not cut).
        let traffic = Streamer::start(r.visitor, 2, Duration::from_secs(3));
        traffic.wait_progress(r.engine());
        let logins_before = logins(r.engine());
        freezer.lock().unwrap().as_ref().unwrap().freeze();
        let frozen = Instant::now();
        wait_until(
            "the black hole to be detected and a new login made",
            BLACK_HOLE_DETECTION,
            || logins(r.engine()) > logins_before,
            || format!("{}; {}", engine_state(r.engine()), traffic.state()),
        );
        let detected = frozen.elapsed();
        let working = wait_working(r.engine(), r.visitor, RECOVERY) + detected;
        traffic.wait_progress(r.engine());
        let (verified, errors, corrupt, last) = traffic.finish();
        assert_eq!(
            corrupt, 0,
            "corrupted echo round trips across the black hole"
        );
        wait_relays_end(r.engine());
        let fds = assert_fds_back(&base_fds, "black hole");
        // Open at once: the streamer's and the probes' connections, a new one every 3 s
        // while the hole lasts (about 4 with tcpMux), each holding buffers until its
        // session is cut.
        let peak = 8;
        let mem = assert_mem_within(
            base_mem,
            pool_retention_kib(peak) + NOISE_KIB,
            &format!("black hole (mux={mux})"),
            "pool_retention_kib(8) + NOISE_KIB",
        );
        let down = r.tear_down(&format!("black hole (mux={mux})"), || {
            freezer.lock().unwrap().take();
        });
        println!(
            "frps black-holed (mux={mux}): re-logged in {:.2}s after the freeze, working {:.2}s after; traffic {verified} bytes verified, {errors} broken connection(s) (last: {last:?}), 0 corrupt; fds {} -> {fds}; RSS {base_mem} -> {mem} KiB; {down}",
            detected.as_secs_f64(),
            working.as_secs_f64(),
            base_fds.count(),
        );
    }
}

/// Most bytes one loopback TCP connection holds in the kernel: the sender's send buffer
/// and the receiver's receive buffer at their autotuning maxima (tcp_wmem, tcp_rmem).
fn tcp_buffers_max() -> u64 {
    let max = |f: &str| {
        std::fs::read_to_string(f)
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .nth(2)
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(64 << 20)
    };
    max("/proc/sys/net/ipv4/tcp_wmem") + max("/proc/sys/net/ipv4/tcp_rmem")
}

/// What the chain may hold in memory for one connection whose local service never
/// reads, KiB: the two receive windows it fills (the relay's for the visitor stream and
/// the engine's for the work stream), 6 MiB each in a VecDeque whose capacity doubles to
/// 8 MiB; the outbound queue and writer batch of the two yamux sessions it crosses (the
/// engine's and the relay's end of it), each kept up to 4 x the 256 KiB write queue
/// limit; three relays' buffers (two directions of three 80 KiB buffers each) and the
/// test's own 256 KiB write chunk.
const STALLED_HELD_KIB: u64 = 2 * 8 * 1024 + 2 * 2 * 1024 + 3 * 2 * 3 * 80 + 256;

#[test]
fn local_service_faults_end_one_connection_and_spare_the_others() {
    let _g = serial();
    let before_servers = Before::now();
    // The services: a closed port, one that resets mid-stream, one that never reads.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let resetter = ScriptServer::start(|mut c, _| {
        let mut buf = [0u8; 1024];
        let _ = c.read_exact(&mut buf);
        let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
    });
    let stalled: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let st = stalled.clone();
    let staller = ScriptServer::start(move |c, stop| {
        st.lock().unwrap().push(c);
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let (resetter_addr, staller_addr) = (resetter.addr, staller.addr);
    let mut addrs = Vec::new();
    let r = rig(true, |cfg, relay| {
        addrs.push(add_pair(cfg, "refused", refused));
        addrs.push(add_pair(cfg, "resetter", resetter_addr));
        addrs.push(add_pair(cfg, "staller", staller_addr));
        relay
    });
    for a in &addrs {
        wait_for_listener(*a).unwrap();
    }
    let base_fds = settled_fds();
    let base_mem = mem_kib();
    let traffic = Streamer::start(r.visitor, 3, HEALTHY_IO);
    traffic.wait_progress(r.engine());

    // Refused: the user connection is closed, the proxy counts an error.
    assert_closed_without_data(addrs[0], b"hello?");
    let m = &r.engine().shared().metrics;
    wait_until(
        "the refused dial to be counted",
        RELAYS_END,
        || m.errors(Role::Proxy, 1, "other") >= 1,
        || engine_state(r.engine()),
    );

    // Reset mid-stream: whatever arrives is not data from anyone else, then it ends.
    assert_closed_without_data(addrs[1], &payload(4096, 9));

    // Never reads: the writer is held back (yamux window + join backpressure) and the
    // engine's memory stays bounded. The user writes until 3 writes in a row made no
    // progress for 2 s each, so the pipeline is as full as it gets, even on a loaded box.
    let mem_before_stall = mem_kib();
    let mut user = TcpStream::connect(addrs[2]).unwrap();
    user.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let held_max = 2 * tcp_buffers_max() + STALLED_HELD_KIB * 1024;
    let attempt = 2 * held_max;
    let chunk = payload(256 * 1024, 4);
    let (mut written, mut stuck) = (0u64, 0);
    while written < attempt && stuck < 3 {
        match user.write(&chunk) {
            Ok(n) => {
                written += n as u64;
                stuck = 0;
            }
            Err(_) => stuck += 1, // Blocked for 2 s: backpressure reached the user.
        }
    }
    let mem_stalled = mem_kib();
    // In flight: the user's and the local service's sockets (kernel buffers) plus what
    // the chain holds. Without backpressure the writer would get all of `attempt` out.
    assert!(
        written <= held_max,
        "a local service that never reads accepted {written} bytes, more than the {held_max} the kernel and the engine's windows can hold: no backpressure"
    );
    let stall_allowance = STALLED_HELD_KIB + NOISE_KIB;
    assert!(
        mem_stalled <= mem_before_stall + stall_allowance,
        "RSS grew {} KiB ({mem_before_stall} -> {mem_stalled}) while a reader stalled with {} KiB written, more than the {stall_allowance} KiB allowed (STALLED_HELD_KIB + NOISE_KIB); glibc heap in use {} KiB",
        mem_stalled.saturating_sub(mem_before_stall),
        written / 1024,
        heap_in_use_kib()
    );
    traffic.wait_progress(r.engine());
    drop(user);
    for c in stalled.lock().unwrap().drain(..) {
        let _ = c.shutdown(Shutdown::Both);
    }

    let (verified, errors, corrupt, last) = traffic.finish();
    assert_eq!(
        (errors, corrupt),
        (0, 0),
        "the healthy proxy's connection was harmed (last error: {last:?})"
    );
    wait_relays_end(r.engine());
    let fds = assert_fds_back(&base_fds, "local service faults");
    // The stalled windows' 8 MiB buffers go back to the pools once drained, so the pools
    // may be full.
    let mem = assert_mem_within(
        base_mem,
        POOL_CAP_KIB + NOISE_KIB,
        "local service faults",
        "POOL_CAP_KIB + NOISE_KIB",
    );
    let down = r.tear_down("local service faults", || {});
    drop((resetter, staller));
    before_servers.assert_back("local service faults, test servers stopped", &[]);
    println!(
        "local service faults: refused/reset/never-reads each closed one connection; stalled writer held at {} KiB written (bound {} KiB); RSS {mem_before_stall} -> {mem_stalled} KiB while stalled (bound +{stall_allowance} KiB); healthy traffic {verified} bytes, 0 errors; fds {} -> {fds}; RSS {base_mem} -> {mem} KiB; {down}",
        written / 1024,
        held_max / 1024,
        base_fds.count(),
    );
}

#[test]
fn users_that_send_nothing_or_vanish_mid_handshake() {
    let _g = serial();
    let r = rig(true, |_, relay| relay);
    let base_fds = settled_fds();
    let base_mem = mem_kib();
    let traffic = Streamer::start(r.visitor, 5, HEALTHY_IO);
    traffic.wait_progress(r.engine());

    // Connects and says nothing: an idle relay, like any idle TCP connection.
    const IDLE: u64 = 20;
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(r.visitor).unwrap())
        .collect();
    let m = &r.engine().shared().metrics;
    wait_until(
        "idle users to be relayed",
        RELAYS_END,
        || m.active(Role::Visitor, 0) > IDLE,
        || engine_state(r.engine()),
    );
    traffic.wait_progress(r.engine());
    drop(idle);

    // Vanishes mid-handshake: connect, then reset at once.
    const VANISHING: u64 = 300;
    for _ in 0..VANISHING {
        let s = TcpStream::connect(r.visitor).unwrap();
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    }
    traffic.wait_progress(r.engine());
    let (verified, errors, corrupt, last) = traffic.finish();
    assert_eq!(
        (errors, corrupt),
        (0, 0),
        "a healthy user was harmed (last error: {last:?})"
    );
    wait_relays_end(r.engine());
    wait_working(r.engine(), r.visitor, RECOVERY);
    let fds = assert_fds_back(&base_fds, "idle and vanishing users");
    let conns = IDLE + VANISHING;
    let mem = assert_mem_within(
        base_mem,
        pool_retention_kib(conns) + NOISE_KIB + conns * LEAK_PER_CONN / 1024,
        "idle and vanishing users",
        "pool_retention_kib(320) + NOISE_KIB + 320 x LEAK_PER_CONN",
    );
    let down = r.tear_down("idle and vanishing users", || {});
    println!(
        "idle users and {VANISHING} mid-handshake resets: healthy traffic {verified} bytes, 0 errors; fds {} -> {fds}; RSS {base_mem} -> {mem} KiB; {down}",
        base_fds.count(),
    );
}

/// Connections made before the churn's memory baseline, so that pools, arenas and
/// thread stacks are at the level this load keeps them.
const CHURN_WARM_UP: u64 = 2_000;
/// Connections measured: a leak of 1 KiB per connection (16 MiB) exceeds the
/// allowance (2 MiB noise + 8 MiB of LEAK_PER_CONN).
const CHURN_CONNS: u64 = 16_000;
/// ...unless the machine is too slow to make them in this time; the allowance then
/// follows the count made (and the test says so).
const CHURN_MAX: Duration = Duration::from_secs(45);

#[test]
fn churn_soak_returns_to_baseline() {
    let _g = serial();
    raise_fd_limit(8192);
    let r = rig(true, |_, relay| relay);
    let base_fds = settled_fds();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let last_bad = Arc::new(Mutex::new(String::new()));
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let (stop, done, bad, last_bad, addr) = (
                stop.clone(),
                done.clone(),
                bad.clone(),
                last_bad.clone(),
                r.visitor,
            );
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let data = payload(64, w << 32 | i);
                    match echo_through(addr, &data, HEALTHY_IO) {
                        Ok(g) if g == data => {
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        other => {
                            bad.fetch_add(1, Ordering::SeqCst);
                            *last_bad.lock().unwrap() = format!("{other:?}");
                        }
                    }
                }
            })
        })
        .collect();
    let counts = || {
        format!(
            "{} connections done, {} failed (last: {:?}); {}",
            done.load(Ordering::SeqCst),
            bad.load(Ordering::SeqCst),
            last_bad.lock().unwrap(),
            engine_state(r.engine())
        )
    };
    wait_until(
        "the churn's warm-up",
        CHURN_MAX,
        || done.load(Ordering::SeqCst) >= CHURN_WARM_UP,
        counts,
    );
    let base_mem = mem_kib();
    let from = done.load(Ordering::SeqCst);
    let soak = Instant::now();
    while done.load(Ordering::SeqCst) < from + CHURN_CONNS && soak.elapsed() < CHURN_MAX {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let soak = soak.elapsed();
    let (all, bad) = (done.load(Ordering::SeqCst), bad.load(Ordering::SeqCst));
    let soaked = all - from;
    assert_eq!(
        bad,
        0,
        "{bad} of {} short connections failed (last: {:?})",
        all + bad,
        last_bad.lock().unwrap()
    );
    if soaked < CHURN_CONNS {
        println!("churn: only {soaked} of {CHURN_CONNS} connections in {soak:?}; the memory allowance follows");
    }
    wait_relays_end(r.engine());
    let fds = assert_fds_back(&base_fds, "churn");
    // The warm-up ran this same load, so the pools are already at its level.
    let mem = assert_mem_within(
        base_mem,
        NOISE_KIB + soaked * LEAK_PER_CONN / 1024,
        "churn",
        "NOISE_KIB + connections x LEAK_PER_CONN",
    );
    let down = r.tear_down("churn", || {});
    println!(
        "churn: {soaked} connections in {:.1}s ({:.0}/s) after {from} to warm up, 0 failed; fds {} -> {fds}; RSS {base_mem} -> {mem} KiB ({:.0} bytes per connection); {down}",
        soak.as_secs_f64(),
        soaked as f64 / soak.as_secs_f64(),
        base_fds.count(),
        mem.saturating_sub(base_mem) as f64 * 1024.0 / soaked.max(1) as f64,
    );
}

// ---------------------------------------------------------------------------------------
// Hostile frps

fn frame(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(msg, &mut out);
    out
}

/// An engine config pointing at `server`, failing fast on the first login.
fn hostile_config(server: SocketAddr, mux: bool) -> ClientConfig {
    let mut cfg = demo_config(
        server,
        TOKEN,
        "127.0.0.1:9".parse().unwrap(),
        free_port().unwrap(),
        &opts(mux, false, false, 1),
    );
    cfg.login_fail_exit = true;
    cfg
}

/// The first login must fail with an error naming `needle`, without a panic, and leave
/// no fd or memory behind.
fn assert_login_fails(server: &ScriptServer, mux: bool, needle: &str) {
    let before = Before::now();
    let panics = PANICS.load(Ordering::SeqCst);
    let t = Instant::now();
    let err = match stcp_engine::engine::start(hostile_config(server.addr, mux), Some(1)) {
        Ok(_) => panic!("login to a hostile frps succeeded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        panics,
        "a panic while: {err}"
    );
    let (fds, mem) = before.assert_back(needle, &[]);
    println!(
        "hostile frps (mux={mux}): {err:?} after {:.2}s; fds {} -> {fds}; RSS {} -> {mem} KiB",
        t.elapsed().as_secs_f64(),
        before.fds.count(),
        before.mem
    );
}

/// Reads the client's first bytes, then writes `reply`, then drains.
fn reply_with(reply: Vec<u8>) -> impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static {
    move |mut c, stop| {
        let mut buf = [0u8; 4096];
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = c.read(&mut buf);
        let _ = c.write_all(&reply);
        drain_until_closed(c, stop);
    }
}

#[test]
fn hostile_frps_login_replies_are_connection_errors() {
    let _g = serial();
    let garbage = ScriptServer::start(reply_with(payload(300, 7)));
    assert_login_fails(&garbage, false, "bad frame");
    let mut oversize = vec![b'1'];
    oversize.extend_from_slice(&i64::MAX.to_be_bytes());
    let oversize = ScriptServer::start(reply_with(oversize));
    assert_login_fails(&oversize, false, "exceeds");
    let negative = {
        let mut f = vec![b'1'];
        f.extend_from_slice(&(-5i64).to_be_bytes());
        ScriptServer::start(reply_with(f))
    };
    assert_login_fails(&negative, false, "bad frame");
    let wrong = ScriptServer::start(reply_with(frame(&Message::Pong(Pong::default()))));
    assert_login_fails(&wrong, false, "expected LoginResp, got Pong");
    let silent = ScriptServer::start(drain_until_closed);
    assert_login_fails(&silent, false, "timed out waiting for LoginResp");
    let hangup = ScriptServer::start(|mut c, _| {
        let _ = c.read(&mut [0u8; 4096]); // Read the Login, so closing sends FIN, not RST.
    });
    assert_login_fails(&hangup, false, "LoginResp");
}

/// A yamux peer that sends 7 MiB on the control stream, past the 6 MiB window.
#[test]
fn hostile_frps_violating_the_yamux_window_ends_the_session() {
    let _g = serial();
    let flood = ScriptServer::start(|mut c, stop| {
        // The client's first frame opens stream 1 (a window update with SYN).
        let mut head = [0u8; 12];
        if c.read_exact(&mut head).is_err() {
            return;
        }
        let len: u32 = 7 * 1024 * 1024; // Past the 6 MiB window the client grants.
        let mut data = vec![0u8, 0]; // version 0, type Data
        data.extend_from_slice(&2u16.to_be_bytes()); // ACK
        data.extend_from_slice(&1u32.to_be_bytes()); // stream 1
        data.extend_from_slice(&len.to_be_bytes());
        data.resize(12 + len as usize, 0x41);
        let _ = c.write_all(&data);
        drop(data); // Not to be counted against the engine's memory.
        drain_until_closed(c, stop);
    });
    assert_login_fails(&flood, true, "window");
    let bad_version = ScriptServer::start(reply_with(vec![9u8; 12]));
    assert_login_fails(&bad_version, true, "bad version");
}

/// After a valid login: visitor handshakes answered with garbage, an oversize frame or
/// the wrong message, then garbage on the control stream. Every one is a connection
/// error; the engine logs in again and stops cleanly.
#[test]
fn hostile_frps_after_login() {
    let _g = serial();
    let poison = Arc::new(AtomicBool::new(false));
    let visitors = Arc::new(AtomicU64::new(0));
    let (p2, v2) = (poison.clone(), visitors.clone());
    let server = ScriptServer::start(move |mut c, stop| {
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = vec![0u8; 4096];
        let Ok(n) = c.read(&mut buf) else { return };
        match buf.first() {
            Some(b'o') if n > 0 => {
                let ok = LoginResp {
                    version: "0.70.1".into(),
                    run_id: "hostile".into(),
                    error: String::new(),
                };
                let _ = c.write_all(&frame(&Message::LoginResp(ok)));
                let _ = c.set_read_timeout(Some(Duration::from_millis(50)));
                while !stop.load(Ordering::SeqCst) && !p2.load(Ordering::SeqCst) {
                    match c.read(&mut buf) {
                        Ok(0) => return,
                        Err(e)
                            if e.kind() != std::io::ErrorKind::WouldBlock
                                && e.kind() != std::io::ErrorKind::TimedOut =>
                        {
                            return
                        }
                        _ => {}
                    }
                }
                let _ = c.write_all(&payload(512, 11)); // Not valid ciphertext framing.
                drain_until_closed(c, stop);
            }
            Some(b'v') => {
                let reply = match v2.fetch_add(1, Ordering::SeqCst) % 3 {
                    0 => payload(64, 12),
                    1 => {
                        let mut f = vec![b'3'];
                        f.extend_from_slice(&(1i64 << 40).to_be_bytes());
                        f
                    }
                    _ => frame(&Message::Pong(Pong::default())),
                };
                let _ = c.write_all(&reply);
                drain_until_closed(c, stop);
            }
            _ => drain_until_closed(c, stop),
        }
    });
    let before = Before::now();
    let panics = PANICS.load(Ordering::SeqCst);
    let mut cfg = hostile_config(server.addr, false);
    cfg.login_fail_exit = false;
    let vport = cfg.visitors[0].bind_port;
    let engine = stcp_engine::engine::start(cfg, Some(1)).expect("first login succeeds");
    let visitor: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
    wait_for_listener(visitor).unwrap();
    for _ in 0..3 {
        assert_closed_without_data(visitor, b"x");
    }
    let m = &engine.shared().metrics;
    wait_until(
        "three visitor errors",
        RELAYS_END,
        || {
            ERROR_KINDS
                .iter()
                .map(|k| m.errors(Role::Visitor, 0, k))
                .sum::<u64>()
                >= 3
        },
        || engine_state(&engine),
    );
    let last = engine
        .shared()
        .last_error("echo-visitor")
        .unwrap_or_default();
    let logins_before = logins(&engine);
    poison.store(true, Ordering::SeqCst);
    wait_until(
        "a re-login after garbage on the control",
        RECOVERY,
        || logins(&engine) > logins_before,
        || engine_state(&engine),
    );
    let stopping = Instant::now();
    engine.stop();
    let stop_took = stopping.elapsed();
    drop(server);
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        panics,
        "a panic in the engine"
    );
    let (fds, mem) = before.assert_back("hostile frps after login", &[]);
    println!(
        "hostile frps after login: 3 visitor handshakes refused (last: {last:?}), re-login after control garbage, stop took {:.2}s; fds {} -> {fds}; RSS {} -> {mem} KiB",
        stop_took.as_secs_f64(),
        before.fds.count(),
        before.mem
    );
}
