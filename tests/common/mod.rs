//! Helpers for end-to-end tests: a whole chain (embedded relay, echo service, engine
//! with one stcp proxy and one stcp visitor) on loopback, torn down on drop.
#![allow(dead_code)]

use stcp_engine::bench::{start_service, ServiceHandle, ServiceKind};
use stcp_engine::demo::{demo_config, free_port, wait_for_listener, DemoOptions};
use stcp_engine::engine::EngineHandle;
use stcp_engine::relay::{self, RelayConfig, RelayHandle};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const TOKEN: &str = "test-token";

pub struct Chain {
    pub engine: Option<EngineHandle>,
    pub echo: ServiceHandle,
    pub relay: Option<RelayHandle>,
    pub visitor: SocketAddr,
}

impl Drop for Chain {
    fn drop(&mut self) {
        // Engine first, so it does not spend the teardown reconnecting.
        if let Some(e) = self.engine.take() {
            e.stop();
        }
        if let Some(r) = self.relay.take() {
            r.stop();
        }
    }
}

pub fn opts(tcp_mux: bool, encryption: bool, compression: bool, cores: usize) -> DemoOptions {
    DemoOptions {
        cores: Some(cores),
        seconds: 1,
        tcp_mux,
        encryption,
        compression,
    }
}

/// Logs to stderr when STCP_TEST_LOG names a level (debug, info, ...).
pub fn test_logs() {
    if let Ok(level) = std::env::var("STCP_TEST_LOG") {
        if let Some(l) = stcp_engine::logging::parse_level(&level) {
            let _ = stcp_engine::logging::init(l, "console");
        }
    }
}

/// Starts an engine and waits until frps answered all its proxies.
pub fn start_engine(cfg: stcp_engine::config::ClientConfig, cores: Option<usize>) -> EngineHandle {
    test_logs();
    let engine = stcp_engine::engine::start(cfg, cores).expect("engine starts and logs in");
    assert!(
        engine.wait_proxies_answered(Duration::from_secs(10)),
        "frps did not answer NewProxy within 10 s"
    );
    engine
}

pub fn start_relay(tcp_mux: bool) -> RelayHandle {
    relay::start(
        RelayConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            token: TOKEN.into(),
            ..RelayConfig::default().with_tcp_mux(tcp_mux)
        },
        None,
    )
    .expect("relay starts")
}

pub fn chain(o: DemoOptions) -> Chain {
    let relay = start_relay(o.tcp_mux);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).expect("echo");
    let vport = free_port().unwrap();
    let cfg = demo_config(relay.addr(), TOKEN, echo.addr(), vport, &o);
    let engine = start_engine(cfg, o.cores);
    let visitor: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
    wait_for_listener(visitor).expect("visitor listener");
    Chain {
        engine: Some(engine),
        echo,
        relay: Some(relay),
        visitor,
    }
}

/// Deterministic pseudo-random payload (xorshift), distinct per seed.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `data` through `addr` (an echo behind the tunnel) while reading the echo back
/// concurrently; returns what came back.
pub fn echo_through(addr: SocketAddr, data: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut w = s.try_clone()?;
    let owned = data.to_vec();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        for chunk in owned.chunks(64 * 1024) {
            w.write_all(chunk)?;
        }
        Ok(())
    });
    let mut r = s;
    let mut got = vec![0u8; data.len()];
    r.read_exact(&mut got)?;
    writer.join().expect("writer thread")?;
    Ok(got)
}

/// A checksum that is cheap to compare in assertion messages.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// `Some(path)` if the environment names a real binary; prints a skip line otherwise.
pub fn real_binary(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(p) if std::path::Path::new(&p).is_file() => Some(p),
        _ => {
            println!("SKIP {test}: set {var} to a real binary to run this interop test");
            None
        }
    }
}

/// Raises RLIMIT_NOFILE for tests that open many sockets.
pub fn raise_fd_limit(want: u64) {
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
