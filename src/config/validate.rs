//! frpc's validation rules (`pkg/config/v1/validation`) for the stcp roles,
//! plus warnings about values that are legal but probably not meant.

use std::collections::HashMap;

use super::build::{Origin, Style};
use super::error::ConfigError;
use super::ClientConfig;

/// Where the config's parts were written; absent for hand-built configs.
#[derive(Debug, Clone)]
pub(crate) struct Origins {
    pub common: Origin,
    /// One per entry of `ClientConfig::proxies`, same order.
    pub proxies: Vec<Origin>,
    pub visitors: Vec<Origin>,
}

const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error"];

/// Falls back to synthetic positions (`proxies[i]` in the config's source).
fn origin_or(origins: Option<&Vec<Origin>>, i: usize, what: &str, cfg: &ClientConfig) -> Origin {
    origins
        .and_then(|o| o.get(i).cloned())
        .unwrap_or_else(|| Origin {
            file: cfg.source_name(),
            prefix: format!("{what}[{i}]"),
            line: None,
            style: Style::V1,
            fields: Vec::new(),
        })
}

fn invalid(origin: &Origin, field: &'static str, message: impl Into<String>) -> ConfigError {
    let (at, key) = origin.field(field);
    ConfigError::Invalid {
        at,
        key,
        message: message.into(),
    }
}

pub(crate) fn validate(cfg: &ClientConfig, origins: Option<&Origins>) -> Result<(), ConfigError> {
    let common = origins.map(|o| o.common.clone()).unwrap_or_else(|| Origin {
        file: cfg.source_name(),
        prefix: String::new(),
        line: None,
        style: Style::V1,
        fields: Vec::new(),
    });

    if !LOG_LEVELS.contains(&cfg.log.level.as_str()) {
        return Err(invalid(
            &common,
            "log.level",
            format!(
                "invalid log level {:?}, optional values are [trace debug info warn error]",
                cfg.log.level
            ),
        ));
    }
    let t = &cfg.transport;
    if t.heartbeat_timeout > 0
        && t.heartbeat_interval > 0
        && t.heartbeat_timeout < t.heartbeat_interval
    {
        let field = if common
            .fields
            .iter()
            .any(|(f, _, _)| *f == "transport.heartbeatTimeout")
        {
            "transport.heartbeatTimeout"
        } else {
            "transport.heartbeatInterval"
        };
        return Err(invalid(
            &common,
            field,
            format!(
                "heartbeat timeout ({}) should not be less than heartbeat interval ({})",
                t.heartbeat_timeout, t.heartbeat_interval
            ),
        ));
    }
    if t.wire_protocol != "v1" && t.wire_protocol != "v2" {
        return Err(invalid(
            &common,
            "transport.wireProtocol",
            format!(
                "invalid transport.wireProtocol {:?}, optional values are [v1 v2]",
                t.wire_protocol
            ),
        ));
    }

    let mut seen: HashMap<&str, Origin> = HashMap::new();
    for (i, p) in cfg.proxies.iter().enumerate() {
        let origin = origin_or(origins.map(|o| &o.proxies), i, "proxies", cfg);
        if p.name.is_empty() {
            return Err(invalid(&origin, "name", "name should not be empty"));
        }
        if let Some(first) = seen.insert(&p.name, origin.clone()) {
            return Err(duplicate(&origin, &first, "proxy", &p.name));
        }
        validate_annotations(&origin, &p.annotations)?;
        if !matches!(p.bandwidth_limit_mode.as_str(), "client" | "server") {
            return Err(invalid(
                &origin,
                "bandwidthLimitMode",
                "bandwidth limit mode should be client or server",
            ));
        }
        if !bandwidth_ok(&p.bandwidth_limit) {
            return Err(invalid(
                &origin,
                "bandwidthLimit",
                format!(
                    "invalid bandwidth {:?} (use e.g. \"1MB\" or \"512KB\")",
                    p.bandwidth_limit
                ),
            ));
        }
    }

    let mut seen: HashMap<&str, Origin> = HashMap::new();
    for (i, v) in cfg.visitors.iter().enumerate() {
        let origin = origin_or(origins.map(|o| &o.visitors), i, "visitors", cfg);
        if v.name.is_empty() {
            return Err(invalid(&origin, "name", "name is required"));
        }
        if let Some(first) = seen.insert(&v.name, origin.clone()) {
            return Err(duplicate(&origin, &first, "visitor", &v.name));
        }
        if v.server_name.is_empty() {
            return Err(invalid(
                &origin,
                "serverName",
                "server name is required (the name of the stcp proxy to visit)",
            ));
        }
        if v.bind_port == 0 {
            return Err(invalid(
                &origin,
                "bindPort",
                "bind port is required (must not be 0)",
            ));
        }
        if v.bind_port > 65535 {
            return Err(invalid(
                &origin,
                "bindPort",
                format!("port number {} must be in the range 0..65535", v.bind_port),
            ));
        }
    }
    Ok(())
}

pub(crate) fn duplicate(origin: &Origin, first: &Origin, what: &str, name: &str) -> ConfigError {
    let (at, key) = origin.field("name");
    let (first_at, _) = first.field("name");
    ConfigError::Invalid {
        at,
        key,
        message: format!("{what} name [{name}] is duplicated (first defined at {first_at})"),
    }
}

fn bandwidth_ok(s: &str) -> bool {
    s.is_empty()
        || s.strip_suffix("MB")
            .or_else(|| s.strip_suffix("KB"))
            .is_some_and(|n| n.parse::<f64>().is_ok())
}

/// Kubernetes' qualified-name rule (`[prefix/]name`), on the lower-cased key, as frp does.
fn validate_annotations(
    origin: &Origin,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let mut total = 0usize;
    for (k, v) in annotations {
        total += k.len() + v.len();
        if let Err(why) = qualified_name(&k.to_lowercase()) {
            return Err(invalid(
                origin,
                "annotations",
                format!("annotation key {k} is invalid: {why}"),
            ));
        }
    }
    if total > 256 * 1024 {
        return Err(invalid(
            origin,
            "annotations",
            format!(
                "annotations size {total} is larger than limit {}",
                256 * 1024
            ),
        ));
    }
    Ok(())
}

fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.contains('/') {
        return Err(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', \
                    with an optional DNS subdomain prefix and '/'"
                .into(),
        );
    }
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err("prefix part must be a lowercase RFC 1123 subdomain".into());
        }
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if name.is_empty() || name.len() > 63 {
        return Err("name part must be 1 to 63 characters".into());
    }
    let ok = name.starts_with(alnum)
        && name.ends_with(alnum)
        && name
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', \
                    and must start and end with an alphanumeric character"
                .into(),
        );
    }
    Ok(())
}

/// Legal values that are probably mistakes.
pub(crate) fn value_warnings(cfg: &ClientConfig) -> Vec<String> {
    let mut out = Vec::new();
    let tls = &cfg.transport.tls;
    if !tls.enable {
        for (key, value) in [
            ("transport.tls.certFile", &tls.cert_file),
            ("transport.tls.keyFile", &tls.key_file),
            ("transport.tls.trustedCaFile", &tls.trusted_ca_file),
        ] {
            if !value.is_empty() {
                out.push(format!(
                    "{key} is invalid when transport.tls.enable is false"
                ));
            }
        }
    }
    for p in &cfg.proxies {
        if p.local_port == 0 {
            out.push(format!(
                "proxy {}: localPort is 0, so connections to it will fail",
                p.name
            ));
        }
        if p.secret_key.is_empty() {
            out.push(format!(
                "proxy {}: secretKey is empty; any visitor allowed by allowUsers can connect",
                p.name
            ));
        }
    }
    for v in &cfg.visitors {
        if v.bind_port < 0 {
            out.push(format!(
                "visitor {}: bindPort < 0 opens no listener (it only serves xtcp fallbacks, \
                 which stcp-engine does not have)",
                v.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_keys() {
        assert!(qualified_name("key1").is_ok());
        assert!(qualified_name("prefix/key2").is_ok());
        assert!(qualified_name("example.com/a.b_c-d").is_ok());
        assert!(qualified_name("-bad").is_err());
        assert!(qualified_name("a/b/c").is_err());
        assert!(qualified_name("/x").is_err());
        assert!(qualified_name(&"x".repeat(64)).is_err());
    }

    #[test]
    fn bandwidth() {
        assert!(bandwidth_ok(""));
        assert!(bandwidth_ok("1MB"));
        assert!(bandwidth_ok("0.5KB"));
        assert!(!bandwidth_ok("1GB"));
        assert!(!bandwidth_ok("MB"));
    }
}
