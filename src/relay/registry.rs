//! The relay's bookkeeping: controls by run_id, stcp proxies by wire name, and the
//! optional sign-key freshness memory. Single-threaded (one executor).

use crate::codec::CipherKey;
use crate::conn::Io;
use crate::proto::Message;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters visible from other threads (tests, logs).
#[derive(Default, Debug)]
pub struct RelayStats {
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub visitor_conns: AtomicU64,
    pub visitor_rejects: AtomicU64,
    pub work_conns: AtomicU64,
    pub active_relays: AtomicU64,
    /// Connections (or yamux streams) that opened with the wire protocol v2 magic.
    pub v2_conns: AtomicU64,
}

impl RelayStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dec(c: &AtomicU64) {
        c.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A pooled work connection: the stream and whatever was read behind NewWorkConn.
pub struct WorkConn {
    pub io: Box<dyn Io>,
    pub leftover: Vec<u8>,
    /// The wire protocol it spoke (StartWorkConn goes out in the same one).
    pub wire: crate::conn::Wire,
}

pub struct Control {
    pub run_id: String,
    pub user: String,
    pub pool_count: u32,
    /// Messages for the control writer (ReqWorkConn, NewProxyResp, Pong).
    pub outbox: async_channel::Sender<Message>,
    pub work_tx: async_channel::Sender<WorkConn>,
    pub work_rx: async_channel::Receiver<WorkConn>,
    pub proxies: RefCell<Vec<String>>,
    /// Cleared when the control starts closing; visitors then find no running control.
    pub running: Cell<bool>,
    /// Closed (by dropping the sender) once the control has fully cleaned up.
    pub done_tx: RefCell<Option<async_channel::Sender<()>>>,
    pub done_rx: async_channel::Receiver<()>,
    /// Closing this makes the control's reader stop.
    pub kill_tx: RefCell<Option<async_channel::Sender<()>>>,
    pub kill_rx: async_channel::Receiver<()>,
}

impl Control {
    pub fn new(
        run_id: String,
        user: String,
        pool_count: u32,
    ) -> (Rc<Control>, async_channel::Receiver<Message>) {
        let (outbox, outbox_rx) = async_channel::unbounded();
        // frps: the pool channel holds poolCount+10 connections.
        let (work_tx, work_rx) = async_channel::bounded(pool_count as usize + 10);
        let (done_tx, done_rx) = async_channel::bounded(1);
        let (kill_tx, kill_rx) = async_channel::bounded(1);
        let ctl = Rc::new(Control {
            run_id,
            user,
            pool_count,
            outbox,
            work_tx,
            work_rx,
            proxies: RefCell::new(Vec::new()),
            running: Cell::new(true),
            done_tx: RefCell::new(Some(done_tx)),
            done_rx,
            kill_tx: RefCell::new(Some(kill_tx)),
            kill_rx,
        });
        (ctl, outbox_rx)
    }

    pub fn request_work_conn(&self) -> bool {
        self.outbox
            .try_send(Message::ReqWorkConn(Default::default()))
            .is_ok()
    }

    /// Asks the control to close (as frps does when replaced or on heartbeat timeout).
    pub fn kill(&self) {
        self.running.set(false);
        self.kill_tx.borrow_mut().take();
    }

    /// Resolves once the control finished cleaning up.
    pub async fn wait_done(&self) {
        let _ = self.done_rx.recv().await;
    }
}

pub struct Proxy {
    pub name: String,
    pub owner_run_id: String,
    pub sk: String,
    /// The visitor leg's key (the proxy's sk), derived once.
    pub sk_key: CipherKey,
    pub allow_users: Vec<String>,
    pub use_encryption: bool,
    pub use_compression: bool,
}

#[derive(Default)]
pub struct Registry {
    pub controls: HashMap<String, Rc<Control>>,
    pub proxies: HashMap<String, Rc<Proxy>>,
    /// sign_key -> timestamp, for the opt-in freshness window.
    pub seen_sign_keys: HashMap<String, i64>,
}

impl Registry {
    /// The control with this run_id if it is running.
    pub fn running_control(&self, run_id: &str) -> Option<Rc<Control>> {
        self.controls
            .get(run_id)
            .filter(|c| c.running.get())
            .cloned()
    }

    /// Removes a control's proxies and its entry (if it is still the current one).
    pub fn remove_control(&mut self, ctl: &Rc<Control>) {
        for name in ctl.proxies.borrow_mut().drain(..) {
            if self
                .proxies
                .get(&name)
                .is_some_and(|p| p.owner_run_id == ctl.run_id)
            {
                self.proxies.remove(&name);
                log::info!("[{}] proxy [{}] closed", ctl.run_id, name);
            }
        }
        if self
            .controls
            .get(&ctl.run_id)
            .is_some_and(|c| Rc::ptr_eq(c, ctl))
        {
            self.controls.remove(&ctl.run_id);
        }
    }

    /// Remembers a sign key; false if it was already used within the window.
    pub fn note_sign_key(&mut self, key: &str, ts: i64, now: i64, window: i64) -> bool {
        if self.seen_sign_keys.len() > 4096 {
            self.seen_sign_keys
                .retain(|_, t| (now - *t).abs() <= window);
        }
        if self.seen_sign_keys.contains_key(key) {
            return false;
        }
        self.seen_sign_keys.insert(key.to_string(), ts);
        true
    }
}

pub type Shared = Rc<RefCell<Registry>>;
