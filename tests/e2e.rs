//! End to end through the embedded relay: visitor role -> relay -> server role -> echo.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const BIG: usize = 64 * 1024 * 1024;

fn big_transfer(tcp_mux: bool, enc: bool, comp: bool) {
    let c = chain(opts(tcp_mux, enc, comp, 2));
    let data = payload(BIG, 7);
    let t = Instant::now();
    let got = echo_through(c.visitor, &data, Duration::from_secs(60)).expect("64 MiB echo");
    assert_eq!(got.len(), data.len());
    assert!(
        got == data,
        "echoed 64 MiB differs: fnv {:x} vs {:x}",
        fnv(&got),
        fnv(&data)
    );
    println!(
        "mux={tcp_mux} enc={enc} comp={comp}: 64 MiB each way in {:.2}s",
        t.elapsed().as_secs_f64()
    );
    // Plain TCP on both legs of both roles: the engine must have spliced (most of) it;
    // anything else must have copied. Relays count when they end, just after the echo.
    let engine = c.engine.as_ref().expect("engine");
    let spliced = || -> u64 {
        engine
            .shared()
            .metrics_text()
            .lines()
            .filter(|l| l.starts_with("stcp_shard_spliced_bytes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    if !tcp_mux && !enc && !comp {
        let deadline = Instant::now() + Duration::from_secs(10);
        while spliced() < BIG as u64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // 64 MiB each way through two roles: 256 MiB relayed in all.
        assert!(spliced() >= BIG as u64, "only {} bytes spliced", spliced());
    } else {
        assert_eq!(
            spliced(),
            0,
            "a transformed or multiplexed leg must not splice"
        );
    }
}

#[test]
fn transfer_64mib_mux_plain() {
    big_transfer(true, false, false);
}
#[test]
fn transfer_64mib_mux_enc() {
    big_transfer(true, true, false);
}
#[test]
fn transfer_64mib_mux_comp() {
    big_transfer(true, false, true);
}
#[test]
fn transfer_64mib_mux_enc_comp() {
    big_transfer(true, true, true);
}
#[test]
fn transfer_64mib_nomux_plain() {
    big_transfer(false, false, false);
}
#[test]
fn transfer_64mib_nomux_enc() {
    big_transfer(false, true, false);
}
#[test]
fn transfer_64mib_nomux_comp() {
    big_transfer(false, false, true);
}
#[test]
fn transfer_64mib_nomux_enc_comp() {
    big_transfer(false, true, true);
}

fn many_concurrent(tcp_mux: bool) {
    raise_fd_limit(16384);
    let c = chain(opts(tcp_mux, true, false, 2));
    let n = 1000;
    // Open all connections first so they are truly concurrent, then exchange payloads.
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let s =
                TcpStream::connect_timeout(&c.visitor, Duration::from_secs(10)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s
        })
        .collect();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(&payload(1000 + i, i as u64)).expect("write");
    }
    for (i, s) in conns.iter_mut().enumerate() {
        let want = payload(1000 + i, i as u64);
        let mut got = vec![0u8; want.len()];
        s.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("conn {i}: {e}"));
        assert!(got == want, "connection {i} got another connection's bytes");
    }
}

#[test]
fn thousand_concurrent_visitors_mux() {
    many_concurrent(true);
}

#[test]
fn thousand_concurrent_visitors_nomux() {
    many_concurrent(false);
}

/// 1-byte ping-pong must not stall with compression (snappy flushed per write).
#[test]
fn interactive_ping_pong_with_compression() {
    for mux in [true, false] {
        let c = chain(opts(mux, true, true, 1));
        let mut s = TcpStream::connect(c.visitor).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for i in 0..500u32 {
            let b = [(i % 251) as u8];
            s.write_all(&b).unwrap();
            let mut r = [0u8; 1];
            s.read_exact(&mut r)
                .unwrap_or_else(|e| panic!("round {i} stalled: {e}"));
            assert_eq!(r, b);
        }
    }
}

#[test]
fn cores_one_and_two() {
    for cores in [1, 2] {
        let c = chain(opts(true, false, false, cores));
        let data = payload(1 << 20, cores as u64);
        let got = echo_through(c.visitor, &data, Duration::from_secs(20)).unwrap();
        assert!(got == data, "--cores {cores}: echo differs");
    }
}

#[test]
fn cores_more_than_machine_still_runs() {
    let c = chain(opts(true, false, false, 64));
    let engine = c.engine.as_ref().unwrap();
    assert!(engine.cpus.len() <= stcp_engine::engine::available_cpus().len());
    let got = echo_through(c.visitor, b"hello", Duration::from_secs(10)).unwrap();
    assert_eq!(got, b"hello");
}

/// TLS to the relay (frpc's default), with a plain ClientHello and with frp's 0x17 first byte.
#[test]
fn tls_to_relay_with_and_without_custom_first_byte() {
    use stcp_engine::bench::{start_service, ServiceKind};
    use stcp_engine::demo::{demo_config, free_port, wait_for_listener};
    for custom_byte in [false, true] {
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
        cfg.transport.tls.enable = true;
        cfg.transport.tls.disable_custom_tls_first_byte = !custom_byte;
        let engine = start_engine(cfg, Some(1));
        let addr = format!("127.0.0.1:{vport}").parse().unwrap();
        wait_for_listener(addr).unwrap();
        let data = payload(4 << 20, 99);
        let got = echo_through(addr, &data, Duration::from_secs(30)).unwrap();
        assert!(got == data, "TLS (custom byte {custom_byte}): echo differs");
        engine.stop();
    }
}
