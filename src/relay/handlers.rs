//! Per-connection behaviour of the relay, following frps v0.70 (`server/service.go`,
//! `server/control.go`, `server/proxy/stcp.go`, `server/visitor/visitor.go`).

use super::registry::{Control, Proxy, Registry, RelayStats, Shared, WorkConn};
use super::{RelayConfig, FRPS_VERSION};
use crate::codec::CipherKey;
use crate::conn::{
    answer_client_hello, join, with_timeout, ConnError, ControlReader, ControlWriter, FrameReader,
    Io, Transform, V2Crypto, Wire,
};
use crate::mux::{Mode, Session};
use crate::proto::{
    auth_key, constant_time_eq, v2, FrameError, LoginResp, Message, NewProxyResp,
    NewVisitorConnResp, Pong, StartWorkConn,
};
use futures_lite::AsyncWriteExt;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Ctx {
    cfg: RelayConfig,
    tls: Option<futures_rustls::TlsAcceptor>,
    token_key: CipherKey,
    stats: Arc<RelayStats>,
    reg: Shared,
}

impl Ctx {
    /// frps's `GenerateResponseErrorString`: the detail, or a summary when detailed
    /// errors are off.
    fn client_error(&self, summary: &str, detail: &str) -> String {
        if self.cfg.detailed_errors {
            detail.to_string()
        } else {
            summary.to_string()
        }
    }
}

pub(super) async fn serve(
    listener: glommio::net::TcpListener,
    cfg: RelayConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    stats: Arc<RelayStats>,
    stop: async_channel::Receiver<()>,
) {
    let ctx = Rc::new(Ctx {
        tls: tls.map(futures_rustls::TlsAcceptor::from),
        token_key: CipherKey::derive(cfg.token.as_bytes()),
        cfg,
        stats,
        reg: Rc::new(RefCell::new(Registry::default())),
    });
    log::info!(
        "relay listening on {} (tcpMux {})",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        ctx.cfg.tcp_mux
    );
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            let _ = stop.recv().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                // Each connection ends when the relay stops, so a stopped relay really
                // closes its sockets (peers see EOF, as when frps exits).
                let stop = stop.clone();
                let conn = handle_tcp(ctx.clone(), stream);
                glommio::spawn_local(async move {
                    futures_lite::future::or(conn, async {
                        let _ = stop.recv().await;
                    })
                    .await
                })
                .detach();
            }
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("relay accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let controls: Vec<_> = ctx.reg.borrow().controls.values().cloned().collect();
    for ctl in controls {
        ctl.kill();
    }
    log::info!("relay stopped");
}

/// frps's bind-port classification: TLS when the first byte is 0x16 (a ClientHello) or
/// frp's 0x17 prefix (consumed), plain otherwise.
async fn classify(
    ctx: &Ctx,
    mut stream: glommio::net::TcpStream,
    peer: Option<SocketAddr>,
) -> Result<Box<dyn Io>, String> {
    let mut first = [0u8; 1];
    let n = with_timeout(ctx.cfg.handshake_timeout, "the first byte", async {
        stream
            .peek(&mut first)
            .await
            .map_err(|e| ConnError::Other(e.to_string()))
    })
    .await
    .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("closed before sending anything".into());
    }
    let is_tls = first[0] == 0x16 || first[0] == crate::tls::FRP_TLS_HEAD_BYTE;
    match (&ctx.tls, is_tls) {
        (Some(acceptor), true) => {
            if first[0] == crate::tls::FRP_TLS_HEAD_BYTE {
                let mut b = [0u8; 1];
                futures_lite::AsyncReadExt::read_exact(&mut stream, &mut b)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let tls = with_timeout(ctx.cfg.handshake_timeout, "the TLS handshake", async {
                Ok(acceptor.accept(stream).await?)
            })
            .await
            .map_err(|e| format!("TLS handshake with {peer:?} failed: {e}"))?;
            Ok(Box::new(tls))
        }
        (None, true) => Err("TLS connection received but TLS is off on this relay".into()),
        (_, false) if ctx.cfg.tls_force => {
            Err("non-TLS connection received on a TlsOnly server".into())
        }
        (_, false) => Ok(Box::new(stream)),
    }
}

async fn handle_tcp(ctx: Rc<Ctx>, stream: glommio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let local = stream.local_addr().ok();
    let stream = match classify(&ctx, stream, peer).await {
        Ok(s) => s,
        Err(e) => {
            log::debug!("connection from {peer:?} dropped: {e}");
            return;
        }
    };
    if ctx.cfg.tcp_mux {
        let session = SessionGuard(Session::new(stream, Mode::Server, ctx.cfg.mux.clone()));
        while let Some(s) = session.0.accept().await {
            glommio::spawn_local(handle_frp_conn(ctx.clone(), Box::new(s), peer, local)).detach();
        }
    } else {
        handle_frp_conn(ctx, stream, peer, local).await;
    }
}

/// Closes a yamux session when its connection handler ends or is dropped (a session
/// outlives its handles otherwise).
struct SessionGuard(Session);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.close();
    }
}

async fn handle_frp_conn(
    ctx: Rc<Ctx>,
    mut io: Box<dyn Io>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
) {
    let mut reader = FrameReader::new();
    let first = with_timeout(
        ctx.cfg.handshake_timeout,
        "the first message",
        read_first_msg(&mut reader, &mut io),
    )
    .await;
    let wire = reader.wire();
    if wire == Wire::V2 {
        RelayStats::inc(&ctx.stats.v2_conns);
    }
    let leftover = reader.take_leftover();
    match first {
        Ok((Message::Login(m), v2)) => handle_login(ctx, io, leftover, m, peer, wire, v2).await,
        Ok((Message::NewWorkConn(m), _)) => handle_work_conn(ctx, io, leftover, m, wire).await,
        Ok((Message::NewVisitorConn(m), _)) => {
            handle_visitor_conn(ctx, io, leftover, m, peer, local, wire).await
        }
        Ok((other, _)) => log::warn!(
            "connection from {peer:?}: unexpected first message {}, closing",
            other.name()
        ),
        Err(e) => log::debug!("connection from {peer:?} closed before its first message: {e}"),
    }
}

/// frps's `acceptConnection`: v1, or v2 after the magic (per connection). A v2
/// ClientHello (control connections) is answered with a ServerHello before the first
/// message is read; its agreement keys the control stream.
async fn read_first_msg(
    reader: &mut FrameReader,
    io: &mut Box<dyn Io>,
) -> Result<(Message, Option<V2Crypto>), ConnError> {
    if reader.detect_wire(io, "the first message").await? == Wire::V1 {
        return Ok((reader.read_msg(io, "the first message").await?, None));
    }
    let (frame_type, payload) = reader.read_v2_frame(io, "the first v2 frame").await?;
    if frame_type != v2::FRAME_CLIENT_HELLO {
        if frame_type != v2::FRAME_MESSAGE {
            return Err(FrameError::from(v2::V2Error::UnexpectedFrame {
                got: frame_type,
                want: v2::FRAME_MESSAGE,
            })
            .into());
        }
        let msg = v2::decode_message_payload(&payload).map_err(FrameError::from)?;
        return Ok((msg, None));
    }
    let (server_hello, agreed) = answer_client_hello(&payload);
    io.write_all(&server_hello).await?;
    io.flush().await?;
    let crypto = agreed.map_err(FrameError::from)?;
    Ok((
        reader.read_msg(io, "the first v2 message").await?,
        Some(crypto),
    ))
}

fn new_run_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn handle_login(
    ctx: Rc<Ctx>,
    mut io: Box<dyn Io>,
    leftover: Vec<u8>,
    m: crate::proto::Login,
    peer: Option<SocketAddr>,
    wire: Wire,
    v2: Option<V2Crypto>,
) {
    let refusal = if wire == Wire::V2 && v2.is_none() {
        // frps cannot key the control stream without the hellos.
        Some("missing v2 crypto negotiation")
    } else if !constant_time_eq(
        auth_key(&ctx.cfg.token, m.timestamp).as_bytes(),
        m.privilege_key.as_bytes(),
    ) {
        RelayStats::inc(&ctx.stats.login_failures);
        Some("token in login doesn't match token from configuration")
    } else {
        None
    };
    if let Some(detail) = refusal {
        log::warn!(
            "register control error: {detail} (user [{}], from {peer:?})",
            m.user
        );
        let resp = LoginResp {
            version: FRPS_VERSION.into(),
            error: ctx.client_error("register control error", detail),
            ..Default::default()
        };
        let _ = wire.write_msg(&mut io, &Message::LoginResp(resp)).await;
        let _ = io.close().await;
        return;
    }
    let run_id = if m.run_id.is_empty() {
        new_run_id()
    } else {
        m.run_id.clone()
    };
    // A login reusing a run_id replaces the old control; wait for its cleanup first.
    let old = ctx.reg.borrow().controls.get(&run_id).cloned();
    if let Some(old) = old {
        log::info!("[{run_id}] control replaced by a new login, closing the old one");
        old.kill();
        old.wait_done().await;
    }
    let pool_count = m.pool_count.clamp(0, i64::from(ctx.cfg.max_pool_count)) as u32;
    let (ctl, outbox_rx) = Control::new(run_id.clone(), m.user.clone(), pool_count);
    ctx.reg
        .borrow_mut()
        .controls
        .insert(run_id.clone(), ctl.clone());
    let resp = LoginResp {
        version: FRPS_VERSION.into(),
        run_id: run_id.clone(),
        ..Default::default()
    };
    if let Err(e) = wire.write_msg(&mut io, &Message::LoginResp(resp)).await {
        log::warn!("[{run_id}] write LoginResp failed: {e}");
        finish_control(&ctx, &ctl);
        ctl.done_tx.borrow_mut().take();
        return;
    }
    RelayStats::inc(&ctx.stats.logins);
    log::info!(
        "[{run_id}] client login info: ip [{}] version [{}] hostname [{}] os [{}] arch [{}] user [{}]",
        peer.map(|p| p.to_string()).unwrap_or_default(),
        m.version,
        m.hostname,
        m.os,
        m.arch,
        m.user
    );
    for _ in 0..pool_count {
        ctl.request_work_conn();
    }

    let (r, w) = futures_lite::io::split(io);
    let (v2_sealer, v2_opener) = match &v2 {
        Some(c) => {
            let (sealer, opener) = c.server_streams(&ctx.cfg.token);
            (Some(sealer), Some(opener))
        }
        None => (None, None),
    };
    let writer = glommio::spawn_local(control_writer(
        ControlWriter::v1_or_v2(w, &ctx.token_key, v2_sealer),
        outbox_rx,
    ));
    let last_ping = Rc::new(Cell::new(Instant::now()));
    if ctx.cfg.heartbeat_timeout > 0 {
        glommio::spawn_local(heartbeat_watch(
            ctl.clone(),
            last_ping.clone(),
            Duration::from_secs(ctx.cfg.heartbeat_timeout as u64),
        ))
        .detach();
    }
    let mut reader = ControlReader::v1_or_v2(r, &ctx.token_key, v2_opener, leftover);
    loop {
        let next = futures_lite::future::or(async { Some(reader.read_msg().await) }, async {
            let _ = ctl.kill_rx.recv().await;
            None
        })
        .await;
        let msg = match next {
            None => break,
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                log::info!("[{run_id}] control closed: {e}");
                break;
            }
        };
        match msg {
            Message::NewProxy(p) => {
                let resp = register_proxy(&ctx, &ctl, p);
                let _ = ctl.outbox.try_send(Message::NewProxyResp(resp));
            }
            Message::CloseProxy(c) => {
                let mut reg = ctx.reg.borrow_mut();
                if reg
                    .proxies
                    .get(&c.proxy_name)
                    .is_some_and(|p| p.owner_run_id == run_id)
                {
                    reg.proxies.remove(&c.proxy_name);
                    ctl.proxies.borrow_mut().retain(|n| n != &c.proxy_name);
                    log::info!("[{run_id}] proxy [{}] closed by client", c.proxy_name);
                }
            }
            Message::Ping(p) => {
                let mut pong = Pong::default();
                if ctx.cfg.auth_heartbeats {
                    let expected = auth_key(&ctx.cfg.token, p.timestamp);
                    if !constant_time_eq(expected.as_bytes(), p.privilege_key.as_bytes()) {
                        pong.error = ctx.client_error(
                            "invalid ping",
                            "token in heartbeat doesn't match token from configuration",
                        );
                    }
                }
                if pong.error.is_empty() {
                    last_ping.set(Instant::now());
                }
                let _ = ctl.outbox.try_send(Message::Pong(pong));
            }
            // frps's dispatcher drops registered types it has no handler for.
            other => log::debug!("[{run_id}] ignoring {} on control", other.name()),
        }
    }
    finish_control(&ctx, &ctl);
    let _ = writer.await;
    // Only now is the old generation gone: a replacing login may proceed.
    ctl.done_tx.borrow_mut().take();
    log::info!("[{run_id}] control closed");
}

/// Marks the control closed and releases its proxies and pooled work connections.
fn finish_control(ctx: &Ctx, ctl: &Rc<Control>) {
    ctl.running.set(false);
    ctx.reg.borrow_mut().remove_control(ctl);
    ctl.outbox.close();
    ctl.work_tx.close();
    while ctl.work_rx.try_recv().is_ok() {}
}

async fn control_writer<W: futures_lite::AsyncWrite + Unpin>(
    mut w: ControlWriter<W>,
    outbox: async_channel::Receiver<Message>,
) {
    while let Ok(msg) = outbox.recv().await {
        if let Err(e) = w.write_msg(&msg).await {
            log::debug!("control write failed: {e}");
            break;
        }
    }
    w.close().await;
}

async fn heartbeat_watch(ctl: Rc<Control>, last_ping: Rc<Cell<Instant>>, timeout: Duration) {
    while ctl.running.get() {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        if last_ping.get().elapsed() > timeout {
            log::warn!("[{}] heartbeat timeout", ctl.run_id);
            ctl.kill();
            return;
        }
    }
}

fn register_proxy(ctx: &Ctx, ctl: &Rc<Control>, p: crate::proto::NewProxy) -> NewProxyResp {
    let name = p.proxy_name.clone();
    let summary = format!("new proxy [{name}] error");
    let fail = |detail: String| {
        log::warn!("[{}] {summary}: {detail}", ctl.run_id);
        NewProxyResp {
            proxy_name: name.clone(),
            error: ctx.client_error(&summary, &detail),
            ..Default::default()
        }
    };
    let ty = if p.proxy_type.is_empty() {
        "tcp"
    } else {
        p.proxy_type.as_str()
    };
    if ty != "stcp" {
        return fail(format!(
            "proxy type [{ty}] is not supported by the stcp-engine relay (only stcp)"
        ));
    }
    let mut reg = ctx.reg.borrow_mut();
    if reg.proxies.contains_key(&name) {
        return fail(format!("proxy [{name}] already exists"));
    }
    // frps: an empty allow_users means "the owner's user only".
    let allow_users = if p.allow_users.is_empty() {
        vec![ctl.user.clone()]
    } else {
        p.allow_users.clone()
    };
    reg.proxies.insert(
        name.clone(),
        Rc::new(Proxy {
            name: name.clone(),
            owner_run_id: ctl.run_id.clone(),
            sk_key: CipherKey::derive(p.sk.as_bytes()),
            sk: p.sk,
            allow_users,
            use_encryption: p.use_encryption,
            use_compression: p.use_compression,
        }),
    );
    ctl.proxies.borrow_mut().push(name.clone());
    log::info!("[{}] new proxy [{name}] type [stcp] success", ctl.run_id);
    NewProxyResp {
        proxy_name: name,
        ..Default::default()
    }
}

async fn handle_work_conn(
    ctx: Rc<Ctx>,
    mut io: Box<dyn Io>,
    leftover: Vec<u8>,
    m: crate::proto::NewWorkConn,
    wire: Wire,
) {
    let ctl = ctx.reg.borrow().running_control(&m.run_id);
    let mut problem = None;
    match &ctl {
        None => problem = Some(format!("no client control found for run id [{}]", m.run_id)),
        Some(_) if ctx.cfg.auth_new_work_conns => {
            let expected = auth_key(&ctx.cfg.token, m.timestamp);
            if !constant_time_eq(expected.as_bytes(), m.privilege_key.as_bytes()) {
                problem =
                    Some("token in NewWorkConn doesn't match token from configuration".into());
            }
        }
        Some(_) => {}
    }
    if let (None, Some(ctl)) = (&problem, &ctl) {
        match ctl.work_tx.try_send(WorkConn { io, leftover, wire }) {
            Ok(()) => {
                RelayStats::inc(&ctx.stats.work_conns);
                return;
            }
            Err(e) => {
                io = e.into_inner().io;
                problem = Some("work connection pool is full, discarding".into());
            }
        }
    }
    let detail = problem.unwrap_or_default();
    // frps logs a full pool at debug level: it is the normal surplus of its requests.
    if detail.contains("pool is full") {
        log::debug!("invalid NewWorkConn: {detail}");
    } else {
        log::warn!("invalid NewWorkConn: {detail}");
    }
    let resp = StartWorkConn {
        error: ctx.client_error("invalid NewWorkConn", &detail),
        ..Default::default()
    };
    let _ = wire.write_msg(&mut io, &Message::StartWorkConn(resp)).await;
    let _ = io.close().await;
}

/// frps's visitor admission checks, in frps's order, with its error strings.
fn admit_visitor(
    ctx: &Ctx,
    m: &crate::proto::NewVisitorConn,
) -> Result<(Rc<Proxy>, Rc<Control>), String> {
    let mut reg = ctx.reg.borrow_mut();
    let visitor_user = if m.run_id.is_empty() {
        String::new()
    } else {
        match reg.running_control(&m.run_id) {
            Some(c) => c.user.clone(),
            None => return Err(format!("no client control found for run id [{}]", m.run_id)),
        }
    };
    let name = &m.proxy_name;
    let proxy = reg
        .proxies
        .get(name)
        .cloned()
        .ok_or_else(|| format!("custom listener for [{name}] doesn't exist"))?;
    let expected = auth_key(&proxy.sk, m.timestamp);
    if !constant_time_eq(expected.as_bytes(), m.sign_key.as_bytes()) {
        return Err(format!("visitor connection of [{name}] auth failed"));
    }
    if !proxy
        .allow_users
        .iter()
        .any(|u| u == &visitor_user || u == "*")
    {
        return Err(format!(
            "visitor connection of [{name}] user [{visitor_user}] not allowed"
        ));
    }
    if let Some(window) = ctx.cfg.freshness_window {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let w = window.as_secs() as i64;
        if (now - m.timestamp).abs() > w {
            return Err(format!(
                "visitor connection of [{name}] timestamp [{}] is outside the {w}s freshness window",
                m.timestamp
            ));
        }
        if !reg.note_sign_key(&m.sign_key, m.timestamp, now, w) {
            return Err(format!(
                "visitor connection of [{name}] reuses a sign key within the {w}s freshness window"
            ));
        }
    }
    let owner = reg
        .running_control(&proxy.owner_run_id)
        .ok_or_else(|| format!("custom listener for [{name}] doesn't exist"))?;
    Ok((proxy, owner))
}

async fn handle_visitor_conn(
    ctx: Rc<Ctx>,
    mut io: Box<dyn Io>,
    leftover: Vec<u8>,
    m: crate::proto::NewVisitorConn,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    wire: Wire,
) {
    RelayStats::inc(&ctx.stats.visitor_conns);
    let admitted = admit_visitor(&ctx, &m);
    let mut resp = NewVisitorConnResp {
        proxy_name: m.proxy_name.clone(),
        ..Default::default()
    };
    let (proxy, owner) = match admitted {
        Ok(pair) => pair,
        Err(detail) => {
            RelayStats::inc(&ctx.stats.visitor_rejects);
            log::warn!("register visitor conn error: {detail}");
            resp.error = ctx.client_error("register visitor conn error", &detail);
            let _ = wire
                .write_msg(&mut io, &Message::NewVisitorConnResp(resp))
                .await;
            let _ = io.close().await;
            return;
        }
    };
    if wire
        .write_msg(&mut io, &Message::NewVisitorConnResp(resp))
        .await
        .is_err()
    {
        return;
    }
    let work = match get_work_conn(&ctx, &owner, &proxy, peer, local).await {
        Ok(w) => w,
        Err(e) => {
            log::warn!("[{}] failed to get work connection: {e}", proxy.name);
            let _ = io.close().await;
            return;
        }
    };
    // Each leg has its own layers: visitor leg = sk + the visitor's flags,
    // work leg = token + the proxy's flags (frp-protocol.md §7.3).
    let sk = Some(&proxy.sk_key);
    let token = Some(&ctx.token_key);
    let v_key = if m.use_encryption { sk } else { None };
    let w_key = if proxy.use_encryption { token } else { None };
    let to_work = Transform::open_then_seal(
        Transform::open(v_key, m.use_compression),
        Transform::seal(w_key, proxy.use_compression),
    );
    let to_visitor = Transform::open_then_seal(
        Transform::open(w_key, proxy.use_compression),
        Transform::seal(v_key, m.use_compression),
    );
    RelayStats::inc(&ctx.stats.active_relays);
    let stats = join(io, work.io, leftover, work.leftover, to_work, to_visitor).await;
    RelayStats::dec(&ctx.stats.active_relays);
    if let Some(e) = stats.error {
        log::debug!("[{}] relay ended: {e}", proxy.name);
    }
}

/// frps's `GetWorkConnFromPool`: take a pooled work conn (or ask for one and wait up to
/// userConnTimeout), always ask for a replacement, and try up to pool_count+1 conns.
async fn get_work_conn(
    ctx: &Ctx,
    ctl: &Rc<Control>,
    proxy: &Proxy,
    src: Option<SocketAddr>,
    dst: Option<SocketAddr>,
) -> Result<WorkConn, ConnError> {
    let start = StartWorkConn {
        proxy_name: proxy.name.clone(),
        src_addr: src.map(|a| a.ip().to_string()).unwrap_or_default(),
        src_port: src.map(|a| a.port()).unwrap_or(0),
        dst_addr: dst.map(|a| a.ip().to_string()).unwrap_or_default(),
        dst_port: dst.map(|a| a.port()).unwrap_or(0),
        ..Default::default()
    };
    let mut last_err = ConnError::Other("no work connection".into());
    for _ in 0..=ctl.pool_count {
        let mut work = match ctl.work_rx.try_recv() {
            Ok(w) => w,
            Err(async_channel::TryRecvError::Closed) => {
                return Err(ConnError::Other("control is already closed".into()))
            }
            Err(async_channel::TryRecvError::Empty) => {
                if !ctl.request_work_conn() {
                    return Err(ConnError::Other("control is already closed".into()));
                }
                with_timeout(
                    ctx.cfg.user_conn_timeout,
                    "a work connection (timeout trying to get work connection)",
                    async {
                        ctl.work_rx
                            .recv()
                            .await
                            .map_err(|_| ConnError::Other("control is already closed".into()))
                    },
                )
                .await?
            }
        };
        ctl.request_work_conn();
        let wire = work.wire;
        match wire
            .write_msg(&mut work.io, &Message::StartWorkConn(start.clone()))
            .await
        {
            Ok(()) => return Ok(work),
            Err(e) => {
                log::warn!(
                    "[{}] failed to send message to work connection from pool: {e}",
                    proxy.name
                );
                last_err = e;
            }
        }
    }
    Err(last_err)
}
