//! `stcp-engine stcp ...`: frpc's `frpc stcp` / `frpc stcp visitor` flags, for the common
//! case without a config file. Flag names are frpc's, so existing command lines work.

use stcp_engine::config::{ClientConfig, StcpProxyConfig, StcpVisitorConfig};

#[derive(clap::Args, Debug)]
pub struct CommonFlags {
    /// frp server's address.
    #[arg(short = 's', long = "server_addr", default_value = "127.0.0.1")]
    server_addr: String,
    /// frp server's port.
    #[arg(short = 'P', long = "server_port", default_value_t = 7000)]
    server_port: u16,
    /// Auth token.
    #[arg(short = 't', long = "token", default_value = "")]
    token: String,
    /// User (proxy name prefix and visitor identity).
    #[arg(short = 'u', long = "user", default_value = "")]
    user: String,
    /// TLS to frps (frpc's default: true).
    #[arg(long = "tls_enable", default_value_t = true, action = clap::ArgAction::Set)]
    tls_enable: bool,
    /// Custom server name for the TLS certificate.
    #[arg(long = "tls_server_name", default_value = "")]
    tls_server_name: String,
    /// Log level.
    #[arg(long = "log_level", default_value = "info")]
    log_level: String,
    /// "console" or a file path.
    #[arg(long = "log_file", default_value = "console")]
    log_file: String,
    /// Use encryption.
    #[arg(long = "ue")]
    use_encryption: bool,
    /// Use compression.
    #[arg(long = "uc")]
    use_compression: bool,
    /// Secret key.
    #[arg(long = "sk", default_value = "")]
    sk: String,
}

#[derive(clap::Args, Debug)]
pub struct StcpArgs {
    #[command(subcommand)]
    role: Option<StcpRole>,
    #[command(flatten)]
    common: CommonFlags,
    /// Proxy name.
    #[arg(short = 'n', long = "proxy_name", default_value = "")]
    proxy_name: String,
    /// Local IP of the service.
    #[arg(short = 'i', long = "local_ip", default_value = "127.0.0.1")]
    local_ip: String,
    /// Local port of the service.
    #[arg(short = 'l', long = "local_port", default_value_t = 0)]
    local_port: u16,
    /// Allowed visitor users (comma separated; "*" = anyone).
    #[arg(long = "allow_users", value_delimiter = ',')]
    allow_users: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
enum StcpRole {
    /// The STCP visitor role.
    Visitor(VisitorArgs),
}

#[derive(clap::Args, Debug)]
struct VisitorArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// Visitor name.
    #[arg(short = 'n', long = "visitor_name", default_value = "")]
    visitor_name: String,
    /// Name of the stcp proxy to reach.
    #[arg(long = "server_name", default_value = "")]
    server_name: String,
    /// User that owns that proxy (default: your own user).
    #[arg(long = "server-user", default_value = "")]
    server_user: String,
    #[arg(long = "bind_addr", default_value = "127.0.0.1")]
    bind_addr: String,
    #[arg(long = "bind_port", default_value_t = 0)]
    bind_port: i32,
}

fn base(c: &CommonFlags) -> ClientConfig {
    let mut cfg = ClientConfig::default();
    cfg.server_addr = c.server_addr.clone();
    cfg.server_port = c.server_port;
    cfg.auth.token = c.token.clone();
    cfg.user = c.user.clone();
    cfg.transport.tls.enable = c.tls_enable;
    cfg.transport.tls.server_name = c.tls_server_name.clone();
    cfg.log.level = c.log_level.clone();
    cfg.log.to = c.log_file.clone();
    cfg
}

impl StcpArgs {
    /// The config these flags describe, completed and validated like a file would be.
    pub fn to_config(&self) -> Result<ClientConfig, String> {
        let mut cfg = match &self.role {
            None => {
                let c = &self.common;
                let mut cfg = base(c);
                cfg.proxies.push(StcpProxyConfig {
                    name: self.proxy_name.clone(),
                    secret_key: c.sk.clone(),
                    allow_users: self.allow_users.clone(),
                    local_ip: self.local_ip.clone(),
                    local_port: self.local_port,
                    use_encryption: c.use_encryption,
                    use_compression: c.use_compression,
                    ..Default::default()
                });
                cfg
            }
            Some(StcpRole::Visitor(v)) => {
                let c = &v.common;
                let mut cfg = base(c);
                cfg.visitors.push(StcpVisitorConfig {
                    name: v.visitor_name.clone(),
                    server_name: v.server_name.clone(),
                    server_user: v.server_user.clone(),
                    secret_key: c.sk.clone(),
                    bind_addr: v.bind_addr.clone(),
                    bind_port: v.bind_port,
                    use_encryption: c.use_encryption,
                    use_compression: c.use_compression,
                    ..Default::default()
                });
                cfg
            }
        };
        cfg.complete();
        cfg.validate()
            .map_err(|e| format!("command-line flags: {e}"))?;
        Ok(cfg)
    }
}
