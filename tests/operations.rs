//! Operations: connection limits, graceful shutdown (in process and by signal), the
//! metrics endpoint.

mod common;
use common::*;
use stcp_engine::bench::{start_service, ServiceKind};
use stcp_engine::demo::{demo_config, free_port, wait_for_listener};
use stcp_engine::engine::state::EngineStats;
use stcp_engine::engine::EngineHandle;
use stcp_engine::metrics::{Role, ERROR_KINDS};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A connection through the tunnel, checked with one echo round trip.
fn open_echo(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    echo_check(&mut s, b"ping");
    s
}

fn echo_check(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

/// The connection ends (EOF or reset) without a byte.
fn assert_closed(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("connection was not closed: {other:?}"),
    }
}

fn assert_refused_without_data(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    let _ = s.write_all(b"let me in");
    assert_closed(&mut s);
}

struct Setup {
    engine: Option<EngineHandle>,
    visitor: SocketAddr,
    _echo: stcp_engine::bench::ServiceHandle,
    _relay: stcp_engine::relay::RelayHandle,
}

fn setup(tweak: impl FnOnce(&mut stcp_engine::config::ClientConfig)) -> Setup {
    let relay = start_relay(true);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let vport = free_port().unwrap();
    let mut cfg = demo_config(
        relay.addr(),
        TOKEN,
        echo.addr(),
        vport,
        &opts(true, true, false, 1),
    );
    tweak(&mut cfg);
    let engine = start_engine(cfg, Some(1));
    let visitor: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
    wait_for_listener(visitor).unwrap();
    let s = Setup {
        engine: Some(engine),
        visitor,
        _echo: echo,
        _relay: relay,
    };
    // wait_for_listener's probe connections are relayed too: wait until each one's
    // visitor and proxy handshakes are done (relayed or failed) and its relays ended.
    let shared = s.engine.as_ref().unwrap().shared().clone();
    let settled = |role| {
        let m = &shared.metrics;
        m.total(role, 0)
            + ERROR_KINDS
                .iter()
                .map(|k| m.errors(role, 0, k))
                .sum::<u64>()
    };
    wait_until("probe connections to end", Duration::from_secs(10), || {
        // wait_for_listener returns on its first successful connect: one probe.
        let accepted = EngineStats::get(&shared.stats.visitor_conns);
        accepted >= 1
            && settled(Role::Visitor) == accepted
            && settled(Role::Proxy) >= s.metrics().total(Role::Visitor, 0)
            && s.metrics().active(Role::Visitor, 0) == 0
            && s.metrics().active(Role::Proxy, 0) == 0
    });
    s
}

impl Setup {
    fn metrics(&self) -> &stcp_engine::metrics::Metrics {
        &self.engine.as_ref().unwrap().shared().metrics
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            e.stop();
        }
    }
}

#[test]
fn visitor_connection_limit_refuses_extra_users_and_frees_slots() {
    let s = setup(|cfg| cfg.visitors[0].max_connections = Some(2));
    let a = open_echo(s.visitor);
    let _b = open_echo(s.visitor);
    assert_refused_without_data(s.visitor);
    wait_until("the refusal to be counted", Duration::from_secs(10), || {
        s.metrics().errors(Role::Visitor, 0, "limit") >= 1
    });
    drop(a);
    wait_until("a slot to be freed", Duration::from_secs(10), || {
        s.metrics().active(Role::Visitor, 0) == 1
    });
    let _c = open_echo(s.visitor);
}

#[test]
fn proxy_connection_limit_closes_extra_work_connections() {
    let s = setup(|cfg| cfg.proxies[0].max_connections = Some(1));
    let a = open_echo(s.visitor);
    assert_refused_without_data(s.visitor);
    wait_until("the refusal to be counted", Duration::from_secs(10), || {
        s.metrics().errors(Role::Proxy, 0, "limit") >= 1
    });
    drop(a);
    wait_until("a slot to be freed", Duration::from_secs(10), || {
        s.metrics().active(Role::Proxy, 0) == 0
    });
    let _b = open_echo(s.visitor);
}

#[test]
fn graceful_stop_closes_listeners_and_drains_open_connections() {
    let mut s = setup(|_| {});
    let mut held = open_echo(s.visitor);
    let engine = s.engine.take().unwrap();
    let stopper = std::thread::spawn(move || engine.stop_draining(Duration::from_secs(30)));
    wait_until("the listener to close", Duration::from_secs(10), || {
        TcpStream::connect(s.visitor).is_err()
    });
    // The open connection still works while draining.
    echo_check(&mut held, &payload(100_000, 1));
    drop(held);
    let cut = stopper.join().unwrap();
    assert_eq!(cut, 0, "connections were cut although they had ended");
}

#[test]
fn drain_deadline_cuts_connections_still_open() {
    let mut s = setup(|_| {});
    let mut held = open_echo(s.visitor);
    let cut = s
        .engine
        .take()
        .unwrap()
        .stop_draining(Duration::from_millis(300));
    assert!(cut >= 1, "the held connection was not reported as cut");
    assert_closed(&mut held);
}

#[test]
fn metrics_endpoint_counts_connections_bytes_and_handshakes() {
    let s = setup(|_| {});
    let shared = s.engine.as_ref().unwrap().shared().clone();
    let server = stcp_engine::metrics::http::serve("127.0.0.1:0".parse().unwrap(), move || {
        shared.metrics_text()
    })
    .unwrap();
    let data = payload(10_000, 2);
    assert_eq!(
        echo_through(s.visitor, &data, Duration::from_secs(10)).unwrap(),
        data
    );
    wait_until("the relays to end", Duration::from_secs(10), || {
        s.metrics().active(Role::Visitor, 0) == 0 && s.metrics().active(Role::Proxy, 0) == 0
    });
    let text = http_get(server.addr(), "/metrics");
    let value = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing in:\n{text}"))
    };
    assert!(value("stcp_connections_total{role=\"visitor\",name=\"echo-visitor\"}") >= 1);
    assert!(value("stcp_connections_total{role=\"proxy\",name=\"echo\"}") >= 1);
    assert!(
        value("stcp_bytes_total{role=\"visitor\",name=\"echo-visitor\",direction=\"to_server\"}")
            >= data.len() as u64
    );
    assert!(
        value("stcp_bytes_total{role=\"proxy\",name=\"echo\",direction=\"from_server\"}")
            >= data.len() as u64
    );
    assert!(value("stcp_handshake_seconds_count{role=\"visitor\",name=\"echo-visitor\"}") >= 1);
    assert_eq!(value("stcp_frps_logged_in"), 1);
    assert!(value("stcp_frps_logins_total") >= 1);
    assert_eq!(value("stcp_shard_connections_active{shard=\"0\"}"), 0);
}

pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    out
}

// ---------------------------------------------------------------------------------------
// The binary, stopped by signals

/// A running `stcp-engine` process with its log in a file; killed on drop.
struct EngineProcess {
    child: Child,
    log: PathBuf,
}

impl EngineProcess {
    fn start(config: &Path, args: &[&str]) -> EngineProcess {
        let log = config.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_stcp-engine"))
            .arg("-c")
            .arg(config)
            .args(["--cores", "1"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("stcp-engine starts");
        EngineProcess { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str) {
        wait_until(needle, Duration::from_secs(15), || {
            self.log().contains(needle)
        });
    }

    fn signal(&self, sig: libc::c_int) {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                t.elapsed() < within,
                "stcp-engine did not exit within {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory for one test, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("stcp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Relay + echo in this process, and a frpc.toml for the binary (mode 0600).
struct BinarySetup {
    _relay: stcp_engine::relay::RelayHandle,
    _echo: stcp_engine::bench::ServiceHandle,
    visitor: SocketAddr,
    config: PathBuf,
    _dir: Scratch,
}

fn binary_setup(name: &str) -> BinarySetup {
    use std::os::unix::fs::PermissionsExt;
    let relay = start_relay(true);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let vport = free_port().unwrap();
    let dir = Scratch::new(name);
    let config = dir.0.join("frpc.toml");
    std::fs::write(
        &config,
        format!(
            r#"serverAddr = "127.0.0.1"
serverPort = {}
user = "demo"
auth.token = "{TOKEN}"
transport.tls.enable = false
log.level = "debug"

[[proxies]]
name = "echo"
type = "stcp"
secretKey = "s3cret"
localIP = "127.0.0.1"
localPort = {}

[[visitors]]
name = "echo-visitor"
type = "stcp"
serverName = "echo"
secretKey = "s3cret"
bindAddr = "127.0.0.1"
bindPort = {vport}
"#,
            relay.addr().port(),
            echo.addr().port()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    BinarySetup {
        _relay: relay,
        _echo: echo,
        visitor: format!("127.0.0.1:{vport}").parse().unwrap(),
        config,
        _dir: dir,
    }
}

#[test]
fn sigterm_drains_open_connections_then_exits_zero() {
    let b = binary_setup("sigterm");
    let maddr: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let metrics = maddr.to_string();
    let mut p = EngineProcess::start(
        &b.config,
        &["--drain-timeout", "30", "--metrics-addr", &metrics],
    );
    p.wait_log("[echo] start proxy success");
    wait_for_listener(b.visitor).unwrap();
    let mut held = open_echo(b.visitor);
    wait_until(
        "metrics to show the open connection",
        Duration::from_secs(10),
        || {
            http_get(maddr, "/metrics")
                .contains("stcp_connections_active{role=\"visitor\",name=\"echo-visitor\"} 1\n")
        },
    );
    p.signal(libc::SIGTERM);
    p.wait_log("stopping gracefully");
    wait_until("the listener to close", Duration::from_secs(10), || {
        TcpStream::connect(b.visitor).is_err()
    });
    echo_check(&mut held, &payload(50_000, 3));
    drop(held);
    let status = p.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "log:\n{}", p.log());
    let log = p.log();
    assert!(log.contains("received SIGTERM"), "{log}");
    assert!(log.contains("all connections drained"), "{log}");
}

#[test]
fn second_signal_exits_at_once() {
    let b = binary_setup("sigtwice");
    let mut p = EngineProcess::start(&b.config, &["--drain-timeout", "120"]);
    p.wait_log("[echo] start proxy success");
    wait_for_listener(b.visitor).unwrap();
    let _held = open_echo(b.visitor);
    p.signal(libc::SIGINT);
    p.wait_log("stopping gracefully");
    p.signal(libc::SIGINT);
    // Well inside the 120 s drain: the second signal did not wait for the connection.
    let status = p.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "log:\n{}", p.log());
    assert!(p.log().contains("received SIGINT again, exiting now"));
}
