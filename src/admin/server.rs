//! frpc's admin web server (`webServer.*`), the parts an operator scripts against:
//! `GET /healthz` (no auth), `GET /api/status`, `GET /api/reload`, `POST /api/stop`.
//! One blocking thread, one request per connection (`Connection: close`): the admin API
//! is rare and small, so it stays off the data-path executors and needs no framework.

use super::status::StatusResp;
use crate::config::WebServerConfig;
use crate::proto::constant_time_eq;
use crate::serve_thread::ServeThread;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// A slow or silent client holds the (single) server thread at most this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// frpc slows down wrong passwords (`SetAuthFailDelay(200ms)`).
const AUTH_FAIL_DELAY: Duration = Duration::from_millis(200);

/// An API failure: the HTTP status and frpc's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub msg: String,
}

/// What the API acts on (the running engine, or a test double).
pub trait AdminBackend: Send + Sync + 'static {
    fn status(&self) -> StatusResp;
    /// Re-read the config file and apply it.
    fn reload(&self) -> Result<(), ApiError>;
    /// Begin a graceful stop (the reply goes out first).
    fn stop(&self);
}

/// The running server; dropping it stops the thread and closes the port.
pub struct AdminServer(ServeThread);

impl AdminServer {
    /// Binds `webServer.addr:port` (port 0 picks a free one, for tests).
    pub fn start(web: &WebServerConfig, backend: Arc<dyn AdminBackend>) -> Result<Self, String> {
        let host = if web.addr.is_empty() {
            "127.0.0.1"
        } else {
            &web.addr
        };
        let want = format!("{host}:{}", web.port);
        let sa = want
            .to_socket_addrs()
            .map_err(|e| format!("webServer address {want}: {e}"))?
            .next()
            .ok_or_else(|| format!("webServer address {want} resolves to nothing"))?;
        let listener =
            TcpListener::bind(sa).map_err(|e| format!("admin server: listen on {want}: {e}"))?;
        let auth = Auth {
            user: web.user.clone(),
            password: web.password.clone(),
        };
        let server = ServeThread::spawn(listener, "admin-api", move |conn| {
            if let Err(e) = serve_one(conn, &auth, backend.as_ref()) {
                log::debug!("admin API connection: {e}");
            }
        })
        .map_err(|e| format!("admin server thread: {e}"))?;
        log::info!("admin API listening on {}", server.addr());
        Ok(AdminServer(server))
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.addr()
    }
}

struct Auth {
    user: String,
    password: String,
}

impl Auth {
    /// frpc's `HTTPAuthMiddleware`: open when both are empty, else basic auth.
    fn allows(&self, authorization: Option<&str>) -> bool {
        if self.user.is_empty() && self.password.is_empty() {
            return true;
        }
        let Some(given) = authorization
            .and_then(|h| {
                h.strip_prefix("Basic ")
                    .or_else(|| h.strip_prefix("basic "))
            })
            .and_then(|b64| crate::proto::msg::base64_bytes::decode(b64.trim().as_bytes()))
        else {
            return false;
        };
        let Some(colon) = given.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = (&given[..colon], &given[colon + 1..]);
        // Both compared in full, so the time does not tell which one was wrong.
        let user_ok = constant_time_eq(user, self.user.as_bytes());
        let password_ok = constant_time_eq(password, self.password.as_bytes());
        user_ok && password_ok
    }
}

struct Request {
    method: String,
    path: String,
    authorization: Option<String>,
}

fn read_request(conn: &mut TcpStream) -> Result<Request, String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return Err("request head too large".into());
        }
        let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before a whole request head".into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_string();
    let authorization = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    Ok(Request {
        method,
        path,
        authorization,
    })
}

struct Response {
    code: u16,
    content_type: &'static str,
    extra_header: &'static str,
    body: String,
}

impl Response {
    fn empty(code: u16) -> Response {
        Response {
            code,
            content_type: "text/plain; charset=utf-8",
            extra_header: "",
            body: String::new(),
        }
    }

    /// Go's `http.Error`: the text and a newline.
    fn text(code: u16, body: &str) -> Response {
        Response {
            body: format!("{body}\n"),
            ..Response::empty(code)
        }
    }

    fn json(body: String) -> Response {
        Response {
            code: 200,
            content_type: "application/json",
            extra_header: "",
            body,
        }
    }

    /// frp's `GeneralResponse` error body (`{"Code":500,"Msg":"..."}`).
    fn api_error(e: ApiError) -> Response {
        let body = serde_json::json!({ "Code": e.code, "Msg": e.msg });
        Response {
            code: e.code,
            ..Response::json(format!("{body}\n"))
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    }
}

fn route(req: &Request, auth: &Auth, backend: &dyn AdminBackend) -> Response {
    let allowed_method = match req.path.as_str() {
        "/healthz" => return Response::empty(200),
        "/api/status" | "/api/reload" => "GET",
        "/api/stop" => "POST",
        _ => return Response::text(404, "404 page not found"),
    };
    if !auth.allows(req.authorization.as_deref()) {
        std::thread::sleep(AUTH_FAIL_DELAY);
        return Response {
            extra_header: "WWW-Authenticate: Basic realm=\"Restricted\"\r\n",
            ..Response::text(401, "Unauthorized")
        };
    }
    if req.method != allowed_method {
        return Response::empty(405);
    }
    match req.path.as_str() {
        "/api/status" => {
            let body = serde_json::to_string(&backend.status())
                .expect("status has only string keys, so JSON encoding cannot fail");
            Response::json(format!("{body}\n"))
        }
        "/api/reload" => match backend.reload() {
            Ok(()) => Response::empty(200),
            Err(e) => {
                log::warn!("http response [/api/reload]: error: {}", e.msg);
                Response::api_error(e)
            }
        },
        _ => {
            backend.stop();
            Response::empty(200)
        }
    }
}

fn serve_one(mut conn: TcpStream, auth: &Auth, backend: &dyn AdminBackend) -> Result<(), String> {
    conn.set_read_timeout(Some(CLIENT_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(CLIENT_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let resp = match read_request(&mut conn) {
        Ok(req) => route(&req, auth, backend),
        Err(e) => {
            let _ = write_response(&mut conn, &Response::text(400, "Bad Request"));
            return Err(e);
        }
    };
    write_response(&mut conn, &resp)
}

fn write_response(conn: &mut TcpStream, r: &Response) -> Result<(), String> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        r.code,
        reason(r.code),
        r.content_type,
        r.body.len(),
        r.extra_header,
    );
    conn.write_all(head.as_bytes())
        .and_then(|()| conn.write_all(r.body.as_bytes()))
        .map_err(|e| e.to_string())
}
