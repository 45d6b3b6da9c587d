//! A data shard: one glommio executor pinned to one core. It owns its own way to frps
//! (a yamux session, or fresh connections), its visitor listeners (SO_REUSEPORT, so the
//! kernel spreads user connections over shards), its work connections and their relays.
//! Nothing here waits on another core: the control executor only sends decisions.

use super::state::{unix_now, EngineStats, ProxyRuntime, Shared, VisitorRuntime};
use super::transport::{dial_tcp, DialConfig, Link};
use crate::conn::{
    join_fast, read_msg_timeout, with_timeout, ConnError, FrameReader, Transform, Wire,
};
use crate::proto::{auth_key, Message, NewVisitorConn, NewWorkConn};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Decisions the control executor sends to a shard.
#[derive(Debug)]
pub enum ShardCmd {
    /// frps asked for a work connection (ReqWorkConn).
    WorkConn,
    /// The control logged in again: frps may be a new process (or the old session may be
    /// black-holed), so new connections use a freshly dialled session.
    RetireLink,
    /// Graceful stop: close the visitor listeners (relays carry on); acknowledged.
    StopAccepting(std::sync::mpsc::Sender<()>),
    /// A reload changed [`Shared::sets`]: close the listeners of removed or changed
    /// visitors and open those of added or changed ones; acknowledged once done.
    SyncVisitors(std::sync::mpsc::Sender<()>),
}

/// A shard's visitor listeners by visitor name, with the runtime each was started for.
type Listeners = HashMap<String, (Arc<VisitorRuntime>, glommio::task::JoinHandle<()>)>;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const LOCAL_DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle pooled work connection checks that its control is still logged in.
const CONTROL_CHECK: Duration = Duration::from_millis(500);
/// Pause after a failed accept (EMFILE/ENFILE) instead of a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a new user connection waits for a login while frps is unreachable.
const WAIT_FOR_LOGIN: Duration = Duration::from_secs(10);

pub async fn shard_main(
    index: usize,
    shared: Arc<Shared>,
    dial: DialConfig,
    cmds: async_channel::Receiver<ShardCmd>,
) {
    let link = Rc::new(Link::new(dial));
    let mut listeners = Listeners::new();
    sync_listeners(index, &shared, &link, &mut listeners);
    while let Ok(cmd) = cmds.recv().await {
        match cmd {
            ShardCmd::WorkConn => {
                glommio::spawn_local(work_conn(index, shared.clone(), link.clone())).detach();
            }
            ShardCmd::RetireLink => link.retire(),
            ShardCmd::StopAccepting(ack) => {
                stop_listeners(&mut listeners, |_| true).await;
                let _ = ack.send(());
            }
            ShardCmd::SyncVisitors(ack) => {
                if !shared.is_stopping() {
                    let sets = shared.sets();
                    // Removed or changed (a new runtime): close first, so a changed one
                    // can bind its port again.
                    stop_listeners(&mut listeners, |(name, (rt, _))| {
                        !sets
                            .visitors
                            .get(name)
                            .is_some_and(|now| Arc::ptr_eq(now, rt))
                    })
                    .await;
                    sync_listeners(index, &shared, &link, &mut listeners);
                }
                let _ = ack.send(());
            }
        }
    }
    stop_listeners(&mut listeners, |_| true).await;
    link.reset();
}

/// Starts a listener for every visitor in force that has none on this shard.
fn sync_listeners(shard: usize, shared: &Arc<Shared>, link: &Rc<Link>, listeners: &mut Listeners) {
    for (name, v) in &shared.sets().visitors {
        if v.cfg.bind_port <= 0 || listeners.contains_key(name) {
            continue; // frp: a negative bindPort means no listener.
        }
        let task = glommio::spawn_local(visitor_listener(
            shard,
            v.clone(),
            shared.clone(),
            link.clone(),
        ))
        .detach();
        listeners.insert(name.clone(), (v.clone(), task));
    }
}

/// Closes the listeners `which` selects; relays they accepted carry on (as frpc's
/// visitor Close). Waits until each listener task is gone, so its socket is closed.
async fn stop_listeners(
    listeners: &mut Listeners,
    which: impl Fn(
        (
            &String,
            &(Arc<VisitorRuntime>, glommio::task::JoinHandle<()>),
        ),
    ) -> bool,
) {
    let names: Vec<String> = listeners
        .iter()
        .filter(|e| which(*e))
        .map(|(n, _)| n.clone())
        .collect();
    for name in names {
        if let Some((_, task)) = listeners.remove(&name) {
            task.cancel();
            let _ = task.await;
        }
    }
}

/// Server role: open a work stream, announce it, wait for StartWorkConn, dial the local
/// service and relay.
async fn work_conn(shard: usize, shared: Arc<Shared>, link: Rc<Link>) {
    // Set once StartWorkConn names the proxy, so later errors count against it.
    let mut proxy = None;
    if let Err(e) = try_work_conn(shard, &shared, &link, &mut proxy).await {
        EngineStats::add(&shared.stats.work_errors, 1);
        if let Some(p) = proxy {
            p.metrics.shard(shard).error(e.kind());
        }
        match &e {
            e if e.kind() == "limit" => {}
            // frps asked for more work connections than its pool holds (it asks twice
            // when its pool is empty); it drops the extra one. Benign, so not a warning.
            ConnError::Rejected(r) if r.contains("work connection pool is full") => {
                log::debug!("{e}")
            }
            _ => log::warn!("{e}"),
        }
    }
}

async fn try_work_conn(
    shard: usize,
    shared: &Shared,
    link: &Link,
    named: &mut Option<Arc<ProxyRuntime>>,
) -> Result<(), ConnError> {
    let run_id = shared.run_id();
    if run_id.is_empty() {
        return Ok(()); // Logged out since frps asked; the next login asks again.
    }
    let mut io = link
        .open()
        .await
        .map_err(|e| e.during("start new connection to server error"))?;
    let wire = Wire::from_config(&shared.cfg.transport.wire_protocol);
    let mut hello = NewWorkConn {
        run_id,
        ..Default::default()
    };
    if shared.cfg.auth.additional_scopes.new_work_conns {
        hello.timestamp = unix_now();
        hello.privilege_key = auth_key(&shared.cfg.auth.token, hello.timestamp);
    }
    with_timeout(
        HANDSHAKE_TIMEOUT,
        "NewWorkConn to be sent",
        wire.write_first_msg(&mut io, &Message::NewWorkConn(hello)),
    )
    .await
    .map_err(|e| e.during("work connection write to server error"))?;
    // An idle pooled work connection waits as long as frps wants (no deadline, as frpc),
    // but not past its control: frps drops the pool of a replaced control, and a
    // black-holed one would otherwise keep this socket (or yamux session) forever.
    let mut reader = FrameReader::for_wire(wire);
    let login = EngineStats::get(&shared.stats.logins);
    let control_gone = async {
        while EngineStats::get(&shared.stats.logins) == login
            && !shared.run_id().is_empty()
            && !shared.is_stopping()
        {
            glommio::timer::sleep(CONTROL_CHECK).await;
        }
        Err(ConnError::Eof("StartWorkConn"))
    };
    let read = futures_lite::future::or(reader.read_msg(&mut io, "StartWorkConn"), control_gone);
    let start = match read.await {
        Ok(Message::StartWorkConn(s)) => s,
        Ok(other) => {
            return Err(ConnError::Unexpected {
                expected: "StartWorkConn",
                got: other.name(),
            })
        }
        Err(ConnError::Eof(_))
            if shared.is_stopping()
                || EngineStats::get(&shared.stats.logins) != login
                || shared.run_id().is_empty() =>
        {
            return Ok(()); // Its control is gone; the next login asks for new ones.
        }
        // The connection (or yamux session) under an idle pooled work connection died:
        // frps went away or was restarted. The control logs that once; a warning per
        // pooled connection would only repeat it.
        Err(e @ (ConnError::Io(_) | ConnError::Eof(_))) => {
            log::debug!("idle work connection closed before StartWorkConn: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if !start.error.is_empty() {
        return Err(ConnError::Rejected(format!(
            "StartWorkConn contains error: {}",
            start.error
        )));
    }
    let Some(proxy) = shared.proxy_for_wire_name(&start.proxy_name) else {
        return Err(ConnError::Other(format!(
            "proxy [{}] not found, closing its work connection",
            start.proxy_name
        )));
    };
    *named = Some(proxy.clone());
    let name = &proxy.cfg.name;
    let started = Instant::now();
    let slot = proxy.limit.try_acquire().map_err(|max| {
        if let Some(n) = proxy.limit.note_refusal() {
            log::warn!("[{name}] connection limit reached ({max} open, transport.maxConnections / --max-conns-per-proxy): closed {n} work connection(s) since the last report");
        }
        ConnError::Limit(format!("[{name}] connection limit {max} reached"))
    })?;
    let local_addr = format!("{}:{}", proxy.cfg.local_ip, proxy.cfg.local_port);
    let local = dial_tcp(&local_addr, LOCAL_DIAL_TIMEOUT, None)
        .await
        .map_err(|e| {
            ConnError::Other(format!(
                "[{name}] connect to local service [{local_addr}] error: {e}"
            ))
        })?;
    EngineStats::add(&shared.stats.work_conns, 1);
    EngineStats::add(&shared.stats.active, 1);
    let (metrics, counters) = (shared.metrics.shard(shard), proxy.metrics.shard(shard));
    counters.handshake(started.elapsed());
    metrics.opened(counters);
    let key = proxy.key.as_ref();
    let (c, e) = (proxy.cfg.use_compression, key);
    let stats = join_fast(
        local,
        io,
        Vec::new(),
        reader.take_leftover(),
        Transform::seal(e, c),
        Transform::open(e, c),
    )
    .await;
    drop(slot); // Free the place before the gauges say the relay ended.
    EngineStats::sub(&shared.stats.active, 1);
    EngineStats::add(&shared.stats.bytes_in, stats.b_to_a);
    EngineStats::add(&shared.stats.bytes_out, stats.a_to_b);
    metrics.closed(counters, stats.a_to_b, stats.b_to_a);
    metrics.spliced(stats.spliced);
    if let Some(err) = stats.error {
        log::debug!("[{name}] work connection ended: {err}");
    }
    Ok(())
}

async fn visitor_listener(
    shard: usize,
    v: Arc<VisitorRuntime>,
    shared: Arc<Shared>,
    link: Rc<Link>,
) {
    let addr = format!("{}:{}", v.cfg.bind_addr, v.cfg.bind_port);
    let listener = loop {
        match super::transport::resolve(&addr).and_then(|sa| {
            glommio::net::TcpListener::bind(sa).map_err(|e| ConnError::Other(e.to_string()))
        }) {
            Ok(l) => break l,
            Err(e) => {
                log::warn!(
                    "[{}] start error: listen on {addr}: {e}; retrying in 10s",
                    v.cfg.name
                );
                shared.record_error(&v.cfg.name, &format!("listen on {addr}: {e}"));
                glommio::timer::sleep(Duration::from_secs(10)).await;
                if shared.is_stopping() {
                    return;
                }
            }
        }
    };
    if shard == 0 {
        log::info!(
            "[{}] start visitor success (listening on {addr})",
            v.cfg.name
        );
    }
    // Accept errors in a row; logged once per burst, not once per error.
    let mut failing = 0u64;
    loop {
        match listener.accept().await {
            Ok(user) => {
                if failing > 0 {
                    log::info!(
                        "[{}] accepting again after {failing} accept error(s)",
                        v.cfg.name
                    );
                    failing = 0;
                }
                glommio::spawn_local(visitor_conn(
                    shard,
                    shared.clone(),
                    v.clone(),
                    link.clone(),
                    user,
                ))
                .detach();
            }
            Err(e) => {
                // EMFILE/ENFILE: back off rather than spin; the user waits in the backlog.
                if failing == 0 {
                    log::warn!(
                        "[{}] accept error: {e}; retrying every {ACCEPT_BACKOFF:?} (further errors are counted, not logged)",
                        v.cfg.name
                    );
                }
                failing += 1;
                v.metrics.shard(shard).error("accept");
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn visitor_conn(
    shard: usize,
    shared: Arc<Shared>,
    v: Arc<VisitorRuntime>,
    link: Rc<Link>,
    user: glommio::net::TcpStream,
) {
    let _ = user.set_nodelay(true);
    EngineStats::add(&shared.stats.visitor_conns, 1);
    if let Err(e) = try_visitor_conn(shard, &shared, &v, &link, user).await {
        EngineStats::add(&shared.stats.visitor_errors, 1);
        shared.record_error(&v.cfg.name, &e.to_string());
        v.metrics.shard(shard).error(e.kind());
        if e.kind() != "limit" {
            log::warn!("[{}] {e}", v.cfg.name);
        }
    }
}

async fn try_visitor_conn(
    shard: usize,
    shared: &Shared,
    v: &VisitorRuntime,
    link: &Link,
    user: glommio::net::TcpStream,
) -> Result<(), ConnError> {
    let accepted = Instant::now();
    let slot = v.limit.try_acquire().map_err(|max| {
        if let Some(n) = v.limit.note_refusal() {
            log::warn!("[{}] connection limit reached ({max} open, transport.maxConnections / --max-conns-per-visitor): closed {n} user connection(s) since the last report", v.cfg.name);
        }
        ConnError::Limit(format!("connection limit {max} reached"))
    })?;
    let run_id = shared.wait_run_id(WAIT_FOR_LOGIN).await.ok_or_else(|| {
        ConnError::Other("not logged in to the server, closing user connection".into())
    })?;
    let mut io = link
        .open()
        .await
        .map_err(|e| e.during("connect to server error"))?;
    let wire = Wire::from_config(&shared.cfg.transport.wire_protocol);
    let ts = unix_now();
    let hello = NewVisitorConn {
        run_id,
        proxy_name: v.target.clone(),
        sign_key: auth_key(&v.cfg.secret_key, ts),
        timestamp: ts,
        use_encryption: v.cfg.use_encryption,
        use_compression: v.cfg.use_compression,
    };
    with_timeout(
        HANDSHAKE_TIMEOUT,
        "NewVisitorConn to be sent",
        wire.write_first_msg(&mut io, &Message::NewVisitorConn(hello)),
    )
    .await
    .map_err(|e| e.during("send newVisitorConnMsg to server error"))?;
    let mut reader = FrameReader::for_wire(wire);
    let resp = read_msg_timeout(
        &mut reader,
        &mut io,
        HANDSHAKE_TIMEOUT,
        "NewVisitorConnResp",
    )
    .await
    .map_err(|e| e.during("read newVisitorConnRespMsg error"))?;
    match resp {
        Message::NewVisitorConnResp(r) if r.error.is_empty() => {}
        Message::NewVisitorConnResp(r) => {
            return Err(ConnError::Rejected(format!(
                "start new visitor connection error: {}",
                r.error
            )))
        }
        other => {
            return Err(ConnError::Unexpected {
                expected: "NewVisitorConnResp",
                got: other.name(),
            })
        }
    }
    EngineStats::add(&shared.stats.active, 1);
    let (metrics, counters) = (shared.metrics.shard(shard), v.metrics.shard(shard));
    counters.handshake(accepted.elapsed());
    metrics.opened(counters);
    let key = v.key.as_ref();
    let c = v.cfg.use_compression;
    let stats = join_fast(
        user,
        io,
        Vec::new(),
        reader.take_leftover(),
        Transform::seal(key, c),
        Transform::open(key, c),
    )
    .await;
    drop(slot); // Free the place before the gauges say the relay ended.
    EngineStats::sub(&shared.stats.active, 1);
    EngineStats::add(&shared.stats.bytes_out, stats.a_to_b);
    EngineStats::add(&shared.stats.bytes_in, stats.b_to_a);
    metrics.closed(counters, stats.a_to_b, stats.b_to_a);
    metrics.spliced(stats.spliced);
    if let Some(err) = stats.error {
        log::debug!("[{}] visitor connection ended: {err}", v.cfg.name);
    }
    Ok(())
}
