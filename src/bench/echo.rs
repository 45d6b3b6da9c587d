//! Test and benchmark services on their own glommio thread: an echo server (writes back
//! what it reads) and a sink (reads and discards, then reports how much on close).

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceKind {
    Echo,
    /// Discards what it reads.
    Sink,
    /// Writes zero bytes as fast as it can until the peer closes.
    Source,
}

/// A service running on its own thread; dropping the handle stops it.
pub struct ServiceHandle {
    addr: SocketAddr,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

impl ServiceHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts `kind` on `bind` (use port 0 for an ephemeral port).
pub fn start_service(kind: ServiceKind, bind: SocketAddr) -> std::io::Result<ServiceHandle> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let thread = crate::sys::executor(glommio::Placement::Unbound, "bench-service")
        .spawn(move || async move {
            let listener = match glommio::net::TcpListener::bind(bind) {
                Ok(l) => l,
                Err(e) => {
                    let _ = addr_tx.send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            let _ = addr_tx.send(Ok(listener.local_addr().expect("bound")));
            loop {
                let accepted =
                    futures_lite::future::or(async { Some(listener.accept().await) }, async {
                        let _ = stop_rx.recv().await;
                        None
                    })
                    .await;
                match accepted {
                    None => break,
                    Some(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        glommio::spawn_local(serve(kind, s)).detach();
                    }
                    Some(Err(_)) => {
                        glommio::timer::sleep(std::time::Duration::from_millis(50)).await
                    }
                }
            }
        })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let addr = addr_rx
        .recv()
        .map_err(|_| std::io::Error::other("service thread exited"))??;
    Ok(ServiceHandle {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

async fn serve(kind: ServiceKind, mut s: glommio::net::TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    match kind {
        ServiceKind::Echo => loop {
            let n = match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if s.write_all(&buf[..n]).await.is_err() {
                break;
            }
        },
        ServiceKind::Sink => {
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        }
        ServiceKind::Source => while s.write_all(&buf).await.is_ok() {},
    }
    let _ = s.close().await;
}
