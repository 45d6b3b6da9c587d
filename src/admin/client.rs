//! `stcp-engine reload|status|stop -c FILE`: what `frpc reload|status|stop` do. Read
//! the config for `webServer.*`, call the admin API with basic auth, print what frpc
//! prints (`frp:cmd/frpc/sub/admin.go`, `frp:pkg/sdk/client`).

use super::status::{render_table, StatusResp};
use crate::config::ClientConfig;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// frpc's `--api-timeout` default.
pub const API_TIMEOUT: Duration = Duration::from_secs(30);

/// The admin command's output on success, or the error frpc would print.
pub fn run(command: &str, cfg: &ClientConfig) -> Result<String, String> {
    let web = cfg
        .web_server
        .as_ref()
        .ok_or("web server port should be set if you want to use this feature")?;
    let host = if web.addr.is_empty() {
        "127.0.0.1"
    } else {
        &web.addr
    };
    let address = if host.contains(':') {
        format!("[{host}]:{}", web.port)
    } else {
        format!("{host}:{}", web.port)
    };
    let auth = (!web.user.is_empty() || !web.password.is_empty())
        .then(|| format!("{}:{}", web.user, web.password));
    match command {
        "reload" => {
            call(&address, "GET", "/api/reload", auth.as_deref())?;
            Ok("reload success".into())
        }
        "stop" => {
            call(&address, "POST", "/api/stop", auth.as_deref())?;
            Ok("stop success".into())
        }
        "status" => {
            let body = call(&address, "GET", "/api/status", auth.as_deref())?;
            let resp: StatusResp = serde_json::from_str(&body)
                .map_err(|_| format!("unmarshal http response error: {}", body.trim()))?;
            Ok(render_table(&resp))
        }
        other => Err(format!("unknown admin command {other:?}")),
    }
}

/// One request; the body on 200, else frp's SDK error (`api status code [N]`).
pub fn call(address: &str, method: &str, path: &str, auth: Option<&str>) -> Result<String, String> {
    let url = format!("http://{address}{path}");
    let fail = |e: &dyn std::fmt::Display| {
        let verb = if method == "GET" { "Get" } else { "Post" };
        format!("{verb} \"{url}\": {e}")
    };
    let sa = address
        .to_socket_addrs()
        .map_err(|e| fail(&e))?
        .next()
        .ok_or_else(|| fail(&"no address"))?;
    let mut conn = TcpStream::connect_timeout(&sa, API_TIMEOUT).map_err(|e| fail(&e))?;
    conn.set_read_timeout(Some(API_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(API_TIMEOUT)))
        .map_err(|e| fail(&e))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    if let Some(auth) = auth {
        req.push_str(&format!(
            "Authorization: Basic {}\r\n",
            crate::proto::msg::base64_bytes::encode(auth.as_bytes())
        ));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).map_err(|e| fail(&e))?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).map_err(|e| fail(&e))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail(&"malformed HTTP response"))?;
    let code: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| fail(&"malformed HTTP status line"))?;
    if code != 200 {
        return Err(format!("api status code [{code}]"));
    }
    Ok(body.to_string())
}
