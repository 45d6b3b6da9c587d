//! Bench results: what was measured, how, on what machine; medians over runs; printed
//! for people or as JSON for scripts.

use serde::Serialize;
use std::collections::BTreeMap;

/// The machine a report was measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    /// CPUs online, and those this process may run on.
    pub cpus_online: usize,
    pub cpus_available: usize,
    /// 1-minute load average when the bench started: others' work shares these cores.
    pub loadavg_at_start: f64,
    pub kernel: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cpus_online = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let loadavg_at_start = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Machine {
            cpu_model,
            cpus_online,
            cpus_available: crate::engine::available_cpus().len(),
            loadavg_at_start,
            kernel,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} ({} CPUs online, {} usable), Linux {}, load average {:.2} at start",
            self.cpu_model,
            self.cpus_online,
            self.cpus_available,
            self.kernel,
            self.loadavg_at_start
        )
    }
}

/// One mode measured against one target (one combination, in embedded mode).
#[derive(Clone, Debug, Serialize)]
pub struct ModeResult {
    pub mode: String,
    /// "embedded" or the HOST:PORT that was loaded.
    pub target: String,
    /// tcpMux / encryption / compression, where the bench built the chain itself.
    pub combo: Option<super::embedded::Combo>,
    /// CPUs the engine's shards were pinned to (embedded mode).
    pub engine_cpus: Option<Vec<usize>>,
    /// How the figures were obtained, in words.
    pub how: String,
    pub runs: usize,
    /// Median over the runs, per metric.
    pub median: BTreeMap<String, f64>,
    pub per_run: Vec<BTreeMap<String, f64>>,
}

impl ModeResult {
    pub fn from_runs(
        mode: &str,
        target: String,
        combo: Option<super::embedded::Combo>,
        engine_cpus: Option<Vec<usize>>,
        how: String,
        per_run: Vec<BTreeMap<String, f64>>,
    ) -> ModeResult {
        let mut median = BTreeMap::new();
        if let Some(first) = per_run.first() {
            for key in first.keys() {
                let mut v: Vec<f64> = per_run.iter().filter_map(|r| r.get(key).copied()).collect();
                v.sort_by(|a, b| a.total_cmp(b));
                median.insert(key.clone(), median_of_sorted(&v));
            }
        }
        ModeResult {
            mode: mode.into(),
            target,
            combo,
            engine_cpus,
            how,
            runs: per_run.len(),
            median,
            per_run,
        }
    }

    fn m(&self, key: &str) -> f64 {
        self.median.get(key).copied().unwrap_or(f64::NAN)
    }

    /// The human summary: one headline line and the method.
    pub fn human(&self) -> String {
        let combo = self
            .combo
            .map(|c| format!(" [{}]", c.label()))
            .unwrap_or_default();
        let head = match self.mode.as_str() {
            "throughput" => {
                let mut s = format!(
                    "{:.2} Gbit/s ({:.0} MiB/s)",
                    self.m("gbit_per_s"),
                    self.m("mib_per_s")
                );
                for (key, label) in [
                    ("engine_cpu_s_per_gib", "engine"),
                    ("relay_cpu_s_per_gib", "relay"),
                    ("pids_cpu_s_per_gib", "--pid processes"),
                ] {
                    if let Some(v) = self.median.get(key) {
                        s += &format!(", {label} {v:.2} CPU-s/GiB");
                    }
                }
                s
            }
            "latency" => format!(
                "p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
                self.m("p50_us"),
                self.m("p90_us"),
                self.m("p99_us"),
                self.m("p999_us"),
                self.m("max_us")
            ),
            "connect" => format!(
                "{:.0} conn/s, setup p50 {:.0} us, p99 {:.0} us",
                self.m("conns_per_s"),
                self.m("setup_p50_us"),
                self.m("setup_p99_us")
            ),
            "fanout" => {
                let mut s = format!("{:.0} idle connections", self.m("conns"));
                for (k, v) in &self.median {
                    if let Some(pid) = k.strip_suffix("_kib_per_conn") {
                        s += &format!(
                            ", {pid}: {:.1} KiB/conn (RSS {:.1} -> {:.1} MiB)",
                            v,
                            self.m(&format!("{pid}_rss_before_kib")) / 1024.0,
                            self.m(&format!("{pid}_rss_after_kib")) / 1024.0
                        );
                    }
                }
                s
            }
            _ => String::new(),
        };
        format!(
            "{:<10} {}{combo}: {head}\n           how: {} (median of {} run(s))",
            self.mode, self.target, self.how, self.runs
        )
    }
}

fn median_of_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Everything one `stcp-engine bench` invocation measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub command: String,
    pub results: Vec<ModeResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: f64) -> BTreeMap<String, f64> {
        BTreeMap::from([("gbit_per_s".to_string(), v)])
    }

    #[test]
    fn medians_per_metric() {
        let r = ModeResult::from_runs(
            "throughput",
            "x".into(),
            None,
            None,
            String::new(),
            vec![run(3.0), run(1.0), run(2.0)],
        );
        assert_eq!(r.median["gbit_per_s"], 2.0);
        let r = ModeResult::from_runs(
            "throughput",
            "x".into(),
            None,
            None,
            String::new(),
            vec![run(4.0), run(1.0)],
        );
        assert_eq!(r.median["gbit_per_s"], 2.5);
        assert!(r.human().contains("2.50 Gbit/s"), "{}", r.human());
    }
}
