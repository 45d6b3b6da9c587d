//! `stcp-engine bench` end to end: the embedded chain, an external target, the split
//! fan-out chain, and clear errors for bad input. Short runs; no speed assertions (the
//! figures go in tuning.md), only that each mode measured something real.

use stcp_engine::bench::{start_service, ServiceKind};
use std::process::Command;

fn bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stcp-engine"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run stcp-engine bench");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--json", "--runs", "1", "--seconds", "1"]);
    let (ok, out, err) = bench(&all);
    assert!(ok, "bench {args:?} failed:\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn median(r: &serde_json::Value, key: &str) -> f64 {
    r["median"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("no {key} in {r}"))
}

#[test]
fn embedded_chain_measures_every_mode() {
    let report = json(&[
        "throughput",
        "latency",
        "connect",
        "--encryption",
        "on",
        "--direction",
        "download",
    ]);
    let results = report["results"].as_array().expect("results");
    let modes: Vec<&str> = results
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["throughput", "latency", "connect"]);
    let tp = &results[0];
    assert_eq!(tp["combo"]["encryption"], true);
    assert!(median(tp, "gib") > 0.0, "{tp}");
    // The engine's threads did the relaying, so they used CPU in the window.
    assert!(median(tp, "engine_cpu_s") > 0.0, "{tp}");
    assert!(median(tp, "engine_cpu_s_per_gib") > 0.0, "{tp}");
    let lat = &results[1];
    assert!(median(lat, "requests") > 0.0);
    assert!(median(lat, "p50_us") <= median(lat, "p99_us"));
    assert!(median(lat, "p99_us") <= median(lat, "max_us"));
    assert!(median(&results[2], "conns") > 0.0);
    assert!(report["machine"]["cpus_online"].as_u64().unwrap() >= 1);
}

#[test]
fn external_target_with_pid() {
    let echo = start_service(ServiceKind::Echo, "127.0.0.1:0".parse().unwrap()).unwrap();
    let target = echo.addr().to_string();
    let me = std::process::id().to_string();
    let report = json(&[
        "connect", "fanout", "--target", &target, "--pid", &me, "--conns", "200", "--hold", "0",
    ]);
    let results = report["results"].as_array().expect("results");
    assert_eq!(results[0]["target"], target.as_str());
    assert!(median(&results[0], "conns") > 0.0);
    // The echo service runs in this test process: its CPU is what --pid measures.
    assert!(median(&results[0], &format!("pid{me}_cpu_s")) > 0.0);
    assert_eq!(median(&results[1], "conns"), 200.0);
    assert!(median(&results[1], &format!("pid{me}_rss_after_kib")) > 0.0);
}

#[test]
fn fanout_splits_the_chain_into_processes() {
    for mux in ["on", "off"] {
        let report = json(&["fanout", "--conns", "300", "--hold", "0", "--mux", mux]);
        let r = &report["results"][0];
        assert_eq!(median(r, "conns"), 300.0, "{r}");
        for role in ["visitor", "server", "relay", "echo", "engine"] {
            assert!(
                median(r, &format!("{role}_rss_after_kib")) > 0.0,
                "{role}: {r}"
            );
        }
    }
}

#[test]
fn bad_input_is_named() {
    let (ok, _, err) = bench(&["--target", "127.0.0.1:notaport"]);
    assert!(!ok && err.contains("--target 127.0.0.1:notaport"), "{err}");
    let (ok, _, err) = bench(&["--pid", "999999999", "--target", "127.0.0.1:1"]);
    assert!(!ok && err.contains("--pid 999999999"), "{err}");
    let (ok, _, err) = bench(&["--runs", "0"]);
    assert!(!ok && err.contains("--runs"), "{err}");
    let (ok, _, err) = bench(&["throughput", "--target", "127.0.0.1:1", "--runs", "1"]);
    assert!(
        !ok && err.contains("throughput run 1 against 127.0.0.1:1"),
        "{err}"
    );
}
