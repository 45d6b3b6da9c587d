//! End to end: rejected visitors and a relay restart.

mod common;
use common::*;
use stcp_engine::bench::{start_service, ServiceKind};
use stcp_engine::demo::{demo_config, free_port, wait_for_listener};
use stcp_engine::relay::{self, RelayConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The user connection must be closed cleanly (EOF or reset, no hang, no data).
fn assert_closed_without_data(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(b"anyone there?");
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("rejected visitor connection received {n} bytes"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("rejected visitor connection was not closed: {e}"),
    }
}

fn wait_for_error(
    engine: &stcp_engine::engine::EngineHandle,
    visitor: &str,
    needle: &str,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = engine.shared().last_error(visitor).unwrap_or_default();
        if last.contains(needle) {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "visitor error {needle:?} not reported; last error: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn wrong_secret_key_closes_visitor_and_reports_frps_error() {
    for mux in [true, false] {
        let relay = start_relay(mux);
        let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
        let vport = free_port().unwrap();
        let mut cfg = demo_config(
            relay.addr(),
            TOKEN,
            echo.addr(),
            vport,
            &opts(mux, false, false, 1),
        );
        cfg.visitors[0].secret_key = "not-the-secret".into();
        let engine = start_engine(cfg, Some(1));
        let addr: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
        wait_for_listener(addr).unwrap();
        assert_closed_without_data(addr);
        let err = wait_for_error(&engine, "echo-visitor", "auth failed");
        assert!(
            err.contains("visitor connection of [demo.echo] auth failed"),
            "{err}"
        );
        assert!(relay::RelayStats::get(&relay.stats().visitor_rejects) >= 1);
        engine.stop();
    }
}

#[test]
fn unknown_proxy_closes_visitor_and_reports_frps_error() {
    let relay = start_relay(true);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let vport = free_port().unwrap();
    let mut cfg = demo_config(
        relay.addr(),
        TOKEN,
        echo.addr(),
        vport,
        &opts(true, false, false, 1),
    );
    cfg.visitors[0].server_name = "nope".into();
    let engine = start_engine(cfg, Some(1));
    let addr: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
    wait_for_listener(addr).unwrap();
    assert_closed_without_data(addr);
    let err = wait_for_error(&engine, "echo-visitor", "doesn't exist");
    assert!(
        err.contains("custom listener for [demo.nope] doesn't exist"),
        "{err}"
    );
    engine.stop();
}

#[test]
fn wrong_token_fails_login_with_frps_message() {
    let relay = start_relay(true);
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let mut cfg = demo_config(
        relay.addr(),
        "wrong-token",
        echo.addr(),
        free_port().unwrap(),
        &opts(true, false, false, 1),
    );
    cfg.login_fail_exit = true;
    let err = match stcp_engine::engine::start(cfg, Some(1)) {
        Ok(_) => panic!("login with a wrong token succeeded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("token in login doesn't match token from configuration"),
        "{err}"
    );
    assert!(err.contains("loginFailExit"), "{err}");
}

#[test]
fn relay_restart_is_followed_by_relogin_and_working_connections() {
    for mux in [true, false] {
        let mut c = chain(opts(mux, true, false, 2));
        let got = echo_through(c.visitor, b"before", Duration::from_secs(10)).unwrap();
        assert_eq!(got, b"before");
        let addr = c.relay.as_ref().unwrap().addr();
        c.relay.take().unwrap().stop();
        let logins_before = stcp_engine::engine::state::EngineStats::get(
            &c.engine.as_ref().unwrap().shared().stats.logins,
        );
        let relay = relay::start(
            RelayConfig {
                bind: addr,
                token: TOKEN.into(),
                ..RelayConfig::default().with_tcp_mux(mux)
            },
            None,
        )
        .expect("relay restarts on the same port");
        c.relay = Some(relay);
        let t = Instant::now();
        let deadline = t + Duration::from_secs(30);
        loop {
            let ok = echo_through(c.visitor, b"after", Duration::from_secs(3))
                .map(|g| g == b"after")
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no working connection 30 s after the relay restart"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let logins = stcp_engine::engine::state::EngineStats::get(
            &c.engine.as_ref().unwrap().shared().stats.logins,
        );
        assert!(logins > logins_before, "engine did not log in again");
        println!(
            "mux={mux}: working again {:.2}s after the relay restart",
            t.elapsed().as_secs_f64()
        );
    }
}
