//! Configuration: frpc.toml (v1), legacy INI and command-line flags.
//!
//! stcp-engine reads the config files frpc v0.70 users already have: TOML
//! (camelCase keys), JSON, and the legacy INI format (`[common]` + sections).
//! Loading mirrors frpc: render `{{ .Envs.NAME }}` templates, detect the format,
//! decode strictly (unknown keys are errors, as in frpc's default strict mode),
//! pull in `includes`, drop disabled / not-started entries, apply frpc's
//! defaults ([`ClientConfig::complete`]) and run frpc's validation
//! ([`ClientConfig::validate`]). Keys frpc knows but stcp-engine does not
//! implement are either accepted with a warning (harmless) or rejected with an
//! error naming the file, line and key (they would change behaviour).

mod build;
mod error;
mod ini;
mod load;
mod template;
mod tree;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub use error::{ConfigError, Location};

/// The whole client config for the STCP server and visitor roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `serverAddr`, default `"0.0.0.0"`.
    pub server_addr: String,
    /// `serverPort`, default 7000.
    pub server_port: u16,
    /// `user`: proxy-name prefix (`{user}.{name}`) and the visitor's identity.
    pub user: String,
    /// `clientID` -> Login `client_id`.
    pub client_id: String,
    pub auth: AuthConfig,
    /// `loginFailExit`, default true.
    pub login_fail_exit: bool,
    /// `metadatas` -> Login `metas`.
    pub metadatas: BTreeMap<String, String>,
    pub transport: TransportConfig,
    pub log: LogConfig,
    /// Enabled stcp proxies (the server role), in file order.
    pub proxies: Vec<StcpProxyConfig>,
    /// Enabled stcp visitors, in file order.
    pub visitors: Vec<StcpVisitorConfig>,
    /// `webServer.*` (legacy `admin_*`); `Some` only when a port is set, as frpc
    /// only starts its admin server then.
    pub web_server: Option<WebServerConfig>,
    /// The file this came from (or the name given to `from_*_str`).
    pub source: Option<PathBuf>,
    /// Notes collected while loading (keys accepted but ignored, ...).
    /// [`ClientConfig::warnings`] returns these plus checks on the values.
    pub load_warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// `auth.token`, or the trimmed content of `auth.tokenSource.file.path`.
    pub token: String,
    pub additional_scopes: AuthScopes,
}

/// `auth.additionalScopes` (legacy `authenticate_heartbeats` / `authenticate_new_work_conns`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthScopes {
    pub heartbeats: bool,
    pub new_work_conns: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// `transport.tcpMux`, default true. Must match frps.
    pub tcp_mux: bool,
    /// Seconds, default 30.
    pub tcp_mux_keepalive_interval: i64,
    /// Work connections made in advance; 0 means the default, 1.
    pub pool_count: u32,
    /// Seconds; -1 (off) with tcpMux, else 30. Negative disables.
    pub heartbeat_interval: i64,
    /// Seconds; -1 (off) with tcpMux, else 90. Negative disables.
    pub heartbeat_timeout: i64,
    /// Seconds, default 10.
    pub dial_server_timeout: i64,
    /// Seconds, default 7200; negative disables TCP keep-alive.
    pub dial_server_keepalive: i64,
    pub tls: TlsClientConfig,
    /// `"v1"` (the only one implemented).
    pub wire_protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsClientConfig {
    /// Default true (since frp v0.50).
    pub enable: bool,
    /// Default true; false sends the 0x17 byte before the ClientHello.
    pub disable_custom_tls_first_byte: bool,
    pub cert_file: String,
    pub key_file: String,
    /// Empty: the server certificate is not verified (frpc's behaviour).
    pub trusted_ca_file: String,
    /// Empty: `serverAddr`.
    pub server_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `"console"` or a file path.
    pub to: String,
    /// trace, debug, info (default), warn, error.
    pub level: String,
    /// Default 3.
    pub max_days: i64,
    pub disable_print_color: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebServerConfig {
    /// Default `"127.0.0.1"`.
    pub addr: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

/// One `[[proxies]]` entry with `type = "stcp"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StcpProxyConfig {
    /// As written; frpc sends `{user}.{name}` when `user` is set.
    pub name: String,
    pub secret_key: String,
    /// Empty: only the same user; `["*"]`: everyone.
    pub allow_users: Vec<String>,
    /// Default `"127.0.0.1"`.
    pub local_ip: String,
    pub local_port: u16,
    pub use_encryption: bool,
    pub use_compression: bool,
    /// e.g. `"1MB"`, `"512KB"`; empty = no limit.
    pub bandwidth_limit: String,
    /// `"client"` (default: frpc limits) or `"server"` (frps limits).
    pub bandwidth_limit_mode: String,
    pub metadatas: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// stcp-engine extension `transport.maxConnections`: concurrent work connections
    /// relayed for this proxy (`None`: no cap, or `--max-conns-per-proxy`).
    pub max_connections: Option<u32>,
}

/// One `[[visitors]]` entry with `type = "stcp"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StcpVisitorConfig {
    pub name: String,
    /// The proxy to visit (without the user prefix).
    pub server_name: String,
    /// Owner of that proxy; empty = our own `user`.
    pub server_user: String,
    pub secret_key: String,
    /// Default `"127.0.0.1"`.
    pub bind_addr: String,
    /// Not 0; negative means no listener.
    pub bind_port: i32,
    pub use_encryption: bool,
    pub use_compression: bool,
    /// stcp-engine extension `transport.maxConnections`: concurrent user connections
    /// (`None`: no cap, or `--max-conns-per-visitor`).
    pub max_connections: Option<u32>,
}

/// How to load: which environment feeds templates, and strictness.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Variables for `{{ .Envs.NAME }}`; `None` = the process environment.
    pub envs: Option<HashMap<String, String>>,
    /// frpc's `--strict_config` (default true): unknown keys are errors.
    /// When false they become warnings.
    pub strict: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            envs: None,
            strict: true,
        }
    }
}

impl LoadOptions {
    /// Options with an explicit environment (hermetic tests, embedding).
    pub fn with_envs<K: Into<String>, V: Into<String>>(
        envs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        LoadOptions {
            envs: Some(
                envs.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
            strict: true,
        }
    }
}

/// The syntaxes a config can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
    Yaml,
    Ini,
}

impl Default for TransportConfig {
    fn default() -> Self {
        let mut cfg = ClientConfig::unset();
        cfg.complete();
        cfg.transport
    }
}

impl Default for TlsClientConfig {
    fn default() -> Self {
        TlsClientConfig {
            enable: true,
            disable_custom_tls_first_byte: true,
            cert_file: String::new(),
            key_file: String::new(),
            trusted_ca_file: String::new(),
            server_name: String::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            to: "console".into(),
            level: "info".into(),
            max_days: 3,
            disable_print_color: false,
        }
    }
}

impl Default for WebServerConfig {
    fn default() -> Self {
        WebServerConfig {
            addr: "127.0.0.1".into(),
            port: 0,
            user: String::new(),
            password: String::new(),
        }
    }
}

impl Default for StcpProxyConfig {
    fn default() -> Self {
        StcpProxyConfig {
            name: String::new(),
            secret_key: String::new(),
            allow_users: Vec::new(),
            local_ip: "127.0.0.1".into(),
            local_port: 0,
            use_encryption: false,
            use_compression: false,
            bandwidth_limit: String::new(),
            bandwidth_limit_mode: "client".into(),
            metadatas: BTreeMap::new(),
            annotations: BTreeMap::new(),
            max_connections: None,
        }
    }
}

impl Default for StcpVisitorConfig {
    fn default() -> Self {
        StcpVisitorConfig {
            name: String::new(),
            server_name: String::new(),
            server_user: String::new(),
            secret_key: String::new(),
            bind_addr: "127.0.0.1".into(),
            bind_port: 0,
            use_encryption: false,
            use_compression: false,
            max_connections: None,
        }
    }
}

/// frpc's effective defaults: an empty config after [`ClientConfig::complete`].
impl Default for ClientConfig {
    fn default() -> Self {
        let mut cfg = ClientConfig::unset();
        cfg.complete();
        cfg
    }
}

/// `util.EmptyOr` for strings.
fn empty_or(s: &mut String, default: &str) {
    if s.is_empty() {
        *s = default.to_string();
    }
}

/// `util.EmptyOr` for numbers: zero means "not set".
fn zero_or<T: Default + PartialEq>(v: &mut T, default: T) {
    if *v == T::default() {
        *v = default;
    }
}

impl ClientConfig {
    /// Everything "not set" (zero / empty) as frpc has it before `Complete`.
    /// Booleans frpc keeps as `*bool` start at their defaults.
    pub(crate) fn unset() -> ClientConfig {
        ClientConfig {
            server_addr: String::new(),
            server_port: 0,
            user: String::new(),
            client_id: String::new(),
            auth: AuthConfig::default(),
            login_fail_exit: true,
            metadatas: BTreeMap::new(),
            transport: TransportConfig {
                tcp_mux: true,
                tcp_mux_keepalive_interval: 0,
                pool_count: 0,
                heartbeat_interval: 0,
                heartbeat_timeout: 0,
                dial_server_timeout: 0,
                dial_server_keepalive: 0,
                tls: TlsClientConfig::default(),
                wire_protocol: String::new(),
            },
            log: LogConfig {
                to: String::new(),
                level: String::new(),
                max_days: 0,
                disable_print_color: false,
            },
            proxies: Vec::new(),
            visitors: Vec::new(),
            web_server: None,
            source: None,
            load_warnings: Vec::new(),
        }
    }

    /// Reads a config file the way frpc does: `.ini` or a `[common]` section
    /// means legacy INI, `.json` JSON, `.yaml`/`.yml` YAML (rejected with a
    /// clear error), anything else TOML (JSON when it starts with `{`).
    /// The result is completed and validated.
    pub fn load(path: &Path) -> Result<ClientConfig, ConfigError> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// [`ClientConfig::load`] with explicit options.
    pub fn load_with(path: &Path, options: &LoadOptions) -> Result<ClientConfig, ConfigError> {
        load::load_file(path, options)
    }

    /// Parses TOML text (templates rendered from the process environment).
    /// `source` names the text in errors. The result is completed and validated.
    pub fn from_toml_str(text: &str, source: &str) -> Result<ClientConfig, ConfigError> {
        Self::from_str_with(text, source, Format::Toml, &LoadOptions::default())
    }

    /// Parses legacy INI text; see [`ClientConfig::from_toml_str`].
    pub fn from_ini_str(text: &str, source: &str) -> Result<ClientConfig, ConfigError> {
        Self::from_str_with(text, source, Format::Ini, &LoadOptions::default())
    }

    /// Parses text in a known format with explicit options.
    pub fn from_str_with(
        text: &str,
        source: &str,
        format: Format,
        options: &LoadOptions,
    ) -> Result<ClientConfig, ConfigError> {
        load::load_text(text, source, Some(format), options)
    }

    /// frpc's defaulting (`Complete`): zero / empty means "use the default".
    /// Heartbeats default to -1 (off) with tcpMux, else 30 / 90. Idempotent.
    pub fn complete(&mut self) {
        empty_or(&mut self.server_addr, "0.0.0.0");
        zero_or(&mut self.server_port, 7000);
        empty_or(&mut self.log.to, "console");
        empty_or(&mut self.log.level, "info");
        zero_or(&mut self.log.max_days, 3);

        let t = &mut self.transport;
        empty_or(&mut t.wire_protocol, "v1");
        zero_or(&mut t.dial_server_timeout, 10);
        zero_or(&mut t.dial_server_keepalive, 7200);
        zero_or(&mut t.pool_count, 1);
        zero_or(&mut t.tcp_mux_keepalive_interval, 30);
        // With tcpMux, yamux keep-alive detects dead peers; app heartbeats are off.
        let (interval, timeout) = if t.tcp_mux { (-1, -1) } else { (30, 90) };
        zero_or(&mut t.heartbeat_interval, interval);
        zero_or(&mut t.heartbeat_timeout, timeout);

        if let Some(web) = &mut self.web_server {
            empty_or(&mut web.addr, "127.0.0.1");
        }
        for p in &mut self.proxies {
            empty_or(&mut p.local_ip, "127.0.0.1");
            empty_or(&mut p.bandwidth_limit_mode, "client");
        }
        for v in &mut self.visitors {
            empty_or(&mut v.bind_addr, "127.0.0.1");
        }
    }

    /// frpc's validation rules for these roles (call after [`ClientConfig::complete`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self, None)
    }

    /// Things worth telling the operator that do not stop the engine.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.load_warnings.clone();
        out.extend(validate::value_warnings(self));
        out
    }

    /// The name used for this config in messages.
    pub(crate) fn source_name(&self) -> String {
        self.source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<config>".into())
    }
}

/// A warning when the config file holds secrets (auth.token, secret keys) and its mode
/// lets the group or other users read it (`mode & 0o044`); `None` otherwise.
pub fn permission_warning(cfg: &ClientConfig, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let has_secrets = !cfg.auth.token.is_empty()
        || cfg.proxies.iter().any(|p| !p.secret_key.is_empty())
        || cfg.visitors.iter().any(|v| !v.secret_key.is_empty());
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (has_secrets && mode & 0o044 != 0).then(|| {
        format!(
            "config file {} is readable by other users (mode {mode:04o}) and holds auth.token or secret keys: run `chmod 600 {}`",
            path.display(),
            path.display()
        )
    })
}

/// What `stcp-engine verify -c FILE` prints on success: warnings, frpc's
/// wording, then a summary. No trailing newline.
pub fn verify_report(cfg: &ClientConfig) -> String {
    let mut out = String::new();
    for w in cfg.warnings() {
        out.push_str("WARNING: ");
        out.push_str(&w);
        out.push('\n');
    }
    out.push_str(&format!(
        "stcp-engine: the configuration file {} syntax is ok\n",
        cfg.source_name()
    ));
    let names = |mut names: Vec<&str>| {
        if names.is_empty() {
            String::new()
        } else {
            names.truncate(8);
            format!(" ({})", names.join(", "))
        }
    };
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let on_off = |b: bool| if b { "on" } else { "off" };
    out.push_str(&format!(
        "{}{}, {}{}; server {}:{}, tls {}, tcpMux {}",
        plural(cfg.proxies.len(), "stcp proxy", "stcp proxies"),
        names(cfg.proxies.iter().map(|p| p.name.as_str()).collect()),
        plural(cfg.visitors.len(), "stcp visitor", "stcp visitors"),
        names(cfg.visitors.iter().map(|v| v.name.as_str()).collect()),
        cfg.server_addr,
        cfg.server_port,
        on_off(cfg.transport.tls.enable),
        on_off(cfg.transport.tcp_mux),
    ));
    out
}
