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
    /// `source`, with the step that failed in front (frpc's wording); keeps its kind.
    #[error("{context}: {source}")]
    During {
        context: &'static str,
        source: Box<ConnError>,
    },
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
            ConnError::During { source, .. } => source.kind(),
        }
    }

    /// Names the step that failed, keeping the error's kind for metrics.
    pub fn during(self, context: &'static str) -> ConnError {
        ConnError::During {
            context,
            source: Box::new(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConnError;

    #[test]
    fn during_names_the_step_and_keeps_the_kind() {
        let e = ConnError::Timeout("NewVisitorConnResp").during("read newVisitorConnRespMsg error");
        assert_eq!(e.kind(), "timeout");
        assert_eq!(
            e.to_string(),
            "read newVisitorConnRespMsg error: timed out waiting for NewVisitorConnResp"
        );
        let limit = ConnError::Limit("yamux stream limit 8 reached".into())
            .during("connect to server error");
        assert_eq!(limit.kind(), "limit");
    }
}
