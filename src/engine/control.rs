//! The control executor: login, the encrypted control stream, NewProxy for every stcp
//! proxy, heartbeats when configured, ReqWorkConn hand-off to the shards, and re-login
//! with the same run_id (capped exponential backoff with jitter) when frps goes away.

use super::shard::ShardCmd;
use super::state::{unix_now, ProxyRuntime, Shared};
use super::transport::{dial_frps, DialConfig};
use crate::codec::CipherKey;
use crate::conn::{
    with_timeout, write_msg, ClientHandshake, ConnError, ControlReader, ControlWriter, FrameReader,
    Io, V2Crypto, Wire,
};
use crate::mux::{Mode, Session};
use crate::proto::{auth_key, CloseProxy, Login, Message, NewProxy, Ping};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The version we announce; frps only logs it, and frpc's keeps dashboards familiar.
pub const CLIENT_VERSION: &str = "0.70.1";
const LOGIN_RESP_TIMEOUT: Duration = Duration::from_secs(10);

/// Go's GOARCH names, which frps shows in its dashboard.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        other => other,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn login_msg(shared: &Shared, run_id: &str) -> Login {
    let cfg = &shared.cfg;
    let ts = unix_now();
    Login {
        version: CLIENT_VERSION.into(),
        hostname: hostname(),
        os: std::env::consts::OS.into(),
        arch: go_arch().into(),
        user: cfg.user.clone(),
        privilege_key: auth_key(&cfg.auth.token, ts),
        timestamp: ts,
        run_id: run_id.to_string(),
        client_id: cfg.client_id.clone(),
        metas: cfg.metadatas.clone(),
        pool_count: i64::from(cfg.transport.pool_count.max(1)),
        ..Default::default()
    }
}

fn new_proxy_msg(p: &ProxyRuntime) -> NewProxy {
    NewProxy {
        proxy_name: p.wire_name.clone(),
        proxy_type: "stcp".into(),
        use_encryption: p.cfg.use_encryption,
        use_compression: p.cfg.use_compression,
        bandwidth_limit: p.cfg.bandwidth_limit.clone(),
        metas: p.cfg.metadatas.clone(),
        annotations: p.cfg.annotations.clone(),
        sk: p.cfg.secret_key.clone(),
        allow_users: p.cfg.allow_users.clone(),
        ..Default::default()
    }
}

/// A logged-in control connection.
struct Controlled {
    io: Box<dyn Io>,
    leftover: Vec<u8>,
    session: Option<Session>,
    run_id: String,
    /// Wire protocol v2: what the hellos agreed (keys the control AEAD streams).
    v2: Option<V2Crypto>,
}

async fn login(shared: &Shared, dial: &DialConfig, run_id: &str) -> Result<Controlled, ConnError> {
    let io = dial_frps(dial).await?;
    let (io, session): (Box<dyn Io>, _) = if dial.tcp_mux {
        let s = Session::new(io, Mode::Client, dial.mux.clone());
        let opened = with_timeout(LOGIN_RESP_TIMEOUT, "the control stream to open", async {
            s.open()
                .await
                .map_err(|e| ConnError::Other(format!("open control stream: {e}")))
        })
        .await;
        match opened {
            Ok(stream) => (Box::new(stream), Some(s)),
            Err(e) => {
                s.close();
                return Err(e);
            }
        }
    } else {
        (io, None)
    };
    match login_exchange(shared, run_id, io).await {
        Ok((io, leftover, run_id, v2)) => Ok(Controlled {
            io,
            leftover,
            session,
            run_id,
            v2,
        }),
        Err(e) => {
            // Sessions are not closed by dropping their handles: close it on every failure.
            if let Some(s) = &session {
                s.close();
            }
            Err(e)
        }
    }
}

/// Login, then LoginResp within frp's 10 s; the write is inside the deadline too, so a
/// server that accepts and never reads cannot hold the login.
async fn login_exchange(
    shared: &Shared,
    run_id: &str,
    mut io: Box<dyn Io>,
) -> Result<(Box<dyn Io>, Vec<u8>, String, Option<V2Crypto>), ConnError> {
    let t = &shared.cfg.transport;
    let wire = Wire::from_config(&t.wire_protocol);
    let mut reader = FrameReader::for_wire(wire);
    let (resp, v2) = with_timeout(LOGIN_RESP_TIMEOUT, "LoginResp", async {
        let login = Message::Login(login_msg(shared, run_id));
        if wire == Wire::V1 {
            write_msg(&mut io, &login).await?;
            return Ok((reader.read_msg(&mut io, "LoginResp").await?, None));
        }
        // v2: magic, ClientHello and Login pipelined; ServerHello comes before LoginResp.
        let hello = ClientHandshake::new(crate::proto::v2::BootstrapInfo {
            transport: "tcp".into(), // the only transport.protocol we accept
            tls: t.tls.enable,
            tcp_mux: t.tcp_mux,
        });
        let crypto = hello.exchange(&mut io, &mut reader, &login).await?;
        Ok((reader.read_msg(&mut io, "LoginResp").await?, Some(crypto)))
    })
    .await?;
    let resp = match resp {
        Message::LoginResp(r) => r,
        other => {
            return Err(ConnError::Unexpected {
                expected: "LoginResp",
                got: other.name(),
            })
        }
    };
    if !resp.error.is_empty() {
        return Err(ConnError::Rejected(resp.error));
    }
    Ok((io, reader.take_leftover(), resp.run_id, v2))
}

/// How the first login went, for `loginFailExit`.
pub type FirstLogin = std::sync::mpsc::Sender<Result<String, String>>;

/// Tells the control that [`Shared::sets`] changed (a reload): it sends CloseProxy for
/// removed or changed proxies and NewProxy for added or changed ones. While logged out
/// there is nothing to do: the next login registers the sets in force.
pub struct SyncProxies;

pub async fn control_loop(
    shared: Arc<Shared>,
    shards: Vec<async_channel::Sender<ShardCmd>>,
    dial: DialConfig,
    stop: async_channel::Receiver<()>,
    sync: async_channel::Receiver<SyncProxies>,
    first: FirstLogin,
) {
    let token_key = CipherKey::derive(shared.cfg.auth.token.as_bytes());
    let mut first = Some(first);
    let mut run_id = String::new();
    let mut login_failures: u32 = 0;
    let mut recent_drops: Vec<Instant> = Vec::new();
    loop {
        if shared.is_stopping() || stop.is_closed() {
            break;
        }
        log::info!("try to connect to server...");
        let delay = match login(&shared, &dial, &run_id).await {
            Ok(ctl) => {
                login_failures = 0;
                run_id = ctl.run_id.clone();
                shared.set_run_id(&run_id);
                super::state::EngineStats::add(&shared.stats.logins, 1);
                log::info!("login to server success, get run id [{run_id}]");
                if let Some(f) = first.take() {
                    let _ = f.send(Ok(run_id.clone()));
                } else {
                    for s in &shards {
                        let _ = s.try_send(ShardCmd::RetireLink);
                    }
                }
                let reason = run_control(&shared, &shards, &token_key, ctl, &stop, &sync).await;
                shared.set_run_id("");
                if shared.is_stopping() || stop.is_closed() {
                    break;
                }
                log::warn!(
                    "control connection closed: {reason}; reconnecting with run id [{run_id}]"
                );
                // frpc's fast retry: up to 3 quick re-logins a minute, then back off.
                let now = Instant::now();
                recent_drops.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
                recent_drops.push(now);
                if recent_drops.len() <= 3 {
                    jitter(Duration::from_millis(200), 0.5)
                } else {
                    backoff(recent_drops.len() as u32 - 3)
                }
            }
            Err(e) => {
                let text = e.to_string();
                if let Some(f) = first.take() {
                    if shared.cfg.login_fail_exit {
                        let _ = f.send(Err(format!(
                            "login to the server failed: {text}. With loginFailExit enabled, no additional retries will be attempted"
                        )));
                        return;
                    }
                    first = Some(f);
                }
                log::warn!("connect to server error: {text}");
                login_failures += 1;
                backoff(login_failures)
            }
        };
        let stopped = futures_lite::future::or(
            async {
                glommio::timer::sleep(delay).await;
                false
            },
            async {
                let _ = stop.recv().await;
                true
            },
        )
        .await;
        if stopped {
            break;
        }
    }
    if let Some(f) = first.take() {
        let _ = f.send(Err("engine stopped before the first login".into()));
    }
}

/// 2 s, 4 s, 8 s ... capped at 20 s, plus up to 10 % jitter (frpc's reconnect policy).
fn backoff(failures: u32) -> Duration {
    let secs = 2u64.saturating_pow(failures.min(5)).min(20);
    jitter(Duration::from_secs(secs), 0.1)
}

fn jitter(base: Duration, frac: f64) -> Duration {
    base.mul_f64(1.0 + rand::random::<f64>() * frac)
}

enum Event {
    Msg(Result<Message, ConnError>),
    Stop,
    HeartbeatTimeout,
    Sync,
}

/// Runs one logged-in control until it ends; returns why it ended.
async fn run_control(
    shared: &Arc<Shared>,
    shards: &[async_channel::Sender<ShardCmd>],
    token_key: &CipherKey,
    ctl: Controlled,
    stop: &async_channel::Receiver<()>,
    sync: &async_channel::Receiver<SyncProxies>,
) -> String {
    let (r, w) = futures_lite::io::split(ctl.io);
    let (outbox, outbox_rx) = async_channel::unbounded::<Message>();
    let (v2_sealer, v2_opener) = match &ctl.v2 {
        Some(c) => {
            let (sealer, opener) = c.client_streams(&shared.cfg.auth.token);
            (Some(sealer), Some(opener))
        }
        None => (None, None),
    };
    let mut writer = ControlWriter::v1_or_v2(w, token_key, v2_sealer);
    let writer_task = glommio::spawn_local(async move {
        while let Ok(msg) = outbox_rx.recv().await {
            if let Err(e) = writer.write_msg(&msg).await {
                return format!("control write failed: {e}");
            }
        }
        writer.close().await;
        String::new()
    });
    // Reloads made while logged out are covered by registering the sets in force now.
    while sync.try_recv().is_ok() {}
    let mut registered = shared.sets().proxies.clone();
    for p in registered.values() {
        let _ = outbox.try_send(Message::NewProxy(new_proxy_msg(p)));
    }
    let last_pong = Rc::new(Cell::new(Instant::now()));
    // Closed by the heartbeat worker when frps stops answering pings.
    let (dead_tx, dead_rx) = async_channel::bounded::<()>(1);
    let t = &shared.cfg.transport;
    let heartbeat = if t.heartbeat_interval > 0 {
        let interval = Duration::from_secs(t.heartbeat_interval as u64);
        let timeout =
            (t.heartbeat_timeout > 0).then(|| Duration::from_secs(t.heartbeat_timeout as u64));
        Some(glommio::spawn_local(heartbeat_worker(
            shared.clone(),
            outbox.clone(),
            interval,
            timeout,
            last_pong.clone(),
            dead_tx,
        )))
    } else {
        None
    };

    let mut reader = ControlReader::v1_or_v2(r, token_key, v2_opener, ctl.leftover);
    let mut next_shard = 0usize;
    let reason = loop {
        let next = futures_lite::future::or(
            async { Event::Msg(reader.read_msg().await) },
            futures_lite::future::or(
                async {
                    let _ = stop.recv().await;
                    Event::Stop
                },
                futures_lite::future::or(
                    async {
                        let _ = dead_rx.recv().await;
                        Event::HeartbeatTimeout
                    },
                    async {
                        match sync.recv().await {
                            Ok(SyncProxies) => Event::Sync,
                            // The engine is going away; its stop channel says so.
                            Err(_) => std::future::pending().await,
                        }
                    },
                ),
            ),
        )
        .await;
        let msg = match next {
            Event::HeartbeatTimeout => break "heartbeat timeout".to_string(),
            Event::Sync => {
                sync_proxies(shared, &mut registered, &outbox);
                continue;
            }
            Event::Stop => {
                // Graceful stop: tell frps the proxies are going away, then close.
                for p in registered.values() {
                    let _ = outbox.try_send(Message::CloseProxy(CloseProxy {
                        proxy_name: p.wire_name.clone(),
                    }));
                }
                break "engine stopping".to_string();
            }
            Event::Msg(Ok(m)) => m,
            Event::Msg(Err(e)) => break e.to_string(),
        };
        match msg {
            Message::ReqWorkConn(_) => {
                // Round-robin over shards; a shard whose queue is gone is skipped.
                for _ in 0..shards.len() {
                    let i = next_shard % shards.len();
                    next_shard = next_shard.wrapping_add(1);
                    if shards[i].try_send(ShardCmd::WorkConn).is_ok() {
                        break;
                    }
                }
            }
            Message::NewProxyResp(r) => {
                let name = shared
                    .proxy_for_wire_name(&r.proxy_name)
                    .map(|p| p.cfg.name.clone())
                    .unwrap_or(r.proxy_name.clone());
                if r.error.is_empty() {
                    log::info!("[{name}] start proxy success");
                } else {
                    log::warn!("[{name}] start error: {}", r.error);
                }
                if let Ok(mut st) = shared.proxy_status.lock() {
                    st.insert(name, r.error);
                }
            }
            Message::Pong(p) => {
                if !p.error.is_empty() {
                    log::error!("pong message contains error: {}", p.error);
                    break format!("pong error: {}", p.error);
                }
                last_pong.set(Instant::now());
            }
            other => log::debug!("ignoring {} on control", other.name()),
        }
    };
    outbox.close();
    if let Some(h) = heartbeat {
        drop(h);
    }
    let _ = futures_lite::future::or(
        async {
            writer_task.await;
        },
        glommio::timer::sleep(Duration::from_secs(2)),
    )
    .await;
    if let Some(s) = ctl.session {
        s.close();
    }
    reason
}

/// Brings frps in line with [`Shared::sets`] after a reload, as frpc's
/// `proxy.Manager.UpdateAll`: removed and changed proxies are closed (CloseProxy), then
/// added and changed ones registered (NewProxy). Unchanged ones are not touched.
fn sync_proxies(
    shared: &Shared,
    registered: &mut std::collections::HashMap<String, Arc<ProxyRuntime>>,
    outbox: &async_channel::Sender<Message>,
) {
    let now = shared.sets();
    let removed = super::state::replaced_names(registered, &now.proxies);
    for name in &removed {
        if let Some(old) = registered.remove(name) {
            let _ = outbox.try_send(Message::CloseProxy(CloseProxy {
                proxy_name: old.wire_name.clone(),
            }));
            shared.forget_proxy_status(name);
        }
    }
    if !removed.is_empty() {
        log::info!("proxy removed: [{}]", removed.join(" "));
    }
    let added = super::state::replaced_names(&now.proxies, registered);
    for name in &added {
        let p = now.proxies[name].clone();
        let _ = outbox.try_send(Message::NewProxy(new_proxy_msg(&p)));
        registered.insert(name.clone(), p);
    }
    if !added.is_empty() {
        log::info!("proxy added: [{}]", added.join(" "));
    }
}

async fn heartbeat_worker(
    shared: Arc<Shared>,
    outbox: async_channel::Sender<Message>,
    interval: Duration,
    timeout: Option<Duration>,
    last_pong: Rc<Cell<Instant>>,
    dead: async_channel::Sender<()>,
) {
    let mut next_ping = Instant::now();
    loop {
        if Instant::now() >= next_ping {
            let mut ping = Ping::default();
            if shared.cfg.auth.additional_scopes.heartbeats {
                ping.timestamp = unix_now();
                ping.privilege_key = auth_key(&shared.cfg.auth.token, ping.timestamp);
            }
            if outbox.try_send(Message::Ping(ping)).is_err() {
                return;
            }
            next_ping = Instant::now() + interval;
        }
        if let Some(t) = timeout {
            if last_pong.get().elapsed() > t {
                log::warn!("heartbeat timeout");
                dead.close();
                return;
            }
        }
        glommio::timer::sleep(Duration::from_secs(1)).await;
    }
}
