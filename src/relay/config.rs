//! The frps.toml subset the relay understands: bindAddr, bindPort, auth.token,
//! auth.additionalScopes, transport.tcpMux, transport.maxPoolCount,
//! transport.heartbeatTimeout, transport.tls.{force,certFile,keyFile},
//! userConnTimeout, detailedErrorsToClient. Other frps keys are reported as ignored.

use super::{RelayConfig, RelayTls};
use std::time::Duration;

const KNOWN: &[&str] = &[
    "bindAddr",
    "bindPort",
    "auth.method",
    "auth.token",
    "auth.additionalScopes",
    "transport.tcpMux",
    "transport.maxPoolCount",
    "transport.heartbeatTimeout",
    "transport.tls.force",
    "transport.tls.certFile",
    "transport.tls.keyFile",
    "userConnTimeout",
    "detailedErrorsToClient",
];

/// Reads frps.toml text; returns the config and the keys it ignored.
pub fn from_frps_toml(text: &str, source: &str) -> Result<(RelayConfig, Vec<String>), String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("{source}: {}", e.to_string().trim()))?;
    let mut flat = Vec::new();
    flatten("", &table, &mut flat);
    let get = |k: &str| {
        flat.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let bad = |k: &str, want: &str| format!("{source}: {k} must be {want}");

    let mut tcp_mux = true;
    if let Some(v) = get("transport.tcpMux") {
        tcp_mux = v
            .as_bool()
            .ok_or_else(|| bad("transport.tcpMux", "true or false"))?;
    }
    let mut cfg = RelayConfig::default().with_tcp_mux(tcp_mux);
    let addr = match get("bindAddr") {
        Some(v) => v
            .as_str()
            .ok_or_else(|| bad("bindAddr", "a string"))?
            .to_string(),
        None => "0.0.0.0".into(),
    };
    let port = match get("bindPort") {
        Some(v) => v
            .as_integer()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| bad("bindPort", "a port number"))?,
        None => 7000,
    };
    let host = if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.clone()
    };
    cfg.bind = format!("{host}:{port}")
        .parse()
        .map_err(|_| format!("{source}: bindAddr {addr:?} is not an IP address"))?;
    if let Some(m) = get("auth.method") {
        if m.as_str() != Some("token") {
            return Err(format!(
                "{source}: auth.method {m} is not supported by the relay (only \"token\")"
            ));
        }
    }
    if let Some(v) = get("auth.token") {
        cfg.token = v
            .as_str()
            .ok_or_else(|| bad("auth.token", "a string"))?
            .to_string();
    }
    if let Some(v) = get("auth.additionalScopes") {
        let scopes = v
            .as_array()
            .ok_or_else(|| bad("auth.additionalScopes", "a list"))?;
        for s in scopes {
            match s.as_str() {
                Some("HeartBeats") => cfg.auth_heartbeats = true,
                Some("NewWorkConns") => cfg.auth_new_work_conns = true,
                _ => {
                    return Err(bad(
                        "auth.additionalScopes",
                        "a list of \"HeartBeats\" / \"NewWorkConns\"",
                    ))
                }
            }
        }
    }
    if let Some(v) = get("transport.maxPoolCount") {
        cfg.max_pool_count = v
            .as_integer()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("transport.maxPoolCount", "a non-negative integer"))?;
    }
    if let Some(v) = get("transport.heartbeatTimeout") {
        cfg.heartbeat_timeout = v
            .as_integer()
            .ok_or_else(|| bad("transport.heartbeatTimeout", "an integer"))?;
    }
    if let Some(v) = get("userConnTimeout") {
        let secs = v
            .as_integer()
            .filter(|s| *s > 0)
            .ok_or_else(|| bad("userConnTimeout", "a positive number of seconds"))?;
        cfg.user_conn_timeout = Duration::from_secs(secs as u64);
    }
    if let Some(v) = get("detailedErrorsToClient") {
        cfg.detailed_errors = v
            .as_bool()
            .ok_or_else(|| bad("detailedErrorsToClient", "true or false"))?;
    }
    if let Some(v) = get("transport.tls.force") {
        cfg.tls_force = v
            .as_bool()
            .ok_or_else(|| bad("transport.tls.force", "true or false"))?;
    }
    let cert = get("transport.tls.certFile").and_then(|v| v.as_str().map(String::from));
    let key = get("transport.tls.keyFile").and_then(|v| v.as_str().map(String::from));
    match (cert, key) {
        (Some(c), Some(k)) if !c.is_empty() && !k.is_empty() => cfg.tls = RelayTls::Files(c, k),
        (Some(_), None) | (None, Some(_)) => {
            return Err(format!(
                "{source}: transport.tls.certFile and keyFile must be set together"
            ))
        }
        _ => {}
    }
    let ignored = flat
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| !KNOWN.contains(&k.as_str()))
        .collect();
    Ok((cfg, ignored))
}

/// `a.b.c` keys for every leaf value (arrays are leaves).
fn flatten(prefix: &str, t: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            other => out.push((key, other.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subset_and_reports_the_rest() {
        let text = r#"
bindAddr = "127.0.0.1"
bindPort = 7100
auth.token = "abc"
auth.additionalScopes = ["NewWorkConns"]
userConnTimeout = 3
webServer.port = 7500
[transport]
tcpMux = false
maxPoolCount = 2
"#;
        let (cfg, ignored) = from_frps_toml(text, "frps.toml").unwrap();
        assert_eq!(cfg.bind.to_string(), "127.0.0.1:7100");
        assert_eq!(cfg.token, "abc");
        assert!(cfg.auth_new_work_conns && !cfg.auth_heartbeats);
        assert!(!cfg.tcp_mux);
        assert_eq!(cfg.heartbeat_timeout, 90, "frps's default without tcpMux");
        assert_eq!(cfg.max_pool_count, 2);
        assert_eq!(cfg.user_conn_timeout, Duration::from_secs(3));
        assert_eq!(ignored, vec!["webServer.port".to_string()]);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = from_frps_toml("bindPort = \"x\"", "frps.toml").unwrap_err();
        assert_eq!(e, "frps.toml: bindPort must be a port number");
        let e = from_frps_toml("auth.method = \"oidc\"", "f.toml").unwrap_err();
        assert!(e.contains("auth.method"), "{e}");
        let e = from_frps_toml("bindPort = ", "f.toml").unwrap_err();
        assert!(e.starts_with("f.toml:"), "{e}");
    }
}
