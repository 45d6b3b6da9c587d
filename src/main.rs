//! stcp-engine: frpc's STCP server and visitor roles on a thread-per-core engine.

use clap::{Parser, Subcommand};
use stcp_engine::config::ClientConfig;
use std::path::PathBuf;
use std::process::ExitCode;

mod stcp_flags;

#[derive(Parser)]
#[command(
    name = "stcp-engine",
    version,
    about = "frpc's STCP server and visitor roles on a thread-per-core io_uring engine"
)]
struct Cli {
    /// frpc config file (frpc.toml, or legacy INI), as `frpc -c`.
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
    /// Number of data shards (one pinned executor per core; default: all cores).
    #[arg(long, global = true)]
    cores: Option<usize>,
    /// On SIGINT/SIGTERM, seconds open connections get to finish before they are cut
    /// (a second signal exits at once).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 10)]
    drain_timeout: u64,
    /// Cap on concurrent user connections of each visitor that sets no
    /// transport.maxConnections (0: none).
    #[arg(long, global = true, value_name = "N")]
    max_conns_per_visitor: Option<u32>,
    /// Cap on concurrent work connections of each proxy that sets no
    /// transport.maxConnections (0: none).
    #[arg(long, global = true, value_name = "N")]
    max_conns_per_proxy: Option<u32>,
    /// Cap on live yamux streams on each shard's session to frps.
    #[arg(long, global = true, value_name = "N")]
    max_streams_per_session: Option<usize>,
    /// Copy through user space even where both legs are plain TCP, instead of
    /// splice(2) (for comparisons; sets STCP_ENGINE_SPLICE=off for this process and the
    /// bench's child processes).
    #[arg(long, global = true)]
    no_splice: bool,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the engine (the default when no subcommand is given).
    Run,
    /// Check a config file, like `frpc verify`.
    Verify,
    /// Ask the running engine to re-read its config file, like `frpc reload`
    /// (admin API at webServer.addr:port from -c).
    Reload,
    /// Print the running engine's proxies and visitors, like `frpc status`.
    Status,
    /// Stop the running engine gracefully, like `frpc stop`.
    Stop,
    /// Run one stcp proxy (or, with `visitor`, one stcp visitor) from frpc's flags,
    /// without a config file: `stcp-engine stcp -s HOST -t TOKEN -n NAME --sk K -l PORT`.
    Stcp(stcp_flags::StcpArgs),
    /// Run the embedded frps-compatible relay (the STCP subset of frps).
    Relay(RelayArgs),
    /// Load generator: throughput, latency, connection rate, idle fan-out (any endpoint,
    /// or an in-process chain by default).
    Bench(stcp_engine::bench::BenchArgs),
    /// Run relay + server role + visitor role + echo in one process and a short bench.
    Demo {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 2)]
        seconds: u64,
        #[arg(long)]
        no_tcp_mux: bool,
        #[arg(long)]
        encryption: bool,
        #[arg(long)]
        compression: bool,
    },
}

#[derive(clap::Args)]
struct RelayArgs {
    /// Address to listen on (frps bindAddr:bindPort; default 0.0.0.0:7000). Overrides -c.
    #[arg(long)]
    bind: Option<std::net::SocketAddr>,
    /// frps auth.token. Overrides -c.
    #[arg(long)]
    token: Option<String>,
    /// frps transport.tcpMux = false.
    #[arg(long)]
    no_tcp_mux: bool,
    /// frps transport.maxPoolCount (default 5). Overrides -c.
    #[arg(long)]
    max_pool_count: Option<u32>,
    /// Beyond frps (opt-in): reject visitor sign keys older than SECS or reused within it.
    #[arg(long, value_name = "SECS")]
    freshness_window: Option<u64>,
    /// Log level (trace, debug, info, warn, error).
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.no_splice {
        // Before any thread starts: the engine reads it once, at its first relay.
        std::env::set_var("STCP_ENGINE_SPLICE", "off");
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stcp-engine: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &Option<PathBuf>) -> Result<ClientConfig, String> {
    let path = path
        .as_ref()
        .ok_or("no config file given: use -c frpc.toml (see README.md)")?;
    let cfg = ClientConfig::load(path).map_err(|e| e.to_string())?;
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn init_logs(level: &str, to: &str) -> Result<(), String> {
    let lvl = stcp_engine::logging::parse_level(level).ok_or_else(|| {
        format!("unknown log level {level:?} (use trace, debug, info, warn or error)")
    })?;
    stcp_engine::logging::init(lvl, to).map_err(|e| format!("cannot open log output {to:?}: {e}"))
}

fn run(mut cli: Cli) -> Result<(), String> {
    // `stcp` builds the config from flags, then runs exactly like `-c FILE`.
    let mut from_flags = None;
    if let Some(Cmd::Stcp(args)) = &cli.cmd {
        from_flags = Some(args.to_config()?);
        cli.cmd = Some(Cmd::Run);
    }
    match cli.cmd.unwrap_or(Cmd::Run) {
        cmd @ (Cmd::Reload | Cmd::Status | Cmd::Stop) => {
            let cfg = load_config(&cli.config)?;
            let name = match cmd {
                Cmd::Reload => "reload",
                Cmd::Status => "status",
                _ => "stop",
            };
            let out = stcp_engine::admin::client::run(name, &cfg)?;
            println!("{}", out.trim_end_matches('\n'));
            Ok(())
        }
        Cmd::Verify => {
            let cfg = load_config(&cli.config)?;
            if let Some(w) = cli
                .config
                .as_ref()
                .and_then(|p| stcp_engine::config::permission_warning(&cfg, p))
            {
                println!("WARNING: {w}");
            }
            println!("{}", stcp_engine::config::verify_report(&cfg));
            Ok(())
        }
        Cmd::Run => {
            let mut cfg = match from_flags.take() {
                Some(cfg) => cfg,
                None => load_config(&cli.config)?,
            };
            init_logs(&cfg.log.level, &cfg.log.to)?;
            for w in cfg.warnings() {
                log::warn!("{w}");
            }
            if let Some(w) = cli
                .config
                .as_ref()
                .and_then(|p| stcp_engine::config::permission_warning(&cfg, p))
            {
                log::warn!("{w}");
            }
            // Flags fill in the limits the config leaves unset.
            for v in &mut cfg.visitors {
                v.max_connections = v.max_connections.or(cli.max_conns_per_visitor);
            }
            for p in &mut cfg.proxies {
                p.max_connections = p.max_connections.or(cli.max_conns_per_proxy);
            }
            let signals = stcp_engine::signals::block_termination_and_hangup();
            let web_server = cfg.web_server.clone();
            let opts = stcp_engine::engine::EngineOptions {
                cores: cli.cores,
                max_streams_per_session: cli.max_streams_per_session,
            };
            let engine = stcp_engine::engine::start_with(cfg, opts).map_err(|e| e.to_string())?;
            let metrics = match cli.metrics_addr {
                Some(addr) => {
                    let shared = engine.shared().clone();
                    let server =
                        stcp_engine::metrics::http::serve(addr, move || shared.metrics_text())
                            .map_err(|e| e.to_string())?;
                    log::info!("metrics at http://{}/metrics", server.addr());
                    Some(server)
                }
                None => None,
            };
            // frpc's admin API (webServer.*); SIGHUP reloads through the same path.
            let admin = std::sync::Arc::new(stcp_engine::admin::engine::EngineAdmin::new(
                engine.control(),
                cli.config.clone(),
                // POST /api/stop: the same graceful stop as SIGTERM (blocked in every
                // thread, so it reaches the sigwait below).
                || unsafe {
                    libc::kill(libc::getpid(), libc::SIGTERM);
                },
            ));
            let _admin_server = match &web_server {
                Some(web) => Some(stcp_engine::admin::AdminServer::start(web, admin.clone())?),
                None => None,
            };
            let sig = loop {
                match signals.wait() {
                    "SIGHUP" => match stcp_engine::admin::AdminBackend::reload(admin.as_ref()) {
                        Ok(()) => log::info!("SIGHUP: reload success"),
                        Err(e) => log::warn!("SIGHUP: reload failed: {}", e.msg),
                    },
                    sig => break sig,
                }
            };
            log::info!(
                "received {sig}, stopping gracefully (up to {}s; send it again to exit at once)",
                cli.drain_timeout
            );
            // A second signal while draining ends the process without waiting.
            std::thread::spawn(move || {
                let sig = loop {
                    match signals.wait() {
                        "SIGHUP" => log::warn!("SIGHUP ignored while stopping"),
                        sig => break sig,
                    }
                };
                log::warn!("received {sig} again, exiting now");
                log::logger().flush();
                std::process::exit(1);
            });
            let cut = engine.stop_draining(std::time::Duration::from_secs(cli.drain_timeout));
            drop(metrics);
            log::info!("stopped ({cut} connection(s) cut at the drain deadline)");
            log::logger().flush();
            Ok(())
        }
        Cmd::Stcp(_) => unreachable!("turned into Run above"),
        Cmd::Relay(a) => {
            init_logs(&a.log_level, "console")?;
            // `-c frps.toml` gives the base; flags override it.
            let mut cfg = match &cli.config {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    let (cfg, ignored) =
                        stcp_engine::relay::from_frps_toml(&text, &path.display().to_string())?;
                    if !ignored.is_empty() {
                        log::warn!(
                            "frps keys the relay does not implement were ignored: {}",
                            ignored.join(", ")
                        );
                    }
                    cfg
                }
                None => stcp_engine::relay::RelayConfig {
                    bind: "0.0.0.0:7000".parse().expect("static address"),
                    ..Default::default()
                },
            };
            if a.no_tcp_mux {
                cfg = cfg.with_tcp_mux(false);
            }
            if let Some(b) = a.bind {
                cfg.bind = b;
            }
            if let Some(t) = a.token {
                cfg.token = t;
            }
            if let Some(n) = a.max_pool_count {
                cfg.max_pool_count = n;
            }
            if let Some(w) = a.freshness_window {
                cfg.freshness_window = Some(std::time::Duration::from_secs(w));
            }
            let signals = stcp_engine::signals::block_termination();
            let relay = stcp_engine::relay::start(cfg, None).map_err(|e| e.to_string())?;
            let sig = signals.wait();
            log::info!("received {sig}, stopping");
            relay.stop();
            Ok(())
        }
        Cmd::Bench(args) => {
            init_logs("warn", "console")?;
            stcp_engine::bench::command::run(args, cli.cores)
        }
        Cmd::Demo {
            seconds,
            no_tcp_mux,
            encryption,
            compression,
        } => {
            init_logs("warn", "console")?;
            stcp_engine::demo::run(stcp_engine::demo::DemoOptions {
                cores: cli.cores,
                seconds,
                tcp_mux: !no_tcp_mux,
                encryption,
                compression,
            })
        }
    }
}
