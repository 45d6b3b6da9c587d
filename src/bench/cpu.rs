//! Where the CPU time and memory went during a measurement window: per thread group of
//! this process (by thread name, so the embedded engine's shards can be told apart from
//! the relay and the load generator sharing the process), and per external process.

use std::collections::HashMap;
use std::time::Instant;

/// Thread groups of this process, by the names glommio gives its executor threads
/// ("NAME-ID", truncated to 15 bytes by the kernel). Threads a group's executor spawns
/// (glommio's blocking pool) inherit its name, so they count with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThreadGroup {
    /// The engine's data shards ("shard-N") and control executor ("control").
    Engine,
    /// The embedded frps-compatible relay ("stcp-relay").
    Relay,
    /// The echo / source / sink service ("bench-service").
    Service,
    /// Everything else: the load generator's client threads and the main thread.
    Other,
}

impl ThreadGroup {
    pub fn of(comm: &str) -> ThreadGroup {
        if comm.starts_with("shard-") || comm.starts_with("control-") {
            ThreadGroup::Engine
        } else if comm.starts_with("stcp-relay") {
            ThreadGroup::Relay
        } else if comm.starts_with("bench-service") {
            ThreadGroup::Service
        } else {
            ThreadGroup::Other
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ThreadGroup::Engine => "engine",
            ThreadGroup::Relay => "relay",
            ThreadGroup::Service => "service",
            ThreadGroup::Other => "loadgen",
        }
    }

    pub const ALL: [ThreadGroup; 4] = [
        ThreadGroup::Engine,
        ThreadGroup::Relay,
        ThreadGroup::Service,
        ThreadGroup::Other,
    ];
}

/// CPU nanoseconds of every thread of this process now: tid -> (name, ns on CPU).
/// `schedstat` gives nanoseconds (utime/stime in `stat` are 10 ms ticks).
fn own_threads() -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let path = e.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        if let Some(ns) = ns {
            out.insert(tid, (comm.trim().to_string(), ns));
        }
    }
    out
}

/// CPU time of a whole process (user + system, including exited threads), in ns.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 12 and 13 after `) `.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

/// Gives freed heap back to the kernel so that this process's RSS reflects live memory
/// (glibc keeps freed chunks otherwise, and an earlier run would hide a later one's cost).
pub fn trim_own_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CPU seconds spent in one measurement window.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CpuUsage {
    pub wall_s: f64,
    /// This process, by thread group name (engine, relay, service, loadgen).
    pub groups: Vec<(String, f64)>,
    /// External processes given with --pid: (pid, CPU seconds).
    pub pids: Vec<(u32, f64)>,
}

impl CpuUsage {
    pub fn group(&self, name: &str) -> f64 {
        self.groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|g| g.1)
            .unwrap_or(0.0)
    }

    pub fn pids_total(&self) -> f64 {
        self.pids.iter().map(|p| p.1).sum()
    }
}

/// Samples CPU counters at the start and end of a window.
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Option<(Instant, HashMap<u32, (String, u64)>, Vec<Option<u64>>)>,
    pub last: Option<CpuUsage>,
}

impl CpuMeter {
    pub fn new(pids: &[u32]) -> CpuMeter {
        CpuMeter {
            pids: pids.to_vec(),
            start: None,
            last: None,
        }
    }

    pub fn begin(&mut self) {
        let pids = self.pids.iter().map(|&p| process_cpu_ns(p)).collect();
        self.start = Some((Instant::now(), own_threads(), pids));
    }

    pub fn end(&mut self) {
        let Some((t0, threads0, pids0)) = self.start.take() else {
            return;
        };
        let now = own_threads();
        let mut by_group: HashMap<ThreadGroup, u64> = HashMap::new();
        for (tid, (comm, ns)) in &now {
            // A thread born inside the window started from zero.
            let before = threads0.get(tid).map(|t| t.1).unwrap_or(0);
            *by_group.entry(ThreadGroup::of(comm)).or_default() += ns.saturating_sub(before);
        }
        let pids = self
            .pids
            .iter()
            .zip(pids0)
            .filter_map(|(&p, before)| {
                let after = process_cpu_ns(p)?;
                Some((p, after.saturating_sub(before?) as f64 / 1e9))
            })
            .collect();
        self.last = Some(CpuUsage {
            wall_s: t0.elapsed().as_secs_f64(),
            groups: ThreadGroup::ALL
                .iter()
                .map(|g| {
                    let ns = by_group.get(g).copied().unwrap_or(0);
                    (g.name().to_string(), ns as f64 / 1e9)
                })
                .collect(),
            pids,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names_map_to_groups() {
        assert_eq!(ThreadGroup::of("shard-0-3"), ThreadGroup::Engine);
        assert_eq!(ThreadGroup::of("control-5"), ThreadGroup::Engine);
        assert_eq!(ThreadGroup::of("stcp-relay-1"), ThreadGroup::Relay);
        assert_eq!(ThreadGroup::of("bench-service-1"), ThreadGroup::Service);
        assert_eq!(ThreadGroup::of("stcp-engine"), ThreadGroup::Other);
    }

    #[test]
    fn own_cpu_and_memory_are_readable() {
        let me = std::process::id();
        assert!(crate::bench::load::rss_kib(me).unwrap() > 0);
        let mut m = CpuMeter::new(&[me]);
        m.begin();
        // Burn a little CPU on this thread so the window has something to count.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 30 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        m.end();
        let u = m.last.unwrap();
        let own: f64 = u.groups.iter().map(|g| g.1).sum();
        assert!(own > 0.0, "{u:?}");
        assert_eq!(u.pids.len(), 1);
    }
}
