//! A tiny HTTP/1.1 responder for `GET /metrics`, on its own thread with blocking std
//! sockets: scrapes are rare and small, so it stays off the data-path executors and
//! needs no web framework. One request per connection (`Connection: close`).

use crate::serve_thread::ServeThread;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A slow or silent client holds the (single) server thread at most this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_REQUEST: usize = 8 * 1024;

/// The running endpoint; dropping it stops the thread and closes the port.
pub struct MetricsServer(ServeThread);

impl MetricsServer {
    pub fn addr(&self) -> SocketAddr {
        self.0.addr()
    }
}

/// Binds `addr` and serves `render()` on `GET /metrics`.
pub fn serve(
    addr: SocketAddr,
    render: impl Fn() -> String + Send + 'static,
) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} for metrics: {e}"),
        )
    })?;
    ServeThread::spawn(listener, "metrics", move |c| {
        if let Err(e) = answer(c, &render) {
            log::debug!("metrics request failed: {e}");
        }
    })
    .map(MetricsServer)
}

fn answer(mut c: TcpStream, render: &impl Fn() -> String) -> std::io::Result<()> {
    c.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    c.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut req = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
        if req.len() > MAX_REQUEST {
            return respond(
                &mut c,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
    }
    let line = req.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => respond(
            &mut c,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &render(),
        ),
        ("GET", _) => respond(&mut c, "404 Not Found", "text/plain", "try /metrics\n"),
        _ => respond(
            &mut c,
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics\n",
        ),
    }
}

fn respond(c: &mut TcpStream, status: &str, ty: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ty}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes())?;
    c.write_all(body.as_bytes())?;
    c.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, req: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_refuses_the_rest() {
        let s = serve("127.0.0.1:0".parse().unwrap(), || "x_total 1\n".into()).unwrap();
        let ok = get(s.addr(), "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nx_total 1\n"), "{ok}");
        let missing = get(s.addr(), "GET / HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(s.addr(), "POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let addr = s.addr();
        drop(s);
        assert!(
            TcpStream::connect(addr).is_err(),
            "port still open after drop"
        );
    }
}
