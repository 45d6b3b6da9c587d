//! Interop with real frp binaries. Runs only when FRPS_BIN / FRPC_BIN point at frps /
//! frpc v0.70 executables; prints a SKIP line otherwise.

mod common;
use common::*;
use stcp_engine::bench::{start_service, ServiceKind};
use stcp_engine::demo::{demo_config, free_port, wait_for_listener};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn wait_port(addr: SocketAddr) {
    for _ in 0..200 {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{addr} did not open");
}

fn start_frps(bin: &str, dir: &std::path::Path, tcp_mux: bool) -> (Proc, u16) {
    let port = free_port().unwrap();
    let cfg = write_config(
        dir,
        "frps.toml",
        &format!(
            "bindAddr = \"127.0.0.1\"\nbindPort = {port}\nauth.token = \"{TOKEN}\"\ntransport.tcpMux = {tcp_mux}\n"
        ),
    );
    let child = Command::new(bin)
        .arg("-c")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start frps");
    wait_port(format!("127.0.0.1:{port}").parse().unwrap());
    (Proc(child), port)
}

/// Both engine roles against a real frps, every combination of tcpMux/encryption/compression.
#[test]
fn engine_against_real_frps() {
    let Some(frps) = real_binary("FRPS_BIN", "engine_against_real_frps") else {
        return;
    };
    let dir = tempdir();
    for mux in [true, false] {
        for (enc, comp) in [(false, false), (true, false), (false, true), (true, true)] {
            let (_frps, port) = start_frps(&frps, &dir, mux);
            let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
            let vport = free_port().unwrap();
            let relay_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let cfg = demo_config(
                relay_addr,
                TOKEN,
                echo.addr(),
                vport,
                &opts(mux, enc, comp, 2),
            );
            let engine = start_engine(cfg, Some(2));
            let addr = format!("127.0.0.1:{vport}").parse().unwrap();
            wait_for_listener(addr).unwrap();
            let data = payload(8 << 20, 5);
            let got = echo_through(addr, &data, Duration::from_secs(60)).unwrap();
            assert!(
                got == data,
                "real frps mux={mux} enc={enc} comp={comp}: echo differs"
            );
            engine.stop();
        }
    }
}

/// Two real frpc processes (stcp server + stcp visitor) through the embedded relay.
#[test]
fn real_frpc_roles_through_embedded_relay() {
    let Some(frpc) = real_binary("FRPC_BIN", "real_frpc_roles_through_embedded_relay") else {
        return;
    };
    let dir = tempdir();
    for mux in [true, false] {
        for (enc, comp) in [(false, false), (true, true)] {
            let relay = start_relay(mux);
            let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
            let vport = free_port().unwrap();
            let common = format!(
                "serverAddr = \"127.0.0.1\"\nserverPort = {}\nauth.token = \"{TOKEN}\"\ntransport.tcpMux = {mux}\nloginFailExit = true\n",
                relay.addr().port()
            );
            let server = write_config(
                &dir,
                "server.toml",
                &format!(
                    "{common}user = \"alice\"\n[[proxies]]\nname = \"echo\"\ntype = \"stcp\"\nsecretKey = \"sk\"\nallowUsers = [\"*\"]\nlocalIP = \"127.0.0.1\"\nlocalPort = {}\ntransport.useEncryption = {enc}\ntransport.useCompression = {comp}\n",
                    echo.addr().port()
                ),
            );
            let visitor = write_config(
                &dir,
                "visitor.toml",
                &format!(
                    "{common}user = \"bob\"\n[[visitors]]\nname = \"v\"\ntype = \"stcp\"\nserverUser = \"alice\"\nserverName = \"echo\"\nsecretKey = \"sk\"\nbindAddr = \"127.0.0.1\"\nbindPort = {vport}\ntransport.useEncryption = {enc}\ntransport.useCompression = {comp}\n"
                ),
            );
            let _s = Proc(
                Command::new(&frpc)
                    .arg("-c")
                    .arg(&server)
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let _v = Proc(
                Command::new(&frpc)
                    .arg("-c")
                    .arg(&visitor)
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let addr: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
            wait_port(addr);
            let data = payload(4 << 20, 6);
            // frpc registers the proxy asynchronously: retry the first exchange briefly.
            let mut last = None;
            for _ in 0..50 {
                match echo_through(addr, &data, Duration::from_secs(30)) {
                    Ok(got) if got == data => {
                        last = None;
                        break;
                    }
                    other => last = Some(format!("{:?}", other.map(|g| g.len()))),
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            assert!(
                last.is_none(),
                "real frpc mux={mux} enc={enc} comp={comp}: {last:?}"
            );
        }
    }
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("stcp-interop-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The engine in one role and a real frpc in the other, through the embedded relay (or a
/// real frps when FRPS_BIN is set too).
#[test]
fn engine_mixed_with_real_frpc() {
    let Some(frpc) = real_binary("FRPC_BIN", "engine_mixed_with_real_frpc") else {
        return;
    };
    let dir = tempdir();
    let relay = start_relay(true);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let common = format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {}\nauth.token = \"{TOKEN}\"\n",
        relay.addr().port()
    );
    // Engine = server role (proxy "demo.echo"), frpc = visitor.
    let vport = free_port().unwrap();
    let mut cfg = demo_config(
        relay.addr(),
        TOKEN,
        echo.addr(),
        free_port().unwrap(),
        &opts(true, true, true, 1),
    );
    cfg.transport.tls.enable = true;
    cfg.visitors.clear();
    cfg.proxies[0].allow_users = vec!["*".into()];
    let engine = start_engine(cfg, Some(1));
    let visitor = write_config(
        &dir,
        "mixed-visitor.toml",
        &format!("{common}user = \"bob\"\n[[visitors]]\nname = \"v\"\ntype = \"stcp\"\nserverUser = \"demo\"\nserverName = \"echo\"\nsecretKey = \"demo-secret\"\nbindAddr = \"127.0.0.1\"\nbindPort = {vport}\ntransport.useEncryption = true\n"),
    );
    let _v = Proc(
        Command::new(&frpc)
            .arg("-c")
            .arg(&visitor)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
    wait_port(addr);
    let data = payload(1 << 20, 8);
    let got = echo_through(addr, &data, Duration::from_secs(30)).unwrap();
    assert!(got == data, "frpc visitor -> engine server: echo differs");
    engine.stop();

    // frpc = server role (proxy "alice.echo2"), engine = visitor.
    let server = write_config(
        &dir,
        "mixed-server.toml",
        &format!("{common}user = \"alice\"\n[[proxies]]\nname = \"echo2\"\ntype = \"stcp\"\nsecretKey = \"sk2\"\nallowUsers = [\"*\"]\nlocalIP = \"127.0.0.1\"\nlocalPort = {}\ntransport.useCompression = true\n", echo.addr().port()),
    );
    let _s = Proc(
        Command::new(&frpc)
            .arg("-c")
            .arg(&server)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let vport2 = free_port().unwrap();
    let mut cfg = demo_config(
        relay.addr(),
        TOKEN,
        echo.addr(),
        vport2,
        &opts(true, false, true, 1),
    );
    cfg.proxies.clear();
    cfg.visitors[0].server_user = "alice".into();
    cfg.visitors[0].server_name = "echo2".into();
    cfg.visitors[0].secret_key = "sk2".into();
    let engine = start_engine(cfg, Some(1));
    let addr2: SocketAddr = format!("127.0.0.1:{vport2}").parse().unwrap();
    wait_for_listener(addr2).unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if echo_through(addr2, &data, Duration::from_secs(10))
            .map(|g| g == data)
            .unwrap_or(false)
        {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ok, "engine visitor -> frpc server: no working echo");
    engine.stop();
}
