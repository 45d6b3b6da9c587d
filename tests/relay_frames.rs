//! The embedded relay driven with hand-built frames (no engine): every frps check and
//! error string it mirrors, malformed input, stalls, and a full data path.

use stcp_engine::codec::{CipherKey, DecryptStream, EncryptStream};
use stcp_engine::proto::*;
use stcp_engine::relay::{self, RelayConfig, RelayHandle, RelayTls};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const TOKEN: &str = "abc";

fn relay_with(f: impl FnOnce(&mut RelayConfig)) -> RelayHandle {
    let mut cfg = RelayConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        token: TOKEN.into(),
        handshake_timeout: Duration::from_secs(1),
        user_conn_timeout: Duration::from_secs(2),
        tls: RelayTls::Off,
        ..RelayConfig::default().with_tcp_mux(false)
    };
    f(&mut cfg);
    relay::start(cfg, None).expect("relay")
}

/// A plain (tcpMux off) frp connection with a frame reader that never loses leftovers.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(r: &RelayHandle) -> Conn {
        let s = TcpStream::connect(r.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Conn { s, buf: Vec::new() }
    }
    fn send(&mut self, m: Message) {
        let mut out = Vec::new();
        encode_frame(&m, &mut out);
        self.s.write_all(&out).unwrap();
    }
    fn recv(&mut self) -> Message {
        loop {
            if let Some((m, used)) = decode_frame(&self.buf).expect("valid frame from relay") {
                self.buf.drain(..used);
                return m;
            }
            let mut tmp = [0u8; 4096];
            let n = self.s.read(&mut tmp).expect("read from relay");
            assert!(
                n > 0,
                "relay closed the connection while a frame was expected"
            );
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }
    /// True if the relay closes the connection (EOF or reset) within 5 s.
    fn closed(&mut self) -> bool {
        let mut tmp = [0u8; 256];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// The encrypted control channel, client side.
struct Control {
    c: Conn,
    enc: EncryptStream,
    dec: DecryptStream,
    plain: Vec<u8>,
    run_id: String,
}

impl Control {
    fn send(&mut self, m: Message) {
        let mut out = Vec::new();
        encode_frame(&m, &mut out);
        let iv = self.enc.encrypt(&mut out);
        if let Some(iv) = iv {
            self.c.s.write_all(&iv).unwrap();
        }
        self.c.s.write_all(&out).unwrap();
    }
    fn recv(&mut self) -> Message {
        loop {
            if let Some((m, used)) = decode_frame(&self.plain).expect("valid control frame") {
                self.plain.drain(..used);
                return m;
            }
            let mut raw = std::mem::take(&mut self.c.buf);
            if raw.is_empty() {
                let mut tmp = vec![0u8; 4096];
                let n = self.c.s.read(&mut tmp).expect("control read");
                assert!(n > 0, "control closed");
                raw = tmp[..n].to_vec();
            }
            let r = self.dec.decrypt(&mut raw);
            self.plain.extend_from_slice(&raw[r]);
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn login_msg(user: &str, token: &str, run_id: &str, pool: i64) -> Message {
    let ts = now();
    Message::Login(Login {
        version: "0.70.1".into(),
        user: user.into(),
        privilege_key: auth_key(token, ts),
        timestamp: ts,
        run_id: run_id.into(),
        pool_count: pool,
        ..Default::default()
    })
}

fn login(r: &RelayHandle, user: &str, pool: i64) -> Control {
    let mut c = Conn::open(r);
    c.send(login_msg(user, TOKEN, "", pool));
    let resp = match c.recv() {
        Message::LoginResp(x) => x,
        other => panic!("expected LoginResp, got {}", other.name()),
    };
    assert_eq!(resp.error, "");
    assert_eq!(resp.run_id.len(), 16);
    assert!(resp.run_id.chars().all(|ch| ch.is_ascii_hexdigit()));
    let key = CipherKey::derive(TOKEN.as_bytes());
    Control {
        c,
        enc: EncryptStream::new(&key),
        dec: DecryptStream::new(&key),
        plain: Vec::new(),
        run_id: resp.run_id,
    }
}

fn new_proxy(name: &str, sk: &str, allow: &[&str]) -> Message {
    Message::NewProxy(NewProxy {
        proxy_name: name.into(),
        proxy_type: "stcp".into(),
        sk: sk.into(),
        allow_users: allow.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

fn visitor_msg(run_id: &str, proxy: &str, sk: &str) -> Message {
    let ts = now();
    Message::NewVisitorConn(NewVisitorConn {
        run_id: run_id.into(),
        proxy_name: proxy.into(),
        sign_key: auth_key(sk, ts),
        timestamp: ts,
        ..Default::default()
    })
}

fn visitor_error(r: &RelayHandle, m: Message) -> String {
    let mut v = Conn::open(r);
    v.send(m);
    match v.recv() {
        Message::NewVisitorConnResp(x) => {
            if !x.error.is_empty() {
                assert!(v.closed(), "relay must close a rejected visitor connection");
            }
            x.error
        }
        other => panic!("expected NewVisitorConnResp, got {}", other.name()),
    }
}

#[test]
fn wrong_token_gets_frps_error() {
    let r = relay_with(|_| {});
    let mut c = Conn::open(&r);
    c.send(login_msg("alice", "wrong", "", 1));
    match c.recv() {
        Message::LoginResp(x) => {
            assert_eq!(
                x.error,
                "token in login doesn't match token from configuration"
            );
            assert_eq!(x.run_id, "");
        }
        other => panic!("got {}", other.name()),
    }
    assert!(c.closed());
}

#[test]
fn detailed_errors_off_sends_summary() {
    let r = relay_with(|c| c.detailed_errors = false);
    let mut c = Conn::open(&r);
    c.send(login_msg("alice", "wrong", "", 1));
    match c.recv() {
        Message::LoginResp(x) => assert_eq!(x.error, "register control error"),
        other => panic!("got {}", other.name()),
    }
}

#[test]
fn login_gets_pool_of_work_conn_requests_capped_at_max_pool_count() {
    let r = relay_with(|_| {});
    let mut ctl = login(&r, "alice", 9);
    for _ in 0..5 {
        assert!(matches!(ctl.recv(), Message::ReqWorkConn(_)));
    }
    // Nothing more until a work connection is used: a ping proves the stream is idle.
    ctl.send(Message::Ping(Ping::default()));
    assert!(matches!(ctl.recv(), Message::Pong(p) if p.error.is_empty()));
}

#[test]
fn client_chosen_run_id_is_kept_and_a_second_login_replaces_the_first() {
    let r = relay_with(|_| {});
    let mut first = Conn::open(&r);
    first.send(login_msg("alice", TOKEN, "myrunid", 1));
    assert!(matches!(first.recv(), Message::LoginResp(x) if x.run_id == "myrunid"));
    let mut second = Conn::open(&r);
    second.send(login_msg("alice", TOKEN, "myrunid", 1));
    assert!(
        matches!(second.recv(), Message::LoginResp(x) if x.run_id == "myrunid" && x.error.is_empty())
    );
    assert!(first.closed(), "the replaced control must be closed");
}

#[test]
fn proxy_registration_checks() {
    let r = relay_with(|_| {});
    let mut ctl = login(&r, "alice", 0);
    ctl.send(new_proxy("alice.echo", "sk", &[]));
    assert!(
        matches!(ctl.recv(), Message::NewProxyResp(x) if x.proxy_name == "alice.echo" && x.error.is_empty())
    );
    ctl.send(new_proxy("alice.echo", "sk", &[]));
    match ctl.recv() {
        Message::NewProxyResp(x) => assert_eq!(x.error, "proxy [alice.echo] already exists"),
        other => panic!("got {}", other.name()),
    }
    let mut tcp = match new_proxy("alice.web", "", &[]) {
        Message::NewProxy(p) => p,
        _ => unreachable!(),
    };
    tcp.proxy_type = "tcp".into();
    ctl.send(Message::NewProxy(tcp));
    match ctl.recv() {
        Message::NewProxyResp(x) => assert!(
            x.error.contains("proxy type [tcp] is not supported"),
            "{}",
            x.error
        ),
        other => panic!("got {}", other.name()),
    }
    // CloseProxy frees the name.
    ctl.send(Message::CloseProxy(CloseProxy {
        proxy_name: "alice.echo".into(),
    }));
    ctl.send(new_proxy("alice.echo", "sk", &[]));
    assert!(matches!(ctl.recv(), Message::NewProxyResp(x) if x.error.is_empty()));
}

#[test]
fn visitor_checks_use_frps_error_strings() {
    let r = relay_with(|_| {});
    let mut owner = login(&r, "alice", 0);
    owner.send(new_proxy("alice.only", "sk", &[]));
    owner.send(new_proxy("alice.bob", "sk", &["bob"]));
    for _ in 0..2 {
        assert!(matches!(owner.recv(), Message::NewProxyResp(x) if x.error.is_empty()));
    }
    let bob = login(&r, "bob", 0);
    assert_eq!(
        visitor_error(&r, visitor_msg("feedfacefeedface", "alice.only", "sk")),
        "no client control found for run id [feedfacefeedface]"
    );
    assert_eq!(
        visitor_error(&r, visitor_msg(&bob.run_id, "alice.none", "sk")),
        "custom listener for [alice.none] doesn't exist"
    );
    assert_eq!(
        visitor_error(&r, visitor_msg(&bob.run_id, "alice.only", "wrong")),
        "visitor connection of [alice.only] auth failed"
    );
    // Empty allowUsers means the owner's user only.
    assert_eq!(
        visitor_error(&r, visitor_msg(&bob.run_id, "alice.only", "sk")),
        "visitor connection of [alice.only] user [bob] not allowed"
    );
    assert_eq!(
        visitor_error(&r, visitor_msg(&owner.run_id, "alice.only", "sk")),
        ""
    );
    assert_eq!(
        visitor_error(&r, visitor_msg(&bob.run_id, "alice.bob", "sk")),
        ""
    );
    // A visitor without run_id is user "" (frps's legacy path).
    assert_eq!(
        visitor_error(&r, visitor_msg("", "alice.bob", "sk")),
        "visitor connection of [alice.bob] user [] not allowed"
    );
}

#[test]
fn work_conn_for_unknown_run_id_is_refused() {
    let r = relay_with(|_| {});
    let mut w = Conn::open(&r);
    w.send(Message::NewWorkConn(NewWorkConn {
        run_id: "0000000000000000".into(),
        ..Default::default()
    }));
    match w.recv() {
        Message::StartWorkConn(x) => {
            assert_eq!(
                x.error,
                "no client control found for run id [0000000000000000]"
            )
        }
        other => panic!("got {}", other.name()),
    }
    assert!(w.closed());
}

#[test]
fn malformed_frames_close_only_that_connection() {
    let r = relay_with(|_| {});
    let bad: Vec<Vec<u8>> = vec![
        b"Z\x00\x00\x00\x00\x00\x00\x00\x02{}".to_vec(), // unknown type byte
        b"o\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),   // negative length
        b"o\x00\x00\x00\x00\x00\x01\x00\x00".to_vec(),   // 65536 > 10240
        b"o\x00\x00\x00\x00\x00\x00\x00\x05{{{{{".to_vec(), // bad JSON
        b"h\x00\x00\x00\x00\x00\x00\x00\x02{}".to_vec(), // a Ping is not a first message
    ];
    for frame in bad {
        let mut c = Conn::open(&r);
        c.s.write_all(&frame).unwrap();
        assert!(
            c.closed(),
            "relay kept a connection open after {:?}",
            String::from_utf8_lossy(&frame)
        );
    }
    // The relay still serves others.
    let _ = login(&r, "alice", 0);
}

#[test]
fn stalled_client_is_dropped_after_the_handshake_timeout() {
    let r = relay_with(|_| {});
    let t = Instant::now();
    let mut silent = Conn::open(&r);
    assert!(silent.closed());
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    // Half a frame, then silence.
    let mut half = Conn::open(&r);
    half.s
        .write_all(b"o\x00\x00\x00\x00\x00\x00\x00\x40{\"user\"")
        .unwrap();
    assert!(half.closed());
}

#[test]
fn freshness_window_rejects_replayed_sign_keys() {
    let r = relay_with(|c| c.freshness_window = Some(Duration::from_secs(30)));
    let mut owner = login(&r, "alice", 0);
    owner.send(new_proxy("alice.p", "sk", &["*"]));
    assert!(matches!(owner.recv(), Message::NewProxyResp(x) if x.error.is_empty()));
    let m = visitor_msg(&owner.run_id, "alice.p", "sk");
    assert_eq!(visitor_error(&r, m.clone()), "");
    let err = visitor_error(&r, m);
    assert!(err.contains("reuses a sign key"), "{err}");
    let ts = now() - 3600;
    let old = Message::NewVisitorConn(NewVisitorConn {
        run_id: owner.run_id.clone(),
        proxy_name: "alice.p".into(),
        sign_key: auth_key("sk", ts),
        timestamp: ts,
        ..Default::default()
    });
    let err = visitor_error(&r, old);
    assert!(err.contains("outside the 30s freshness window"), "{err}");
}

/// Login, proxy, pooled work conn, visitor conn, StartWorkConn, then bytes both ways,
/// with encryption on the visitor leg and compression on the work leg.
#[test]
fn full_stcp_path_with_per_leg_layers() {
    use stcp_engine::codec::{SnappyDecoder, SnappyEncoder};
    let r = relay_with(|_| {});
    let mut owner = login(&r, "alice", 1);
    let mut p = match new_proxy("alice.svc", "sk", &["*"]) {
        Message::NewProxy(p) => p,
        _ => unreachable!(),
    };
    p.use_compression = true;
    owner.send(Message::NewProxy(p));
    assert!(matches!(owner.recv(), Message::ReqWorkConn(_)));
    assert!(matches!(owner.recv(), Message::NewProxyResp(x) if x.error.is_empty()));
    let mut work = Conn::open(&r);
    work.send(Message::NewWorkConn(NewWorkConn {
        run_id: owner.run_id.clone(),
        ..Default::default()
    }));
    std::thread::sleep(Duration::from_millis(100));
    let mut v = Conn::open(&r);
    let ts = now();
    v.send(Message::NewVisitorConn(NewVisitorConn {
        run_id: owner.run_id.clone(),
        proxy_name: "alice.svc".into(),
        sign_key: auth_key("sk", ts),
        timestamp: ts,
        use_encryption: true,
        ..Default::default()
    }));
    assert!(matches!(v.recv(), Message::NewVisitorConnResp(x) if x.error.is_empty()));
    match work.recv() {
        Message::StartWorkConn(s) => {
            assert_eq!(s.proxy_name, "alice.svc");
            assert_eq!(s.src_addr, "127.0.0.1");
            assert!(s.src_port > 0 && s.dst_port == r.addr().port());
        }
        other => panic!("got {}", other.name()),
    }
    // A replacement work conn is requested once one is taken.
    assert!(matches!(owner.recv(), Message::ReqWorkConn(_)));
    // visitor -> work: the visitor encrypts with sk; the work leg sees snappy frames.
    let sk = CipherKey::derive(b"sk");
    let mut venc = EncryptStream::new(&sk);
    let mut data = b"hello through the relay".to_vec();
    let iv = venc.encrypt(&mut data).unwrap();
    v.s.write_all(&iv).unwrap();
    v.s.write_all(&data).unwrap();
    let mut dec = SnappyDecoder::new();
    let mut got = Vec::new();
    let mut raw = std::mem::take(&mut work.buf);
    while got.len() < 23 {
        if raw.is_empty() {
            let mut tmp = [0u8; 4096];
            let n = work.s.read(&mut tmp).unwrap();
            assert!(n > 0);
            raw.extend_from_slice(&tmp[..n]);
        }
        dec.decode(&raw, &mut got).unwrap();
        raw.clear();
    }
    assert_eq!(got, b"hello through the relay");
    // work -> visitor: snappy on the work leg, CFB(sk) on the visitor leg.
    let mut enc = SnappyEncoder::new();
    let mut out = Vec::new();
    enc.encode(b"and back", &mut out);
    work.s.write_all(&out).unwrap();
    let mut vdec = DecryptStream::new(&sk);
    let mut back = Vec::new();
    let mut raw = std::mem::take(&mut v.buf);
    while back.len() < 8 {
        if raw.is_empty() {
            let mut tmp = [0u8; 4096];
            let n = v.s.read(&mut tmp).unwrap();
            assert!(n > 0);
            raw.extend_from_slice(&tmp[..n]);
        }
        let range = vdec.decrypt(&mut raw);
        back.extend_from_slice(&raw[range]);
        raw.clear();
    }
    assert_eq!(back, b"and back");
    // Either side closing ends both (frp's Join).
    drop(work);
    assert!(v.closed());
}

#[test]
fn visitor_waits_user_conn_timeout_then_closes_without_work_conn() {
    let r = relay_with(|_| {});
    let mut owner = login(&r, "alice", 0);
    owner.send(new_proxy("alice.p", "sk", &["*"]));
    assert!(matches!(owner.recv(), Message::NewProxyResp(x) if x.error.is_empty()));
    let mut v = Conn::open(&r);
    v.send(visitor_msg(&owner.run_id, "alice.p", "sk"));
    assert!(matches!(v.recv(), Message::NewVisitorConnResp(x) if x.error.is_empty()));
    assert!(
        matches!(owner.recv(), Message::ReqWorkConn(_)),
        "relay asks for a work conn"
    );
    let t = Instant::now();
    assert!(v.closed());
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "closed before userConnTimeout"
    );
}

#[test]
fn heartbeat_timeout_closes_a_silent_control_but_not_a_pinging_one() {
    let r = relay_with(|c| c.heartbeat_timeout = 2);
    let mut silent = login(&r, "alice", 0);
    let mut pinging = login(&r, "bob", 0);
    let t = Instant::now();
    let mut silent_closed = false;
    while t.elapsed() < Duration::from_secs(5) {
        pinging.send(Message::Ping(Ping::default()));
        assert!(matches!(pinging.recv(), Message::Pong(p) if p.error.is_empty()));
        silent
            .c
            .s
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut b = [0u8; 64];
        match silent.c.s.read(&mut b) {
            Ok(0) => {
                silent_closed = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                silent_closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(
        silent_closed,
        "a control without pings must be closed after heartbeatTimeout"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "closed before the 2 s timeout"
    );
    // The pinging control is still alive.
    pinging.send(Message::Ping(Ping::default()));
    assert!(matches!(pinging.recv(), Message::Pong(_)));
}

#[test]
fn heartbeat_scope_checks_ping_keys() {
    let r = relay_with(|c| c.auth_heartbeats = true);
    let mut ctl = login(&r, "alice", 0);
    ctl.send(Message::Ping(Ping::default()));
    match ctl.recv() {
        Message::Pong(p) => assert_eq!(
            p.error,
            "token in heartbeat doesn't match token from configuration"
        ),
        other => panic!("got {}", other.name()),
    }
    let ts = now();
    ctl.send(Message::Ping(Ping {
        privilege_key: auth_key(TOKEN, ts),
        timestamp: ts,
    }));
    assert!(matches!(ctl.recv(), Message::Pong(p) if p.error.is_empty()));
}
