//! Config loading against frpc v0.70's behaviour: formats, defaults,
//! validation, and what stcp-engine accepts, ignores or refuses.
//! Hermetic: templates get an explicit environment, files live in tests/fixtures/config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stcp_engine::config::{
    verify_report, ClientConfig, ConfigError, Format, LoadOptions, StcpProxyConfig,
    StcpVisitorConfig,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

fn opts() -> LoadOptions {
    LoadOptions::with_envs([
        ("FRP_SERVER", "frps.example.com".to_string()),
        ("FIXTURES", fixtures().display().to_string()),
    ])
}

fn toml(text: &str) -> Result<ClientConfig, ConfigError> {
    ClientConfig::from_str_with(text, "frpc.toml", Format::Toml, &opts())
}

fn ini(text: &str) -> Result<ClientConfig, ConfigError> {
    ClientConfig::from_str_with(text, "frpc.ini", Format::Ini, &opts())
}

fn toml_err(text: &str) -> ConfigError {
    match toml(text) {
        Ok(cfg) => panic!("expected an error, got {cfg:#?}"),
        Err(e) => e,
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn full_example_toml() {
    let cfg = ClientConfig::load_with(&fixtures().join("frpc_full.toml"), &opts()).unwrap();
    assert_eq!(cfg.server_addr, "frps.example.com");
    assert_eq!(cfg.server_port, 7001);
    assert_eq!(cfg.user, "alice");
    assert_eq!(cfg.client_id, "edge-7");
    assert!(!cfg.login_fail_exit);
    assert_eq!(cfg.auth.token, "12345678");
    assert!(cfg.auth.additional_scopes.heartbeats);
    assert!(cfg.auth.additional_scopes.new_work_conns);
    assert_eq!(cfg.metadatas, map(&[("var1", "abc"), ("var2", "123")]));
    assert_eq!(cfg.log.to, "./frpc.log");
    assert_eq!(cfg.log.level, "debug");
    assert_eq!(cfg.log.max_days, 7);
    assert!(cfg.log.disable_print_color);
    let web = cfg.web_server.as_ref().unwrap();
    assert_eq!(
        (
            web.addr.as_str(),
            web.port,
            web.user.as_str(),
            web.password.as_str()
        ),
        ("127.0.0.1", 7400, "admin", "admin")
    );

    let t = &cfg.transport;
    assert!(t.tcp_mux);
    assert_eq!(t.tcp_mux_keepalive_interval, 20);
    assert_eq!(t.pool_count, 5);
    assert_eq!((t.heartbeat_interval, t.heartbeat_timeout), (-1, -1));
    assert_eq!((t.dial_server_timeout, t.dial_server_keepalive), (15, 3600));
    assert_eq!(t.wire_protocol, "v1");
    assert!(t.tls.enable);
    assert!(!t.tls.disable_custom_tls_first_byte);
    assert_eq!(t.tls.trusted_ca_file, "ca.crt");
    assert_eq!(t.tls.server_name, "frps.example.com");

    // The disabled tcp proxy and xtcp visitor are dropped, as frpc drops them.
    assert_eq!(
        cfg.proxies,
        vec![
            StcpProxyConfig {
                name: "secret_tcp".into(),
                secret_key: "abcdefg".into(),
                allow_users: vec!["*".into()],
                local_ip: "192.168.1.10".into(),
                local_port: 22,
                use_encryption: true,
                use_compression: true,
                bandwidth_limit: "1MB".into(),
                bandwidth_limit_mode: "server".into(),
                metadatas: map(&[("owner", "ops")]),
                annotations: map(&[("key1", "value1"), ("prefix/key2", "value2")]),
                max_connections: None,
            },
            StcpProxyConfig {
                name: "secret_db".into(),
                secret_key: "db-key".into(),
                allow_users: vec!["bob".into(), "carol".into()],
                local_port: 5432,
                ..StcpProxyConfig::default()
            },
        ]
    );
    assert_eq!(
        cfg.visitors,
        vec![
            StcpVisitorConfig {
                name: "secret_tcp_visitor".into(),
                server_name: "secret_tcp".into(),
                secret_key: "abcdefg".into(),
                bind_addr: "0.0.0.0".into(),
                bind_port: 9000,
                use_encryption: true,
                use_compression: true,
                ..StcpVisitorConfig::default()
            },
            StcpVisitorConfig {
                name: "db_visitor".into(),
                server_name: "db".into(),
                server_user: "bob".into(),
                secret_key: "db-key".into(),
                bind_port: 9001,
                ..StcpVisitorConfig::default()
            },
        ]
    );
    assert_eq!(
        cfg.source.as_deref(),
        Some(fixtures().join("frpc_full.toml").as_path())
    );
    assert!(cfg.warnings().is_empty(), "{:#?}", cfg.warnings());
}

#[test]
fn ini_gives_the_same_config_as_toml() {
    let from_toml = ClientConfig::load_with(&fixtures().join("frpc_full.toml"), &opts()).unwrap();
    let mut from_ini = ClientConfig::load_with(&fixtures().join("frpc_full.ini"), &opts()).unwrap();
    // What legacy INI cannot express.
    let mut expected = from_toml.clone();
    expected.client_id.clear();
    expected.proxies[0].annotations.clear();
    expected.source = from_ini.source.clone();
    let warnings = std::mem::take(&mut from_ini.load_warnings);
    expected.load_warnings.clear();
    assert_eq!(from_ini, expected);

    assert!(warnings
        .iter()
        .any(|w| w.contains("ini format is deprecated")));
    assert!(
        warnings
            .iter()
            .any(|w| w
                .contains(".ini:5: [common] client_id_is_not_a_legacy_key is not a frpc option")),
        "{warnings:#?}"
    );
}

#[test]
fn defaults_match_frpc() {
    let d = ClientConfig::default();
    assert_eq!(d.server_addr, "0.0.0.0");
    assert_eq!(d.server_port, 7000);
    assert!(d.login_fail_exit);
    assert_eq!(d.auth.token, "");
    assert!(!d.auth.additional_scopes.heartbeats && !d.auth.additional_scopes.new_work_conns);
    assert_eq!(
        (d.log.to.as_str(), d.log.level.as_str(), d.log.max_days),
        ("console", "info", 3)
    );
    let t = &d.transport;
    assert!(t.tcp_mux);
    assert_eq!(t.tcp_mux_keepalive_interval, 30);
    assert_eq!(t.pool_count, 1);
    assert_eq!((t.heartbeat_interval, t.heartbeat_timeout), (-1, -1));
    assert_eq!((t.dial_server_timeout, t.dial_server_keepalive), (10, 7200));
    assert!(t.tls.enable && t.tls.disable_custom_tls_first_byte);
    assert_eq!(t.wire_protocol, "v1");
    assert!(d.web_server.is_none());
    assert!(d.validate().is_ok());

    // An empty file is exactly the defaults; so is an empty [common].
    let mut empty = toml("").unwrap();
    empty.source = None;
    assert_eq!(empty, d);
    let mut empty_ini = ini("[common]\n").unwrap();
    empty_ini.source = None;
    empty_ini.load_warnings.clear();
    assert_eq!(empty_ini, d);

    let cfg = toml(
        "[[proxies]]\nname = \"p\"\ntype = \"stcp\"\nlocalPort = 1\n\
         [[visitors]]\nname = \"v\"\ntype = \"stcp\"\nserverName = \"p\"\nbindPort = 2\n",
    )
    .unwrap();
    assert_eq!(cfg.proxies[0].local_ip, "127.0.0.1");
    assert_eq!(cfg.proxies[0].bandwidth_limit_mode, "client");
    assert_eq!(cfg.visitors[0].bind_addr, "127.0.0.1");
    assert_eq!(cfg.visitors[0].server_user, "");
}

#[test]
fn heartbeat_defaults_follow_tcp_mux() {
    let hb = |text: &str| {
        let t = toml(text).unwrap().transport;
        (t.heartbeat_interval, t.heartbeat_timeout)
    };
    assert_eq!(hb(""), (-1, -1));
    assert_eq!(hb("transport.tcpMux = true"), (-1, -1));
    assert_eq!(hb("transport.tcpMux = false"), (30, 90));
    assert_eq!(
        hb("transport.tcpMux = false\ntransport.heartbeatInterval = 10"),
        (10, 90)
    );
    assert_eq!(
        hb("transport.heartbeatInterval = 5\ntransport.heartbeatTimeout = 20"),
        (5, 20)
    );
    // Zero means "not set" in frpc.
    assert_eq!(
        hb("transport.tcpMux = false\ntransport.heartbeatTimeout = 0"),
        (30, 90)
    );
    let t = ini("[common]\ntcp_mux = false\n").unwrap().transport;
    assert_eq!((t.heartbeat_interval, t.heartbeat_timeout), (30, 90));
}

#[test]
fn pool_count_zero_means_one() {
    assert_eq!(
        toml("transport.poolCount = 0")
            .unwrap()
            .transport
            .pool_count,
        1
    );
    assert_eq!(
        toml("transport.poolCount = 3")
            .unwrap()
            .transport
            .pool_count,
        3
    );
    assert_eq!(
        ini("[common]\npool_count = 0\n")
            .unwrap()
            .transport
            .pool_count,
        1
    );
}

#[test]
fn complete_is_idempotent_and_uses_zero_as_unset() {
    let mut cfg = toml("transport.tcpMux = false").unwrap();
    let before = cfg.clone();
    cfg.complete();
    assert_eq!(cfg, before);

    let mut hand = ClientConfig::default();
    hand.server_port = 0;
    hand.transport.pool_count = 0;
    hand.visitors.push(StcpVisitorConfig {
        bind_addr: String::new(),
        ..StcpVisitorConfig::default()
    });
    hand.complete();
    assert_eq!(hand.server_port, 7000);
    assert_eq!(hand.transport.pool_count, 1);
    assert_eq!(hand.visitors[0].bind_addr, "127.0.0.1");
}

/// Each frpc key that would change behaviour stcp-engine lacks: (config, line, key, message).
#[test]
fn rejected_keys_name_file_line_and_key() {
    let stcp = "[[proxies]]\nname = \"p\"\ntype = \"stcp\"\nlocalPort = 22\n";
    let visitor =
        "[[visitors]]\nname = \"v\"\ntype = \"stcp\"\nserverName = \"p\"\nbindPort = 9000\n";
    let cases: Vec<(String, usize, &str, &str)> = vec![
        (
            format!("serverAddr = \"x\"\n{stcp}[[proxies]]\nname = \"ssh\"\ntype = \"tcp\"\nremotePort = 6000\n"),
            8,
            "proxies[1].type",
            r#"frpc.toml:8: proxies[1].type = "tcp" is not supported by stcp-engine (only "stcp" proxies and visitors are)"#,
        ),
        (
            "[[visitors]]\nname = \"x\"\ntype = \"xtcp\"\nserverName = \"p\"\nbindPort = 1\n".into(),
            3,
            "visitors[0].type",
            r#"frpc.toml:3: visitors[0].type = "xtcp" is not supported by stcp-engine (only "stcp" proxies and visitors are)"#,
        ),
        (
            "transport.protocol = \"quic\"\n".into(),
            1,
            "transport.protocol",
            r#"frpc.toml:1: transport.protocol = "quic" is not supported by stcp-engine (only the tcp transport is implemented)"#,
        ),
        (
            "auth.method = \"oidc\"\nauth.oidc.clientID = \"x\"\n".into(),
            1,
            "auth.method",
            r#"frpc.toml:1: auth.method = "oidc" is not supported by stcp-engine (only token authentication is implemented)"#,
        ),
        (
            "\ntransport.proxyURL = \"socks5://127.0.0.1:1080\"\n".into(),
            2,
            "transport.proxyURL",
            "is not supported by stcp-engine (connecting to frps through an HTTP/SOCKS5/NTLM proxy is not implemented)",
        ),
        (
            "transport.connectServerLocalIP = \"10.0.0.5\"\n".into(),
            1,
            "transport.connectServerLocalIP",
            "choosing the local address",
        ),
        (
            format!("{stcp}[proxies.plugin]\ntype = \"socks5\"\n"),
            6,
            "proxies[0].plugin.type",
            r#"frpc.toml:6: proxies[0].plugin.type = "socks5" is not supported by stcp-engine (proxy plugins are not implemented; stcp-engine only forwards to localIP:localPort)"#,
        ),
        (
            format!("{visitor}plugin.type = \"virtual_net\"\n"),
            6,
            "visitors[0].plugin.type",
            "visitor plugins are not implemented",
        ),
        (
            format!("{stcp}healthCheck.type = \"tcp\"\nhealthCheck.intervalSeconds = 10\n"),
            5,
            "proxies[0].healthCheck.type",
            "health checks are not implemented",
        ),
        (
            format!("{stcp}transport.proxyProtocolVersion = \"v2\"\n"),
            5,
            "proxies[0].transport.proxyProtocolVersion",
            "PROXY protocol header",
        ),
        (
            "auth.tokenSource.type = \"exec\"\nauth.tokenSource.exec.command = \"get-token\"\n"
                .into(),
            1,
            "auth.tokenSource.type",
            "running a command to get the token is not implemented",
        ),
        (
            "virtualNet.address = \"100.86.1.1/24\"\n".into(),
            1,
            "virtualNet.address",
            "virtual networks are not implemented",
        ),
        (
            "store.path = \"./store.json\"\n".into(),
            1,
            "store.path",
            "the proxy store",
        ),
    ];
    for (text, line, key, message) in cases {
        let err = toml_err(&text);
        assert!(
            matches!(err, ConfigError::Unsupported { .. }),
            "{text}\n-> {err:?}"
        );
        assert_eq!(err.line(), Some(line), "{text}\n-> {err}");
        assert_eq!(err.key(), Some(key), "{text}\n-> {err}");
        assert_eq!(err.file(), Some("frpc.toml"));
        let shown = err.to_string();
        assert!(
            shown.contains(message),
            "{shown}\n  does not contain\n{message}"
        );
    }
}

#[test]
fn rejected_keys_in_ini_use_ini_names() {
    let err =
        ini("[common]\nserver_addr = x\n\n[ssh]\ntype = tcp\nremote_port = 6000\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"frpc.ini:5: [ssh] type = tcp is not supported by stcp-engine (only "stcp" proxies and visitors are)"#
    );
    // A legacy section without a type is a tcp proxy.
    let err = ini("[common]\n[web]\nlocal_port = 80\n").unwrap_err();
    assert_eq!(err.line(), Some(2));
    assert!(err.to_string().contains("[web] type = tcp"), "{err}");

    let err = ini("[common]\nprotocol = kcp\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "frpc.ini:2: [common] protocol = kcp is not supported by stcp-engine (only the tcp transport is implemented)"
    );
    let err = ini("[common]\n[p]\ntype = stcp\nlocal_port = 1\nplugin = socks5\n").unwrap_err();
    assert_eq!(err.line(), Some(5));
    assert_eq!(err.key(), Some("[p] plugin"));
    let err = ini("[common]\n[range:ports]\ntype = tcp\nlocal_port = 1-2\nremote_port = 1-2\n")
        .unwrap_err();
    assert_eq!(err.line(), Some(2));
    let err = ini("[common]\n[v]\nrole = visitor\nserver_name = x\nbind_port = 1\n").unwrap_err();
    assert!(err.to_string().contains("type shouldn't be empty"), "{err}");
    let err = ini("[common]\n[v]\nrole = client\n").unwrap_err();
    assert_eq!(err.key(), Some("[v] role"));
}

#[test]
fn harmless_keys_are_accepted_with_warnings() {
    let cfg = toml(
        "dnsServer = \"8.8.8.8\"\nwebServer.port = 7400\nwebServer.assetsDir = \"./static\"\n\
         featureGates = { VirtualNet = true }\n\
         [[proxies]]\nname = \"p\"\ntype = \"stcp\"\nlocalPort = 1\nsecretKey = \"k\"\n\
         loadBalancer.group = \"g\"\n",
    )
    .unwrap();
    let w = cfg.warnings();
    let has = |s: &str| w.iter().any(|x| x.contains(s));
    assert!(has("frpc.toml:1: dnsServer is ignored"), "{w:#?}");
    assert!(has("webServer.assetsDir"), "{w:#?}");
    assert!(has("featureGates.VirtualNet"), "{w:#?}");
    assert!(
        has("frpc.toml:10: proxies[0].loadBalancer.group is ignored"),
        "{w:#?}"
    );
    assert_eq!(w.len(), 4, "{w:#?}");
}

#[test]
fn unknown_keys_are_errors_like_frpc_strict_mode() {
    let err = toml_err("serverAddr = \"x\"\n[transport]\ntcpMuxx = true\n");
    assert_eq!(
        err.to_string(),
        "frpc.toml:3: unknown key `transport.tcpMuxx` (frpc rejects it too; check the spelling)"
    );
    let err = toml_err("[[proxies]]\nname = \"p\"\ntype = \"stcp\"\nremotePort = 6000\n");
    assert_eq!(err.key(), Some("proxies[0].remotePort"));
    assert_eq!(err.line(), Some(4));

    // --strict_config=false: warnings instead.
    let lax = LoadOptions {
        strict: false,
        ..opts()
    };
    let cfg = ClientConfig::from_str_with("bogus = 1\n", "frpc.toml", Format::Toml, &lax).unwrap();
    assert_eq!(
        cfg.warnings(),
        vec!["frpc.toml:1: unknown key `bogus` ignored"]
    );
}

#[test]
fn keys_match_case_insensitively_like_go_json() {
    let cfg = toml(
        "ServerAddr = \"a\"\nclientId = \"c\"\n[[proxies]]\nname = \"p\"\ntype = \"stcp\"\n\
         localIp = \"10.0.0.1\"\nlocalport = 8\n",
    )
    .unwrap();
    assert_eq!(cfg.server_addr, "a");
    assert_eq!(cfg.client_id, "c");
    assert_eq!(cfg.proxies[0].local_ip, "10.0.0.1");
    assert_eq!(cfg.proxies[0].local_port, 8);
}

#[test]
fn env_templates() {
    let cfg = toml(
        "serverAddr = \"{{ .Envs.FRP_SERVER }}\"\nuser = \"{{- index .Envs \"FRP_SERVER\" -}}\"\n{{/* comment */}}\n",
    )
    .unwrap();
    assert_eq!(cfg.server_addr, "frps.example.com");
    assert_eq!(cfg.user, "frps.example.com");

    let err = toml_err("serverPort = 7000\nauth.token = \"{{ .Envs.FRP_TOKEN }}\"\n");
    assert_eq!(
        err.to_string(),
        "frpc.toml:2: template: environment variable FRP_TOKEN is not set (used by `{{ .Envs.FRP_TOKEN }}`)"
    );
    let err = toml_err("{{ range $i := parseNumberRange \"1-3\" }}\n{{ end }}\n");
    assert!(matches!(err, ConfigError::Template { .. }), "{err}");
    assert_eq!(err.line(), Some(1));
    assert!(
        err.to_string().contains("is not supported by stcp-engine"),
        "{err}"
    );

    // INI files are templates too.
    assert_eq!(
        ini("[common]\nserver_addr = {{ .Envs.FRP_SERVER }}\n")
            .unwrap()
            .server_addr,
        "frps.example.com"
    );
}

#[test]
fn validation_errors() {
    let proxy =
        |name: &str| format!("[[proxies]]\nname = \"{name}\"\ntype = \"stcp\"\nlocalPort = 22\n");
    let err = toml_err(&format!("{}{}", proxy("ssh"), proxy("ssh")));
    assert_eq!(
        err.to_string(),
        "frpc.toml:6: proxies[1].name: proxy name [ssh] is duplicated (first defined at frpc.toml:2)"
    );
    // Duplicates count even when one of them is disabled, as in frpc.
    let err = toml_err(&format!("{}{}enabled = false\n", proxy("a"), proxy("a")));
    assert!(err.to_string().contains("is duplicated"), "{err}");

    let err = toml_err("[[visitors]]\nname = \"v\"\ntype = \"stcp\"\nbindPort = 9000\n");
    assert_eq!(
        err.to_string(),
        "frpc.toml:1: visitors[0].serverName: server name is required (the name of the stcp proxy to visit)"
    );
    let err =
        toml_err("[[visitors]]\nname = \"v\"\ntype = \"stcp\"\nserverName = \"p\"\nbindPort = 0\n");
    assert_eq!(
        err.to_string(),
        "frpc.toml:5: visitors[0].bindPort: bind port is required (must not be 0)"
    );
    let err = toml_err("[[visitors]]\nname = \"v\"\ntype = \"stcp\"\nserverName = \"p\"\n");
    assert_eq!(err.key(), Some("visitors[0].bindPort"));
    let err = toml_err("[[visitors]]\ntype = \"stcp\"\nserverName = \"p\"\nbindPort = 1\n");
    assert_eq!(err.key(), Some("visitors[0].name"));
    let v = "[[visitors]]\nname = \"v\"\ntype = \"stcp\"\nserverName = \"p\"\nbindPort = 1\n";
    let err = toml_err(&format!("{v}{v}"));
    assert!(
        err.to_string().contains("visitor name [v] is duplicated"),
        "{err}"
    );
    // A proxy and a visitor may share a name.
    assert!(toml(&format!("{}{}", proxy("v"), v)).is_ok());

    let err = toml_err("[[proxies]]\ntype = \"stcp\"\n");
    assert_eq!(
        err.to_string(),
        "frpc.toml:1: proxies[0].name: name should not be empty"
    );
    let err = toml_err("[[proxies]]\nname = \"p\"\n");
    assert!(err.to_string().contains("proxy type is required"), "{err}");
    let err = toml_err("[[proxies]]\nname = \"p\"\ntype = \"ftp\"\n");
    assert_eq!(
        err.to_string(),
        "frpc.toml:3: proxies[0].type: unknown proxy type: ftp"
    );

    let err = toml_err("transport.heartbeatInterval = 60\ntransport.heartbeatTimeout = 30\n");
    assert_eq!(err.line(), Some(2));
    assert_eq!(err.key(), Some("transport.heartbeatTimeout"));
    let err = toml_err("log.level = \"verbose\"\n");
    assert_eq!(err.line(), Some(1));
    let err = toml_err("auth.additionalScopes = [\"Pings\"]\n");
    assert!(
        err.to_string().contains("[HeartBeats NewWorkConns]"),
        "{err}"
    );
    let err = toml_err("auth.token = \"a\"\nauth.tokenSource.type = \"file\"\nauth.tokenSource.file.path = \"/x\"\n");
    assert!(err
        .to_string()
        .contains("cannot specify both auth.token and auth.tokenSource"));
    let err = toml_err("serverPort = 70000\n");
    assert_eq!(
        err.to_string(),
        "frpc.toml:1: serverPort: port number 70000 must be in the range 0..65535"
    );
    let err = toml_err("serverPort = \"7000\"\n");
    assert_eq!(
        err.to_string(),
        "frpc.toml:1: serverPort: expected an integer, found a string"
    );
    let err = toml_err(&format!(
        "{}transport.bandwidthLimit = \"1GB\"\n",
        proxy("p")
    ));
    assert_eq!(err.line(), Some(5));
    let err = toml_err(&format!("{}annotations.\"-bad\" = \"x\"\n", proxy("p")));
    assert!(
        err.to_string().contains("annotation key -bad is invalid"),
        "{err}"
    );

    // INI messages use INI names.
    let err = ini("[common]\n[v]\nrole = visitor\ntype = stcp\nbind_port = 1\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "frpc.ini:2: [v] server_name: server name is required (the name of the stcp proxy to visit)"
    );
    let err = ini("[common]\npool_count = many\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "frpc.ini:2: [common] pool_count: expected an integer, found \"many\""
    );
}

#[test]
fn validate_on_a_hand_built_config() {
    let mut cfg = ClientConfig::default();
    cfg.visitors.push(StcpVisitorConfig {
        name: "v".into(),
        server_name: "p".into(),
        ..StcpVisitorConfig::default()
    });
    let err = cfg.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "<config>: visitors[0].bindPort: bind port is required (must not be 0)"
    );
}

#[test]
fn syntax_errors_carry_the_line() {
    let err = toml_err("serverAddr = \"x\"\nserverPort = \n");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert_eq!(err.line(), Some(2));
    assert!(
        err.to_string()
            .starts_with("frpc.toml:2: TOML syntax error:"),
        "{err}"
    );

    let err = toml_err("a = 1\na = 2\n");
    assert_eq!(err.line(), Some(2));

    let err = ClientConfig::from_str_with(
        "{\n \"serverAddr\": \n}",
        "frpc.json",
        Format::Json,
        &opts(),
    )
    .unwrap_err();
    assert_eq!(err.line(), Some(3));
}

#[test]
fn disabled_and_not_started_entries_are_dropped() {
    let cfg = toml(
        "start = [\"b\", \"v\"]\n\
         [[proxies]]\nname = \"a\"\ntype = \"http\"\n\
         [[proxies]]\nname = \"b\"\ntype = \"stcp\"\nlocalPort = 1\n\
         [[proxies]]\nname = \"c\"\ntype = \"stcp\"\nlocalPort = 1\n\
         [[visitors]]\nname = \"v\"\ntype = \"stcp\"\nserverName = \"b\"\nbindPort = 1\n",
    )
    .unwrap();
    assert_eq!(cfg.proxies.len(), 1);
    assert_eq!(cfg.proxies[0].name, "b");
    assert_eq!(cfg.visitors.len(), 1);

    let cfg = toml(
        "[[proxies]]\nname = \"a\"\ntype = \"stcp\"\nenabled = false\n\
         [[visitors]]\nname = \"x\"\ntype = \"sudp\"\nenabled = false\n",
    )
    .unwrap();
    assert!(cfg.proxies.is_empty() && cfg.visitors.is_empty());
}

#[test]
fn includes_and_token_file() {
    let cfg = ClientConfig::load_with(&fixtures().join("with_includes.toml"), &opts()).unwrap();
    assert_eq!(cfg.auth.token, "s3cret-from-file");
    let names: Vec<&str> = cfg.proxies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["main_proxy", "included_web"]);
    assert_eq!(cfg.visitors[0].name, "included_visitor");

    // An error inside an included file names that file.
    let dir = tempdir("includes");
    std::fs::write(
        dir.join("bad.toml"),
        "[[proxies]]\nname = \"x\"\ntype = \"udp\"\n",
    )
    .unwrap();
    let main = format!("includes = [\"{}/*.toml\"]\n", dir.display());
    let err = toml_err(&main);
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3: proxies[0].type = \"udp\" is not supported by stcp-engine (only \"stcp\" proxies and visitors are)",
            dir.join("bad.toml").display()
        )
    );
    let err = toml_err("includes = [\"/nonexistent-dir-for-stcp-engine/*.toml\"]\n");
    assert_eq!(err.key(), Some("includes[0]"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn format_detection() {
    let dir = tempdir("detect");
    // A [common] section makes it INI whatever the extension (frpc does the same).
    let legacy = dir.join("frpc.conf");
    std::fs::write(&legacy, "[common]\nserver_port = 7100\n").unwrap();
    assert_eq!(
        ClientConfig::load_with(&legacy, &opts())
            .unwrap()
            .server_port,
        7100
    );

    let json = dir.join("frpc.json");
    std::fs::write(
        &json,
        r#"{"serverPort": 7200, "visitors": [{"name": "v", "type": "stcp", "serverName": "p", "bindPort": 9}]}"#,
    )
    .unwrap();
    let cfg = ClientConfig::load_with(&json, &opts()).unwrap();
    assert_eq!(cfg.server_port, 7200);
    assert_eq!(cfg.visitors[0].bind_port, 9);

    // No telling extension: TOML, or JSON when it starts with `{`.
    let plain = dir.join("frpc");
    std::fs::write(&plain, "serverPort = 7300\n").unwrap();
    assert_eq!(
        ClientConfig::load_with(&plain, &opts())
            .unwrap()
            .server_port,
        7300
    );
    std::fs::write(&plain, "{\"serverPort\": 7400}").unwrap();
    assert_eq!(
        ClientConfig::load_with(&plain, &opts())
            .unwrap()
            .server_port,
        7400
    );

    let yaml = dir.join("frpc.yaml");
    std::fs::write(&yaml, "serverPort: 7000\n").unwrap();
    let err = ClientConfig::load_with(&yaml, &opts()).unwrap_err();
    assert!(
        err.to_string()
            .contains("YAML config files are not supported"),
        "{err}"
    );

    let err = ClientConfig::load_with(&dir.join("missing.toml"), &opts()).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err}");

    let err = ClientConfig::load_with(
        &{
            let p = dir.join("nocommon.ini");
            std::fs::write(&p, "[ssh]\ntype = stcp\n").unwrap();
            p
        },
        &opts(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not found [common] section"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_report_mirrors_frpc() {
    let cfg = ClientConfig::load_with(&fixtures().join("frpc_full.toml"), &opts()).unwrap();
    let report = verify_report(&cfg);
    let path = fixtures().join("frpc_full.toml");
    assert_eq!(
        report,
        format!(
            "stcp-engine: the configuration file {} syntax is ok\n\
             2 stcp proxies (secret_tcp, secret_db), 2 stcp visitors (secret_tcp_visitor, db_visitor); \
             server frps.example.com:7001, tls on, tcpMux on",
            path.display()
        )
    );
    let cfg = toml("dnsServer = \"1.1.1.1\"\n").unwrap();
    let report = verify_report(&cfg);
    assert!(
        report.starts_with("WARNING: frpc.toml:1: dnsServer is ignored"),
        "{report}"
    );
    assert!(
        report.ends_with("0 stcp proxies, 0 stcp visitors; server 0.0.0.0:7000, tls on, tcpMux on")
    );
}

/// A fresh directory under the target dir (no tempfile crate needed).
fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stcp-engine-config-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn wire_protocol_v2_is_accepted_and_others_refused() {
    let cfg = toml("[transport]\nwireProtocol = \"v2\"\n").unwrap();
    assert_eq!(cfg.transport.wire_protocol, "v2");
    cfg.validate().unwrap();
    let err = toml_err("transport.wireProtocol = \"v3\"\n").to_string();
    assert!(
        err.contains("frpc.toml:1") && err.contains("optional values are [v1 v2]"),
        "{err}"
    );
}
