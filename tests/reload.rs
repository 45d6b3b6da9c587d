//! Live reload (frpc's `reload`, SIGHUP): a reload that adds, removes and changes
//! proxies and visitors while a long transfer through an unchanged visitor keeps
//! flowing, byte for byte, on the same connection.

mod common;
use common::*;
use stcp_engine::admin::engine::EngineAdmin;
use stcp_engine::admin::AdminBackend;
use stcp_engine::bench::{start_service, ServiceHandle, ServiceKind};
use stcp_engine::config::ClientConfig;
use stcp_engine::demo::{free_port, wait_for_listener};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn proxy(name: &str, local: SocketAddr, extra: &str) -> String {
    format!(
        "[[proxies]]\nname = \"{name}\"\ntype = \"stcp\"\nsecretKey = \"sk-{name}\"\nlocalIP = \"127.0.0.1\"\nlocalPort = {}\n{extra}\n",
        local.port()
    )
}

fn visitor(name: &str, server: &str, port: u16, extra: &str) -> String {
    format!(
        "[[visitors]]\nname = \"{name}\"\ntype = \"stcp\"\nserverName = \"{server}\"\nsecretKey = \"sk-{server}\"\nbindAddr = \"127.0.0.1\"\nbindPort = {port}\n{extra}\n"
    )
}

fn addr(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// Echoes a continuous pseudo-random stream through `addr` on ONE connection, checking
/// every byte, until stopped. Any error or mismatch is recorded, never retried: the
/// point is that a reload must not touch this connection.
struct LongTransfer {
    verified: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(u64, u64), String>>>,
}

impl LongTransfer {
    fn start(addr: SocketAddr) -> LongTransfer {
        let verified = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, st) = (verified.clone(), stop.clone());
        let thread = std::thread::spawn(move || -> Result<(u64, u64), String> {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut w = s.try_clone().unwrap();
            // What the writer sent in all, once it stopped. frp relays do not carry a
            // half-close (a FIN ends both directions), so the reader drains to this
            // count instead of waiting for EOF.
            let sent_total = Arc::new(AtomicU64::new(u64::MAX));
            let (st2, total2) = (st.clone(), sent_total.clone());
            // The writer sends 64 KiB blocks of a known stream; the reader regenerates it.
            let writer = std::thread::spawn(move || -> Result<(), String> {
                let mut sent = 0u64;
                let mut seed = 1u64;
                while !st2.load(Ordering::Relaxed) {
                    let block = payload(64 * 1024, seed);
                    let r = w.write_all(&block);
                    if let Err(e) = r {
                        total2.store(sent, Ordering::Relaxed);
                        return Err(format!("write after {sent} bytes: {e}"));
                    }
                    sent += block.len() as u64;
                    seed += 1;
                }
                total2.store(sent, Ordering::Relaxed);
                Ok(())
            });
            let mut r = s;
            let (mut got, mut seed, mut sum_sent, mut sum_got) = (0u64, 1u64, 0u64, 0u64);
            let mut buf = vec![0u8; 64 * 1024];
            while got < sent_total.load(Ordering::Relaxed) {
                let expect = payload(64 * 1024, seed);
                r.read_exact(&mut buf)
                    .map_err(|e| format!("read after {got} bytes: {e}"))?;
                sum_sent = sum_sent.wrapping_add(fnv(&expect));
                sum_got = sum_got.wrapping_add(fnv(&buf));
                if buf != expect {
                    return Err(format!("corrupt block {seed} after {got} bytes"));
                }
                got += buf.len() as u64;
                v.store(got, Ordering::Relaxed);
                seed += 1;
            }
            writer.join().unwrap()?;
            Ok((sum_sent, sum_got))
        });
        LongTransfer {
            verified,
            stop,
            thread: Some(thread),
        }
    }

    fn verified(&self) -> u64 {
        self.verified.load(Ordering::Relaxed)
    }

    fn wait_past(&self, bytes: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.verified() < bytes {
            assert!(
                Instant::now() < deadline,
                "the long transfer stalled at {} bytes (waiting for {bytes})",
                self.verified()
            );
            assert!(
                !self.thread.as_ref().unwrap().is_finished(),
                "the long transfer ended early at {} bytes",
                self.verified()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops writing, drains the echo and returns (bytes, checksum sent, checksum got).
    fn finish(mut self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let (sent, got) = self
            .thread
            .take()
            .unwrap()
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("the long transfer broke: {e}"));
        (self.verified(), sent, got)
    }
}

impl Drop for LongTransfer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Polls `f` until it holds (bounded).
fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn echoes(a: SocketAddr, seed: u64) -> bool {
    let data = payload(32 * 1024, seed);
    echo_through(a, &data, Duration::from_secs(5))
        .map(|g| g == data)
        .unwrap_or(false)
}

/// Connects, reads what the service sends first (the Source service sends zeros).
fn first_bytes(a: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

struct Rig {
    engine: Option<stcp_engine::engine::EngineHandle>,
    relay: Option<stcp_engine::relay::RelayHandle>,
    _services: Vec<ServiceHandle>,
    dir: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            e.stop();
        }
        if let Some(r) = self.relay.take() {
            r.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn reload_under_traffic(mux: bool) {
    let relay = start_relay(mux);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let source = start_service(ServiceKind::Source, "127.0.0.1:0".parse().unwrap()).unwrap();
    let [keep_v, change_v, drop_v, orphan_v, add_v] = [(); 5].map(|_| free_port().unwrap());
    let head = format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {}\nauth.token = \"{TOKEN}\"\ntransport.tcpMux = {mux}\n",
        relay.addr().port()
    );
    let before = [
        head.clone(),
        proxy("keep", echo.addr(), ""),
        proxy("change", echo.addr(), ""),
        proxy("drop", echo.addr(), ""),
        visitor("keep-v", "keep", keep_v, ""),
        visitor("change-v", "change", change_v, ""),
        visitor("drop-v", "drop", drop_v, ""),
        // Stays configured while its proxy goes away: shows frps got CloseProxy.
        visitor("orphan-v", "drop", orphan_v, ""),
    ]
    .concat();
    let after = [
        head,
        proxy("keep", echo.addr(), ""),
        // Changed: another local service (and compression on its work leg).
        proxy("change", source.addr(), "transport.useCompression = true"),
        proxy("add", echo.addr(), ""),
        visitor("keep-v", "keep", keep_v, ""),
        visitor(
            "change-v",
            "change",
            change_v,
            "transport.useCompression = true",
        ),
        visitor("orphan-v", "drop", orphan_v, ""),
        visitor("add-v", "add", add_v, ""),
    ]
    .concat();
    let dir = std::env::temp_dir().join(format!("stcp-reload-{mux}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("frpc.toml");
    std::fs::write(&file, &before).unwrap();
    let engine = start_engine(ClientConfig::load(&file).unwrap(), Some(2));
    let rig = Rig {
        engine: Some(engine),
        relay: Some(relay),
        _services: vec![echo, source],
        dir,
    };
    let engine = rig.engine.as_ref().unwrap();
    for p in [keep_v, change_v, drop_v, orphan_v] {
        wait_for_listener(addr(p)).unwrap();
    }
    eventually("every visitor to work", Duration::from_secs(10), || {
        [keep_v, change_v, drop_v, orphan_v]
            .iter()
            .all(|&p| echoes(addr(p), u64::from(p)))
    });
    let keep_total = engine
        .shared()
        .metrics
        .total(stcp_engine::metrics::Role::Visitor, 0);

    let long = LongTransfer::start(addr(keep_v));
    long.wait_past(4 << 20, Duration::from_secs(20));
    // A connection of the visitor that is about to change, open across the reload.
    let mut old_change = TcpStream::connect(addr(change_v)).unwrap();
    old_change
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let ping = payload(4096, 11);
    let mut back = vec![0u8; ping.len()];
    old_change.write_all(&ping).unwrap();
    old_change.read_exact(&mut back).unwrap(); // Relayed, not just in the backlog.

    std::fs::write(&file, &after).unwrap();
    let admin = EngineAdmin::new(engine.control(), Some(file.clone()), || {});
    let at_reload = long.verified();
    admin.reload().expect("reload applies");

    // Added: the new visitor listens at once and reaches the new proxy.
    wait_for_listener(addr(add_v)).unwrap();
    eventually("the added pair to work", Duration::from_secs(10), || {
        echoes(addr(add_v), 7)
    });
    // Removed: its listener is closed on every shard (SO_REUSEPORT: try many times).
    for _ in 0..20 {
        let refused = TcpStream::connect_timeout(&addr(drop_v), Duration::from_secs(2));
        assert!(
            matches!(&refused, Err(e) if e.kind() == ErrorKind::ConnectionRefused),
            "removed visitor drop-v still accepts: {refused:?}"
        );
    }
    // The removed proxy is gone from frps (CloseProxy): its remaining visitor is refused.
    eventually(
        "frps to refuse the removed proxy",
        Duration::from_secs(10),
        || {
            !echoes(addr(orphan_v), 9)
                && engine
                    .shared()
                    .last_error("orphan-v")
                    .is_some_and(|e| e.contains("[drop] doesn't exist"))
        },
    );
    // Changed: new connections reach the new local service (Source sends zeros).
    eventually(
        "the changed pair to use its new service",
        Duration::from_secs(10),
        || first_bytes(addr(change_v)).is_ok_and(|b| !b.is_empty() && b.iter().all(|&x| x == 0)),
    );
    // ...while the connection opened before the change is left alone.
    old_change.write_all(&ping).unwrap();
    old_change
        .read_exact(&mut back)
        .expect("a relay open across the reload was cut");
    assert_eq!(back, ping, "a relay open across the reload was disturbed");

    // The unchanged visitor's long transfer never stopped, then ends intact.
    long.wait_past(at_reload + (8 << 20), Duration::from_secs(20));
    let (bytes, sent_sum, got_sum) = long.finish();
    assert_eq!(sent_sum, got_sum, "checksum of the long transfer");

    // Status and metrics follow the reload; keep-v's counters were not reset.
    let status = stcp_engine::admin::engine_status(engine.shared());
    let names = |group: &str| -> Vec<String> {
        status
            .get(group)
            .map(|v| v.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(names("stcp"), ["add", "change", "keep"]);
    assert_eq!(
        names(stcp_engine::admin::status::VISITOR_GROUP),
        ["add-v", "change-v", "keep-v", "orphan-v"]
    );
    let metrics = engine.shared().metrics_text();
    assert!(
        metrics.contains("stcp_connections_total{role=\"visitor\",name=\"add-v\"}"),
        "{metrics}"
    );
    assert!(
        engine
            .shared()
            .metrics
            .total(stcp_engine::metrics::Role::Visitor, 0)
            > keep_total,
        "keep-v's counters"
    );
    println!(
        "reload (tcpMux={mux}): long transfer {bytes} bytes on one connection, {} of them after the reload, checksum {sent_sum:#x} matches",
        bytes - at_reload
    );
    drop(old_change);
    drop(rig);
}

#[test]
fn reload_adds_removes_and_changes_while_an_unchanged_visitor_streams() {
    for mux in [true, false] {
        reload_under_traffic(mux);
    }
}

#[test]
fn reload_with_a_broken_file_changes_nothing() {
    let mut c = chain(opts(true, false, false, 1));
    let dir = std::env::temp_dir().join(format!("stcp-reload-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("frpc.toml");
    std::fs::write(&file, "[[proxies]]\nname = \"x\"\ntype = \"tcp\"\n").unwrap();
    let engine = c.engine.as_ref().unwrap();
    let admin = EngineAdmin::new(engine.control(), Some(file.clone()), || {});
    let err = admin.reload().expect_err("a tcp proxy is refused");
    assert_eq!(err.code, 400);
    assert!(err.msg.contains("frpc.toml"), "{}", err.msg);
    assert!(echoes(c.visitor, 5), "the running pair still works");
    let _ = std::fs::remove_dir_all(&dir);
    c.engine.take().unwrap().stop();
}

/// The binary: SIGHUP re-reads the file and starts an added visitor.
#[test]
fn sighup_reloads_the_binary() {
    let relay = start_relay(true);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let (v1, v2) = (free_port().unwrap(), free_port().unwrap());
    let dir = std::env::temp_dir().join(format!("stcp-reload-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("frpc.toml");
    let head = format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {}\nauth.token = \"{TOKEN}\"\n{}",
        relay.addr().port(),
        proxy("echo", echo.addr(), "")
    );
    std::fs::write(&file, format!("{head}{}", visitor("v1", "echo", v1, ""))).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stcp-engine"))
        .args([
            "-c",
            file.to_str().unwrap(),
            "--cores",
            "1",
            "--drain-timeout",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let result = std::panic::catch_unwind(|| {
        wait_for_listener(addr(v1)).unwrap();
        eventually("v1 to work", Duration::from_secs(10), || {
            echoes(addr(v1), 1)
        });
        std::fs::write(
            &file,
            format!(
                "{head}{}{}",
                visitor("v1", "echo", v1, ""),
                visitor("v2", "echo", v2, "")
            ),
        )
        .unwrap();
        unsafe {
            libc::kill(child.id() as i32, libc::SIGHUP);
        }
        eventually("v2 to work after SIGHUP", Duration::from_secs(10), || {
            echoes(addr(v2), 2)
        });
        assert!(echoes(addr(v1), 3));
    });
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(p) = result {
        eprintln!("engine log:\n{log}");
        std::panic::resume_unwind(p);
    }
    assert!(log.contains("visitor added: [v2]"), "{log}");
    assert!(log.contains("SIGHUP: reload success"), "{log}");
}
