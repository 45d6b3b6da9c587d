//! The embedded chain as separate processes, for fan-out: relay, echo service, STCP
//! server role and STCP visitor role each run as a child `stcp-engine` process.
//!
//! Why not in-process: each idle connection holds a socket in the load generator, the
//! visitor, the server role and the echo service (plus two in the relay and two more in
//! the engine without tcpMux), and the open-file limit is per process (20,000 hard on
//! the box this was written on, not raisable without CAP_SYS_RESOURCE). Separate
//! processes also give each role its own RSS, as frpc's visitor and server processes
//! have, so the figures compare directly.

use super::embedded::Combo;
use crate::demo::free_port;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";

/// One child process, stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
struct Proc {
    role: &'static str,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Relay, echo, server role and visitor role as child processes on loopback.
pub struct SplitChain {
    // Dropped in this order: visitor and server first, so they do not reconnect.
    procs: Vec<Proc>,
    dir: PathBuf,
    pub visitor: SocketAddr,
}

impl SplitChain {
    /// The (role, pid) pairs whose memory a fan-out reports.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.procs.iter().map(|p| (p.role, p.child.id())).collect()
    }

    pub fn start(combo: Combo, cores: Option<usize>) -> Result<SplitChain, String> {
        let exe = std::env::current_exe().map_err(|e| format!("find own executable: {e}"))?;
        let port = || free_port().map_err(|e| format!("pick a free port: {e}"));
        let (relay_port, echo_port, visitor_port) = (port()?, port()?, port()?);
        let dir = std::env::temp_dir().join(format!("stcp-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut chain = SplitChain {
            procs: Vec::new(),
            dir,
            visitor: SocketAddr::from(([127, 0, 0, 1], visitor_port)),
        };
        let spawn = |role: &'static str, args: Vec<String>| -> Result<Proc, String> {
            let child = Command::new(&exe)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("start the {role} process ({}): {e}", exe.display()))?;
            Ok(Proc { role, child })
        };
        let relay_addr = format!("127.0.0.1:{relay_port}");
        let mut relay_args = vec![
            "relay".to_string(),
            "--bind".into(),
            relay_addr.clone(),
            "--token".into(),
            TOKEN.into(),
            "--log-level".into(),
            "warn".into(),
        ];
        if !combo.tcp_mux {
            relay_args.push("--no-tcp-mux".into());
        }
        chain.procs.push(spawn("relay", relay_args)?);
        chain.procs.push(spawn(
            "echo",
            vec![
                "bench".into(),
                "--serve".into(),
                "echo".into(),
                "--bind".into(),
                format!("127.0.0.1:{echo_port}"),
            ],
        )?);
        for (role, port) in [("relay", relay_port), ("echo", echo_port)] {
            wait_accepting(SocketAddr::from(([127, 0, 0, 1], port)), role)?;
        }
        let cores_args: Vec<String> = cores
            .map(|c| vec!["--cores".to_string(), c.to_string()])
            .unwrap_or_default();
        let common = common_toml(relay_port, combo.tcp_mux);
        let flags = format!(
            "transport.useEncryption = {}\ntransport.useCompression = {}\n",
            combo.encryption, combo.compression
        );
        let server = format!(
            "{common}\n[[proxies]]\nname = \"echo\"\ntype = \"stcp\"\nsecretKey = \"bench-secret\"\nlocalIP = \"127.0.0.1\"\nlocalPort = {echo_port}\n{flags}"
        );
        let visitor = format!(
            "{common}\n[[visitors]]\nname = \"echo-visitor\"\ntype = \"stcp\"\nserverName = \"echo\"\nsecretKey = \"bench-secret\"\nbindAddr = \"127.0.0.1\"\nbindPort = {visitor_port}\n{flags}"
        );
        for (role, text) in [("server", server), ("visitor", visitor)] {
            let path = chain.dir.join(format!("{role}.toml"));
            // 0600 from the start: the file holds the token (the engine warns otherwise).
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            let mut args = cores_args.clone();
            args.extend(["-c".to_string(), path.display().to_string()]);
            chain.procs.push(spawn(role, args)?);
        }
        // Engines before the relay on drop.
        chain.procs.reverse();
        wait_echo(chain.visitor)?;
        Ok(chain)
    }
}

impl Drop for SplitChain {
    fn drop(&mut self) {
        self.procs.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn common_toml(relay_port: u16, tcp_mux: bool) -> String {
    format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {relay_port}\nuser = \"bench\"\nauth.token = \"{TOKEN}\"\ntransport.tcpMux = {tcp_mux}\ntransport.tls.enable = false\nlog.level = \"warn\"\n"
    )
}

fn wait_accepting(addr: SocketAddr, role: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!(
        "the {role} process did not listen on {addr} within 15 s"
    ))
}

/// The visitor is ready once a byte makes it to the echo service and back (the server
/// role has registered its proxy by then).
fn wait_echo(addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::from("not tried");
    while Instant::now() < deadline {
        let probe = || -> std::io::Result<()> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"p")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)
        };
        match probe() {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "no echo through the visitor on {addr} within 20 s (last error: {last})"
    ))
}
