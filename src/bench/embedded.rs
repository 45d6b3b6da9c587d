//! The self-contained bench target: embedded relay, the engine with both STCP roles, and
//! echo / source / sink services, all in this process on loopback (as `demo` does), with
//! one stcp proxy + visitor per service.

use super::echo::{start_service, ServiceHandle, ServiceKind};
use super::load::Direction;
use crate::config::{StcpProxyConfig, StcpVisitorConfig};
use crate::demo::{demo_config, free_port, wait_for_listener, DemoOptions};
use crate::engine::EngineHandle;
use crate::relay::{self, RelayConfig, RelayHandle};
use std::net::SocketAddr;
use std::time::Duration;

/// One combination of the per-chain switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Combo {
    pub tcp_mux: bool,
    pub encryption: bool,
    pub compression: bool,
}

impl Combo {
    pub fn label(&self) -> String {
        let mut parts = vec![if self.tcp_mux { "mux" } else { "nomux" }];
        if self.encryption {
            parts.push("enc");
        }
        if self.compression {
            parts.push("comp");
        }
        if parts.len() == 1 {
            parts.push("plain");
        }
        parts.join("+")
    }
}

/// A running in-process chain; dropping it stops the engine, then the relay.
pub struct Embedded {
    engine: Option<EngineHandle>,
    relay: Option<RelayHandle>,
    _services: Vec<ServiceHandle>,
    echo: SocketAddr,
    source: SocketAddr,
    sink: SocketAddr,
    pub cpus: Vec<usize>,
}

impl Embedded {
    /// Starts relay, services and engine (`cores` shards) and waits for the visitors.
    pub fn start(combo: Combo, cores: Option<usize>) -> Result<Embedded, String> {
        let token = "bench-token";
        let relay = relay::start(
            RelayConfig {
                bind: "127.0.0.1:0".parse().expect("static"),
                token: token.into(),
                ..RelayConfig::default().with_tcp_mux(combo.tcp_mux)
            },
            None,
        )
        .map_err(|e| format!("start embedded relay: {e}"))?;
        let any: SocketAddr = "127.0.0.1:0".parse().expect("static");
        let mut services = Vec::new();
        for kind in [ServiceKind::Echo, ServiceKind::Source, ServiceKind::Sink] {
            services.push(
                start_service(kind, any).map_err(|e| format!("start {kind:?} service: {e}"))?,
            );
        }
        let ports: Vec<u16> = (0..3)
            .map(|_| free_port())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("pick a free port: {e}"))?;
        let opts = DemoOptions {
            cores,
            seconds: 0,
            tcp_mux: combo.tcp_mux,
            encryption: combo.encryption,
            compression: combo.compression,
        };
        // demo_config gives the echo proxy + visitor; add the same for source and sink.
        let mut cfg = demo_config(relay.addr(), token, services[0].addr(), ports[0], &opts);
        for (i, name) in [(1, "source"), (2, "sink")] {
            let local = services[i].addr();
            cfg.proxies.push(StcpProxyConfig {
                name: name.into(),
                secret_key: "demo-secret".into(),
                local_ip: local.ip().to_string(),
                local_port: local.port(),
                use_encryption: combo.encryption,
                use_compression: combo.compression,
                ..Default::default()
            });
            cfg.visitors.push(StcpVisitorConfig {
                name: format!("{name}-visitor"),
                server_name: name.into(),
                secret_key: "demo-secret".into(),
                bind_addr: "127.0.0.1".into(),
                bind_port: i32::from(ports[i]),
                use_encryption: combo.encryption,
                use_compression: combo.compression,
                ..Default::default()
            });
        }
        cfg.complete();
        let engine = crate::engine::start(cfg, cores).map_err(|e| e.to_string())?;
        if !engine.wait_proxies_answered(Duration::from_secs(10)) {
            return Err("the embedded relay did not answer NewProxy within 10 s".into());
        }
        let at = |p: u16| -> SocketAddr { SocketAddr::from(([127, 0, 0, 1], p)) };
        for &p in &ports {
            wait_for_listener(at(p))?;
        }
        Ok(Embedded {
            cpus: engine.cpus.clone(),
            engine: Some(engine),
            relay: Some(relay),
            _services: services,
            echo: at(ports[0]),
            source: at(ports[1]),
            sink: at(ports[2]),
        })
    }

    /// Waits until no relay is active in the engine (after a run closed its
    /// connections), so the next run starts from a quiet chain. False on timeout.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let Some(engine) = &self.engine else {
            return true;
        };
        let deadline = std::time::Instant::now() + timeout;
        let stats = &engine.shared().stats;
        while crate::engine::state::EngineStats::get(&stats.active) > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The visitor port in front of the echo service.
    pub fn echo(&self) -> SocketAddr {
        self.echo
    }

    /// The visitor port whose service matches a throughput direction.
    pub fn for_direction(&self, dir: Direction) -> SocketAddr {
        match dir {
            Direction::Echo => self.echo,
            Direction::Download => self.source,
            Direction::Upload => self.sink,
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            e.stop();
        }
        if let Some(r) = self.relay.take() {
            r.stop();
        }
    }
}
