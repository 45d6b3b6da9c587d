//! Security: TLS to frps verified against a CA, secrets kept out of logs and metrics,
//! config files readable by others flagged.

mod common;
use common::*;
use stcp_engine::bench::{start_service, ServiceKind};
use stcp_engine::demo::{demo_config, free_port, wait_for_listener};
use stcp_engine::relay::{self, RelayConfig, RelayTls};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("stcp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn new_ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    let key = rcgen::KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

/// Starts an engine (loginFailExit on) against `relay` over TLS, trusting `ca_file`.
fn tls_engine(
    relay: SocketAddr,
    echo: SocketAddr,
    ca_file: &str,
    server_name: &str,
) -> Result<(stcp_engine::engine::EngineHandle, SocketAddr), String> {
    let vport = free_port().unwrap();
    let mut cfg = demo_config(relay, TOKEN, echo, vport, &opts(true, false, false, 1));
    cfg.transport.tls.enable = true;
    cfg.transport.tls.trusted_ca_file = ca_file.into();
    cfg.transport.tls.server_name = server_name.into();
    cfg.login_fail_exit = true;
    let engine = stcp_engine::engine::start(cfg, Some(1)).map_err(|e| e.to_string())?;
    Ok((engine, format!("127.0.0.1:{vport}").parse().unwrap()))
}

#[test]
fn tls_with_a_trusted_ca_accepts_the_right_server_and_rejects_others() {
    let dir = Scratch::new("tls-ca");
    let (ca, ca_key) = new_ca("stcp test CA");
    let (other_ca, _) = new_ca("some other CA");
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let ca_file = dir.write("ca.pem", &ca.pem());
    let other_ca_file = dir.write("other-ca.pem", &other_ca.pem());
    let cert_file = dir.write("leaf.pem", &leaf.pem());
    let key_file = dir.write("leaf.key", &leaf_key.serialize_pem());

    let relay = relay::start(
        RelayConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            token: TOKEN.into(),
            tls: RelayTls::Files(cert_file, key_file),
            tls_force: true,
            ..RelayConfig::default()
        },
        None,
    )
    .unwrap();
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();

    // The right CA and name: verified, logged in, relaying.
    let (engine, visitor) = tls_engine(relay.addr(), echo.addr(), &ca_file, "localhost")
        .expect("TLS login with the right CA");
    assert!(engine.wait_proxies_answered(Duration::from_secs(10)));
    wait_for_listener(visitor).unwrap();
    let got = echo_through(visitor, b"over verified TLS", Duration::from_secs(10)).unwrap();
    assert_eq!(got, b"over verified TLS");
    engine.stop();

    // A certificate from a CA we do not trust: rejected.
    let err = tls_engine(relay.addr(), echo.addr(), &other_ca_file, "localhost")
        .err()
        .expect("a server certificate from an untrusted CA was accepted");
    assert!(err.contains("invalid peer certificate"), "{err}");

    // The right CA but another name: rejected.
    let err = tls_engine(relay.addr(), echo.addr(), &ca_file, "frps.example.com")
        .err()
        .expect("a certificate for another name was accepted");
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[test]
fn tls_without_a_ca_does_not_claim_to_verify() {
    let tls = stcp_engine::config::TlsClientConfig::default();
    let client = stcp_engine::tls::client_tls(&tls, "127.0.0.1").unwrap();
    assert!(!client.verifies_server);
}

const SECRET_TOKEN: &str = "tok-Qx81-do-not-log";
const SECRET_KEY: &str = "sk-Zt55-do-not-log";
const WRONG_KEY: &str = "sk-Wr09-also-secret";

/// Runs the binary at debug level through successes, an auth failure and a metrics
/// scrape, then checks that no secret appears in its log or its metrics.
#[test]
fn secrets_never_reach_logs_or_metrics() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new("secrets");
    let relay = relay::start(
        RelayConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            token: SECRET_TOKEN.into(),
            ..RelayConfig::default()
        },
        None,
    )
    .unwrap();
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let (good, bad) = (free_port().unwrap(), free_port().unwrap());
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let config = dir.write(
        "frpc.toml",
        &format!(
            r#"serverAddr = "127.0.0.1"
serverPort = {relay_port}
user = "demo"
auth.token = "{SECRET_TOKEN}"
transport.tls.enable = false
log.level = "trace"

[[proxies]]
name = "echo"
type = "stcp"
secretKey = "{SECRET_KEY}"
localIP = "127.0.0.1"
localPort = {echo_port}
transport.useEncryption = true

[[visitors]]
name = "good-visitor"
type = "stcp"
serverName = "echo"
secretKey = "{SECRET_KEY}"
bindPort = {good}
transport.useEncryption = true

[[visitors]]
name = "bad-visitor"
type = "stcp"
serverName = "echo"
secretKey = "{WRONG_KEY}"
bindPort = {bad}
"#,
            relay_port = relay.addr().port(),
            echo_port = echo.addr().port(),
        ),
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let log_path = dir.0.join("engine.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stcp-engine"))
        .args(["-c", &config, "--cores", "1", "--metrics-addr"])
        .arg(metrics.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let good: SocketAddr = format!("127.0.0.1:{good}").parse().unwrap();
    let bad: SocketAddr = format!("127.0.0.1:{bad}").parse().unwrap();
    let t = Instant::now();
    while !log().contains("[echo] start proxy success") {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no start:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for_listener(good).unwrap();
    wait_for_listener(bad).unwrap();
    let got = echo_through(good, b"hello", Duration::from_secs(10)).unwrap();
    assert_eq!(got, b"hello");
    let t = Instant::now();
    while !log().contains("[bad-visitor] start new visitor connection error") {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no auth error:\n{}",
            log()
        );
        let _ = TcpStream::connect(bad).map(|mut s| s.write_all(b"x"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut scrape = String::new();
    let mut c = TcpStream::connect(metrics).unwrap();
    write!(c, "GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    c.read_to_string(&mut scrape).unwrap();
    assert!(scrape.contains("stcp_connections_total"), "{scrape}");
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = child.wait();
    let log = log();
    // The log is really captured at trace level (so this test can fail).
    assert!(log.contains("[T]") || log.contains("[D]"), "{log}");
    for secret in [SECRET_TOKEN, SECRET_KEY, WRONG_KEY] {
        assert!(!log.contains(secret), "{secret} appears in the log:\n{log}");
        assert!(!scrape.contains(secret), "{secret} appears in the metrics");
    }
}

fn verify_output(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stcp-engine"))
        .arg("verify")
        .arg("-c")
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn config_readable_by_others_gets_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new("perm");
    let config = dir.write(
        "frpc.toml",
        "serverAddr = \"127.0.0.1\"\nauth.token = \"abc\"\n\n[[visitors]]\nname = \"v\"\ntype = \"stcp\"\nserverName = \"p\"\nsecretKey = \"k\"\nbindPort = 9000\n",
    );
    let path = Path::new(&config);
    for (mode, warned) in [(0o644, true), (0o640, true), (0o604, true), (0o600, false)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = verify_output(path);
        assert_eq!(
            out.contains("is readable by other users"),
            warned,
            "mode {mode:o}: {out}"
        );
    }
}
