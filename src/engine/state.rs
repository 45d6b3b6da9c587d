//! State shared by the control executor and the shards. It is read on every new
//! connection and written only on login/logout, so plain locks are fine; no payload
//! ever goes through here.

use super::limits::ConnLimit;
use crate::codec::CipherKey;
use crate::config::{ClientConfig, StcpProxyConfig, StcpVisitorConfig};
use crate::metrics::{ConnSlots, Metrics, Role, SessionState};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A configured stcp proxy (server role) with its derived work-leg key.
pub struct ProxyRuntime {
    pub cfg: StcpProxyConfig,
    /// Wire name: `user.name` when a user is set.
    pub wire_name: String,
    /// The work leg is encrypted with the token when useEncryption is on.
    pub key: Option<CipherKey>,
    /// Its counters (kept by name across reloads).
    pub metrics: Arc<ConnSlots>,
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
    /// Its counters (kept by name across reloads).
    pub metrics: Arc<ConnSlots>,
}

/// The proxies and visitors in force. A reload installs a new snapshot; an entry whose
/// config did not change is carried over as the same `Arc`, which is how the shards and
/// the control tell "unchanged" (leave it alone) from "changed" (restart it).
#[derive(Default)]
pub struct Sets {
    pub proxies: HashMap<String, Arc<ProxyRuntime>>,
    pub visitors: HashMap<String, Arc<VisitorRuntime>>,
}

/// The names in `a` that `b` lacks or holds another runtime for (removed or changed,
/// seen from `a` to `b`), sorted, as frpc logs them.
pub fn replaced_names<T>(a: &HashMap<String, Arc<T>>, b: &HashMap<String, Arc<T>>) -> Vec<String> {
    let mut names: Vec<String> = a
        .iter()
        .filter(|(name, rt)| !b.get(*name).is_some_and(|other| Arc::ptr_eq(other, rt)))
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    names
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
    /// The config the engine started with. Its common section is what runs (a reload
    /// does not change it, as in frpc); its proxy/visitor lists are only the initial
    /// ones: [`Shared::sets`] has those in force.
    pub cfg: ClientConfig,
    sets: RwLock<Arc<Sets>>,
    /// Encrypts a proxy's work leg (frp uses the token for it).
    token_key: CipherKey,
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
        let shared = Shared {
            token_key: CipherKey::derive(cfg.auth.token.as_bytes()),
            sets: RwLock::new(Arc::new(Sets::default())),
            run_id: RwLock::new(String::new()),
            proxy_status: Mutex::new(HashMap::new()),
            last_errors: Mutex::new(HashMap::new()),
            stats: EngineStats::default(),
            metrics: Metrics::new(shards),
            stopping: AtomicBool::new(false),
            cfg,
        };
        let (proxies, visitors) = (shared.cfg.proxies.clone(), shared.cfg.visitors.clone());
        shared.install_sets(&proxies, &visitors);
        shared
    }

    /// The proxies and visitors in force now.
    pub fn sets(&self) -> Arc<Sets> {
        self.sets.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs new proxy/visitor lists (start and reload). Entries whose config is
    /// unchanged keep their runtime (same `Arc`: same limit, same open relays); new or
    /// changed ones get a fresh one. Returns the sets that were in force before.
    pub fn install_sets(
        &self,
        proxies: &[StcpProxyConfig],
        visitors: &[StcpVisitorConfig],
    ) -> Arc<Sets> {
        let mut guard = self.sets.write().unwrap_or_else(|e| e.into_inner());
        let old = guard.clone();
        let mut next = Sets::default();
        for p in proxies {
            let rt = match old.proxies.get(&p.name) {
                Some(rt) if rt.cfg == *p => rt.clone(),
                _ => Arc::new(self.proxy_runtime(p)),
            };
            next.proxies.insert(p.name.clone(), rt);
        }
        for v in visitors {
            let rt = match old.visitors.get(&v.name) {
                Some(rt) if rt.cfg == *v => rt.clone(),
                _ => Arc::new(self.visitor_runtime(v)),
            };
            next.visitors.insert(v.name.clone(), rt);
        }
        *guard = Arc::new(next);
        old
    }

    fn proxy_runtime(&self, p: &StcpProxyConfig) -> ProxyRuntime {
        let user = &self.cfg.user;
        ProxyRuntime {
            cfg: p.clone(),
            wire_name: if user.is_empty() {
                p.name.clone()
            } else {
                format!("{user}.{}", p.name)
            },
            key: p.use_encryption.then(|| self.token_key.clone()),
            metrics: self.metrics.register(Role::Proxy, &p.name),
            limit: ConnLimit::new(p.max_connections),
        }
    }

    fn visitor_runtime(&self, v: &StcpVisitorConfig) -> VisitorRuntime {
        VisitorRuntime {
            cfg: v.clone(),
            target: target_proxy_name(&self.cfg.user, &v.server_user, &v.server_name),
            key: v
                .use_encryption
                .then(|| CipherKey::derive(v.secret_key.as_bytes())),
            limit: ConnLimit::new(v.max_connections),
            metrics: self.metrics.register(Role::Visitor, &v.name),
        }
    }

    /// The started config with the proxy/visitor lists in force (what a reload compares
    /// the file against).
    pub fn current_config(&self) -> ClientConfig {
        let sets = self.sets();
        let mut cfg = self.cfg.clone();
        cfg.proxies = sets.proxies.values().map(|p| p.cfg.clone()).collect();
        cfg.visitors = sets.visitors.values().map(|v| v.cfg.clone()).collect();
        cfg.proxies.sort_by(|a, b| a.name.cmp(&b.name));
        cfg.visitors.sort_by(|a, b| a.name.cmp(&b.name));
        cfg
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
    pub fn proxy_for_wire_name(&self, wire: &str) -> Option<Arc<ProxyRuntime>> {
        let user = &self.cfg.user;
        let name = if user.is_empty() {
            wire
        } else {
            wire.strip_prefix(user.as_str())
                .and_then(|r| r.strip_prefix('.'))
                .unwrap_or(wire)
        };
        self.sets().proxies.get(name).cloned()
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

    /// A proxy was removed or changed: its NewProxyResp no longer describes it.
    pub fn forget_proxy_status(&self, name: &str) {
        if let Ok(mut st) = self.proxy_status.lock() {
            st.remove(name);
        }
    }

    pub fn record_error(&self, name: &str, error: &str) {
        if let Ok(mut m) = self.last_errors.lock() {
            m.insert(name.to_string(), error.to_string());
        }
    }

    /// A visitor was removed: its last error no longer describes anything.
    pub fn forget_error(&self, name: &str) {
        if let Ok(mut m) = self.last_errors.lock() {
            m.remove(name);
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
