//! The admin API on a running engine: status from the engine's shared state, reload
//! from the config file the engine was started with.

use super::reload::{diff, ConfigDiff};
use super::server::{AdminBackend, ApiError};
use super::status::{engine_status, StatusResp};
use crate::config::ClientConfig;
use crate::engine::state::Shared;
use std::path::PathBuf;
use std::sync::Arc;

pub struct EngineAdmin {
    shared: Arc<Shared>,
    /// `None` when started from flags (`stcp-engine stcp ...`): nothing to re-read.
    config_path: Option<PathBuf>,
    stop: Box<dyn Fn() + Send + Sync>,
}

impl EngineAdmin {
    /// `stop` begins a graceful stop of the process (`POST /api/stop`).
    pub fn new(
        shared: Arc<Shared>,
        config_path: Option<PathBuf>,
        stop: impl Fn() + Send + Sync + 'static,
    ) -> EngineAdmin {
        EngineAdmin {
            shared,
            config_path,
            stop: Box::new(stop),
        }
    }

    /// Re-reads the file and works out what changed. Config errors are the caller's
    /// (HTTP 400, as frpc's invalid-argument errors).
    pub fn reread(&self) -> Result<(ClientConfig, ConfigDiff), ApiError> {
        let bad = |e: String| ApiError { code: 400, msg: e };
        let path = self
            .config_path
            .as_ref()
            .ok_or_else(|| bad("no config file to reload (started from flags)".into()))?;
        let cfg = ClientConfig::load(path).map_err(|e| bad(e.to_string()))?;
        cfg.validate().map_err(|e| bad(e.to_string()))?;
        let changes = diff(&self.shared.cfg, &cfg);
        Ok((cfg, changes))
    }
}

impl AdminBackend for EngineAdmin {
    fn status(&self) -> StatusResp {
        engine_status(&self.shared)
    }

    fn reload(&self) -> Result<(), ApiError> {
        let (_cfg, changes) = self.reread()?;
        if changes.is_empty() {
            log::info!("reload: {}", changes.summary());
            return Ok(());
        }
        // The engine's proxy and visitor sets are fixed at start for now; say exactly
        // what would change instead of half-applying it.
        Err(ApiError {
            code: 500,
            msg: format!(
                "reload: {}; applying proxy/visitor changes to a running engine is not implemented yet: restart stcp-engine to apply them",
                changes.summary()
            ),
        })
    }

    fn stop(&self) {
        (self.stop)();
    }
}
