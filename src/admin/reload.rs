//! What a reload would change. frpc's reload (`ReloadFromFile`) re-reads the file and
//! applies only the proxy and visitor sets: added ones start, removed ones stop, changed
//! ones restart; changes to the common section need a restart.

use crate::config::ClientConfig;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigDiff {
    pub proxies_added: Vec<String>,
    pub proxies_removed: Vec<String>,
    pub proxies_changed: Vec<String>,
    pub visitors_added: Vec<String>,
    pub visitors_removed: Vec<String>,
    pub visitors_changed: Vec<String>,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }

    /// One line for logs and API errors, e.g. `proxies added [a], removed [b]`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (what, names) in [
            ("proxies added", &self.proxies_added),
            ("proxies removed", &self.proxies_removed),
            ("proxies changed", &self.proxies_changed),
            ("visitors added", &self.visitors_added),
            ("visitors removed", &self.visitors_removed),
            ("visitors changed", &self.visitors_changed),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what} [{}]", names.join(", ")));
            }
        }
        if parts.is_empty() {
            "no proxy or visitor changes".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Compares by name, as frpc does; any field difference makes a "changed" entry.
pub fn diff(old: &ClientConfig, new: &ClientConfig) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    compare(
        &old.proxies,
        &new.proxies,
        |p| p.name.as_str(),
        (
            &mut d.proxies_added,
            &mut d.proxies_removed,
            &mut d.proxies_changed,
        ),
    );
    compare(
        &old.visitors,
        &new.visitors,
        |v| v.name.as_str(),
        (
            &mut d.visitors_added,
            &mut d.visitors_removed,
            &mut d.visitors_changed,
        ),
    );
    d
}

fn compare<T: PartialEq>(
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
    (added, removed, changed): (&mut Vec<String>, &mut Vec<String>, &mut Vec<String>),
) {
    for n in new {
        match old.iter().find(|o| name(o) == name(n)) {
            None => added.push(name(n).to_string()),
            Some(o) if o != n => changed.push(name(n).to_string()),
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| name(n) == name(o)) {
            removed.push(name(o).to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{StcpProxyConfig, StcpVisitorConfig};

    fn proxy(name: &str, port: u16) -> StcpProxyConfig {
        StcpProxyConfig {
            name: name.into(),
            local_port: port,
            ..Default::default()
        }
    }

    #[test]
    fn names_added_removed_and_changed() {
        let mut old = ClientConfig::default();
        old.proxies = vec![proxy("keep", 1), proxy("change", 2), proxy("drop", 3)];
        old.visitors = vec![StcpVisitorConfig {
            name: "v".into(),
            ..Default::default()
        }];
        let mut new = old.clone();
        assert!(diff(&old, &new).is_empty());
        new.proxies = vec![proxy("keep", 1), proxy("change", 20), proxy("new", 4)];
        new.visitors.clear();
        let d = diff(&old, &new);
        assert_eq!(d.proxies_added, ["new"]);
        assert_eq!(d.proxies_removed, ["drop"]);
        assert_eq!(d.proxies_changed, ["change"]);
        assert_eq!(d.visitors_removed, ["v"]);
        assert_eq!(
            d.summary(),
            "proxies added [new]; proxies removed [drop]; proxies changed [change]; visitors removed [v]"
        );
    }
}
