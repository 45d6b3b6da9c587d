//! Config errors: each one names the file, the line (when known) and the key.

use std::fmt;
use std::path::PathBuf;

/// Where in which file a problem is. Displays as `file:line` or `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: Option<usize>,
}

impl Location {
    pub fn new(file: impl Into<String>, line: Option<usize>) -> Self {
        Location {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.file, line),
            None => f.write_str(&self.file),
        }
    }
}

/// Everything that can go wrong while loading a frpc config.
///
/// `Display` is one sentence meant for the operator, e.g.
/// `frpc.toml:14: proxies[1].type = "tcp" is not supported by stcp-engine (only "stcp" proxies and visitors are)`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file (or an included file, or a token file) could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML / JSON / YAML / INI syntax error.
    #[error("{at}: {format} syntax error: {message}")]
    Syntax {
        at: Location,
        format: &'static str,
        message: String,
    },
    /// `{{ ... }}` template problem (unsupported action, missing variable, unclosed action).
    #[error("{at}: template: {message}")]
    Template { at: Location, message: String },
    /// A key frpc understands whose value changes behaviour stcp-engine does not implement.
    #[error("{at}: {key} = {value} is not supported by stcp-engine ({reason})")]
    Unsupported {
        at: Location,
        key: String,
        value: String,
        reason: String,
    },
    /// A key frpc itself does not know (frpc's default strict mode rejects it too).
    #[error("{at}: unknown key `{key}` (frpc rejects it too; check the spelling)")]
    UnknownKey { at: Location, key: String },
    /// A value of the wrong type or a rule from frpc's validation.
    #[error("{at}: {key}: {message}")]
    Invalid {
        at: Location,
        key: String,
        message: String,
    },
    /// A file format stcp-engine cannot read.
    #[error("{file}: {message}")]
    Format { file: String, message: String },
}

impl ConfigError {
    /// The line the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        self.location().and_then(|l| l.line)
    }

    /// The file (as named in messages) the error is about.
    pub fn file(&self) -> Option<&str> {
        match self {
            ConfigError::Format { file, .. } => Some(file),
            _ => self.location().map(|l| l.file.as_str()),
        }
    }

    /// The key the error is about, as written in the file.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Unsupported { key, .. }
            | ConfigError::UnknownKey { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Syntax { at, .. }
            | ConfigError::Template { at, .. }
            | ConfigError::Unsupported { at, .. }
            | ConfigError::UnknownKey { at, .. }
            | ConfigError::Invalid { at, .. } => Some(at),
            ConfigError::Io { .. } | ConfigError::Format { .. } => None,
        }
    }
}
