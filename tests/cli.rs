//! The binary as an operator runs it: `stcp-engine -c frpc.toml` and `stcp-engine stcp`
//! (frpc's flags) against the embedded relay, frpc's log lines, and SIGTERM.

mod common;
use common::*;
use stcp_engine::bench::{start_service, ServiceKind};
use stcp_engine::demo::{free_port, wait_for_listener};
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Option<Child>);
impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(args: &[&str]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_stcp-engine"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stcp-engine");
    Proc(Some(child))
}

/// Sends SIGTERM and returns (exit code, stderr) once the process exits (10 s at most).
fn terminate(mut p: Proc) -> (Option<i32>, String) {
    let mut child = p.0.take().unwrap();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("stcp-engine did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

#[test]
fn config_file_run_logs_frpc_lines_and_exits_cleanly_on_sigterm() {
    let relay = start_relay(true);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let vport = free_port().unwrap();
    let dir = std::env::temp_dir().join(format!("stcp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("frpc.toml");
    std::fs::write(
        &cfg,
        format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {}\nuser = \"alice\"\nauth.token = \"{TOKEN}\"\n\
             [[proxies]]\nname = \"echo\"\ntype = \"stcp\"\nsecretKey = \"sk\"\nlocalPort = {}\n\
             [[visitors]]\nname = \"echo-visitor\"\ntype = \"stcp\"\nserverName = \"echo\"\nsecretKey = \"sk\"\nbindPort = {vport}\n",
            relay.addr().port(),
            echo.addr().port()
        ),
    )
    .unwrap();
    let p = spawn(&[
        "-c",
        cfg.to_str().unwrap(),
        "--cores",
        "1",
        "--drain-timeout",
        "1",
    ]);
    let addr: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
    wait_for_listener(addr).unwrap();
    // The proxy registers asynchronously after login: retry the first exchange briefly.
    let data = payload(256 * 1024, 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if echo_through(addr, &data, Duration::from_secs(5))
            .map(|g| g == data)
            .unwrap_or(false)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no working echo through the binary"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, log) = terminate(p);
    assert_eq!(code, Some(0), "exit code after SIGTERM; log:\n{log}");
    assert!(
        log.contains("login to server success, get run id ["),
        "{log}"
    );
    assert!(log.contains("[echo] start proxy success"), "{log}");
    assert!(
        log.contains("[echo-visitor] start visitor success"),
        "{log}"
    );
    assert!(
        !log.contains(TOKEN),
        "the token must never be logged:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stcp_subcommand_uses_frpc_flags() {
    // frpc's flags have no tcpMux switch (it stays on), as with `frpc stcp`.
    let relay = start_relay(true);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let port = relay.addr().port().to_string();
    let lport = echo.addr().port().to_string();
    let vport = free_port().unwrap();
    let vport_s = vport.to_string();
    let common = [
        "-s",
        "127.0.0.1",
        "-P",
        &port,
        "-t",
        TOKEN,
        "--tls_enable",
        "false",
    ];
    let mut server_args = vec!["stcp"];
    server_args.extend_from_slice(&common);
    server_args.extend_from_slice(&[
        "-u",
        "alice",
        "-n",
        "svc",
        "--sk",
        "k1",
        "-l",
        &lport,
        "--allow_users",
        "bob",
        "--ue",
        "--cores",
        "1",
    ]);
    let _server = spawn(&server_args);
    let mut visitor_args = vec!["stcp", "visitor"];
    visitor_args.extend_from_slice(&common);
    visitor_args.extend_from_slice(&[
        "-u",
        "bob",
        "-n",
        "v",
        "--server_name",
        "svc",
        "--server-user",
        "alice",
        "--sk",
        "k1",
        "--bind_port",
        &vport_s,
        "--ue",
        "--cores",
        "1",
    ]);
    let visitor = spawn(&visitor_args);
    let addr: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
    wait_for_listener(addr).unwrap();
    let data = payload(64 * 1024, 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if echo_through(addr, &data, Duration::from_secs(5))
            .map(|g| g == data)
            .unwrap_or(false)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no working echo through `stcp-engine stcp` processes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _) = terminate(visitor);
    assert_eq!(code, Some(0));
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("stcp-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("frpc.toml");
    std::fs::write(
        &cfg,
        "serverPort = 7000\n\n[[proxies]]\nname = \"web\"\ntype = \"tcp\"\nlocalPort = 80\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stcp-engine"))
        .args(["verify", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("frpc.toml:5"), "{err}");
    assert!(err.contains("proxies[0].type"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
