//! `GET /api/status` in frpc's JSON shape (`frp:client/http/model/types.go`), and the
//! table `frpc status` prints from it (`frp:cmd/frpc/sub/admin.go`).

use crate::engine::state::Shared;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// frpc's `ProxyStatusResp`, field for field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// frpc's phases: "new", "wait start", "start error", "running", "closed".
    pub status: String,
    pub err: String,
    pub local_addr: String,
    pub plugin: String,
    pub remote_addr: String,
}

/// Entries grouped by type ("stcp"), each group sorted by name, as frpc returns them.
/// frpc lists proxies only; we add our visitors under [`VISITOR_GROUP`], a key that
/// frpc's own `status` command and SDK skip or parse like any other group.
pub type StatusResp = BTreeMap<String, Vec<ProxyStatus>>;

pub const VISITOR_GROUP: &str = "visitor";

/// Go's `net.JoinHostPort`: brackets around IPv6 literals.
fn join_host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The engine's current view: each proxy's NewProxyResp outcome and each visitor's
/// listener with its last connection error.
pub fn engine_status(shared: &Shared) -> StatusResp {
    let logged_in = !shared.run_id().is_empty();
    let answers = shared
        .proxy_status
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let sets = shared.sets();
    let mut proxies: Vec<ProxyStatus> = sets
        .proxies
        .values()
        .map(|p| {
            let (status, err) = match answers.get(&p.cfg.name) {
                _ if !logged_in => ("wait start", String::new()),
                None => ("wait start", String::new()),
                Some(e) if e.is_empty() => ("running", String::new()),
                Some(e) => ("start error", e.clone()),
            };
            ProxyStatus {
                name: p.cfg.name.clone(),
                kind: "stcp".into(),
                status: status.into(),
                err,
                local_addr: if p.cfg.local_port != 0 {
                    join_host_port(&p.cfg.local_ip, p.cfg.local_port)
                } else {
                    String::new()
                },
                plugin: String::new(),
                remote_addr: String::new(),
            }
        })
        .collect();
    proxies.sort_by(|a, b| a.name.cmp(&b.name));
    let mut visitors: Vec<ProxyStatus> = sets
        .visitors
        .values()
        .map(|v| ProxyStatus {
            name: v.cfg.name.clone(),
            kind: "stcp".into(),
            status: if logged_in { "running" } else { "wait start" }.into(),
            err: shared.last_error(&v.cfg.name).unwrap_or_default(),
            local_addr: if v.cfg.bind_port > 0 {
                join_host_port(&v.cfg.bind_addr, v.cfg.bind_port)
            } else {
                String::new()
            },
            plugin: String::new(),
            remote_addr: v.target.clone(),
        })
        .collect();
    visitors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut resp = StatusResp::new();
    if !proxies.is_empty() {
        resp.insert("stcp".into(), proxies);
    }
    if !visitors.is_empty() {
        resp.insert(VISITOR_GROUP.into(), visitors);
    }
    resp
}

/// What `frpc status` prints: a header, then per type an upper-case title and a table
/// whose columns are padded to the widest cell plus two spaces (`rodaine/table`).
pub fn render_table(resp: &StatusResp) -> String {
    let mut out = String::from("Proxy Status...\n\n");
    // frpc's order of proxy types, then our visitors.
    let order = [
        "tcp",
        "udp",
        "tcpmux",
        "http",
        "https",
        "stcp",
        "sudp",
        "xtcp",
        VISITOR_GROUP,
    ];
    for kind in order {
        let Some(rows) = resp.get(kind).filter(|r| !r.is_empty()) else {
            continue;
        };
        out.push_str(&kind.to_uppercase());
        out.push('\n');
        let header = [
            "Name",
            "Status",
            "LocalAddr",
            "Plugin",
            "RemoteAddr",
            "Error",
        ];
        let cells: Vec<[&str; 6]> = rows
            .iter()
            .map(|p| {
                [
                    p.name.as_str(),
                    p.status.as_str(),
                    p.local_addr.as_str(),
                    p.plugin.as_str(),
                    p.remote_addr.as_str(),
                    p.err.as_str(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count() + 2);
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count() + 2);
            }
        }
        for row in std::iter::once(&header).chain(&cells) {
            for (cell, w) in row.iter().zip(widths) {
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_table_match_frpc() {
        let mut resp = StatusResp::new();
        resp.insert(
            "stcp".into(),
            vec![ProxyStatus {
                name: "ssh".into(),
                kind: "stcp".into(),
                status: "running".into(),
                local_addr: join_host_port("::1", 22),
                ..Default::default()
            }],
        );
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            r#"{"stcp":[{"name":"ssh","type":"stcp","status":"running","err":"","local_addr":"[::1]:22","plugin":"","remote_addr":""}]}"#
        );
        assert_eq!(
            render_table(&resp),
            "Proxy Status...\n\nSTCP\n\
             Name  Status   LocalAddr  Plugin  RemoteAddr  Error  \n\
             ssh   running  [::1]:22                              \n\n"
        );
    }
}
