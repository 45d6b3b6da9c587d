//! A format-neutral document tree. TOML, JSON and legacy INI are all turned
//! into this (INI already re-keyed to frpc's v1 names), so one schema walker
//! (`build.rs`) handles them all. Every node remembers the key as the user
//! wrote it and its line, so errors can point at both.

use super::error::{ConfigError, Location};
use super::template::line_of;

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub val: Val,
    /// 1-based line, when the format gives us one.
    pub line: Option<usize>,
    /// The key as written, e.g. `proxies[1].transport.useEncryption` or `[ssh] use_encryption`.
    pub path: String,
}

#[derive(Debug, Clone)]
pub(crate) enum Val {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<Node>),
    /// Entries in file order; keys keep the user's spelling.
    Table(Vec<(String, Node)>),
    /// An untyped INI scalar, converted when the walker asks for a type.
    Raw(String),
    /// JSON null / YAML ~: treated as absent, as Go's decoder does.
    Null,
    /// A TOML date-time; frpc has no such field, so it only ever fails typing.
    Datetime(String),
}

impl Node {
    pub fn new(val: Val, line: Option<usize>, path: impl Into<String>) -> Node {
        Node {
            val,
            line,
            path: path.into(),
        }
    }

    /// A short name of the value's type, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self.val {
            Val::Str(_) | Val::Raw(_) => "a string",
            Val::Int(_) => "an integer",
            Val::Float(_) => "a float",
            Val::Bool(_) => "a boolean",
            Val::Array(_) => "an array",
            Val::Table(_) => "a table",
            Val::Null => "null",
            Val::Datetime(_) => "a date-time",
        }
    }

    /// The value as it would be written back in the source format.
    pub fn display_value(&self) -> String {
        match &self.val {
            Val::Str(s) => format!("{s:?}"),
            Val::Raw(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => f.to_string(),
            Val::Bool(b) => b.to_string(),
            Val::Array(items) => {
                let inner: Vec<String> = items.iter().map(Node::display_value).collect();
                format!("[{}]", inner.join(", "))
            }
            Val::Table(_) => "{...}".into(),
            Val::Null => "null".into(),
            Val::Datetime(s) => s.clone(),
        }
    }

    pub fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// Maps byte offsets to 1-based lines.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { starts }
    }

    fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// Parses TOML keeping line numbers.
pub(crate) fn from_toml(text: &str, file: &str) -> Result<Node, ConfigError> {
    let doc = toml_edit::ImDocument::parse(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        ConfigError::Syntax {
            at: Location::new(file, line),
            format: "TOML",
            message: e.message().trim().replace('\n', "; "),
        }
    })?;
    let lines = Lines::new(text);
    Ok(toml_table(doc.as_table(), String::new(), Some(1), &lines))
}

fn span_line(span: Option<std::ops::Range<usize>>, lines: &Lines) -> Option<usize> {
    span.map(|s| lines.line(s.start))
}

fn toml_table(table: &toml_edit::Table, path: String, line: Option<usize>, lines: &Lines) -> Node {
    let line = span_line(table.span(), lines).or(line);
    let mut entries = Vec::with_capacity(table.len());
    for (key, item) in table.iter() {
        let child_path = join(&path, key);
        // Prefer the key's line: for a dotted key that is where the value is written.
        let key_line = table.key(key).and_then(|k| span_line(k.span(), lines));
        entries.push((
            key.to_string(),
            toml_item(item, child_path, key_line.or(line), lines),
        ));
    }
    Node::new(Val::Table(entries), line, path)
}

fn toml_item(item: &toml_edit::Item, path: String, line: Option<usize>, lines: &Lines) -> Node {
    match item {
        toml_edit::Item::None => Node::new(Val::Null, line, path),
        toml_edit::Item::Value(v) => toml_value(v, path, line, lines),
        toml_edit::Item::Table(t) => toml_table(t, path, line, lines),
        toml_edit::Item::ArrayOfTables(arr) => {
            let items: Vec<Node> = arr
                .iter()
                .enumerate()
                .map(|(i, t)| toml_table(t, format!("{path}[{i}]"), line, lines))
                .collect();
            let line = items_first_line(&items).or(line);
            Node::new(Val::Array(items), line, path)
        }
    }
}

fn items_first_line(items: &[Node]) -> Option<usize> {
    items.first().and_then(|n| n.line)
}

fn toml_value(v: &toml_edit::Value, path: String, line: Option<usize>, lines: &Lines) -> Node {
    use toml_edit::Value as V;
    let line = line.or_else(|| span_line(v.span(), lines));
    let val = match v {
        V::String(s) => Val::Str(s.value().clone()),
        V::Integer(i) => Val::Int(*i.value()),
        V::Float(f) => Val::Float(*f.value()),
        V::Boolean(b) => Val::Bool(*b.value()),
        V::Datetime(d) => Val::Datetime(d.value().to_string()),
        V::Array(arr) => Val::Array(
            arr.iter()
                .enumerate()
                .map(|(i, v)| {
                    let l = span_line(v.span(), lines).or(line);
                    toml_value(v, format!("{path}[{i}]"), l, lines)
                })
                .collect(),
        ),
        V::InlineTable(t) => Val::Table(
            t.iter()
                .map(|(k, v)| {
                    let l = t.key(k).and_then(|k| span_line(k.span(), lines)).or(line);
                    (k.to_string(), toml_value(v, join(&path, k), l, lines))
                })
                .collect(),
        ),
    };
    Node::new(val, line, path)
}

fn join(path: &str, key: &str) -> String {
    // Quote keys that would not read back as a bare TOML key.
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// Parses JSON. serde_json's tree has no positions, so only syntax errors carry a line.
pub(crate) fn from_json(text: &str, file: &str) -> Result<Node, ConfigError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
        at: Location::new(file, Some(e.line())),
        format: "JSON",
        message: e.to_string(),
    })?;
    Ok(json_value(value, String::new()))
}

fn json_value(v: serde_json::Value, path: String) -> Node {
    use serde_json::Value as J;
    let val = match v {
        J::Null => Val::Null,
        J::Bool(b) => Val::Bool(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Val::Str(s),
        J::Array(items) => Val::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| json_value(v, format!("{path}[{i}]")))
                .collect(),
        ),
        J::Object(map) => Val::Table(
            map.into_iter()
                .map(|(k, v)| {
                    let p = join(&path, &k);
                    (k, json_value(v, p))
                })
                .collect(),
        ),
    };
    Node::new(val, None, path)
}
