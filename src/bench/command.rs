//! `stcp-engine bench`: runs the load modes against an endpoint (any: our visitor, an
//! frpc visitor, a plain service) or against a chain it builds in-process, and reports
//! medians with what was measured and how.

use super::cpu::CpuMeter;
use super::echo::{start_service, ServiceKind};
use super::embedded::{Combo, Embedded};
use super::load::{self, Direction, Watch};
use super::report::{Machine, ModeResult, Report};
use super::split::SplitChain;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

const GIB: f64 = (1u64 << 30) as f64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// N streams for a duration (see --direction).
    Throughput,
    /// Request/response at a fixed offered rate, coordinated omission corrected.
    Latency,
    /// Connection setup rate and latency (connect, 1-byte echo, close).
    Connect,
    /// Open N idle connections, hold them, report resident memory per connection.
    Fanout,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Throughput => "throughput",
            Mode::Latency => "latency",
            Mode::Connect => "connect",
            Mode::Fanout => "fanout",
        }
    }
}

/// One of the per-chain switches: on, off, or both (one chain each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
    Both,
}

impl Switch {
    fn values(self) -> &'static [bool] {
        match self {
            Switch::On => &[true],
            Switch::Off => &[false],
            Switch::Both => &[false, true],
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure, in order (default: throughput latency connect).
    #[arg(value_enum)]
    pub modes: Vec<Mode>,
    /// Load this endpoint (HOST:PORT) instead of an in-process chain: an stcp-engine or
    /// frpc visitor port, or the service itself for a baseline. The service behind it
    /// must match the mode: echo (latency, connect, fanout, --direction echo), a source
    /// (download) or a sink (upload); `stcp-engine bench --serve KIND` runs one.
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// Build the chain in this process (embedded relay, engine with both roles, services):
    /// the default without --target.
    #[arg(long, conflicts_with = "target")]
    pub embedded: bool,
    /// Processes whose CPU time and RSS to report (repeat for several: the frpc visitor,
    /// frps, the frpc server...). In embedded mode this process is measured anyway.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Seconds per run of throughput, latency and connect.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Runs per mode; the report gives the median of each figure.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Throughput: concurrent streams.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// Throughput: echo round trip, download from a source, or upload to a sink.
    #[arg(long, value_enum, default_value = "echo")]
    pub direction: Direction,
    /// Latency: requests per second offered (one connection).
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Latency: request (and response) size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Connect: concurrent connecting threads.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Fanout: idle connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub conns: usize,
    /// Fanout: seconds to hold them open before sampling memory.
    #[arg(long, default_value_t = 2)]
    pub hold: u64,
    /// Embedded: tcpMux on the chain (on, off, both).
    #[arg(long, value_enum, default_value = "on")]
    pub mux: Switch,
    /// Embedded: transport.useEncryption on the proxy and visitor (on, off, both).
    #[arg(long, value_enum, default_value = "off")]
    pub encryption: Switch,
    /// Embedded: transport.useCompression on the proxy and visitor (on, off, both).
    #[arg(long, value_enum, default_value = "off")]
    pub compression: Switch,
    /// Embedded: every combination of tcpMux, encryption and compression (8 chains).
    #[arg(long)]
    pub all_combos: bool,
    /// Print the report as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Instead of measuring, run a service until SIGINT/SIGTERM (to put behind frpc).
    #[arg(long, value_enum, value_name = "KIND")]
    pub serve: Option<ServiceKind>,
    /// Where --serve listens.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub bind: SocketAddr,
}

/// Progress on stderr (rewritten in place on a terminal), plus the CPU meter that the
/// load functions start and stop at the edges of their measurement window.
struct Progress {
    prefix: String,
    tty: bool,
    cpu: CpuMeter,
}

impl Watch for Progress {
    fn window_start(&mut self) {
        self.cpu.begin();
    }
    fn window_end(&mut self) {
        self.cpu.end();
    }
    fn progress(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{} {line}", self.prefix);
        } else {
            let _ = writeln!(err, "{} {line}", self.prefix);
        }
        let _ = err.flush();
    }
}

impl Progress {
    fn done(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }
}

/// Where the load goes: an external endpoint, or the in-process chain.
enum Target<'a> {
    External(SocketAddr),
    Embedded(&'a Embedded, Combo),
}

impl Target<'_> {
    fn addr(&self, mode: Mode, dir: Direction) -> SocketAddr {
        match self {
            Target::External(a) => *a,
            Target::Embedded(e, _) if mode == Mode::Throughput => e.for_direction(dir),
            Target::Embedded(e, _) => e.echo(),
        }
    }

    fn label(&self) -> String {
        match self {
            Target::External(a) => a.to_string(),
            Target::Embedded(..) => "embedded".into(),
        }
    }
}

pub fn run(args: BenchArgs, cores: Option<usize>) -> Result<(), String> {
    if let Some(kind) = args.serve {
        return serve(kind, args.bind);
    }
    if args.runs == 0 || args.seconds == 0 {
        return Err("--runs and --seconds must be at least 1".into());
    }
    let modes = if args.modes.is_empty() {
        vec![Mode::Throughput, Mode::Latency, Mode::Connect]
    } else {
        args.modes.clone()
    };
    for &pid in &args.pids {
        if load::rss_kib(pid).is_none() {
            return Err(format!(
                "--pid {pid}: no such process (or /proc/{pid} unreadable)"
            ));
        }
    }
    let machine = Machine::probe();
    eprintln!("bench: {}", machine.line());
    let mut results = Vec::new();
    match &args.target {
        Some(t) if !args.embedded => {
            let addr = t
                .to_socket_addrs()
                .map_err(|e| format!("--target {t}: {e}"))?
                .next()
                .ok_or_else(|| format!("--target {t}: resolves to no address"))?;
            if modes.contains(&Mode::Fanout) {
                raise_for_fanout(args.conns, 1)?;
            }
            for &mode in &modes {
                results.push(run_mode(&args, mode, &Target::External(addr))?);
            }
        }
        _ => {
            let in_process: Vec<Mode> = modes
                .iter()
                .copied()
                .filter(|&m| m != Mode::Fanout)
                .collect();
            for combo in combos(&args) {
                if !in_process.is_empty() {
                    eprintln!("bench: starting embedded chain [{}]", combo.label());
                    let chain = Embedded::start(combo, cores)?;
                    for &mode in &in_process {
                        results.push(run_mode(&args, mode, &Target::Embedded(&chain, combo))?);
                    }
                }
                if modes.contains(&Mode::Fanout) {
                    // Every process of the split chain holds at most 2 fds per connection
                    // (1 with tcpMux); they inherit the limit raised here.
                    raise_for_fanout(args.conns, if combo.tcp_mux { 1 } else { 2 })?;
                    results.push(fanout_split(&args, combo, cores)?);
                }
            }
        }
    }
    let report = Report {
        machine,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        results,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        println!("machine: {}", report.machine.line());
        for r in &report.results {
            println!("{}", r.human());
        }
    }
    Ok(())
}

fn combos(args: &BenchArgs) -> Vec<Combo> {
    let (m, e, c) = if args.all_combos {
        (Switch::Both, Switch::Both, Switch::Both)
    } else {
        (args.mux, args.encryption, args.compression)
    };
    let mut out = Vec::new();
    for &tcp_mux in m.values() {
        for &encryption in e.values() {
            for &compression in c.values() {
                out.push(Combo {
                    tcp_mux,
                    encryption,
                    compression,
                });
            }
        }
    }
    out
}

fn raise_for_fanout(conns: usize, fds_per_conn: u64) -> Result<(), String> {
    let want = conns as u64 * fds_per_conn + 1024;
    let got = load::raise_fd_limit(want);
    if got < want {
        return Err(format!(
            "fanout of {conns} connections needs about {want} open files in this process, but the limit is {got} and could not be raised (run as root, or raise `ulimit -n`)"
        ));
    }
    Ok(())
}

fn serve(kind: ServiceKind, bind: SocketAddr) -> Result<(), String> {
    let signals = crate::signals::block_termination();
    let svc = start_service(kind, bind).map_err(|e| format!("--serve on {bind}: {e}"))?;
    eprintln!(
        "bench: {kind:?} service on {} (until SIGINT/SIGTERM)",
        svc.addr()
    );
    signals.wait();
    Ok(())
}

fn run_mode(args: &BenchArgs, mode: Mode, target: &Target) -> Result<ModeResult, String> {
    let combo = match target {
        Target::Embedded(_, c) => Some(*c),
        Target::External(_) => None,
    };
    let tag = combo
        .map(|c| format!(" [{}]", c.label()))
        .unwrap_or_default();
    let addr = target.addr(mode, args.direction);
    let embedded = combo.is_some();
    let dur = Duration::from_secs(args.seconds);
    let mut per_run = Vec::new();
    for run in 1..=args.runs {
        let mut watch = Progress {
            prefix: format!("bench {}{tag} run {run}/{}:", mode.name(), args.runs),
            tty: unsafe { libc::isatty(2) } == 1,
            cpu: CpuMeter::new(&args.pids),
        };
        let fail =
            |e: std::io::Error| format!("{} run {run}{tag} against {addr}: {e}", mode.name());
        let mut m = BTreeMap::new();
        match mode {
            Mode::Throughput => {
                let tp = load::throughput(addr, args.direction, args.streams, dur, &mut watch)
                    .map_err(fail)?;
                let gib = tp.bytes as f64 / GIB;
                m.insert("gbit_per_s".into(), tp.gbit_per_s());
                m.insert("mib_per_s".into(), tp.mib_per_s());
                m.insert("gib".into(), gib);
                m.insert("seconds".into(), tp.seconds);
                cpu_metrics(&mut m, &watch.cpu, embedded, Some(gib), None);
            }
            Mode::Latency => {
                let lat = load::echo_latency_watched(addr, args.rate, dur, args.size, &mut watch)
                    .map_err(fail)?;
                for (k, q) in [
                    ("p50_us", 0.5),
                    ("p90_us", 0.9),
                    ("p99_us", 0.99),
                    ("p999_us", 0.999),
                ] {
                    m.insert(k.into(), lat.us(q));
                }
                m.insert("max_us".into(), lat.hist.max() as f64 / 1000.0);
                m.insert("requests".into(), lat.requests as f64);
            }
            Mode::Connect => {
                let cr =
                    load::conn_rate_watched(addr, args.workers, dur, &mut watch).map_err(fail)?;
                m.insert("conns_per_s".into(), cr.per_second());
                m.insert("conns".into(), cr.conns as f64);
                for (k, q) in [
                    ("setup_p50_us", 0.5),
                    ("setup_p90_us", 0.9),
                    ("setup_p99_us", 0.99),
                ] {
                    m.insert(k.into(), cr.hist.value_at_quantile(q) as f64 / 1000.0);
                }
                cpu_metrics(&mut m, &watch.cpu, embedded, None, Some(cr.conns));
            }
            Mode::Fanout => {
                let measured: Vec<(String, u32)> =
                    args.pids.iter().map(|&p| (format!("pid{p}"), p)).collect();
                fanout(args, addr, &measured, &mut watch, &mut m).map_err(fail)?
            }
        }
        watch.done();
        per_run.push(m);
        if let Target::Embedded(chain, _) = target {
            if !chain.wait_idle(Duration::from_secs(30)) {
                eprintln!("bench: warning: relays still active 30 s after run {run}");
            }
        }
    }
    let cpus = match target {
        Target::Embedded(e, _) => Some(e.cpus.clone()),
        Target::External(_) => None,
    };
    Ok(ModeResult::from_runs(
        mode.name(),
        target.label(),
        combo,
        cpus,
        how(args, mode, embedded),
        per_run,
    ))
}

/// CPU seconds of the window, per GiB (throughput) or per 1000 connections (connect).
fn cpu_metrics(
    m: &mut BTreeMap<String, f64>,
    cpu: &CpuMeter,
    embedded: bool,
    gib: Option<f64>,
    conns: Option<u64>,
) {
    let Some(u) = &cpu.last else { return };
    let mut put = |name: &str, secs: f64| {
        m.insert(format!("{name}_cpu_s"), secs);
        m.insert(format!("{name}_cores"), secs / u.wall_s.max(1e-9));
        if let Some(g) = gib.filter(|&g| g > 0.0) {
            m.insert(format!("{name}_cpu_s_per_gib"), secs / g);
        }
        if let Some(c) = conns.filter(|&c| c > 0) {
            m.insert(format!("{name}_cpu_us_per_conn"), secs * 1e6 / c as f64);
        }
    };
    if embedded {
        for (g, secs) in &u.groups {
            put(g, *secs);
        }
    }
    if !u.pids.is_empty() {
        for (pid, secs) in &u.pids {
            put(&format!("pid{pid}"), *secs);
        }
        put("pids", u.pids_total());
    }
}

/// Fan-out against the embedded chain split into processes (see `split.rs`), a fresh
/// chain per run so that no run inherits memory an earlier one freed.
fn fanout_split(
    args: &BenchArgs,
    combo: Combo,
    cores: Option<usize>,
) -> Result<ModeResult, String> {
    let tag = format!(" [{}]", combo.label());
    let mut per_run = Vec::new();
    for run in 1..=args.runs {
        eprintln!("bench: starting split chain{tag} (relay, echo, server, visitor processes)");
        let chain = SplitChain::start(combo, cores)?;
        let mut watch = Progress {
            prefix: format!("bench fanout{tag} run {run}/{}:", args.runs),
            tty: unsafe { libc::isatty(2) } == 1,
            cpu: CpuMeter::new(&[]),
        };
        let mut measured: Vec<(String, u32)> = chain
            .pids()
            .into_iter()
            .map(|(role, pid)| (role.to_string(), pid))
            .collect();
        measured.extend(args.pids.iter().map(|&p| (format!("pid{p}"), p)));
        let mut m = BTreeMap::new();
        fanout(args, chain.visitor, &measured, &mut watch, &mut m)
            .map_err(|e| format!("fanout run {run}{tag} against {}: {e}", chain.visitor))?;
        watch.done();
        // Both engine roles together, as frpc's visitor + server processes.
        let role = |r: &str, k: &str| m.get(&format!("{r}_{k}")).copied().unwrap_or(0.0);
        let engine: Vec<(String, f64)> = ["rss_before_kib", "rss_after_kib", "kib_per_conn"]
            .iter()
            .map(|k| {
                (
                    format!("engine_{k}"),
                    role("visitor", k) + role("server", k),
                )
            })
            .collect();
        m.extend(engine);
        per_run.push(m);
    }
    Ok(ModeResult::from_runs(
        "fanout",
        "embedded (split into processes)".into(),
        Some(combo),
        None,
        how(args, Mode::Fanout, true),
        per_run,
    ))
}

fn fanout(
    args: &BenchArgs,
    addr: SocketAddr,
    measured: &[(String, u32)],
    watch: &mut Progress,
    m: &mut BTreeMap<String, f64>,
) -> std::io::Result<()> {
    let sample = |measured: &[(String, u32)]| -> Vec<u64> {
        measured
            .iter()
            .map(|(_, p)| load::rss_kib(*p).unwrap_or(0))
            .collect()
    };
    let before = sample(measured);
    let t0 = Instant::now();
    let conns = load::open_idle_watched(addr, args.conns, watch)?;
    let open_s = t0.elapsed().as_secs_f64();
    watch.progress(&format!(
        "{} connections open in {open_s:.1} s, holding {} s",
        conns.len(),
        args.hold
    ));
    std::thread::sleep(Duration::from_secs(args.hold));
    let after = sample(measured);
    let n = conns.len();
    drop(conns);
    m.insert("conns".into(), n as f64);
    m.insert("open_s".into(), open_s);
    let mut total = (0u64, 0u64);
    for (((name, _), b), a) in measured.iter().zip(&before).zip(&after) {
        m.insert(format!("{name}_rss_before_kib"), *b as f64);
        m.insert(format!("{name}_rss_after_kib"), *a as f64);
        m.insert(
            format!("{name}_kib_per_conn"),
            (*a as f64 - *b as f64) / n.max(1) as f64,
        );
        if name.starts_with("pid") {
            total = (total.0 + b, total.1 + a);
        }
    }
    if args.pids.len() > 1 {
        m.insert("pids_rss_before_kib".into(), total.0 as f64);
        m.insert("pids_rss_after_kib".into(), total.1 as f64);
        m.insert(
            "pids_kib_per_conn".into(),
            (total.1 as f64 - total.0 as f64) / n.max(1) as f64,
        );
    }
    Ok(())
}

/// What a mode's figures mean, in one sentence each.
fn how(args: &BenchArgs, mode: Mode, embedded: bool) -> String {
    let cpu = if embedded {
        format!(
            "CPU from /proc/self/task/*/schedstat by thread name: engine = shard-* + control threads (visitor and server roles together), relay = stcp-relay, service, loadgen; all share this process and its {} CPU(s)",
            crate::engine::available_cpus().len()
        )
    } else if args.pids.is_empty() {
        "no CPU figures (give --pid)".into()
    } else {
        "CPU of the --pid processes from /proc/PID/stat (utime+stime)".into()
    };
    match mode {
        Mode::Throughput => format!(
            "{} stream(s), {:?}, {} s per run, first 10 % skipped; bytes counted by the load generator at the far end of the path{}; {cpu}",
            args.streams,
            args.direction,
            args.seconds,
            if args.direction == Direction::Echo {
                " (echo: each counted byte crossed the chain twice)"
            } else {
                ""
            }
        ),
        Mode::Latency => format!(
            "{} B echo request/response on one connection at {}/s for {} s; latency from each request's scheduled send time (coordinated omission corrected), hdrhistogram",
            args.size, args.rate, args.seconds
        ),
        Mode::Connect => format!(
            "{} thread(s) connect, 1-byte echo, close, for {} s; setup latency = connect to echoed byte; {cpu}",
            args.workers, args.seconds
        ),
        Mode::Fanout => format!(
            "open {} connections (each checked with a 1-byte echo), hold {} s, VmRSS from /proc before and after{}",
            args.conns,
            args.hold,
            if embedded {
                "; embedded: relay, echo, server role and visitor role each run as a child process (fresh chain per run), engine = visitor + server"
            } else {
                "; runs after the first may reuse memory the target freed after the previous run"
            }
        ),
    }
}
