//! Wire protocol v2 (`transport.wireProtocol = "v2"`) end to end: through the embedded
//! relay (which detects v2 per connection by the magic, as frps does), mixed with v1
//! clients on the same relay, a hand-written v2 login the relay must refuse, and a
//! real frps when FRPS_BIN is set.

mod common;
use common::*;
use stcp_engine::bench::{start_service, ServiceKind};
use stcp_engine::config::{ClientConfig, StcpVisitorConfig};
use stcp_engine::demo::{demo_config, free_port, wait_for_listener};
use stcp_engine::proto::v2;
use stcp_engine::proto::{auth_key, Login, Message};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

fn v2_config(
    relay: SocketAddr,
    echo: SocketAddr,
    vport: u16,
    mux: bool,
    enc: bool,
) -> ClientConfig {
    let mut cfg = demo_config(relay, TOKEN, echo, vport, &opts(mux, enc, enc, 2));
    cfg.transport.wire_protocol = "v2".into();
    cfg
}

fn v2_transfer(mux: bool, enc: bool) {
    let relay = start_relay(mux);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let vport = free_port().unwrap();
    let engine = start_engine(
        v2_config(relay.addr(), echo.addr(), vport, mux, enc),
        Some(2),
    );
    let visitor: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
    wait_for_listener(visitor).unwrap();
    // Several connections: each is a new v2 visitor stream and a new v2 work stream.
    for seed in 0..4 {
        let data = payload(2 << 20, seed);
        let got = echo_through(visitor, &data, Duration::from_secs(30)).unwrap();
        assert!(
            got == data,
            "v2 mux={mux} enc={enc}: echo differs (fnv {:x} vs {:x})",
            fnv(&got),
            fnv(&data)
        );
    }
    let stats = relay.stats();
    assert_eq!(stats.logins.load(Relaxed), 1);
    // The control, 4 visitor connections and at least their 4 work connections.
    let v2_conns = stats.v2_conns.load(Relaxed);
    assert!(
        v2_conns >= 9,
        "only {v2_conns} v2 connections reached the relay"
    );
    engine.stop();
    relay.stop();
}

#[test]
fn v2_through_relay_with_mux() {
    v2_transfer(true, false);
}

#[test]
fn v2_through_relay_without_mux() {
    v2_transfer(false, false);
}

#[test]
fn v2_through_relay_encrypted_and_compressed() {
    v2_transfer(true, true);
    v2_transfer(false, true);
}

/// A v2 server role and a v1 visitor on one relay: detection is per connection.
#[test]
fn v1_visitor_reaches_v2_proxy_on_the_same_relay() {
    let relay = start_relay(true);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let vport = free_port().unwrap();
    let server = start_engine(
        v2_config(relay.addr(), echo.addr(), vport, true, false),
        Some(1),
    );

    let v1_port = free_port().unwrap();
    let mut v1 = demo_config(
        relay.addr(),
        TOKEN,
        echo.addr(),
        v1_port,
        &opts(true, false, false, 1),
    );
    assert_eq!(v1.transport.wire_protocol, "v1");
    v1.proxies.clear();
    v1.visitors = vec![StcpVisitorConfig {
        name: "v1-visitor".into(),
        server_name: "echo".into(),
        secret_key: "demo-secret".into(),
        bind_addr: "127.0.0.1".into(),
        bind_port: i32::from(v1_port),
        ..Default::default()
    }];
    let visitor_engine = start_engine(v1, Some(1));
    let v2_before = relay.stats().v2_conns.load(Relaxed);
    for port in [vport, v1_port] {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_listener(addr).unwrap();
        let data = payload(1 << 20, u64::from(port));
        let got = echo_through(addr, &data, Duration::from_secs(30)).unwrap();
        assert!(got == data, "echo through visitor on port {port} differs");
    }
    // v2: one visitor conn + its work conn(s); v1: the other visitor conn (its work
    // conn comes from the v2 engine).
    assert!(relay.stats().v2_conns.load(Relaxed) >= v2_before + 2);
    assert!(relay.stats().visitor_conns.load(Relaxed) >= 2);
    visitor_engine.stop();
    server.stop();
    relay.stop();
}

fn read_v2_frame(s: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut header = [0u8; 8];
    s.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    (u16::from_be_bytes([header[0], header[1]]), payload)
}

/// frps refuses a v2 Login without hellos: it cannot key the control stream.
#[test]
fn relay_refuses_v2_login_without_hello() {
    let relay = start_relay(false);
    let mut s = TcpStream::connect(relay.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let ts = 1_700_000_000;
    let login = Login {
        privilege_key: auth_key(TOKEN, ts),
        timestamp: ts,
        ..Default::default()
    };
    let mut out = v2::MAGIC.to_vec();
    v2::encode_message_frame(&Message::Login(login), &mut out).unwrap();
    s.write_all(&out).unwrap();
    let (frame_type, payload) = read_v2_frame(&mut s);
    assert_eq!(frame_type, v2::FRAME_MESSAGE);
    match v2::decode_message_payload(&payload).unwrap() {
        Message::LoginResp(r) => assert_eq!(r.error, "missing v2 crypto negotiation"),
        other => panic!("expected LoginResp, got {other:?}"),
    }
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the relay closes after refusing");

    // A hello offering nothing frp supports gets an error ServerHello, then EOF.
    let mut s = TcpStream::connect(relay.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hello = v2::ClientHello::new(v2::BootstrapInfo::default(), &["rot13"], [0; 32]);
    let mut out = v2::MAGIC.to_vec();
    v2::encode_raw_frame(v2::FRAME_CLIENT_HELLO, &v2::hello_json(&hello), &mut out).unwrap();
    s.write_all(&out).unwrap();
    let (frame_type, payload) = read_v2_frame(&mut s);
    assert_eq!(frame_type, v2::FRAME_SERVER_HELLO);
    let server: v2::ServerHello = v2::parse_hello("ServerHello", &payload).unwrap();
    assert_eq!(server.error, "no supported crypto algorithm");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
    relay.stop();
}

/// The engine against a real frps in v2, tcpMux on and off (FRPS_BIN).
#[test]
fn v2_against_real_frps() {
    let Some(frps) = real_binary("FRPS_BIN", "v2_against_real_frps") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("stcp-v2-frps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for mux in [true, false] {
        let port = free_port().unwrap();
        let cfg_path = dir.join("frps.toml");
        std::fs::write(
            &cfg_path,
            format!(
                "bindAddr = \"127.0.0.1\"\nbindPort = {port}\nauth.token = \"{TOKEN}\"\ntransport.tcpMux = {mux}\n"
            ),
        )
        .unwrap();
        let mut child = std::process::Command::new(&frps)
            .arg("-c")
            .arg(&cfg_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start frps");
        let frps_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_listener(frps_addr).expect("frps listens");
        let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
        let vport = free_port().unwrap();
        let engine = start_engine(v2_config(frps_addr, echo.addr(), vport, mux, true), Some(2));
        let visitor: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
        wait_for_listener(visitor).unwrap();
        let data = payload(4 << 20, 11);
        let got = echo_through(visitor, &data, Duration::from_secs(60));
        engine.stop();
        let _ = child.kill();
        let _ = child.wait();
        assert!(got.unwrap() == data, "real frps v2 mux={mux}: echo differs");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
