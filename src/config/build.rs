//! The schema walker: document tree -> config, deciding for every key frpc
//! knows whether we implement it, accept and ignore it, or refuse it.
//!
//! Keys match case-insensitively and the last duplicate wins, like Go's
//! `encoding/json` that frpc decodes with. Keys frpc does not know are errors
//! in strict mode, as in frpc.

use std::collections::BTreeMap;

use super::error::{ConfigError, Location};
use super::tree::{Node, Val};
use super::{ClientConfig, StcpProxyConfig, StcpVisitorConfig, WebServerConfig};

/// Which spelling messages should use for fields that are missing from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    V1,
    Ini,
}

/// Per-file walking state.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub strict: bool,
    pub style: Style,
    pub warnings: &'a mut Vec<String>,
}

impl Ctx<'_> {
    pub fn at(&self, node: &Node) -> Location {
        Location::new(self.file, node.line)
    }

    pub fn invalid(&self, node: &Node, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            at: self.at(node),
            key: node.path.clone(),
            message: message.into(),
        }
    }

    pub fn unsupported(&self, node: &Node, reason: impl Into<String>) -> ConfigError {
        ConfigError::Unsupported {
            at: self.at(node),
            key: node.path.clone(),
            value: node.display_value(),
            reason: reason.into(),
        }
    }

    fn warn_ignored(&mut self, node: &Node, why: &str) {
        let line = node.line.map(|l| format!(":{l}")).unwrap_or_default();
        self.warnings.push(format!(
            "{}{line}: {} is ignored by stcp-engine ({why})",
            self.file, node.path
        ));
    }
}

/// Where an entry and its fields are written, for validation messages.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub file: String,
    /// `proxies[2]` or `[ssh]`.
    pub prefix: String,
    pub line: Option<usize>,
    pub style: Style,
    /// v1 field name -> (key as written, line).
    pub fields: Vec<(&'static str, String, Option<usize>)>,
}

impl Origin {
    fn note(&mut self, field: &'static str, node: &Node) {
        self.fields.push((field, node.path.clone(), node.line));
    }

    /// Location and key text for `field` (v1 name), written or not.
    pub fn field(&self, field: &'static str) -> (Location, String) {
        if let Some((_, path, line)) = self.fields.iter().rev().find(|(f, _, _)| *f == field) {
            return (Location::new(&self.file, line.or(self.line)), path.clone());
        }
        let key = match self.style {
            Style::V1 if self.prefix.is_empty() => field.to_string(),
            Style::V1 => format!("{}.{field}", self.prefix),
            Style::Ini => {
                let last = field.rsplit('.').next().unwrap_or(field);
                format!("{} {}", self.prefix, snake_case(last))
            }
        };
        (Location::new(&self.file, self.line), key)
    }
}

fn snake_case(camel: &str) -> String {
    match camel {
        "secretKey" => "sk".into(),
        _ => {
            let mut out = String::new();
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    out.push('_');
                    out.push(c.to_ascii_lowercase());
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// A proxy as read, before `enabled` / `start` filtering.
#[derive(Debug)]
pub(crate) struct ProxyEntry {
    pub name: String,
    pub enabled: bool,
    /// `None` for stcp; otherwise the `type` node to reject if it ends up enabled.
    pub other_type: Option<Node>,
    pub cfg: StcpProxyConfig,
    pub origin: Origin,
}

#[derive(Debug)]
pub(crate) struct VisitorEntry {
    pub name: String,
    pub enabled: bool,
    pub other_type: Option<Node>,
    pub cfg: StcpVisitorConfig,
    pub origin: Origin,
}

/// Everything one file contributes.
#[derive(Debug)]
pub(crate) struct Built {
    /// Common settings, not yet completed (zero = unset).
    pub cfg: ClientConfig,
    pub includes: Vec<(String, Node)>,
    pub start: Vec<String>,
    pub token_file: Option<(String, Node)>,
    /// Lines of common keys that validation may complain about.
    pub common_origin: Origin,
    pub proxies: Vec<ProxyEntry>,
    pub visitors: Vec<VisitorEntry>,
}

/// A table being read; remembers which keys were consumed.
struct Obj<'n> {
    node: &'n Node,
    entries: &'n [(String, Node)],
    used: Vec<bool>,
}

impl<'n> Obj<'n> {
    fn new(cx: &Ctx, node: &'n Node) -> Result<Obj<'n>, ConfigError> {
        match &node.val {
            Val::Table(entries) => Ok(Obj {
                node,
                entries,
                used: vec![false; entries.len()],
            }),
            _ => Err(cx.invalid(
                node,
                format!("expected a table, found {}", node.type_name()),
            )),
        }
    }

    /// The value under `key` (any case; the last one wins). Null counts as absent.
    fn get(&mut self, key: &str) -> Option<&'n Node> {
        let mut found = None;
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if k.eq_ignore_ascii_case(key) {
                self.used[i] = true;
                found = Some(v);
            }
        }
        found.filter(|n| !matches!(n.val, Val::Null))
    }

    fn string(&mut self, cx: &Ctx, key: &str) -> Result<Option<String>, ConfigError> {
        self.get(key).map(|n| string(cx, n)).transpose()
    }

    fn str_or_empty(&mut self, cx: &Ctx, key: &str) -> Result<String, ConfigError> {
        Ok(self.string(cx, key)?.unwrap_or_default())
    }

    fn int(&mut self, cx: &Ctx, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.get(key) {
            Some(n) => int(cx, n),
            None => Ok(None),
        }
    }

    fn bool(&mut self, cx: &Ctx, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            Some(n) => boolean(cx, n),
            None => Ok(None),
        }
    }

    fn str_list(&mut self, cx: &Ctx, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.get(key) {
            Some(n) => str_list(cx, n),
            None => Ok(Vec::new()),
        }
    }

    fn str_map(&mut self, cx: &Ctx, key: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let Some(node) = self.get(key) else {
            return Ok(BTreeMap::new());
        };
        let mut obj = Obj::new(cx, node)?;
        let mut out = BTreeMap::new();
        for (i, (k, v)) in obj.entries.iter().enumerate() {
            obj.used[i] = true;
            if !matches!(v.val, Val::Null) {
                out.insert(k.clone(), string(cx, v)?);
            }
        }
        Ok(out)
    }

    fn table(&mut self, cx: &Ctx, key: &str) -> Result<Option<Obj<'n>>, ConfigError> {
        self.get(key).map(|n| Obj::new(cx, n)).transpose()
    }

    /// Accepts keys frpc knows that cannot matter here, without a word.
    fn accept(&mut self, keys: &[&str]) {
        for key in keys {
            self.get(key);
        }
    }

    /// Reports keys nobody asked for: frpc's strict mode rejects them.
    fn finish(self, cx: &mut Ctx) -> Result<(), ConfigError> {
        for (i, (key, node)) in self.entries.iter().enumerate() {
            if self.used[i] {
                continue;
            }
            let path = self.node.child_path(key);
            if cx.strict {
                return Err(ConfigError::UnknownKey {
                    at: cx.at(node),
                    key: path,
                });
            }
            let line = node.line.map(|l| format!(":{l}")).unwrap_or_default();
            cx.warnings
                .push(format!("{}{line}: unknown key `{path}` ignored", cx.file));
        }
        Ok(())
    }
}

fn expected(cx: &Ctx, node: &Node, what: &str) -> ConfigError {
    cx.invalid(node, format!("expected {what}, found {}", node.type_name()))
}

fn string(cx: &Ctx, node: &Node) -> Result<String, ConfigError> {
    match &node.val {
        Val::Str(s) | Val::Raw(s) => Ok(s.clone()),
        _ => Err(expected(cx, node, "a string")),
    }
}

/// INI: empty means unset (go-ini leaves the default); Go's `ParseInt(s, 0, 64)` prefixes.
fn int(cx: &Ctx, node: &Node) -> Result<Option<i64>, ConfigError> {
    match &node.val {
        Val::Int(i) => Ok(Some(*i)),
        // TOML -> JSON -> Go turns 7000.0 into 7000, which frpc accepts.
        Val::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(*f as i64)),
        Val::Raw(s) if s.trim().is_empty() => Ok(None),
        Val::Raw(s) => parse_go_int(s.trim())
            .map(Some)
            .ok_or_else(|| cx.invalid(node, format!("expected an integer, found {s:?}"))),
        _ => Err(expected(cx, node, "an integer")),
    }
}

fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = digits.to_ascii_lowercase();
    let value = if let Some(hex) = lower.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(bin) = lower.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()?
    } else if let Some(oct) = lower.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else {
        digits.parse::<i64>().ok()?
    };
    Some(if neg { -value } else { value })
}

fn boolean(cx: &Ctx, node: &Node) -> Result<Option<bool>, ConfigError> {
    match &node.val {
        Val::Bool(b) => Ok(Some(*b)),
        Val::Raw(s) if s.trim().is_empty() => Ok(None),
        Val::Raw(s) => super::ini::parse_bool(s.trim())
            .map(Some)
            .ok_or_else(|| cx.invalid(node, format!("expected a boolean, found {s:?}"))),
        _ => Err(expected(cx, node, "a boolean")),
    }
}

fn str_list(cx: &Ctx, node: &Node) -> Result<Vec<String>, ConfigError> {
    match &node.val {
        Val::Array(items) => items.iter().map(|n| string(cx, n)).collect(),
        _ => Err(expected(cx, node, "an array of strings")),
    }
}

fn ranged<T: TryFrom<i64> + Default>(
    cx: &Ctx,
    node: Option<&Node>,
    v: Option<i64>,
    range: &str,
) -> Result<T, ConfigError> {
    match (node, v) {
        (Some(node), Some(v)) => {
            T::try_from(v).map_err(|_| cx.invalid(node, format!("{v} is out of range ({range})")))
        }
        _ => Ok(T::default()),
    }
}

fn port(cx: &Ctx, obj: &mut Obj, key: &str) -> Result<u16, ConfigError> {
    let node = obj.get(key);
    let v = match node {
        Some(n) => int(cx, n)?,
        None => None,
    };
    match (node, v) {
        (Some(node), Some(v)) => u16::try_from(v).map_err(|_| {
            cx.invalid(
                node,
                format!("port number {v} must be in the range 0..65535"),
            )
        }),
        _ => Ok(0),
    }
}

/// Reads one file's tree. `main` = its common settings count (not an included file).
pub(crate) fn build(root: &Node, cx: &mut Ctx, main: bool) -> Result<Built, ConfigError> {
    let mut obj = Obj::new(cx, root)?;
    let proxies = match obj.get("proxies") {
        Some(node) => entries(cx, node, "proxies", proxy)?,
        None => Vec::new(),
    };
    let visitors = match obj.get("visitors") {
        Some(node) => entries(cx, node, "visitors", visitor)?,
        None => Vec::new(),
    };
    let mut built = Built {
        cfg: ClientConfig::unset(),
        includes: Vec::new(),
        start: Vec::new(),
        token_file: None,
        common_origin: Origin {
            file: cx.file.to_string(),
            prefix: match cx.style {
                Style::V1 => String::new(),
                Style::Ini => "[common]".into(),
            },
            line: None,
            style: cx.style,
            fields: Vec::new(),
        },
        proxies,
        visitors,
    };
    if main {
        common(cx, &mut obj, &mut built)?;
    } else {
        // frpc only takes proxies and visitors from included files.
        for (key, node) in obj.entries {
            if !key.eq_ignore_ascii_case("proxies") && !key.eq_ignore_ascii_case("visitors") {
                cx.warn_ignored(
                    node,
                    "only proxies and visitors are read from included files",
                );
            }
        }
        return Ok(built);
    }
    obj.finish(cx)?;
    Ok(built)
}

fn entries<T>(
    cx: &mut Ctx,
    node: &Node,
    what: &str,
    one: fn(&mut Ctx, &Node, Origin) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    let Val::Array(items) = &node.val else {
        return Err(expected(
            cx,
            node,
            &format!("an array of [[{what}]] tables"),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prefix = if item.path.is_empty() {
            format!("{what}[{i}]")
        } else {
            item.path.clone()
        };
        let origin = Origin {
            file: cx.file.to_string(),
            prefix,
            line: item.line,
            style: cx.style,
            fields: Vec::new(),
        };
        out.push(one(cx, item, origin)?);
    }
    Ok(out)
}

const PROXY_TYPES: &[&str] = &[
    "tcp", "udp", "tcpmux", "http", "https", "stcp", "xtcp", "sudp",
];
const VISITOR_TYPES: &[&str] = &["stcp", "xtcp", "sudp"];

/// Reads `name`, `type` and `enabled`, common to every entry.
fn head<'n>(
    cx: &Ctx,
    obj: &mut Obj<'n>,
    origin: &mut Origin,
    types: &[&str],
    what: &str,
) -> Result<(String, bool, Option<&'n Node>), ConfigError> {
    let name = match obj.get("name") {
        Some(n) => {
            origin.note("name", n);
            string(cx, n)?
        }
        None => String::new(),
    };
    let enabled = obj.bool(cx, "enabled")?.unwrap_or(true);
    let Some(ty) = obj.get("type") else {
        let (at, key) = origin.field("type");
        return Err(ConfigError::Invalid {
            at,
            key,
            message: format!("{what} type is required"),
        });
    };
    let ty_str = string(cx, ty)?;
    if !types.contains(&ty_str.as_str()) {
        return Err(cx.invalid(ty, format!("unknown {what} type: {ty_str}")));
    }
    Ok((name, enabled, (ty_str != "stcp").then_some(ty)))
}

fn proxy(cx: &mut Ctx, node: &Node, mut origin: Origin) -> Result<ProxyEntry, ConfigError> {
    let mut obj = Obj::new(cx, node)?;
    let (name, enabled, other) = head(cx, &mut obj, &mut origin, PROXY_TYPES, "proxy")?;
    let mut cfg = StcpProxyConfig {
        name: name.clone(),
        local_ip: String::new(),
        bandwidth_limit_mode: String::new(),
        ..StcpProxyConfig::default()
    };
    if other.is_some() {
        // Not ours to decode; rejected later only if it would actually start.
        return Ok(ProxyEntry {
            name,
            enabled,
            other_type: other.cloned(),
            cfg,
            origin,
        });
    }
    if let Some(n) = obj.get("secretKey") {
        origin.note("secretKey", n);
        cfg.secret_key = string(cx, n)?;
    }
    cfg.allow_users = obj.str_list(cx, "allowUsers")?;
    cfg.local_ip = obj.str_or_empty(cx, "localIP")?;
    if let Some(n) = obj.get("localPort") {
        origin.note("localPort", n);
        let v = int(cx, n)?;
        cfg.local_port = ranged(cx, Some(n), v, "localPort must be in the range 0..65535")?;
    }
    if let Some(n) = obj.get("annotations") {
        origin.note("annotations", n);
    }
    cfg.annotations = obj.str_map(cx, "annotations")?;
    cfg.metadatas = obj.str_map(cx, "metadatas")?;

    if let Some(mut t) = obj.table(cx, "transport")? {
        cfg.use_encryption = t.bool(cx, "useEncryption")?.unwrap_or(false);
        cfg.use_compression = t.bool(cx, "useCompression")?.unwrap_or(false);
        cfg.max_connections = max_connections(cx, &mut t)?;
        if let Some(n) = t.get("bandwidthLimit") {
            cfg.bandwidth_limit = string(cx, n)?.trim().to_string();
            check_bandwidth(cx, n, &cfg.bandwidth_limit)?;
        }
        if let Some(n) = t.get("bandwidthLimitMode") {
            origin.note("bandwidthLimitMode", n);
            cfg.bandwidth_limit_mode = string(cx, n)?;
        }
        if let Some(n) = t.get("proxyProtocolVersion") {
            match string(cx, n)?.as_str() {
                "" => {}
                "v1" | "v2" => {
                    return Err(cx.unsupported(
                        n,
                        "sending a PROXY protocol header to the local service is not implemented",
                    ))
                }
                v => return Err(cx.invalid(n, format!("not support proxy protocol version: {v}"))),
            }
        }
        t.finish(cx)?;
    }
    if let Some(mut lb) = obj.table(cx, "loadBalancer")? {
        for key in ["group", "groupKey"] {
            if let Some(n) = lb.get(key) {
                if !string(cx, n)?.is_empty() {
                    cx.warn_ignored(n, "frps does not group stcp proxies");
                }
            }
        }
        lb.finish(cx)?;
    }
    if let Some(mut hc) = obj.table(cx, "healthCheck")? {
        if let Some(n) = hc.get("type") {
            match string(cx, n)?.as_str() {
                "" => {}
                "tcp" | "http" => {
                    return Err(cx.unsupported(n, "health checks are not implemented"))
                }
                v => return Err(cx.invalid(n, format!("not support health check type: {v}"))),
            }
        }
        hc.accept(&[
            "timeoutSeconds",
            "maxFailed",
            "intervalSeconds",
            "path",
            "httpHeaders",
        ]);
        hc.finish(cx)?;
    }
    plugin(cx, &mut obj, "proxy")?;
    obj.finish(cx)?;
    Ok(ProxyEntry {
        name,
        enabled,
        other_type: None,
        cfg,
        origin,
    })
}

/// stcp-engine's own `transport.maxConnections` (frpc has no such key): a cap on
/// concurrent connections; 0 means none.
fn max_connections(cx: &Ctx, t: &mut Obj) -> Result<Option<u32>, ConfigError> {
    let Some(n) = t.get("maxConnections") else {
        return Ok(None);
    };
    let v = int(cx, n)?;
    let max: u32 = ranged(
        cx,
        Some(n),
        v,
        "maxConnections must be in the range 0..4294967295",
    )?;
    Ok((max > 0).then_some(max))
}

/// frp's `BandwidthQuantity`: a number followed by `MB` or `KB`.
fn check_bandwidth(cx: &Ctx, node: &Node, s: &str) -> Result<(), ConfigError> {
    if s.is_empty() {
        return Ok(());
    }
    let number = s.strip_suffix("MB").or_else(|| s.strip_suffix("KB"));
    match number {
        Some(n) if n.parse::<f64>().is_ok() => Ok(()),
        Some(_) => Err(cx.invalid(node, format!("invalid bandwidth {s:?}"))),
        None => Err(cx.invalid(
            node,
            format!("unit not support in {s:?} (use e.g. \"1MB\" or \"512KB\")"),
        )),
    }
}

/// Any plugin makes frpc hand connections to built-in code we do not have.
fn plugin(cx: &Ctx, obj: &mut Obj, what: &str) -> Result<(), ConfigError> {
    let Some(node) = obj.get("plugin") else {
        return Ok(());
    };
    let mut p = Obj::new(cx, node)?;
    let ty = p.str_or_empty(cx, "type")?;
    if ty.is_empty() {
        return Err(cx.invalid(node, "plugin type is empty"));
    }
    let ty_node = p.get("type").expect("type was just read");
    Err(cx.unsupported(
        ty_node,
        format!(
            "{what} plugins are not implemented; stcp-engine only forwards to localIP:localPort"
        ),
    ))
}

fn visitor(cx: &mut Ctx, node: &Node, mut origin: Origin) -> Result<VisitorEntry, ConfigError> {
    let mut obj = Obj::new(cx, node)?;
    let (name, enabled, other) = head(cx, &mut obj, &mut origin, VISITOR_TYPES, "visitor")?;
    let mut cfg = StcpVisitorConfig {
        name: name.clone(),
        bind_addr: String::new(),
        ..StcpVisitorConfig::default()
    };
    if other.is_some() {
        return Ok(VisitorEntry {
            name,
            enabled,
            other_type: other.cloned(),
            cfg,
            origin,
        });
    }
    if let Some(n) = obj.get("serverName") {
        origin.note("serverName", n);
        cfg.server_name = string(cx, n)?;
    }
    cfg.server_user = obj.str_or_empty(cx, "serverUser")?;
    cfg.secret_key = obj.str_or_empty(cx, "secretKey")?;
    cfg.bind_addr = obj.str_or_empty(cx, "bindAddr")?;
    if let Some(n) = obj.get("bindPort") {
        origin.note("bindPort", n);
        let v = int(cx, n)?;
        cfg.bind_port = ranged(cx, Some(n), v, "bindPort must fit in 32 bits")?;
        if cfg.bind_port > 65535 {
            return Err(cx.invalid(
                n,
                format!(
                    "port number {} must be in the range 0..65535",
                    cfg.bind_port
                ),
            ));
        }
    }
    if let Some(mut t) = obj.table(cx, "transport")? {
        cfg.use_encryption = t.bool(cx, "useEncryption")?.unwrap_or(false);
        cfg.use_compression = t.bool(cx, "useCompression")?.unwrap_or(false);
        cfg.max_connections = max_connections(cx, &mut t)?;
        t.finish(cx)?;
    }
    plugin(cx, &mut obj, "visitor")?;
    obj.finish(cx)?;
    Ok(VisitorEntry {
        name,
        enabled,
        other_type: None,
        cfg,
        origin,
    })
}

const TRANSPORT_PROTOCOLS: &str = "[tcp kcp quic websocket wss]";

fn common(cx: &mut Ctx, obj: &mut Obj, built: &mut Built) -> Result<(), ConfigError> {
    let cfg = &mut built.cfg;
    obj.accept(&["version", "udpPacketSize", "natHoleStunServer"]);
    cfg.server_addr = obj.str_or_empty(cx, "serverAddr")?;
    cfg.server_port = port(cx, obj, "serverPort")?;
    cfg.user = obj.str_or_empty(cx, "user")?;
    cfg.client_id = obj.str_or_empty(cx, "clientID")?;
    cfg.login_fail_exit = obj.bool(cx, "loginFailExit")?.unwrap_or(true);
    cfg.metadatas = obj.str_map(cx, "metadatas")?;
    built.start = obj.str_list(cx, "start")?;
    if let Some(n) = obj.get("includes") {
        let Val::Array(items) = &n.val else {
            return Err(expected(cx, n, "an array of strings"));
        };
        for item in items {
            built.includes.push((string(cx, item)?, item.clone()));
        }
    }
    if let Some(n) = obj.get("dnsServer") {
        if !string(cx, n)?.is_empty() {
            cx.warn_ignored(n, "names are resolved with the system resolver");
        }
    }
    if let Some(mut fg) = obj.table(cx, "featureGates")? {
        for (i, (_, n)) in fg.entries.iter().enumerate() {
            fg.used[i] = true;
            if boolean(cx, n)? == Some(true) {
                cx.warn_ignored(n, "no feature gate applies to stcp");
            }
        }
    }
    if let Some(mut vn) = obj.table(cx, "virtualNet")? {
        if let Some(n) = vn.get("address") {
            if !string(cx, n)?.is_empty() {
                return Err(cx.unsupported(n, "virtual networks are not implemented"));
            }
        }
        vn.finish(cx)?;
    }
    if let Some(mut store) = obj.table(cx, "store")? {
        if let Some(n) = store.get("path") {
            if !string(cx, n)?.is_empty() {
                return Err(cx.unsupported(n, "the proxy store (admin API) is not implemented"));
            }
        }
        store.finish(cx)?;
    }
    if let Some(mut auth) = obj.table(cx, "auth")? {
        self::auth(cx, &mut auth, built)?;
        auth.finish(cx)?;
    }
    if let Some(mut log) = obj.table(cx, "log")? {
        let cfg = &mut built.cfg;
        cfg.log.to = log.str_or_empty(cx, "to")?;
        if let Some(n) = log.get("level") {
            built.common_origin.note("log.level", n);
            cfg.log.level = string(cx, n)?;
        }
        cfg.log.max_days = log.int(cx, "maxDays")?.unwrap_or(0);
        cfg.log.disable_print_color = log.bool(cx, "disablePrintColor")?.unwrap_or(false);
        log.finish(cx)?;
    }
    if let Some(mut web) = obj.table(cx, "webServer")? {
        self::web_server(cx, &mut web, &mut built.cfg)?;
        web.finish(cx)?;
    }
    if let Some(mut t) = obj.table(cx, "transport")? {
        transport(cx, &mut t, &mut built.cfg, &mut built.common_origin)?;
        t.finish(cx)?;
    }
    Ok(())
}

fn auth(cx: &mut Ctx, auth: &mut Obj, built: &mut Built) -> Result<(), ConfigError> {
    if let Some(n) = auth.get("method") {
        match string(cx, n)?.as_str() {
            "" | "token" => {}
            "oidc" => return Err(cx.unsupported(n, "only token authentication is implemented")),
            _ => return Err(cx.invalid(n, "invalid auth method, optional values are [token oidc]")),
        }
    }
    if let Some(n) = auth.get("additionalScopes") {
        let scopes = &mut built.cfg.auth.additional_scopes;
        let Val::Array(items) = &n.val else {
            return Err(expected(cx, n, "an array of strings"));
        };
        for item in items {
            match string(cx, item)?.as_str() {
                "HeartBeats" => scopes.heartbeats = true,
                "NewWorkConns" => scopes.new_work_conns = true,
                other => {
                    return Err(cx.invalid(
                        item,
                        format!(
                            "invalid auth additional scope {other:?}, optional values are \
                             [HeartBeats NewWorkConns]"
                        ),
                    ))
                }
            }
        }
    }
    let token = auth.get("token");
    if let Some(n) = token {
        built.cfg.auth.token = string(cx, n)?;
    }
    if let Some(src) = auth.get("tokenSource") {
        if token.is_some_and(|t| !matches!(&t.val, Val::Str(s) | Val::Raw(s) if s.is_empty())) {
            return Err(cx.invalid(src, "cannot specify both auth.token and auth.tokenSource"));
        }
        let mut s = Obj::new(cx, src)?;
        let ty_node = s.get("type");
        let ty = s.str_or_empty(cx, "type")?;
        match ty.as_str() {
            "file" => {
                let Some(mut file) = s.table(cx, "file")? else {
                    return Err(cx.invalid(
                        src,
                        "invalid auth.tokenSource: file configuration is required when type is 'file'",
                    ));
                };
                let path_node = file.get("path");
                let path = file.str_or_empty(cx, "path")?;
                if path.is_empty() {
                    return Err(cx.invalid(
                        path_node.unwrap_or(src),
                        "invalid auth.tokenSource: file path cannot be empty",
                    ));
                }
                built.token_file = Some((path, path_node.unwrap_or(src).clone()));
                file.finish(cx)?;
            }
            "exec" => {
                return Err(cx.unsupported(
                    ty_node.unwrap_or(src),
                    "running a command to get the token is not implemented; use type = \"file\"",
                ))
            }
            other => {
                return Err(cx.invalid(
                    ty_node.unwrap_or(src),
                    format!(
                        "invalid auth.tokenSource: unsupported value source type: {other} \
                         (only 'file' and 'exec' are supported)"
                    ),
                ))
            }
        }
        s.accept(&["exec"]);
        s.finish(cx)?;
    }
    // Only used with method = "oidc", which is refused above.
    auth.accept(&["oidc"]);
    Ok(())
}

fn web_server(cx: &mut Ctx, web: &mut Obj, cfg: &mut ClientConfig) -> Result<(), ConfigError> {
    let ws = WebServerConfig {
        addr: web.str_or_empty(cx, "addr")?,
        port: {
            let n = web.get("port");
            let v = match n {
                Some(n) => int(cx, n)?,
                None => None,
            };
            match (n, v) {
                (Some(n), Some(v)) => u16::try_from(v).map_err(|_| {
                    cx.invalid(
                        n,
                        format!("webServer.port: port number {v} must be in the range 0..65535"),
                    )
                })?,
                _ => 0,
            }
        },
        user: web.str_or_empty(cx, "user")?,
        password: web.str_or_empty(cx, "password")?,
    };
    if let Some(n) = web.get("assetsDir") {
        if !string(cx, n)?.is_empty() {
            cx.warn_ignored(n, "there is no dashboard");
        }
    }
    if let Some(n) = web.get("pprofEnable") {
        if boolean(cx, n)? == Some(true) {
            cx.warn_ignored(n, "there are no Go pprof handlers");
        }
    }
    if let Some(mut tls) = web.table(cx, "tls")? {
        let cert = tls.str_or_empty(cx, "certFile")?;
        let key = tls.str_or_empty(cx, "keyFile")?;
        if cert.is_empty() {
            return Err(cx.invalid(
                tls.node,
                "tls.certFile must be specified when tls is enabled",
            ));
        }
        if key.is_empty() {
            return Err(cx.invalid(
                tls.node,
                "tls.keyFile must be specified when tls is enabled",
            ));
        }
        cx.warn_ignored(tls.node, "the admin API is served over plain HTTP");
        tls.accept(&["trustedCaFile", "serverName"]);
        tls.finish(cx)?;
    }
    if ws.port != 0 {
        cfg.web_server = Some(ws);
    }
    Ok(())
}

fn transport(
    cx: &mut Ctx,
    t: &mut Obj,
    cfg: &mut ClientConfig,
    origin: &mut Origin,
) -> Result<(), ConfigError> {
    let tr = &mut cfg.transport;
    if let Some(n) = t.get("protocol") {
        match string(cx, n)?.as_str() {
            "" | "tcp" => {}
            "kcp" | "quic" | "websocket" | "wss" => {
                return Err(cx.unsupported(n, "only the tcp transport is implemented"))
            }
            _ => {
                return Err(cx.invalid(
                    n,
                    format!(
                        "invalid transport.protocol, optional values are {TRANSPORT_PROTOCOLS}"
                    ),
                ))
            }
        }
    }
    if let Some(n) = t.get("wireProtocol") {
        tr.wire_protocol = string(cx, n)?;
        match tr.wire_protocol.as_str() {
            "" | "v1" | "v2" => {}
            _ => {
                return Err(cx.invalid(
                    n,
                    "invalid transport.wireProtocol, optional values are [v1 v2]",
                ))
            }
        }
    }
    if let Some(n) = t.get("connectServerLocalIP") {
        // "0.0.0.0" (as in frpc's full example) binds to nothing in particular.
        if !matches!(string(cx, n)?.as_str(), "" | "0.0.0.0" | "::") {
            return Err(cx.unsupported(
                n,
                "choosing the local address of the connection to frps is not implemented",
            ));
        }
    }
    if let Some(n) = t.get("proxyURL") {
        if !string(cx, n)?.is_empty() {
            return Err(cx.unsupported(
                n,
                "connecting to frps through an HTTP/SOCKS5/NTLM proxy is not implemented",
            ));
        }
    }
    tr.dial_server_timeout = t.int(cx, "dialServerTimeout")?.unwrap_or(0);
    tr.dial_server_keepalive = t.int(cx, "dialServerKeepalive")?.unwrap_or(0);
    if let Some(n) = t.get("poolCount") {
        let v = int(cx, n)?;
        tr.pool_count = ranged(cx, Some(n), v, "poolCount must not be negative")?;
    }
    tr.tcp_mux = t.bool(cx, "tcpMux")?.unwrap_or(true);
    tr.tcp_mux_keepalive_interval = t.int(cx, "tcpMuxKeepaliveInterval")?.unwrap_or(0);
    for (key, field) in [
        ("heartbeatInterval", "transport.heartbeatInterval"),
        ("heartbeatTimeout", "transport.heartbeatTimeout"),
    ] {
        if let Some(n) = t.get(key) {
            origin.note(field, n);
            let v = int(cx, n)?.unwrap_or(0);
            match key {
                "heartbeatInterval" => tr.heartbeat_interval = v,
                _ => tr.heartbeat_timeout = v,
            }
        }
    }
    // QUIC knobs only apply to protocol = "quic", which is refused above.
    t.accept(&["quic"]);
    if let Some(mut tls) = t.table(cx, "tls")? {
        let c = &mut tr.tls;
        c.enable = tls.bool(cx, "enable")?.unwrap_or(true);
        c.disable_custom_tls_first_byte =
            tls.bool(cx, "disableCustomTLSFirstByte")?.unwrap_or(true);
        c.cert_file = tls.str_or_empty(cx, "certFile")?;
        c.key_file = tls.str_or_empty(cx, "keyFile")?;
        c.trusted_ca_file = tls.str_or_empty(cx, "trustedCaFile")?;
        c.server_name = tls.str_or_empty(cx, "serverName")?;
        tls.finish(cx)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_ints() {
        assert_eq!(parse_go_int("42"), Some(42));
        assert_eq!(parse_go_int("-7"), Some(-7));
        assert_eq!(parse_go_int("0x10"), Some(16));
        assert_eq!(parse_go_int("1e3"), None);
    }

    #[test]
    fn snake_names_for_ini_messages() {
        assert_eq!(snake_case("serverName"), "server_name");
        assert_eq!(snake_case("bindPort"), "bind_port");
        assert_eq!(snake_case("secretKey"), "sk");
    }
}
