//! `stcp-engine demo`: the whole chain in one process on loopback — embedded relay,
//! STCP server role in front of an echo service, STCP visitor role — and a short bench.

use crate::bench::{load, start_service, ServiceKind};
use crate::config::{ClientConfig, StcpProxyConfig, StcpVisitorConfig};
use crate::relay::{self, RelayConfig};
use std::net::SocketAddr;
use std::time::Duration;

pub struct DemoOptions {
    pub cores: Option<usize>,
    pub seconds: u64,
    pub tcp_mux: bool,
    pub encryption: bool,
    pub compression: bool,
}

/// A free loopback port (bound then released; fine for a demo on one machine).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Builds the engine config for a server role and a visitor role against `relay`.
pub fn demo_config(
    relay: SocketAddr,
    token: &str,
    local: SocketAddr,
    visitor_port: u16,
    opts: &DemoOptions,
) -> ClientConfig {
    let mut cfg = ClientConfig::default();
    cfg.server_addr = relay.ip().to_string();
    cfg.server_port = relay.port();
    cfg.user = "demo".into();
    cfg.auth.token = token.into();
    cfg.transport.tcp_mux = opts.tcp_mux;
    cfg.transport.tls.enable = false;
    cfg.proxies.push(StcpProxyConfig {
        name: "echo".into(),
        secret_key: "demo-secret".into(),
        local_ip: local.ip().to_string(),
        local_port: local.port(),
        use_encryption: opts.encryption,
        use_compression: opts.compression,
        ..Default::default()
    });
    cfg.visitors.push(StcpVisitorConfig {
        name: "echo-visitor".into(),
        server_name: "echo".into(),
        secret_key: "demo-secret".into(),
        bind_addr: "127.0.0.1".into(),
        bind_port: i32::from(visitor_port),
        use_encryption: opts.encryption,
        use_compression: opts.compression,
        ..Default::default()
    });
    cfg.complete();
    cfg
}

pub fn run(opts: DemoOptions) -> Result<(), String> {
    let token = "demo-token";
    let relay = relay::start(
        RelayConfig {
            bind: "127.0.0.1:0".parse().expect("static"),
            token: token.into(),
            ..RelayConfig::default().with_tcp_mux(opts.tcp_mux)
        },
        None,
    )
    .map_err(|e| format!("start relay: {e}"))?;
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().expect("static"))
        .map_err(|e| format!("start echo service: {e}"))?;
    let vport = free_port().map_err(|e| e.to_string())?;
    let cfg = demo_config(relay.addr(), token, echo.addr(), vport, &opts);
    println!(
        "demo: relay on {}, echo service on {}, visitor on 127.0.0.1:{vport} (tcpMux {}, encryption {}, compression {})",
        relay.addr(),
        echo.addr(),
        opts.tcp_mux,
        opts.encryption,
        opts.compression
    );
    let engine = crate::engine::start(cfg, opts.cores).map_err(|e| e.to_string())?;
    println!(
        "demo: engine logged in with run id {} on CPU(s) {:?}",
        engine.run_id, engine.cpus
    );
    let target: SocketAddr = format!("127.0.0.1:{vport}").parse().expect("valid");
    // The visitor listener can be up before frps registered the proxy: wait for both.
    if !engine.wait_proxies_answered(Duration::from_secs(10)) {
        return Err("the embedded relay did not answer NewProxy within 10 s".into());
    }
    wait_for_listener(target)?;

    let secs = Duration::from_secs(opts.seconds.max(1));
    let lat =
        load::echo_latency(target, 1000, secs, 64).map_err(|e| format!("latency run: {e}"))?;
    println!(
        "latency   64 B echo at 1000 req/s for {secs:?}: {}",
        lat.summary()
    );
    let tp = load::echo_throughput(target, 4, secs).map_err(|e| format!("throughput run: {e}"))?;
    println!(
        "throughput 4 echo streams for {secs:?}: {:.2} Gbit/s round-trip payload ({:.0} MiB/s)",
        tp.gbit_per_s(),
        tp.mib_per_s()
    );
    let cr = load::conn_rate(target, 4, secs).map_err(|e| format!("connection run: {e}"))?;
    println!(
        "connections 4 workers for {secs:?}: {:.0} conn/s, setup p50 {:.0} us, p99 {:.0} us",
        cr.per_second(),
        cr.hist.value_at_quantile(0.5) as f64 / 1000.0,
        cr.hist.value_at_quantile(0.99) as f64 / 1000.0
    );
    println!(
        "measured on this machine ({} CPUs), one run each; everything shares the same cores. For comparisons use `stcp-engine bench`.",
        crate::engine::available_cpus().len()
    );
    engine.stop();
    relay.stop();
    Ok(())
}

/// The visitor listener starts asynchronously on its shard; wait until it accepts.
pub fn wait_for_listener(addr: SocketAddr) -> Result<(), String> {
    for _ in 0..200 {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!("visitor listener {addr} did not come up"))
}
