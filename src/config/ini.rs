//! Legacy frpc INI (`[common]` + one section per proxy/visitor).
//!
//! Parsing follows go-ini as frpc configures it (`#`/`;` comment lines, no
//! inline comments, `=` or `:` delimiters, surrounding quotes stripped,
//! `"""`/backquote values, trailing-`\` continuation, a bare key means `true`,
//! repeated sections merge, the last repeated key wins). The sections are then
//! re-keyed to frpc's v1 names, like frp's `legacy/conversion.go`, producing the
//! same tree a TOML file would, so one walker serves both.

use super::error::{ConfigError, Location};
use super::tree::{Node, Val};

#[derive(Debug, Clone)]
pub(crate) struct IniKey {
    pub name: String,
    pub value: String,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct IniSection {
    pub name: String,
    pub line: usize,
    pub keys: Vec<IniKey>,
}

impl IniSection {
    /// Last value wins, as in go-ini.
    pub fn get(&self, name: &str) -> Option<&IniKey> {
        self.keys.iter().rev().find(|k| k.name == name)
    }
}

/// True when frpc would treat the content as legacy INI: it has a `[common]` section.
pub(crate) fn has_common_section(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim();
        l.starts_with('[') && l.ends_with(']') && l[1..l.len() - 1].trim() == "common"
    })
}

/// Splits INI text into sections. Keys before the first header go to `DEFAULT`.
pub(crate) fn parse(text: &str, file: &str) -> Result<Vec<IniSection>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections = vec![IniSection {
        name: "DEFAULT".into(),
        line: 1,
        keys: Vec::new(),
    }];
    let mut current = 0usize;
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i].trim_start();
        i += 1;
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let syntax = |message: String| ConfigError::Syntax {
            at: Location::new(file, Some(line_no)),
            format: "INI",
            message,
        };
        if line.starts_with('[') {
            let Some(close) = line.rfind(']') else {
                return Err(syntax(format!("unclosed section: {line}")));
            };
            let name = line[1..close].trim();
            if name.is_empty() {
                return Err(syntax("empty section name".into()));
            }
            current = match sections.iter().position(|s| s.name == name) {
                Some(idx) => idx,
                None => {
                    sections.push(IniSection {
                        name: name.to_string(),
                        line: line_no,
                        keys: Vec::new(),
                    });
                    sections.len() - 1
                }
            };
            continue;
        }
        let (key, rest) = split_key(line).map_err(syntax)?;
        let value = match rest {
            // go-ini's AllowBooleanKeys: a lone key means "true".
            None => "true".to_string(),
            Some(rest) => read_value(rest, &lines, &mut i).map_err(syntax)?,
        };
        sections[current].keys.push(IniKey {
            name: key,
            value,
            line: line_no,
        });
    }
    Ok(sections)
}

/// Returns the key and, when there is a delimiter, the text after it.
fn split_key(line: &str) -> Result<(String, Option<&str>), String> {
    for quote in ['"', '`'] {
        if let Some(body) = line.strip_prefix(quote) {
            let end = body
                .find(quote)
                .ok_or_else(|| format!("unclosed quoted key: {line}"))?;
            let after = body[end + 1..].trim_start();
            let rest = after
                .strip_prefix(['=', ':'])
                .ok_or_else(|| format!("missing `=` after key: {line}"))?;
            return Ok((body[..end].to_string(), Some(rest)));
        }
    }
    match line.find(['=', ':']) {
        Some(idx) => Ok((line[..idx].trim().to_string(), Some(&line[idx + 1..]))),
        None => Ok((line.trim().to_string(), None)),
    }
}

fn read_value(rest: &str, lines: &[&str], next: &mut usize) -> Result<String, String> {
    let rest = rest.trim_start();
    for delim in ["\"\"\"", "`"] {
        if let Some(body) = rest.strip_prefix(delim) {
            // Multi-line value up to the closing delimiter.
            let mut value = String::new();
            let mut chunk = body;
            loop {
                if let Some(end) = chunk.find(delim) {
                    value.push_str(&chunk[..end]);
                    return Ok(value);
                }
                value.push_str(chunk);
                value.push('\n');
                let Some(line) = lines.get(*next) else {
                    return Err(format!("unclosed {delim} value"));
                };
                *next += 1;
                chunk = line;
            }
        }
    }
    let mut value = rest.trim_end().to_string();
    while value.ends_with('\\') {
        value.pop();
        let Some(line) = lines.get(*next) else { break };
        *next += 1;
        value.push_str(line.trim_end());
    }
    for q in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
            value = value[1..value.len() - 1].to_string();
            break;
        }
    }
    Ok(value)
}

/// go-ini's boolean spellings. `None` = not a boolean.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "YES" | "yes" | "Yes" | "y" | "ON" | "on"
        | "On" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" | "NO" | "no" | "No" | "n" | "OFF"
        | "off" | "Off" => Some(false),
        _ => None,
    }
}

/// `[common]` key -> v1 path. `None` for keys with no v1 meaning at all.
fn common_key(name: &str) -> Option<&'static str> {
    Some(match name {
        "server_addr" => "serverAddr",
        "server_port" => "serverPort",
        "user" => "user",
        "token" => "auth.token",
        "authentication_method" => "auth.method",
        "oidc_client_id" => "auth.oidc.clientID",
        "oidc_client_secret" => "auth.oidc.clientSecret",
        "oidc_audience" => "auth.oidc.audience",
        "oidc_scope" => "auth.oidc.scope",
        "oidc_token_endpoint_url" => "auth.oidc.tokenEndpointURL",
        "nat_hole_stun_server" => "natHoleStunServer",
        "dns_server" => "dnsServer",
        "login_fail_exit" => "loginFailExit",
        "udp_packet_size" => "udpPacketSize",
        "dial_server_timeout" => "transport.dialServerTimeout",
        "dial_server_keepalive" => "transport.dialServerKeepalive",
        "connect_server_local_ip" => "transport.connectServerLocalIP",
        "http_proxy" => "transport.proxyURL",
        "pool_count" => "transport.poolCount",
        "tcp_mux" => "transport.tcpMux",
        "tcp_mux_keepalive_interval" => "transport.tcpMuxKeepaliveInterval",
        "protocol" => "transport.protocol",
        "quic_keepalive_period" => "transport.quic.keepalivePeriod",
        "quic_max_idle_timeout" => "transport.quic.maxIdleTimeout",
        "quic_max_incoming_streams" => "transport.quic.maxIncomingStreams",
        "heartbeat_interval" => "transport.heartbeatInterval",
        "heartbeat_timeout" => "transport.heartbeatTimeout",
        "tls_enable" => "transport.tls.enable",
        "tls_cert_file" => "transport.tls.certFile",
        "tls_key_file" => "transport.tls.keyFile",
        "tls_trusted_ca_file" => "transport.tls.trustedCaFile",
        "tls_server_name" => "transport.tls.serverName",
        "disable_custom_tls_first_byte" => "transport.tls.disableCustomTLSFirstByte",
        "log_file" => "log.to",
        "log_level" => "log.level",
        "log_max_days" => "log.maxDays",
        "disable_log_color" => "log.disablePrintColor",
        "admin_addr" => "webServer.addr",
        "admin_port" => "webServer.port",
        "admin_user" => "webServer.user",
        "admin_pwd" => "webServer.password",
        "assets_dir" => "webServer.assetsDir",
        "pprof_enable" => "webServer.pprofEnable",
        _ => return None,
    })
}

/// Keys whose values are comma lists in INI and arrays in v1.
const LIST_KEYS: &[&str] = &["start", "includes", "allow_users"];

fn proxy_key(name: &str) -> Option<&'static str> {
    Some(match name {
        "type" => "type",
        "sk" => "secretKey",
        "allow_users" => "allowUsers",
        "local_ip" => "localIP",
        "local_port" => "localPort",
        "use_encryption" => "transport.useEncryption",
        "use_compression" => "transport.useCompression",
        "bandwidth_limit" => "transport.bandwidthLimit",
        "max_connections" => "transport.maxConnections",
        "bandwidth_limit_mode" => "transport.bandwidthLimitMode",
        "proxy_protocol_version" => "transport.proxyProtocolVersion",
        "group" => "loadBalancer.group",
        "group_key" => "loadBalancer.groupKey",
        "health_check_type" => "healthCheck.type",
        "health_check_timeout_s" => "healthCheck.timeoutSeconds",
        "health_check_max_failed" => "healthCheck.maxFailed",
        "health_check_interval_s" => "healthCheck.intervalSeconds",
        "health_check_url" => "healthCheck.path",
        "plugin" => "plugin.type",
        _ => return None,
    })
}

fn visitor_key(name: &str) -> Option<&'static str> {
    Some(match name {
        "type" => "type",
        "sk" => "secretKey",
        "server_name" => "serverName",
        "server_user" => "serverUser",
        "bind_addr" => "bindAddr",
        "bind_port" => "bindPort",
        "use_encryption" => "transport.useEncryption",
        "use_compression" => "transport.useCompression",
        "max_connections" => "transport.maxConnections",
        _ => return None,
    })
}

/// The v1-shaped tree of one INI file plus notes about keys frpc would ignore.
pub(crate) struct Converted {
    pub root: Node,
    pub warnings: Vec<String>,
}

/// Re-keys parsed sections to frpc's v1 layout. `main` = this file's `[common]` counts.
pub(crate) fn to_tree(
    sections: &[IniSection],
    file: &str,
    main: bool,
) -> Result<Converted, ConfigError> {
    let mut root = Builder::default();
    let mut warnings = Vec::new();
    let mut proxies = Vec::new();
    let mut visitors = Vec::new();
    let mut have_common = false;
    for section in sections {
        let tag = format!("[{}]", section.name);
        match section.name.as_str() {
            "DEFAULT" => {
                for key in &section.keys {
                    warnings.push(format!(
                        "{file}:{}: {} is outside any section; ignored (frpc ignores it too)",
                        key.line, key.name
                    ));
                }
            }
            "common" if !main => warnings.push(format!(
                "{file}:{}: [common] in an included file is ignored (frpc ignores it too)",
                section.line
            )),
            "common" => {
                have_common = true;
                convert_common(section, &tag, file, &mut root, &mut warnings)?;
            }
            name if name.starts_with("range:") => {
                return Err(ConfigError::Unsupported {
                    at: Location::new(file, Some(section.line)),
                    key: tag,
                    value: "...".into(),
                    reason: "range sections expand to tcp/udp proxies; only stcp proxies and \
                             visitors are supported"
                        .into(),
                })
            }
            _ => {
                let role = section.get("role");
                match role.map(|r| r.value.as_str()).unwrap_or("") {
                    "" | "server" => {
                        let node = convert_proxy(section, &tag, file, &mut warnings);
                        proxies.push(node);
                    }
                    "visitor" => {
                        let node = convert_visitor(section, &tag, file, &mut warnings)?;
                        visitors.push(node);
                    }
                    other => {
                        let role = role.expect("non-empty role comes from a key");
                        return Err(ConfigError::Invalid {
                            at: Location::new(file, Some(role.line)),
                            key: format!("{tag} role"),
                            message: format!("role should be 'server' or 'visitor', not {other:?}"),
                        });
                    }
                }
            }
        }
    }
    if main && !have_common {
        return Err(ConfigError::Format {
            file: file.into(),
            message: "invalid configuration file, not found [common] section".into(),
        });
    }
    let mut root = root.into_node("", Some(1));
    if let Val::Table(entries) = &mut root.val {
        if !proxies.is_empty() {
            entries.push(("proxies".into(), Node::new(Val::Array(proxies), None, "")));
        }
        if !visitors.is_empty() {
            entries.push(("visitors".into(), Node::new(Val::Array(visitors), None, "")));
        }
    }
    Ok(Converted { root, warnings })
}

fn leaf(section_tag: &str, key: &IniKey) -> Node {
    let val = if LIST_KEYS.contains(&key.name.as_str()) {
        // go-ini's Strings(","): split, trim, and an empty value is an empty list.
        let items = key
            .value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                Node::new(
                    Val::Raw(s.to_string()),
                    Some(key.line),
                    format!("{section_tag} {}", key.name),
                )
            })
            .collect();
        Val::Array(items)
    } else {
        Val::Raw(key.value.clone())
    };
    Node::new(val, Some(key.line), format!("{section_tag} {}", key.name))
}

fn convert_common(
    section: &IniSection,
    tag: &str,
    file: &str,
    root: &mut Builder,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let mut scopes = Vec::new();
    for key in dedup(&section.keys) {
        let name = key.name.as_str();
        let node = leaf(tag, key);
        if let Some(path) = common_key(name) {
            root.insert(path, node);
        } else if matches!(name, "start" | "includes") {
            root.insert(name, node);
        } else if let Some(rest) = name.strip_prefix("meta_") {
            root.insert_split(&["metadatas", rest], node);
        } else if let Some(rest) = name.strip_prefix("oidc_additional_") {
            root.insert_split(&["auth", "oidc", "additionalEndpointParams", rest], node);
        } else if let Some(scope) = match name {
            "authenticate_heartbeats" => Some("HeartBeats"),
            "authenticate_new_work_conns" => Some("NewWorkConns"),
            _ => None,
        } {
            // Legacy booleans become entries of v1's auth.additionalScopes.
            match parse_bool(&key.value) {
                Some(true) => scopes.push(Node::new(
                    Val::Raw(scope.into()),
                    Some(key.line),
                    node.path.clone(),
                )),
                Some(false) => {}
                None if key.value.is_empty() => {}
                None => {
                    return Err(ConfigError::Invalid {
                        at: Location::new(file, Some(key.line)),
                        key: node.path,
                        message: format!("expected a boolean, found {:?}", key.value),
                    })
                }
            }
        } else if name == "log_way" {
            // No v1 equivalent: log.to alone decides (console or a file path).
        } else {
            warnings.push(format!(
                "{file}:{}: {tag} {name} is not a frpc option; ignored (frpc ignores it too)",
                key.line
            ));
        }
    }
    if !scopes.is_empty() {
        let line = scopes[0].line;
        root.insert(
            "auth.additionalScopes",
            Node::new(Val::Array(scopes), line, format!("{tag} authenticate_*")),
        );
    }
    Ok(())
}

fn convert_proxy(section: &IniSection, tag: &str, file: &str, warnings: &mut Vec<String>) -> Node {
    let mut b = Builder::default();
    b.insert(
        "name",
        Node::new(
            Val::Str(section.name.clone()),
            Some(section.line),
            tag.to_string(),
        ),
    );
    let stcp = section.get("type").is_some_and(|t| t.value == "stcp");
    for key in dedup(&section.keys) {
        let name = key.name.as_str();
        let node = leaf(tag, key);
        if let Some(path) = proxy_key(name) {
            b.insert(path, node);
        } else if let Some(rest) = name.strip_prefix("meta_") {
            b.insert_split(&["metadatas", rest], node);
        } else if let Some(rest) = name.strip_prefix("plugin_") {
            b.insert_split(&["plugin", rest], node);
        } else if matches!(name, "role" | "name") {
            // role picked the list; the section name is the proxy name.
        } else if stcp {
            warnings.push(format!(
                "{file}:{}: {tag} {name} has no meaning for stcp proxies; ignored (frpc ignores it too)",
                key.line
            ));
        }
    }
    // Legacy proxies without a type are tcp proxies.
    if section.get("type").is_none() {
        b.insert(
            "type",
            Node::new(
                Val::Raw("tcp".into()),
                Some(section.line),
                format!("{tag} type"),
            ),
        );
    }
    b.into_node(tag, Some(section.line))
}

fn convert_visitor(
    section: &IniSection,
    tag: &str,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<Node, ConfigError> {
    if section.get("type").is_none_or(|t| t.value.is_empty()) {
        return Err(ConfigError::Invalid {
            at: Location::new(file, Some(section.line)),
            key: format!("{tag} type"),
            message: "type shouldn't be empty for a visitor".into(),
        });
    }
    let mut b = Builder::default();
    b.insert(
        "name",
        Node::new(
            Val::Str(section.name.clone()),
            Some(section.line),
            tag.to_string(),
        ),
    );
    let stcp = section.get("type").is_some_and(|t| t.value == "stcp");
    for key in dedup(&section.keys) {
        let name = key.name.as_str();
        if let Some(path) = visitor_key(name) {
            b.insert(path, leaf(tag, key));
        } else if name == "plugin" || name.starts_with("plugin_") {
            // Legacy visitors had no plugins; keep it so the walker can reject it loudly.
            b.insert_split(
                &["plugin", name.strip_prefix("plugin_").unwrap_or("type")],
                leaf(tag, key),
            );
        } else if matches!(name, "role" | "name") {
        } else if stcp {
            warnings.push(format!(
                "{file}:{}: {tag} {name} has no meaning for stcp visitors; ignored (frpc ignores it too)",
                key.line
            ));
        }
    }
    Ok(b.into_node(tag, Some(section.line)))
}

/// Keys with the last occurrence of each name winning, in first-seen order.
fn dedup(keys: &[IniKey]) -> Vec<&IniKey> {
    let mut out: Vec<&IniKey> = Vec::new();
    for key in keys {
        match out.iter_mut().find(|k| k.name == key.name) {
            Some(slot) => *slot = key,
            None => out.push(key),
        }
    }
    out
}

/// Builds nested tables from dotted v1 paths.
#[derive(Default)]
struct Builder {
    entries: Vec<(String, Builder)>,
    leaf: Option<Node>,
}

impl Builder {
    fn insert(&mut self, dotted: &str, node: Node) {
        let parts: Vec<&str> = dotted.split('.').collect();
        self.insert_split(&parts, node);
    }

    fn insert_split(&mut self, parts: &[&str], node: Node) {
        let Some((first, rest)) = parts.split_first() else {
            self.leaf = Some(node);
            return;
        };
        let idx = match self.entries.iter().position(|(k, _)| k == first) {
            Some(i) => i,
            None => {
                self.entries.push((first.to_string(), Builder::default()));
                self.entries.len() - 1
            }
        };
        self.entries[idx].1.insert_split(rest, node);
    }

    fn into_node(self, path: &str, line: Option<usize>) -> Node {
        if let Some(leaf) = self.leaf {
            return leaf;
        }
        let entries: Vec<(String, Node)> = self
            .entries
            .into_iter()
            .map(|(k, b)| (k, b.into_node(path, line)))
            .collect();
        let line = entries.iter().find_map(|(_, n)| n.line).or(line);
        Node::new(Val::Table(entries), line, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_ini_value_rules() {
        let text = "\u{feff}top = 1\n[common]\n# c\n; c\nserver_addr = \"1.2.3.4\"\ntoken: abc # not a comment\n\
                    lone\nmulti = \"\"\"a\nb\"\"\"\ncont = x\\\n  y\n[common]\nuser = u\n";
        let sections = parse(text, "f.ini").unwrap();
        assert_eq!(sections[0].name, "DEFAULT");
        let common = &sections[1];
        assert_eq!(common.line, 2);
        let get = |k: &str| common.get(k).unwrap().value.clone();
        assert_eq!(get("server_addr"), "1.2.3.4");
        assert_eq!(get("token"), "abc # not a comment");
        assert_eq!(get("lone"), "true");
        assert_eq!(get("multi"), "a\nb");
        assert_eq!(get("cont"), "x  y");
        // The repeated [common] merged into the first one.
        assert_eq!(sections.len(), 2);
        assert_eq!(get("user"), "u");
        assert_eq!(common.get("user").unwrap().line, 13);
    }

    #[test]
    fn detects_common_section() {
        assert!(has_common_section("# x\n[ common ]\nserver_addr = 1\n"));
        assert!(!has_common_section("[[proxies]]\nname = \"common\"\n"));
    }

    #[test]
    fn unclosed_section_is_a_syntax_error() {
        let err = parse("[common]\n[oops\n", "f.ini").unwrap_err();
        assert_eq!(err.line(), Some(2));
    }
}
