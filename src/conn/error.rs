use crate::proto::FrameError;

/// Why a connection (control, work or visitor) ended. Display names what and where.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("connection closed by peer while waiting for {0}")]
    Eof(&'static str),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("expected {expected}, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    Other(String),
    /// Refused by a connection limit (already logged, throttled, where it was hit).
    #[error("{0}")]
    Limit(String),
}

impl ConnError {
    /// A short machine-friendly kind, used in logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnError::Io(_) => "io",
            ConnError::Frame(_) => "frame",
            ConnError::Eof(_) => "eof",
            ConnError::Timeout(_) => "timeout",
            ConnError::Unexpected { .. } => "unexpected",
            ConnError::Rejected(_) => "rejected",
            ConnError::Other(_) => "other",
            ConnError::Limit(_) => "limit",
        }
    }
}
