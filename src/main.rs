//! stcp-engine: frpc's STCP server and visitor roles on a thread-per-core engine.

use clap::{Parser, Subcommand};
use stcp_engine::config::ClientConfig;
use std::path::PathBuf;
use std::process::ExitCode;

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
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the engine (the default when no subcommand is given).
    Run,
    /// Check a config file, like `frpc verify`.
    Verify,
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
    /// Address to listen on (frps bindAddr:bindPort).
    #[arg(long, default_value = "0.0.0.0:7000")]
    bind: std::net::SocketAddr,
    /// frps auth.token.
    #[arg(long, default_value = "")]
    token: String,
    /// frps transport.tcpMux = false.
    #[arg(long)]
    no_tcp_mux: bool,
    /// frps transport.maxPoolCount.
    #[arg(long, default_value_t = 5)]
    max_pool_count: u32,
    /// Beyond frps (opt-in): reject visitor sign keys older than SECS or reused within it.
    #[arg(long, value_name = "SECS")]
    freshness_window: Option<u64>,
    /// Log level (trace, debug, info, warn, error).
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd.unwrap_or(Cmd::Run) {
        Cmd::Verify => {
            let cfg = load_config(&cli.config)?;
            println!("{}", stcp_engine::config::verify_report(&cfg));
            Ok(())
        }
        Cmd::Run => {
            let cfg = load_config(&cli.config)?;
            init_logs(&cfg.log.level, &cfg.log.to)?;
            for w in cfg.warnings() {
                log::warn!("{w}");
            }
            let signals = stcp_engine::signals::block_termination();
            let engine = stcp_engine::engine::start(cfg, cli.cores).map_err(|e| e.to_string())?;
            let sig = signals.wait();
            log::info!("received {sig}, stopping");
            engine.stop();
            Ok(())
        }
        Cmd::Relay(a) => {
            init_logs(&a.log_level, "console")?;
            let cfg = stcp_engine::relay::RelayConfig {
                bind: a.bind,
                token: a.token,
                max_pool_count: a.max_pool_count,
                freshness_window: a.freshness_window.map(std::time::Duration::from_secs),
                ..stcp_engine::relay::RelayConfig::default().with_tcp_mux(!a.no_tcp_mux)
            };
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
