//! The engine: one control executor plus N data shards, one glommio executor pinned to
//! each core (see ../shared/design.md).

mod control;
pub mod limits;
mod shard;
pub mod state;
pub mod transport;

use crate::config::{ClientConfig, StcpProxyConfig, StcpVisitorConfig};
pub use control::CLIENT_VERSION;
use shard::ShardCmd;
use state::Shared;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Login(String),
    #[error("stcp-engine needs io_uring, but this kernel refused to set it up ({0}); run it on Linux 5.8 or newer with io_uring allowed (for containers: a seccomp profile that permits io_uring_setup, and `ulimit -l` of at least 8 MiB)")]
    NoIoUring(String),
    #[error("{0}")]
    Start(String),
}

/// The CPUs this process may run on (sched_getaffinity), in order.
pub fn available_cpus() -> Vec<usize> {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if ok != 0 {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Which CPUs the shards get for `--cores N`; says so when it had to use fewer.
pub fn plan_cores(requested: Option<usize>) -> Vec<usize> {
    let cpus = available_cpus();
    let want = requested.unwrap_or(cpus.len()).max(1);
    if want > cpus.len() {
        log::warn!(
            "--cores {want} requested, but only {} CPU(s) are available to this process ({:?}): running {} shard(s), one pinned to each",
            cpus.len(),
            cpus,
            cpus.len()
        );
    }
    cpus.into_iter().take(want).collect()
}

/// Changes a running engine's proxies and visitors (reload); clone it for the admin API
/// and the SIGHUP handler, any thread may use it.
#[derive(Clone)]
pub struct EngineControl {
    shared: Arc<Shared>,
    sync_tx: async_channel::Sender<control::SyncProxies>,
    shard_txs: Vec<async_channel::Sender<ShardCmd>>,
    /// One reload at a time (the admin API and SIGHUP may race).
    reloading: Arc<std::sync::Mutex<()>>,
}

/// How long a reload waits for the shards to have closed and opened their listeners.
const RELOAD_ACK_TIMEOUT: Duration = Duration::from_secs(5);

impl EngineControl {
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Puts these proxy and visitor lists in force, as frpc's reload: added ones start,
    /// removed ones stop (CloseProxy, listener closed), changed ones restart; unchanged
    /// ones, and every relay already open, are not touched. Returns once every shard has
    /// updated its listeners; the control sends CloseProxy/NewProxy as soon as it can
    /// (right away when logged in, else at the next login).
    pub fn apply(&self, proxies: &[StcpProxyConfig], visitors: &[StcpVisitorConfig]) {
        let _one = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.shared.install_sets(proxies, visitors);
        let now = self.shared.sets();
        let gone = state::replaced_names(&before.visitors, &now.visitors);
        let new = state::replaced_names(&now.visitors, &before.visitors);
        let _ = self.sync_tx.try_send(control::SyncProxies);
        let mut acks = Vec::new();
        for tx in &self.shard_txs {
            let (ack_tx, ack_rx) = std::sync::mpsc::channel();
            if tx.try_send(ShardCmd::SyncVisitors(ack_tx)).is_ok() {
                acks.push(ack_rx);
            }
        }
        let deadline = std::time::Instant::now() + RELOAD_ACK_TIMEOUT;
        for ack in acks {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if ack.recv_timeout(left).is_err() {
                log::warn!("reload: a shard did not confirm its visitor listeners within {RELOAD_ACK_TIMEOUT:?}");
            }
        }
        for name in &gone {
            if !now.visitors.contains_key(name) {
                self.shared.forget_error(name);
            }
        }
        // frpc's wording (visitor.Manager.UpdateAll); a changed one is in both lines.
        if !gone.is_empty() {
            log::info!("visitor removed: [{}]", gone.join(" "));
        }
        if !new.is_empty() {
            log::info!("visitor added: [{}]", new.join(" "));
        }
    }
}

/// A running engine. Dropping it stops the engine.
pub struct EngineHandle {
    shared: Arc<Shared>,
    control: EngineControl,
    stop_tx: Option<async_channel::Sender<()>>,
    shard_txs: Vec<async_channel::Sender<ShardCmd>>,
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
    pub run_id: String,
    pub cpus: Vec<usize>,
}

impl EngineHandle {
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A handle that reloads this engine's proxies and visitors.
    pub fn control(&self) -> EngineControl {
        self.control.clone()
    }

    /// Waits until frps answered NewProxy for every proxy (success or error); false on
    /// timeout. Visitors of this engine's own proxies can only connect after that.
    pub fn wait_proxies_answered(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let answered = self
                .shared
                .proxy_status
                .lock()
                .map(|s| self.shared.sets().proxies.keys().all(|k| s.contains_key(k)))
                .unwrap_or(false);
            if answered {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the control (CloseProxy for each proxy), the listeners and every relay.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Graceful stop (SIGINT/SIGTERM): close the visitor listeners, close the control
    /// (CloseProxy for each proxy, so frps sends no new work), let open relays finish for
    /// up to `drain`, then stop like [`EngineHandle::stop`]. Returns how many relays were
    /// still open at the deadline (and were cut).
    pub fn stop_draining(mut self, drain: Duration) -> u64 {
        let deadline = std::time::Instant::now() + drain;
        self.shared.stopping.store(true, Ordering::Relaxed);
        let mut acks = Vec::new();
        for tx in &self.shard_txs {
            let (ack_tx, ack_rx) = std::sync::mpsc::channel();
            if tx.try_send(ShardCmd::StopAccepting(ack_tx)).is_ok() {
                acks.push(ack_rx);
            }
        }
        for ack in acks {
            let _ = ack.recv_timeout(Duration::from_secs(1));
        }
        // The control loop sends CloseProxy and closes when its stop channel closes.
        self.stop_tx.take();
        let open = || state::EngineStats::get(&self.shared.stats.active);
        log::info!(
            "stopped accepting; draining {} open connection(s) for up to {:.1}s",
            open(),
            drain.as_secs_f64()
        );
        while open() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = open();
        if left > 0 {
            log::warn!("drain deadline reached: closing {left} open connection(s)");
        } else {
            log::info!("all connections drained");
        }
        self.shutdown();
        left
    }

    fn shutdown(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.stop_tx.take();
        for tx in &self.shard_txs {
            tx.close();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn executor_error(e: glommio::GlommioError<()>) -> EngineError {
    let text = e.to_string();
    if text.contains("io_uring")
        || text.contains("Operation not permitted")
        || text.contains("Function not implemented")
    {
        EngineError::NoIoUring(text)
    } else {
        EngineError::Start(format!("cannot start an executor: {text}"))
    }
}

/// Engine settings that are not in frpc's config (command-line flags).
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Data shards (`--cores`); `None`: every available CPU.
    pub cores: Option<usize>,
    /// Cap on live yamux streams per shard session (`--max-streams-per-session`);
    /// `None`: [`crate::mux::MuxConfig`]'s default.
    pub max_streams_per_session: Option<usize>,
}

/// Starts the control executor and the shards; returns after the first login (or its
/// failure when `loginFailExit` is on; otherwise the engine keeps retrying in the
/// background and this returns once it is started).
pub fn start(cfg: ClientConfig, cores: Option<usize>) -> Result<EngineHandle, EngineError> {
    start_with(
        cfg,
        EngineOptions {
            cores,
            ..EngineOptions::default()
        },
    )
}

/// [`start`] with every option.
pub fn start_with(cfg: ClientConfig, opts: EngineOptions) -> Result<EngineHandle, EngineError> {
    crate::sys::check_io_uring().map_err(EngineError::Start)?;
    let cpus = plan_cores(opts.cores);
    let mut dial = transport::DialConfig::from_config(&cfg).map_err(EngineError::Start)?;
    if let Some(max) = opts.max_streams_per_session {
        dial.mux.max_streams = max.max(1);
    }
    if let Some(tls) = &dial.tls {
        if !tls.verifies_server {
            log::warn!("TLS to frps is on but the server certificate is NOT verified (as frpc without transport.tls.trustedCaFile): set transport.tls.trustedCaFile to verify it");
        }
    }
    if !crate::conn::splice_enabled() {
        log::info!("splice(2) is off (--no-splice / STCP_ENGINE_SPLICE=off): plain TCP legs are copied through user space");
    }
    let shared = Arc::new(Shared::new(cfg, cpus.len()));
    let mut threads = Vec::new();
    let mut shard_txs = Vec::new();
    for (i, &cpu) in cpus.iter().enumerate() {
        let (tx, rx) = async_channel::unbounded();
        shard_txs.push(tx);
        let sh = shared.clone();
        let d = dial.clone();
        let t = crate::sys::executor(glommio::Placement::Fixed(cpu), &format!("shard-{i}"))
            .spawn(move || shard::shard_main(i, sh, d, rx))
            .map_err(executor_error)?;
        threads.push(t);
    }
    log::info!(
        "started {} shard(s) pinned to CPU(s) {:?}; proxies: {}, visitors: {}",
        cpus.len(),
        cpus,
        shared.sets().proxies.len(),
        shared.sets().visitors.len()
    );
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let (sync_tx, sync_rx) = async_channel::unbounded();
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let sh = shared.clone();
    let txs = shard_txs.clone();
    let t = crate::sys::executor(glommio::Placement::Unbound, "control")
        .spawn(move || control::control_loop(sh, txs, dial, stop_rx, sync_rx, first_tx))
        .map_err(executor_error)?;
    threads.push(t);
    let mut handle = EngineHandle {
        control: EngineControl {
            shared: shared.clone(),
            sync_tx,
            shard_txs: shard_txs.clone(),
            reloading: Arc::default(),
        },
        shared,
        stop_tx: Some(stop_tx),
        shard_txs,
        threads,
        run_id: String::new(),
        cpus,
    };
    // Wait for the first login so callers (and tests) start from a logged-in engine.
    let wait = if handle.shared.cfg.login_fail_exit {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(15)
    };
    match first_rx.recv_timeout(wait) {
        Ok(Ok(run_id)) => handle.run_id = run_id,
        Ok(Err(e)) => {
            handle.shutdown();
            return Err(EngineError::Login(e));
        }
        Err(_) => {} // Still trying in the background (loginFailExit = false).
    }
    Ok(handle)
}
