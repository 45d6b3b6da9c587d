//! Client-side load: throughput, request/response latency at a fixed offered rate
//! (coordinated omission corrected), connection setup rate, and idle fan-out. Plain
//! blocking sockets on OS threads, so the same code measures any endpoint (our engine,
//! or frpc for comparison).

use hdrhistogram::Histogram;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Throughput {
    pub streams: usize,
    pub seconds: f64,
    pub bytes: u64,
}

impl Throughput {
    pub fn gbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds / 1e9
    }
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / self.seconds / (1024.0 * 1024.0)
    }
}

/// Hooks a caller can use to observe a run: the steady-state measurement window (to
/// sample CPU counters at its edges) and a progress line about once a second.
pub trait Watch {
    fn window_start(&mut self) {}
    fn window_end(&mut self) {}
    fn progress(&mut self, _line: &str) {}
}

/// Observes nothing.
pub struct NoWatch;
impl Watch for NoWatch {}

/// Which way payload flows in a throughput run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Write into an echo service and count what comes back (both directions loaded).
    Echo,
    /// Read from a source service (server -> client).
    Download,
    /// Write into a sink service (client -> server); counts bytes the sockets accepted.
    Upload,
}

/// Throughput of `streams` connections to `addr` in direction `dir` for `dur`.
pub fn throughput(
    addr: SocketAddr,
    dir: Direction,
    streams: usize,
    dur: Duration,
    watch: &mut dyn Watch,
) -> std::io::Result<Throughput> {
    match dir {
        Direction::Echo => echo_throughput_watched(addr, streams, dur, watch),
        Direction::Download => download_throughput_watched(addr, streams, dur, watch),
        Direction::Upload => upload_throughput(addr, streams, dur, watch),
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Streams that each write continuously into an echo service and read the echo back;
/// counts bytes that made the full round trip.
pub fn echo_throughput(
    addr: SocketAddr,
    streams: usize,
    dur: Duration,
) -> std::io::Result<Throughput> {
    echo_throughput_watched(addr, streams, dur, &mut NoWatch)
}

fn echo_throughput_watched(
    addr: SocketAddr,
    streams: usize,
    dur: Duration,
    watch: &mut dyn Watch,
) -> std::io::Result<Throughput> {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..streams {
        let s = connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut w = s.try_clone()?;
        let mut r = s;
        let stop_w = stop.clone();
        handles.push(std::thread::spawn(move || {
            let buf = vec![0x5au8; 32 * 1024];
            while !stop_w.load(Ordering::Relaxed) {
                if w.write_all(&buf).is_err() {
                    break;
                }
            }
            let _ = w.shutdown(std::net::Shutdown::Write);
        }));
        let total_r = total.clone();
        let stop_r = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !stop_r.load(Ordering::Relaxed) {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        total_r.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    measure(dur, &stop, &total, handles, streams, watch)
}

/// Streams that read from a source service (one direction, server -> client).
pub fn download_throughput(
    addr: SocketAddr,
    streams: usize,
    dur: Duration,
) -> std::io::Result<Throughput> {
    download_throughput_watched(addr, streams, dur, &mut NoWatch)
}

fn download_throughput_watched(
    addr: SocketAddr,
    streams: usize,
    dur: Duration,
    watch: &mut dyn Watch,
) -> std::io::Result<Throughput> {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..streams {
        let mut s = connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let total = total.clone();
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        total.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    measure(dur, &stop, &total, handles, streams, watch)
}

/// Streams that write into a sink service (one direction, client -> server). Counts
/// what the kernel accepted; the socket buffers (a few MiB) are small against a run.
pub fn upload_throughput(
    addr: SocketAddr,
    streams: usize,
    dur: Duration,
    watch: &mut dyn Watch,
) -> std::io::Result<Throughput> {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..streams {
        let mut s = connect(addr)?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        let total = total.clone();
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let buf = vec![0x5au8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match s.write(&buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        total.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    measure(dur, &stop, &total, handles, streams, watch)
}

fn measure(
    dur: Duration,
    stop: &AtomicBool,
    total: &AtomicU64,
    handles: Vec<std::thread::JoinHandle<()>>,
    streams: usize,
    watch: &mut dyn Watch,
) -> std::io::Result<Throughput> {
    // Skip the first 10 % (slow start, window growth) so the figure is the steady rate.
    let warm = dur / 10;
    std::thread::sleep(warm);
    let b0 = total.load(Ordering::Relaxed);
    watch.window_start();
    let t0 = Instant::now();
    let end = t0 + (dur - warm);
    let mut last = (t0, b0);
    while Instant::now() < end {
        std::thread::sleep((end - Instant::now()).min(Duration::from_secs(1)));
        let (now, b) = (Instant::now(), total.load(Ordering::Relaxed));
        let rate = (b - last.1) as f64 * 8.0 / now.duration_since(last.0).as_secs_f64() / 1e9;
        watch.progress(&format!(
            "{:.0}/{:.0} s  {rate:.2} Gbit/s",
            now.duration_since(t0).as_secs_f64(),
            (dur - warm).as_secs_f64()
        ));
        last = (now, b);
    }
    let bytes = total.load(Ordering::Relaxed) - b0;
    let seconds = t0.elapsed().as_secs_f64();
    watch.window_end();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    Ok(Throughput {
        streams,
        seconds,
        bytes,
    })
}

#[derive(Debug, Clone)]
pub struct Latency {
    pub requests: u64,
    pub rate: u64,
    pub hist: Histogram<u64>,
}

impl Latency {
    /// Microseconds at quantile q.
    pub fn us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
    pub fn summary(&self) -> String {
        format!(
            "p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us ({} requests at {}/s)",
            self.us(0.5),
            self.us(0.9),
            self.us(0.99),
            self.us(0.999),
            self.hist.max() as f64 / 1000.0,
            self.requests,
            self.rate
        )
    }
}

/// 64-byte request/response over one echo connection at a fixed offered rate. Latency
/// is measured from when each request was *scheduled*, so a stall counts against every
/// request it delays (coordinated omission corrected).
pub fn echo_latency(
    addr: SocketAddr,
    rate: u64,
    dur: Duration,
    size: usize,
) -> std::io::Result<Latency> {
    echo_latency_watched(addr, rate, dur, size, &mut NoWatch)
}

pub fn echo_latency_watched(
    addr: SocketAddr,
    rate: u64,
    dur: Duration,
    size: usize,
    watch: &mut dyn Watch,
) -> std::io::Result<Latency> {
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let req = vec![0x42u8; size.max(1)];
    let mut resp = vec![0u8; size.max(1)];
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let start = Instant::now();
    let mut i: u64 = 0;
    // Warm the path (first connection through a visitor includes the handshake).
    s.write_all(&req)?;
    s.read_exact(&mut resp)?;
    let mut next_progress = Duration::from_secs(1);
    while start.elapsed() < dur {
        if start.elapsed() >= next_progress {
            next_progress += Duration::from_secs(1);
            watch.progress(&format!(
                "{:.0}/{:.0} s  {i} requests, p99 so far {:.1} us",
                start.elapsed().as_secs_f64(),
                dur.as_secs_f64(),
                hist.value_at_quantile(0.99) as f64 / 1000.0
            ));
        }
        // `interval * i` in nanoseconds: u32 multiplication would overflow on long runs.
        let scheduled = start + Duration::from_nanos(interval.as_nanos() as u64 * i);
        let now = Instant::now();
        if scheduled > now {
            std::thread::sleep(scheduled - now);
        }
        s.write_all(&req)?;
        s.read_exact(&mut resp)?;
        let lat = Instant::now().duration_since(scheduled).as_nanos() as u64;
        let _ = hist.record(lat.max(1));
        i += 1;
    }
    Ok(Latency {
        requests: i,
        rate,
        hist,
    })
}

#[derive(Debug, Clone)]
pub struct ConnRate {
    pub conns: u64,
    pub seconds: f64,
    pub hist: Histogram<u64>,
}

impl ConnRate {
    pub fn per_second(&self) -> f64 {
        self.conns as f64 / self.seconds
    }
}

/// New connections per second: each worker connects, sends 1 byte, waits for the echo,
/// closes; repeated for `dur`. Setup latency = connect to first echoed byte.
pub fn conn_rate(addr: SocketAddr, workers: usize, dur: Duration) -> std::io::Result<ConnRate> {
    conn_rate_watched(addr, workers, dur, &mut NoWatch)
}

pub fn conn_rate_watched(
    addr: SocketAddr,
    workers: usize,
    dur: Duration,
    watch: &mut dyn Watch,
) -> std::io::Result<ConnRate> {
    let deadline = Instant::now() + dur;
    let t0 = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut h =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
                let mut n = 0u64;
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = (|| -> std::io::Result<()> {
                        let mut s = connect(addr)?;
                        s.set_read_timeout(Some(Duration::from_secs(10)))?;
                        s.write_all(b"x")?;
                        let mut b = [0u8; 1];
                        s.read_exact(&mut b)?;
                        Ok(())
                    })();
                    match ok {
                        Ok(()) => {
                            let _ = h.record(t.elapsed().as_nanos() as u64);
                            n += 1;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => errors += 1,
                    }
                }
                (n, errors, h)
            })
        })
        .collect();
    watch.window_start();
    while Instant::now() < deadline {
        std::thread::sleep((deadline - Instant::now()).min(Duration::from_secs(1)));
        watch.progress(&format!(
            "{:.0}/{:.0} s  {} connections",
            t0.elapsed().as_secs_f64(),
            dur.as_secs_f64(),
            done.load(Ordering::Relaxed)
        ));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let mut conns = 0;
    let mut errors = 0;
    for h in handles {
        if let Ok((n, e, hh)) = h.join() {
            conns += n;
            errors += e;
            let _ = hist.add(hh);
        }
    }
    if conns == 0 && errors > 0 {
        return Err(std::io::Error::other(format!(
            "all {errors} connection attempts failed"
        )));
    }
    let seconds = t0.elapsed().as_secs_f64();
    watch.window_end();
    Ok(ConnRate {
        conns,
        seconds,
        hist,
    })
}

/// Resident memory of a process in KiB (from /proc/PID/status), or None.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Raises this process's open-file limit to at least `want` (the hard limit too, where
/// the process may: root, or CAP_SYS_RESOURCE). Returns the soft limit now in force.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur >= want {
            return lim.rlim_cur;
        }
        let both = libc::rlimit {
            rlim_cur: want,
            rlim_max: want.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &both) == 0 {
            return want;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Like [`open_idle`], with a progress line, and with connection errors that say which
/// connection failed and why (usually the open-file limit or the peer's backlog).
pub fn open_idle_watched(
    addr: SocketAddr,
    n: usize,
    watch: &mut dyn Watch,
) -> std::io::Result<Vec<TcpStream>> {
    let mut conns = Vec::with_capacity(n);
    let mut last = Instant::now();
    // Check each batch with a 1-byte echo so the chain behind it is fully set up, while
    // keeping a few hundred handshakes in flight (not one at a time, not all at once).
    const BATCH: usize = 256;
    let mut b = [0u8; 1];
    while conns.len() < n {
        let first = conns.len();
        for _ in first..(first + BATCH).min(n) {
            let s = connect(addr).map_err(|e| {
                std::io::Error::new(e.kind(), format!("connection {}: {e}", conns.len() + 1))
            })?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            conns.push(s);
        }
        for (i, s) in conns[first..].iter_mut().enumerate() {
            let at = first + i + 1;
            let failed = |e: std::io::Error| {
                std::io::Error::new(e.kind(), format!("connection {at}, 1-byte echo: {e}"))
            };
            s.write_all(b"i").map_err(failed)?;
            s.read_exact(&mut b).map_err(failed)?;
        }
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            watch.progress(&format!("{}/{n} connections open", conns.len()));
        }
    }
    Ok(conns)
}

/// Opens `n` connections through `addr`, checks each with a 1-byte echo, and keeps them
/// open (returned) so the caller can measure memory while they are idle.
pub fn open_idle(addr: SocketAddr, n: usize) -> std::io::Result<Vec<TcpStream>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(connect(addr)?);
    }
    for s in conns.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.write_all(b"i")?;
    }
    let mut b = [0u8; 1];
    for s in conns.iter_mut() {
        s.read_exact(&mut b)?;
    }
    Ok(conns)
}
