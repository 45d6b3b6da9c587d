//! Loading pipeline, in frpc's order: render templates, detect the format,
//! decode, add `includes`, check duplicate names, drop entries that are
//! disabled or not in `start`, refuse non-stcp entries that would run,
//! complete defaults, validate.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::build::{self, Built, Ctx, Origin, Style};
use super::error::{ConfigError, Location};
use super::tree::{self, Node};
use super::validate::{self, Origins};
use super::{ini, template, ClientConfig, Format, LoadOptions};

pub(crate) fn load_file(path: &Path, options: &LoadOptions) -> Result<ClientConfig, ConfigError> {
    let text = read(path, "config file")?;
    let file = path.display().to_string();
    let format = detect_from_path(path, &text);
    let mut cfg = load_text(&text, &file, format, options)?;
    cfg.source = Some(path.to_path_buf());
    Ok(cfg)
}

fn read(path: &Path, what: &'static str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// frpc: a `[common]` section means legacy INI whatever the name; then the extension.
fn detect_from_path(path: &Path, text: &str) -> Option<Format> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if ext.as_deref() == Some("ini") || ini::has_common_section(text) {
        return Some(Format::Ini);
    }
    match ext.as_deref() {
        Some("toml") => Some(Format::Toml),
        Some("json") => Some(Format::Json),
        Some("yaml" | "yml") => Some(Format::Yaml),
        _ => None,
    }
}

/// Content sniffing for files without a telling extension, as frpc does:
/// TOML first, then JSON when it starts with `{`, then YAML.
fn parse_unknown(text: &str, file: &str) -> Result<(Node, Format), ConfigError> {
    match tree::from_toml(text, file) {
        Ok(node) => Ok((node, Format::Toml)),
        Err(toml_err) => {
            if text.trim_start().starts_with('{') {
                return Ok((tree::from_json(text, file)?, Format::Json));
            }
            if looks_like_yaml(text) {
                return Err(yaml_unsupported(file));
            }
            Err(toml_err)
        }
    }
}

fn looks_like_yaml(text: &str) -> bool {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    lines.clone().all(|l| !l.contains('=') || l.contains(": "))
        && lines.any(|l| l.ends_with(':') || l.contains(": ") || l.starts_with("- "))
}

fn yaml_unsupported(file: &str) -> ConfigError {
    ConfigError::Format {
        file: file.into(),
        message: "YAML config files are not supported by stcp-engine yet; write the same \
                  keys as TOML (frpc reads that too)"
            .into(),
    }
}

fn parse(
    text: &str,
    file: &str,
    format: Option<Format>,
    main: bool,
    warnings: &mut Vec<String>,
) -> Result<(Node, Format), ConfigError> {
    match format {
        Some(Format::Toml) => Ok((tree::from_toml(text, file)?, Format::Toml)),
        Some(Format::Json) => Ok((tree::from_json(text, file)?, Format::Json)),
        Some(Format::Yaml) => Err(yaml_unsupported(file)),
        Some(Format::Ini) => {
            let sections = ini::parse(text, file)?;
            let converted = ini::to_tree(&sections, file, main)?;
            warnings.extend(converted.warnings);
            Ok((converted.root, Format::Ini))
        }
        None => parse_unknown(text, file),
    }
}

pub(crate) fn load_text(
    text: &str,
    file: &str,
    format: Option<Format>,
    options: &LoadOptions,
) -> Result<ClientConfig, ConfigError> {
    let process_env;
    let envs = match &options.envs {
        Some(envs) => envs,
        None => {
            process_env = std::env::vars().collect::<HashMap<_, _>>();
            &process_env
        }
    };
    let mut warnings = Vec::new();
    let rendered = template::render(text, envs, file)?;
    let (root, format) = parse(&rendered, file, format, true, &mut warnings)?;
    if format == Format::Ini {
        warnings.push(
            "ini format is deprecated and frpc will remove its support in the future; \
             please convert it to toml"
                .into(),
        );
    }
    let style = if format == Format::Ini {
        Style::Ini
    } else {
        Style::V1
    };
    let mut cx = Ctx {
        file,
        strict: options.strict,
        style,
        warnings: &mut warnings,
    };
    let mut main = build::build(&root, &mut cx, true)?;

    for (pattern, node) in std::mem::take(&mut main.includes) {
        for path in expand_include(&pattern, &node, file, &mut warnings)? {
            let inc_file = path.display().to_string();
            let text = read(&path, "included config file")?;
            let rendered = template::render(&text, envs, &inc_file)?;
            // Legacy INI includes are INI too; v1 includes go by extension.
            let inc_format = if format == Format::Ini {
                Some(Format::Ini)
            } else {
                match detect_from_path(&path, "") {
                    Some(Format::Ini) => None,
                    f => f,
                }
            };
            let (inc_root, inc_fmt) =
                parse(&rendered, &inc_file, inc_format, false, &mut warnings)?;
            let mut cx = Ctx {
                file: &inc_file,
                strict: options.strict,
                style: if inc_fmt == Format::Ini {
                    Style::Ini
                } else {
                    Style::V1
                },
                warnings: &mut warnings,
            };
            let inc = build::build(&inc_root, &mut cx, false)?;
            main.proxies.extend(inc.proxies);
            main.visitors.extend(inc.visitors);
        }
    }

    let (mut cfg, origins) = assemble(main, envs, &mut warnings)?;
    cfg.source = (!file.is_empty()).then(|| PathBuf::from(file));
    cfg.load_warnings = warnings;
    cfg.complete();
    validate::validate(&cfg, Some(&origins))?;
    Ok(cfg)
}

/// Turns the per-file pieces into one config, frpc's filtering included.
fn assemble(
    built: Built,
    envs: &HashMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<(ClientConfig, Origins), ConfigError> {
    let Built {
        mut cfg,
        start,
        token_file,
        common_origin,
        proxies,
        visitors,
        ..
    } = built;

    // frpc checks names over everything it read, before filtering.
    check_duplicates(proxies.iter().map(|p| (&p.name, &p.origin)), "proxy")?;
    check_duplicates(visitors.iter().map(|v| (&v.name, &v.origin)), "visitor")?;

    let start: HashSet<&str> = start.iter().map(String::as_str).collect();
    let runs = |name: &str, enabled: bool| enabled && (start.is_empty() || start.contains(name));

    let mut origins = Origins {
        common: common_origin,
        proxies: Vec::new(),
        visitors: Vec::new(),
    };
    for p in proxies {
        if !runs(&p.name, p.enabled) {
            continue;
        }
        if let Some(ty) = &p.other_type {
            return Err(not_stcp(&p.origin, ty));
        }
        cfg.proxies.push(p.cfg);
        origins.proxies.push(p.origin);
    }
    for v in visitors {
        if !runs(&v.name, v.enabled) {
            continue;
        }
        if let Some(ty) = &v.other_type {
            return Err(not_stcp(&v.origin, ty));
        }
        cfg.visitors.push(v.cfg);
        origins.visitors.push(v.origin);
    }

    if let Some((path, node)) = token_file {
        // frpc resolves the token source when it authenticates; reading it now
        // fails fast and keeps the engine free of file I/O.
        let token =
            read(Path::new(&path), "auth.tokenSource file").map_err(|e| ConfigError::Invalid {
                at: Location::new(&origins.common.file, node.line),
                key: node.path.clone(),
                message: e.to_string(),
            })?;
        cfg.auth.token = token.trim().to_string();
    }
    if envs.get("http_proxy").is_some_and(|v| !v.is_empty()) {
        warnings.push(
            "http_proxy is set in the environment: frpc would reach frps through it, \
             stcp-engine connects directly"
                .into(),
        );
    }
    Ok((cfg, origins))
}

fn not_stcp(origin: &Origin, ty: &Node) -> ConfigError {
    ConfigError::Unsupported {
        at: Location::new(&origin.file, ty.line.or(origin.line)),
        key: ty.path.clone(),
        value: ty.display_value(),
        reason: "only \"stcp\" proxies and visitors are".into(),
    }
}

fn check_duplicates<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Origin)>,
    what: &str,
) -> Result<(), ConfigError> {
    let mut seen: HashMap<&str, &Origin> = HashMap::new();
    for (name, origin) in entries {
        if let Some(first) = seen.insert(name, origin) {
            return Err(validate::duplicate(origin, first, what, name));
        }
    }
    Ok(())
}

/// frpc's include rule: the pattern's directory (relative to the working
/// directory, as in frpc) must exist; files in it whose name matches the
/// pattern's last element are read in name order.
fn expand_include(
    pattern: &str,
    node: &Node,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<PathBuf>, ConfigError> {
    let pattern_path = Path::new(pattern);
    let dir = match pattern_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = pattern_path
        .file_name()
        .and_then(|b| b.to_str())
        .unwrap_or("");
    let invalid = |message: String| ConfigError::Invalid {
        at: Location::new(file, node.line),
        key: node.path.clone(),
        message,
    };
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| invalid(format!("include: directory of {pattern} not readable: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| invalid(format!("include: {e}")))?;
        let is_file = entry.file_type().map(|t| !t.is_dir()).unwrap_or(false);
        let name = entry.file_name();
        if is_file && name.to_str().is_some_and(|n| glob_match(base, n)) {
            files.push(entry.path());
        }
    }
    files.sort();
    if files.is_empty() {
        let line = node.line.map(|l| format!(":{l}")).unwrap_or_default();
        warnings.push(format!("{file}{line}: include {pattern} matched no files"));
    }
    Ok(files)
}

/// Go's `filepath.Match` for one path element: `*`, `?`, `[a-z]`, `[^x]`, `\` escapes.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n)
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| glob_at(&p[1..], &n[i..])),
        Some('?') => !n.is_empty() && glob_at(&p[1..], &n[1..]),
        Some('[') => {
            let Some(c) = n.first() else { return false };
            match class_match(&p[1..], *c) {
                Some((true, rest)) => glob_at(rest, &n[1..]),
                _ => false,
            }
        }
        Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && glob_at(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && glob_at(&p[1..], &n[1..]),
    }
}

/// Matches `c` against a `[...]` class body; returns (matched, pattern after `]`).
fn class_match(p: &[char], c: char) -> Option<(bool, &[char])> {
    let (negate, mut i) = match p.first() {
        Some('^') => (true, 1),
        _ => (false, 0),
    };
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, &p[i + 1..]));
        }
        first = false;
        let lo = p[i];
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if lo <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("*.toml", "a.toml"));
        assert!(!glob_match("*.toml", "a.ini"));
        assert!(glob_match("p?.ini", "p1.ini"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[^a-c]x", "bx"));
        assert!(glob_match("*", "anything"));
    }

    #[test]
    fn yaml_sniffing() {
        assert!(looks_like_yaml(
            "serverAddr: 1.2.3.4\nproxies:\n  - name: x\n"
        ));
        assert!(!looks_like_yaml("serverAddr = \"x\"\n"));
    }
}
