//! Engine metrics in Prometheus text format (served by [`http`] on `--metrics-addr`).
//!
//! Counters live per shard, and each shard writes only its own, so the data path never
//! shares a cache line with another core; they are updated once per connection (open,
//! handshake done, close), never per chunk. A scrape sums the shards.
//! Label values are proxy/visitor names only: no secret ever reaches this text.

pub mod http;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Error kinds counted per proxy/visitor: `ConnError::kind()` plus the engine's own
/// `limit` (connection refused by a limit) and `accept` (accept(2) failed).
pub const ERROR_KINDS: [&str; 9] = [
    "io",
    "frame",
    "eof",
    "timeout",
    "unexpected",
    "rejected",
    "other",
    "limit",
    "accept",
];

/// Upper bounds, in seconds, of the handshake latency histogram buckets.
pub const HANDSHAKE_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Which side of STCP a series belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Server role: a configured stcp proxy (its work connections).
    Proxy,
    /// Visitor role: a configured stcp visitor (its user connections).
    Visitor,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Proxy => "proxy",
            Role::Visitor => "visitor",
        }
    }
}

/// One proxy's or visitor's counters on one shard.
#[derive(Default)]
pub struct ConnMetrics {
    active: AtomicU64,
    total: AtomicU64,
    bytes_to_server: AtomicU64,
    bytes_from_server: AtomicU64,
    errors: [AtomicU64; ERROR_KINDS.len()],
    /// Per bucket (not cumulative); the last slot is +Inf.
    handshake_buckets: [AtomicU64; HANDSHAKE_BUCKETS.len() + 1],
    handshake_micros: AtomicU64,
}

impl ConnMetrics {
    /// Counts an error of `kind` (one of [`ERROR_KINDS`]; anything else counts as "other").
    pub fn error(&self, kind: &str) {
        let i = ERROR_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(ERROR_KINDS.len() - 3);
        self.errors[i].fetch_add(1, Relaxed);
    }

    /// Records one handshake's duration.
    pub fn handshake(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = HANDSHAKE_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(HANDSHAKE_BUCKETS.len());
        self.handshake_buckets[i].fetch_add(1, Relaxed);
        self.handshake_micros
            .fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }
}

/// One proxy's or visitor's counters: a copy per shard, each on its own cache lines, so
/// a core only ever writes its own copy.
pub struct ConnSlots {
    per_shard: Box<[PaddedConn]>,
}

#[repr(align(128))]
#[derive(Default)]
struct PaddedConn(ConnMetrics);

impl ConnSlots {
    fn new(shards: usize) -> ConnSlots {
        ConnSlots {
            per_shard: (0..shards).map(|_| PaddedConn::default()).collect(),
        }
    }

    /// This proxy's/visitor's counters on shard `i`.
    pub fn shard(&self, i: usize) -> &ConnMetrics {
        &self.per_shard[i % self.per_shard.len()].0
    }

    fn sum(&self, f: impl Fn(&ConnMetrics) -> u64) -> u64 {
        self.per_shard.iter().map(|c| f(&c.0)).sum()
    }
}

/// One shard's own gauge and counter. Aligned so that two shards' never share a cache
/// line.
#[repr(align(128))]
pub struct ShardMetrics {
    active: AtomicU64,
    spliced: AtomicU64,
}

impl ShardMetrics {
    /// A relay of `c` (this shard's copy of a proxy's/visitor's counters) started, after
    /// its handshake.
    pub fn opened(&self, c: &ConnMetrics) {
        c.active.fetch_add(1, Relaxed);
        c.total.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }

    /// A relay of `c` ended, having moved these bytes.
    pub fn closed(&self, c: &ConnMetrics, to_server: u64, from_server: u64) {
        c.active.fetch_sub(1, Relaxed);
        c.bytes_to_server.fetch_add(to_server, Relaxed);
        c.bytes_from_server.fetch_add(from_server, Relaxed);
        self.active.fetch_sub(1, Relaxed);
    }

    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }

    /// Of an ended relay's bytes, those that went by splice(2) (counted per shard).
    pub fn spliced(&self, bytes: u64) {
        self.spliced.fetch_add(bytes, Relaxed);
    }
}

/// The frps session as the metrics show it.
pub struct SessionState {
    pub logged_in: bool,
    pub logins: u64,
}

/// One series set: a proxy or visitor by name.
struct Series {
    role: Role,
    name: String,
    slots: Arc<ConnSlots>,
}

/// Every counter of one engine. Series are keyed by (role, name) and never removed, so a
/// reload that removes a proxy keeps its counters (Prometheus counters must not go
/// backwards) and one that brings a name back continues them.
pub struct Metrics {
    series: Mutex<Vec<Series>>,
    shards: Vec<ShardMetrics>,
}

impl Metrics {
    pub fn new(shards: usize) -> Metrics {
        Metrics {
            series: Mutex::new(Vec::new()),
            shards: (0..shards.max(1))
                .map(|_| ShardMetrics {
                    active: AtomicU64::new(0),
                    spliced: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// The counters of the proxy or visitor called `name`, created on first use.
    pub fn register(&self, role: Role, name: &str) -> Arc<ConnSlots> {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = series.iter().find(|s| s.role == role && s.name == name) {
            return s.slots.clone();
        }
        let slots = Arc::new(ConnSlots::new(self.shards.len()));
        series.push(Series {
            role,
            name: name.to_string(),
            slots: slots.clone(),
        });
        slots
    }

    pub fn shard(&self, i: usize) -> &ShardMetrics {
        &self.shards[i % self.shards.len()]
    }

    /// The `index`-th registered series of `role` (registration order: the config's
    /// order at start, then names added by reloads).
    fn nth(&self, role: Role, index: usize) -> Option<Arc<ConnSlots>> {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series
            .iter()
            .filter(|s| s.role == role)
            .nth(index)
            .map(|s| s.slots.clone())
    }

    fn sum(&self, role: Role, index: usize, f: impl Fn(&ConnMetrics) -> u64) -> u64 {
        self.nth(role, index).map(|s| s.sum(f)).unwrap_or(0)
    }

    /// Total open relays of one proxy or visitor over all shards.
    pub fn active(&self, role: Role, index: usize) -> u64 {
        self.sum(role, index, |c| c.active.load(Relaxed))
    }

    /// Relays started by one proxy or visitor over all shards.
    pub fn total(&self, role: Role, index: usize) -> u64 {
        self.sum(role, index, |c| c.total.load(Relaxed))
    }

    /// Errors of one kind for one proxy or visitor over all shards.
    pub fn errors(&self, role: Role, index: usize, kind: &str) -> u64 {
        match ERROR_KINDS.iter().position(|k| *k == kind) {
            Some(k) => self.sum(role, index, |c| c.errors[k].load(Relaxed)),
            None => 0,
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, session: &SessionState) -> String {
        let mut out = String::with_capacity(4096);
        // Proxies first, then visitors, each in registration order.
        let all: Vec<(Role, String, Arc<ConnSlots>)> = {
            let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
            [Role::Proxy, Role::Visitor]
                .into_iter()
                .flat_map(|r| series.iter().filter(move |s| s.role == r))
                .map(|s| (s.role, s.name.clone(), s.slots.clone()))
                .collect()
        };
        let simple: [(&str, &str, &str, fn(&ConnMetrics) -> u64); 3] = [
            (
                "stcp_connections_active",
                "gauge",
                "Relayed connections open now.",
                |c| c.active.load(Relaxed),
            ),
            (
                "stcp_connections_total",
                "counter",
                "Relayed connections started (handshake done).",
                |c| c.total.load(Relaxed),
            ),
            (
                "stcp_handshakes_total",
                "counter",
                "Handshakes timed (see stcp_handshake_seconds).",
                |c| c.handshake_buckets.iter().map(|b| b.load(Relaxed)).sum(),
            ),
        ];
        for (name, ty, help, f) in simple {
            header(&mut out, name, ty, help);
            for (role, n, slots) in &all {
                let v = slots.sum(f);
                let _ = writeln!(out, "{name}{{{}}} {v}", labels(*role, n));
            }
        }
        header(
            &mut out,
            "stcp_bytes_total",
            "counter",
            "Payload bytes of ended connections, by direction relative to frps.",
        );
        for (role, n, slots) in &all {
            let to = slots.sum(|c| c.bytes_to_server.load(Relaxed));
            let from = slots.sum(|c| c.bytes_from_server.load(Relaxed));
            let l = labels(*role, n);
            let _ = writeln!(out, "stcp_bytes_total{{{l},direction=\"to_server\"}} {to}");
            let _ = writeln!(
                out,
                "stcp_bytes_total{{{l},direction=\"from_server\"}} {from}"
            );
        }
        header(
            &mut out,
            "stcp_connection_errors_total",
            "counter",
            "Connections that failed, by kind (limit: refused by a connection limit).",
        );
        for (role, n, slots) in &all {
            for (k, kind) in ERROR_KINDS.iter().enumerate() {
                let v = slots.sum(|c| c.errors[k].load(Relaxed));
                let _ = writeln!(
                    out,
                    "stcp_connection_errors_total{{{},kind=\"{kind}\"}} {v}",
                    labels(*role, n)
                );
            }
        }
        header(
            &mut out,
            "stcp_handshake_seconds",
            "histogram",
            "Visitor: user accept to NewVisitorConnResp. Proxy: StartWorkConn to local dial done.",
        );
        for (role, n, slots) in &all {
            let l = labels(*role, n);
            let mut cumulative = 0;
            for (b, le) in HANDSHAKE_BUCKETS.iter().enumerate() {
                cumulative += slots.sum(|c| c.handshake_buckets[b].load(Relaxed));
                let _ = writeln!(
                    out,
                    "stcp_handshake_seconds_bucket{{{l},le=\"{le}\"}} {cumulative}"
                );
            }
            cumulative += slots.sum(|c| c.handshake_buckets[HANDSHAKE_BUCKETS.len()].load(Relaxed));
            let micros = slots.sum(|c| c.handshake_micros.load(Relaxed));
            let _ = writeln!(
                out,
                "stcp_handshake_seconds_bucket{{{l},le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                out,
                "stcp_handshake_seconds_sum{{{l}}} {}",
                micros as f64 / 1e6
            );
            let _ = writeln!(out, "stcp_handshake_seconds_count{{{l}}} {cumulative}");
        }
        header(
            &mut out,
            "stcp_shard_connections_active",
            "gauge",
            "Relayed connections open now, per shard (load balance across cores).",
        );
        for (i, s) in self.shards.iter().enumerate() {
            let _ = writeln!(
                out,
                "stcp_shard_connections_active{{shard=\"{i}\"}} {}",
                s.active()
            );
        }
        header(
            &mut out,
            "stcp_shard_spliced_bytes_total",
            "counter",
            "Payload bytes of ended connections that moved by splice(2), per shard (no tcpMux, no encryption or compression).",
        );
        for (i, s) in self.shards.iter().enumerate() {
            let _ = writeln!(
                out,
                "stcp_shard_spliced_bytes_total{{shard=\"{i}\"}} {}",
                s.spliced.load(Relaxed)
            );
        }
        header(
            &mut out,
            "stcp_frps_logged_in",
            "gauge",
            "1 while the control connection to frps is logged in.",
        );
        let _ = writeln!(out, "stcp_frps_logged_in {}", u8::from(session.logged_in));
        header(
            &mut out,
            "stcp_frps_logins_total",
            "counter",
            "Successful logins to frps (re-logins after a drop included).",
        );
        let _ = writeln!(out, "stcp_frps_logins_total {}", session.logins);
        out
    }
}

fn header(out: &mut String, name: &str, ty: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}");
}

fn labels(role: Role, name: &str) -> String {
    format!("role=\"{}\",name=\"{}\"", role.label(), escape(name))
}

/// Prometheus label-value escaping: backslash, double quote, newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_shards_and_renders_cumulative_buckets() {
        let m = Metrics::new(2);
        let ssh = m.register(Role::Proxy, "ssh");
        let v = m.register(Role::Visitor, "v\"1");
        assert!(Arc::ptr_eq(&ssh, &m.register(Role::Proxy, "ssh")));
        m.shard(0).opened(ssh.shard(0));
        m.shard(1).opened(ssh.shard(1));
        m.shard(1).closed(ssh.shard(1), 10, 20);
        m.shard(1).spliced(16);
        v.shard(0).error("timeout");
        v.shard(0).handshake(Duration::from_millis(3));
        v.shard(1).handshake(Duration::from_secs(60));
        let text = m.render(&SessionState {
            logged_in: true,
            logins: 2,
        });
        assert!(text.contains("stcp_connections_active{role=\"proxy\",name=\"ssh\"} 1\n"));
        assert!(text.contains("stcp_shard_spliced_bytes_total{shard=\"0\"} 0\n"));
        assert!(text.contains("stcp_shard_spliced_bytes_total{shard=\"1\"} 16\n"));
        assert!(text.contains("stcp_connections_total{role=\"proxy\",name=\"ssh\"} 2\n"));
        assert!(text.contains(
            "stcp_bytes_total{role=\"proxy\",name=\"ssh\",direction=\"from_server\"} 20\n"
        ));
        assert!(text.contains(
            "stcp_connection_errors_total{role=\"visitor\",name=\"v\\\"1\",kind=\"timeout\"} 1\n"
        ));
        assert!(text.contains(
            "stcp_handshake_seconds_bucket{role=\"visitor\",name=\"v\\\"1\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains(
            "stcp_handshake_seconds_bucket{role=\"visitor\",name=\"v\\\"1\",le=\"+Inf\"} 2\n"
        ));
        assert!(text.contains("stcp_shard_connections_active{shard=\"0\"} 1\n"));
        assert!(text.contains("stcp_shard_connections_active{shard=\"1\"} 0\n"));
        assert!(text.contains("stcp_frps_logged_in 1\n"));
        assert!(text.contains("stcp_frps_logins_total 2\n"));
        assert_eq!(m.active(Role::Proxy, 0), 1);
        assert_eq!(m.errors(Role::Visitor, 0, "timeout"), 1);
    }
}
