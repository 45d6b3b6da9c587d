//! The admin API on a running engine: status from the engine's shared state, reload
//! from the config file the engine was started with (also SIGHUP).

use super::reload::{diff, ConfigDiff};
use super::server::{AdminBackend, ApiError};
use super::status::{engine_status, StatusResp};
use crate::config::ClientConfig;
use crate::engine::EngineControl;
use std::path::PathBuf;

pub struct EngineAdmin {
    engine: EngineControl,
    /// `None` when started from flags (`stcp-engine stcp ...`): nothing to re-read.
    config_path: Option<PathBuf>,
    stop: Box<dyn Fn() + Send + Sync>,
}

impl EngineAdmin {
    /// `stop` begins a graceful stop of the process (`POST /api/stop`).
    pub fn new(
        engine: EngineControl,
        config_path: Option<PathBuf>,
        stop: impl Fn() + Send + Sync + 'static,
    ) -> EngineAdmin {
        EngineAdmin {
            engine,
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
        let changes = diff(&self.engine.shared().current_config(), &cfg);
        Ok((cfg, changes))
    }
}

impl AdminBackend for EngineAdmin {
    fn status(&self) -> StatusResp {
        engine_status(self.engine.shared())
    }

    /// frpc's reload: the proxy and visitor lists of the file are put in force; the
    /// common section (server, auth, transport, ...) needs a restart, so a change
    /// there is reported in the log and otherwise ignored, as frpc does.
    fn reload(&self) -> Result<(), ApiError> {
        let (cfg, changes) = self.reread()?;
        let started = &self.engine.shared().cfg;
        if common_section(started) != common_section(&cfg) {
            log::warn!("reload: the common section of the config changed; it takes effect at the next restart (only proxies and visitors are reloaded, as in frpc)");
        }
        log::info!("reload: {}", changes.summary());
        if !changes.is_empty() {
            self.engine.apply(&cfg.proxies, &cfg.visitors);
        }
        Ok(())
    }

    fn stop(&self) {
        (self.stop)();
    }
}

/// A config without its proxy and visitor lists.
fn common_section(cfg: &ClientConfig) -> ClientConfig {
    ClientConfig {
        proxies: Vec::new(),
        visitors: Vec::new(),
        ..cfg.clone()
    }
}
