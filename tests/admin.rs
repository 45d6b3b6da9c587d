//! frpc's admin API on a running engine: auth, `/api/status` in frpc's JSON shape,
//! `/api/reload` re-reading the file, `/api/stop`, `/healthz`, and the
//! `stcp-engine status|reload|stop -c FILE` commands that call it.

mod common;
use common::*;
use stcp_engine::admin::engine::EngineAdmin;
use stcp_engine::admin::{client, AdminServer, StatusResp};
use stcp_engine::bench::{start_service, ServiceKind};
use stcp_engine::config::ClientConfig;
use stcp_engine::demo::{free_port, wait_for_listener};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "s3cret";

fn frpc_toml(
    relay: SocketAddr,
    echo: SocketAddr,
    vport: u16,
    admin_port: u16,
    extra: &str,
) -> String {
    format!(
        r#"serverAddr = "127.0.0.1"
serverPort = {relay_port}
user = "demo"
auth.token = "{TOKEN}"
transport.tls.enable = false
webServer.addr = "127.0.0.1"
webServer.port = {admin_port}
webServer.user = "{ADMIN_USER}"
webServer.password = "{ADMIN_PASSWORD}"

[[proxies]]
name = "echo"
type = "stcp"
secretKey = "sk"
localIP = "127.0.0.1"
localPort = {echo_port}

[[visitors]]
name = "echo-visitor"
type = "stcp"
serverName = "echo"
secretKey = "sk"
bindAddr = "127.0.0.1"
bindPort = {vport}
{extra}"#,
        relay_port = relay.port(),
        echo_port = echo.port(),
    )
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stcp-admin-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A raw request; returns (status code, head, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n");
    if let Some((u, p)) = auth {
        let token = base64(format!("{u}:{p}").as_bytes());
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole response");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, head.to_string(), body.to_string())
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for g in bytes.chunks(3) {
        let b = [g[0], *g.get(1).unwrap_or(&0), *g.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= g.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

struct Setup {
    _relay: stcp_engine::relay::RelayHandle,
    _echo: stcp_engine::bench::ServiceHandle,
    engine: Option<stcp_engine::engine::EngineHandle>,
    server: Option<AdminServer>,
    config: PathBuf,
    toml: String,
    stopped: Arc<AtomicBool>,
    dir: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.server.take();
        if let Some(e) = self.engine.take() {
            e.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup(tag: &str) -> Setup {
    let relay = start_relay(true);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let vport = free_port().unwrap();
    let admin_port = free_port().unwrap();
    let dir = tempdir(tag);
    let config = dir.join("frpc.toml");
    let toml = frpc_toml(relay.addr(), echo.addr(), vport, admin_port, "");
    std::fs::write(&config, &toml).unwrap();
    let cfg = ClientConfig::load(&config).unwrap();
    let web = cfg.web_server.clone().expect("webServer.port is set");
    let engine = start_engine(cfg, Some(1));
    wait_for_listener(format!("127.0.0.1:{vport}").parse().unwrap()).unwrap();
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = stopped.clone();
    let admin = EngineAdmin::new(engine.control(), Some(config.clone()), move || {
        flag.store(true, Ordering::SeqCst)
    });
    let server = AdminServer::start(&web, Arc::new(admin)).expect("admin server starts");
    Setup {
        _relay: relay,
        _echo: echo,
        engine: Some(engine),
        server: Some(server),
        config,
        toml,
        stopped,
        dir,
    }
}

impl Setup {
    fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().addr()
    }
}

const AUTH: Option<(&str, &str)> = Some((ADMIN_USER, ADMIN_PASSWORD));

#[test]
fn endpoints_need_auth_except_healthz() {
    let s = setup("auth");
    let (code, _, body) = http(s.addr(), "GET", "/healthz", None);
    assert_eq!((code, body.as_str()), (200, ""));
    for path in ["/api/status", "/api/reload"] {
        let (code, head, _) = http(s.addr(), "GET", path, None);
        assert_eq!(code, 401, "{path} without credentials");
        assert!(
            head.contains("WWW-Authenticate: Basic realm=\"Restricted\""),
            "{head}"
        );
        let (code, _, _) = http(s.addr(), "GET", path, Some((ADMIN_USER, "wrong")));
        assert_eq!(code, 401, "{path} with a wrong password");
        let (code, _, _) = http(s.addr(), "GET", path, Some(("other", ADMIN_PASSWORD)));
        assert_eq!(code, 401, "{path} with a wrong user");
    }
    let (code, _, _) = http(s.addr(), "POST", "/api/status", AUTH);
    assert_eq!(code, 405);
    let (code, _, body) = http(s.addr(), "GET", "/nope", AUTH);
    assert_eq!((code, body.as_str()), (404, "404 page not found\n"));
    assert!(!s.stopped.load(Ordering::SeqCst));
    let (code, _, _) = http(s.addr(), "POST", "/api/stop", None);
    assert_eq!(code, 401);
    assert!(!s.stopped.load(Ordering::SeqCst), "stop needs auth");
}

#[test]
fn status_in_frpc_shape_and_as_frpc_prints_it() {
    let s = setup("status");
    let (code, head, body) = http(s.addr(), "GET", "/api/status", AUTH);
    assert_eq!(code, 200);
    assert!(head.contains("Content-Type: application/json"), "{head}");
    let resp: StatusResp = serde_json::from_str(&body).unwrap();
    let proxies = &resp["stcp"];
    assert_eq!(proxies.len(), 1);
    let p = &proxies[0];
    assert_eq!(
        (p.name.as_str(), p.kind.as_str(), p.status.as_str()),
        ("echo", "stcp", "running")
    );
    assert_eq!(p.err, "");
    assert!(p.local_addr.starts_with("127.0.0.1:"), "{}", p.local_addr);
    let v = &resp["visitor"][0];
    assert_eq!(
        (v.name.as_str(), v.status.as_str(), v.remote_addr.as_str()),
        ("echo-visitor", "running", "demo.echo")
    );
    // Every frpc key is present, even when empty (frpc has no omitempty on them).
    for key in [
        "\"name\"",
        "\"type\"",
        "\"status\"",
        "\"err\"",
        "\"local_addr\"",
        "\"plugin\"",
        "\"remote_addr\"",
    ] {
        assert!(body.contains(key), "{key} missing from {body}");
    }
    let cfg = ClientConfig::load(&s.config).unwrap();
    let table = client::run("status", &cfg).unwrap();
    assert!(
        table.starts_with("Proxy Status...\n\nSTCP\nName  "),
        "{table}"
    );
    assert!(
        table.contains("echo  ") && table.contains("running"),
        "{table}"
    );
}

#[test]
fn reload_rereads_the_file_and_stop_stops() {
    let s = setup("reload");
    let cfg = ClientConfig::load(&s.config).unwrap();
    assert_eq!(client::run("reload", &cfg).unwrap(), "reload success");

    // A broken file is refused with the config error, and nothing changes.
    std::fs::write(&s.config, "serverPort = \"x\"\n").unwrap();
    let (code, _, body) = http(s.addr(), "GET", "/api/reload", AUTH);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("\"Code\":400") && body.contains("serverPort"),
        "{body}"
    );
    assert_eq!(
        client::run("reload", &cfg).unwrap_err(),
        "api status code [400]"
    );

    // An added proxy is applied live and shows in the status; removing it again too.
    // (tests/reload.rs covers add/remove/change with traffic flowing.)
    let added = format!(
        "{}\n[[proxies]]\nname = \"more\"\ntype = \"stcp\"\nsecretKey = \"x\"\nlocalPort = 9\n",
        s.toml
    );
    std::fs::write(&s.config, added).unwrap();
    let (code, _, body) = http(s.addr(), "GET", "/api/reload", AUTH);
    assert_eq!(code, 200, "{body}");
    let (_, _, status) = http(s.addr(), "GET", "/api/status", AUTH);
    assert!(status.contains("\"name\":\"more\""), "{status}");
    std::fs::write(&s.config, &s.toml).unwrap();
    assert_eq!(client::run("reload", &cfg).unwrap(), "reload success");
    let (_, _, status) = http(s.addr(), "GET", "/api/status", AUTH);
    assert!(!status.contains("\"name\":\"more\""), "{status}");

    assert_eq!(client::run("stop", &cfg).unwrap(), "stop success");
    assert!(s.stopped.load(Ordering::SeqCst));
}

#[test]
fn commands_need_a_web_server_port_and_report_connection_errors() {
    let mut cfg = ClientConfig::default();
    assert_eq!(
        client::run("status", &cfg).unwrap_err(),
        "web server port should be set if you want to use this feature"
    );
    let port = free_port().unwrap();
    cfg.web_server = Some(stcp_engine::config::WebServerConfig {
        port,
        ..Default::default()
    });
    let err = client::run("reload", &cfg).unwrap_err();
    assert!(
        err.starts_with(&format!("Get \"http://127.0.0.1:{port}/api/reload\": ")),
        "{err}"
    );
}

/// The real binary: `stcp-engine status -c FILE` prints frpc's table.
#[test]
fn binary_status_command() {
    let s = setup("bin");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stcp-engine"))
        .arg("status")
        .arg("-c")
        .arg(Path::new(&s.config))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("Proxy Status...\n\nSTCP\n"), "{stdout}");
    assert!(stdout.contains("VISITOR\n"), "{stdout}");
}
