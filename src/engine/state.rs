//! State shared by the control executor and the shards. It is read on every new
//! connection and written only on login/logout, so plain locks are fine; no payload
//! ever goes through here.

use super::limits::ConnLimit;
use crate::codec::CipherKey;
use crate::config::{ClientConfig, StcpProxyConfig, StcpVisitorConfig};
use crate::metrics::{Metrics, SessionState};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// A configured stcp proxy (server role) with its derived work-leg key.
pub struct ProxyRuntime {
    pub cfg: StcpProxyConfig,
    /// Wire name: `user.name` when a user is set.
    pub wire_name: String,
    /// The work leg is encrypted with the token when useEncryption is on.
    pub key: Option<CipherKey>,
    /// Position in the config (the metrics index).
    pub index: usize,
    /// `transport.maxConnections` / `--max-conns-per-proxy`.
    pub limit: ConnLimit,
}

/// A configured stcp visitor with its derived key.
pub struct VisitorRuntime {
    pub cfg: StcpVisitorConfig,
    /// The target proxy's wire name (`serverUser.serverName`, see frp's naming rules).
    pub target: String,
    pub key: Option<CipherKey>,
    /// `transport.maxConnections` / `--max-conns-per-visitor`.
    pub limit: ConnLimit,
}

/// Counters for logs, status and the bench.
#[derive(Default, Debug)]
pub struct EngineStats {
    pub logins: AtomicU64,
    pub work_conns: AtomicU64,
    pub work_errors: AtomicU64,
    pub visitor_conns: AtomicU64,
    pub visitor_errors: AtomicU64,
    pub active: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl EngineStats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn sub(c: &AtomicU64, n: u64) {
        c.fetch_sub(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

pub struct Shared {
    pub cfg: ClientConfig,
    pub proxies: HashMap<String, ProxyRuntime>,
    pub visitors: Vec<VisitorRuntime>,
    /// The run id of the current login; empty while logged out.
    run_id: RwLock<String>,
    /// Per proxy: "" once frps accepted it, else the last error.
    pub proxy_status: Mutex<HashMap<String, String>>,
    /// Per proxy/visitor name: the last connection error (for status and tests).
    last_errors: Mutex<HashMap<String, String>>,
    pub stats: EngineStats,
    /// Per-shard counters for `--metrics-addr`.
    pub metrics: Metrics,
    pub stopping: AtomicBool,
}

/// frp's `BuildTargetServerProxyName`.
pub fn target_proxy_name(user: &str, server_user: &str, server_name: &str) -> String {
    if !server_user.is_empty() {
        format!("{server_user}.{server_name}")
    } else if !user.is_empty() {
        format!("{user}.{server_name}")
    } else {
        server_name.to_string()
    }
}

impl Shared {
    /// `shards`: how many data shards will count into [`Shared::metrics`].
    pub fn new(cfg: ClientConfig, shards: usize) -> Shared {
        let token_key = CipherKey::derive(cfg.auth.token.as_bytes());
        let proxies = cfg
            .proxies
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let wire_name = if cfg.user.is_empty() {
                    p.name.clone()
                } else {
                    format!("{}.{}", cfg.user, p.name)
                };
                let rt = ProxyRuntime {
                    cfg: p.clone(),
                    wire_name,
                    key: p.use_encryption.then(|| token_key.clone()),
                    index,
                    limit: ConnLimit::new(p.max_connections),
                };
                (p.name.clone(), rt)
            })
            .collect();
        let visitors = cfg
            .visitors
            .iter()
            .map(|v| VisitorRuntime {
                cfg: v.clone(),
                target: target_proxy_name(&cfg.user, &v.server_user, &v.server_name),
                key: v
                    .use_encryption
                    .then(|| CipherKey::derive(v.secret_key.as_bytes())),
                limit: ConnLimit::new(v.max_connections),
            })
            .collect();
        let metrics = Metrics::new(
            cfg.proxies.iter().map(|p| p.name.clone()).collect(),
            cfg.visitors.iter().map(|v| v.name.clone()).collect(),
            shards,
        );
        Shared {
            cfg,
            proxies,
            visitors,
            run_id: RwLock::new(String::new()),
            proxy_status: Mutex::new(HashMap::new()),
            last_errors: Mutex::new(HashMap::new()),
            stats: EngineStats::default(),
            metrics,
            stopping: AtomicBool::new(false),
        }
    }

    pub fn run_id(&self) -> String {
        self.run_id.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn set_run_id(&self, id: &str) {
        if let Ok(mut r) = self.run_id.write() {
            *r = id.to_string();
        }
    }

    /// The proxy a StartWorkConn names: strip exactly one `user.` prefix (frp's
    /// `StripUserPrefix`).
    pub fn proxy_for_wire_name(&self, wire: &str) -> Option<&ProxyRuntime> {
        let user = &self.cfg.user;
        let name = if user.is_empty() {
            wire
        } else {
            wire.strip_prefix(user.as_str())
                .and_then(|r| r.strip_prefix('.'))
                .unwrap_or(wire)
        };
        self.proxies.get(name)
    }

    /// Waits (polling; this only runs while logged out) until a run id is known.
    pub async fn wait_run_id(&self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let id = self.run_id();
            if !id.is_empty() {
                return Some(id);
            }
            if Instant::now() >= deadline || self.stopping.load(Ordering::Relaxed) {
                return None;
            }
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn record_error(&self, name: &str, error: &str) {
        if let Ok(mut m) = self.last_errors.lock() {
            m.insert(name.to_string(), error.to_string());
        }
    }

    pub fn last_error(&self, name: &str) -> Option<String> {
        self.last_errors.lock().ok()?.get(name).cloned()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The Prometheus text for `GET /metrics`.
    pub fn metrics_text(&self) -> String {
        self.metrics.render(&SessionState {
            logged_in: !self.run_id().is_empty(),
            logins: EngineStats::get(&self.stats.logins),
        })
    }
}

/// Unix seconds (frp's timestamps).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
