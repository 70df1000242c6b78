//! The forwarder's settings: a TOML file (`DIR/forwarder.toml` unless `--config` names
//! another) overridden by `FORWARDER_*` environment variables.
//!
//! | key | env | default |
//! |---|---|---|
//! | `api_listen` | `FORWARDER_API_LISTEN` | `127.0.0.1:8444` |
//! | `database_url` | `FORWARDER_DATABASE_URL` | SQLite file `DIR/forwarder.sqlite` |
//! | `max_body_bytes` | `FORWARDER_MAX_BODY_BYTES` | 1048576 (1 MiB) |
//! | `request_timeout_secs` | `FORWARDER_REQUEST_TIMEOUT_SECS` | 60 |
//! | `pool_size` | `FORWARDER_POOL_SIZE` | 8 |
//! | `[sip] listen` | `FORWARDER_SIP_LISTEN` | (no SIP without `[sip]`) |
//! | `[central] central_url` | `FORWARDER_CENTRAL_URL` | |
//! | `[central] enrollment_token` | `FORWARDER_ENROLLMENT_TOKEN` | |
//! | `[mail]` SMTP password | `FORWARDER_SMTP_PASSWORD` | (or `password_file`) |
//!
//! The call path's tables (`[sip]`, `[central]`, `[routing]`, `[selection]`,
//! `[media]`, `[plans.*]`, `[rounding.*]`) are described in
//! [`crate::call_config`]; `[statements]` and `[mail]` in
//! [`crate::statements::config`].

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The config file as written (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    api_listen: Option<SocketAddr>,
    database_url: Option<String>,
    max_body_bytes: Option<usize>,
    request_timeout_secs: Option<u64>,
    pool_size: Option<u32>,
    // The SIP call path (see `crate::call_config`).
    sip: Option<crate::call_config::SipSection>,
    central: Option<crate::call_config::CentralSection>,
    routing: Option<crate::call_config::RoutingSection>,
    selection: Option<provider_sdk::select::Policy>,
    media: Option<provider_sdk::gateway::MediaConfig>,
    #[serde(default)]
    plans: std::collections::BTreeMap<String, crate::rating::PlanConfig>,
    #[serde(default)]
    rounding: std::collections::BTreeMap<String, crate::rating::Rounding>,
    // Billing statements (see `crate::statements::config`).
    statements: Option<crate::statements::config::StatementsSection>,
    mail: Option<crate::statements::config::MailSection>,
}

/// Effective settings.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Where the HTTPS API listens.
    pub api_listen: SocketAddr,
    pub database_url: String,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub pool_size: u32,
    /// The SIP call path; `None` when the file has no `[sip]` table.
    pub calls: Option<crate::call_config::CallConfig>,
    /// The statement schedule; `None` when the file has no `[statements]`
    /// table (then `forwarder serve` issues none; `forwarder statements run`
    /// uses the default schedule).
    pub statements: Option<crate::statements::config::StatementSettings>,
    /// How mail is sent (default: `.eml` files in `DIR/outbox`).
    pub mail: crate::statements::config::MailSettings,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // database_url may contain a password.
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("api_listen", &self.api_listen)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

pub const CONFIG_FILE: &str = "forwarder.toml";
pub const SQLITE_FILE: &str = "forwarder.sqlite";

impl Config {
    /// Defaults for a data directory, before file and environment.
    pub fn defaults(data_dir: &Path) -> Config {
        Config {
            data_dir: data_dir.to_path_buf(),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 8444)),
            database_url: data_dir.join(SQLITE_FILE).to_string_lossy().into_owned(),
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            pool_size: 8,
            calls: None,
            statements: None,
            mail: crate::statements::config::MailSettings::defaults(data_dir),
        }
    }

    /// Defaults, then the config file (if `file` is given it must exist;
    /// otherwise `DIR/forwarder.toml` is read when present), then the
    /// environment.
    pub fn load(data_dir: &Path, file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = Config::defaults(data_dir);
        let (path, required) = match file {
            Some(p) => (p.to_path_buf(), true),
            None => (data_dir.join(CONFIG_FILE), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => cfg.apply_file(&path, &text)?,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ConfigError::Read { path, source }),
        }
        cfg.apply_env(|name| std::env::var(name).ok())?;
        cfg.check()?;
        Ok(cfg)
    }

    fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let f: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(v) = f.api_listen {
            self.api_listen = v;
        }
        if let Some(v) = f.database_url {
            self.database_url = v;
        }
        if let Some(v) = f.max_body_bytes {
            self.max_body_bytes = v;
        }
        if let Some(v) = f.request_timeout_secs {
            self.request_timeout = Duration::from_secs(v);
        }
        if let Some(v) = f.pool_size {
            self.pool_size = v;
        }
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        if let Some(st) = f.statements {
            self.statements = Some(
                st.resolve()
                    .map_err(|m| parse_error(format!("[statements] {m}")))?,
            );
        }
        if let Some(m) = f.mail {
            self.mail = m.resolve(&self.data_dir).map_err(parse_error)?;
        }
        match (f.sip, f.central) {
            (Some(sip), Some(central)) => {
                let mut calls = crate::call_config::CallConfig {
                    sip,
                    central: central.enrollment(),
                    routing: f.routing.unwrap_or_default(),
                    selection: f.selection.unwrap_or_default(),
                    media: f.media.unwrap_or_default(),
                    rating: crate::rating::RatingConfig {
                        plans: f.plans,
                        rounding: f.rounding,
                    },
                };
                calls.resolve_paths(&self.data_dir);
                self.calls = Some(calls);
            }
            (None, None) if f.routing.is_none() => {}
            _ => {
                return Err(parse_error(
                    "the call path needs both [sip] and [central]".into(),
                ))
            }
        }
        Ok(())
    }

    /// Applies `FORWARDER_*` overrides read through `get` (testable without
    /// touching the process environment).
    pub fn apply_env(
        &mut self,
        get: impl Fn(&'static str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.trim().parse().map_err(|e: T::Err| ConfigError::Env {
                name,
                message: e.to_string(),
            })
        }
        if let Some(v) = get("FORWARDER_API_LISTEN") {
            self.api_listen = parse("FORWARDER_API_LISTEN", &v)?;
        }
        if let Some(v) = get("FORWARDER_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("FORWARDER_MAX_BODY_BYTES") {
            self.max_body_bytes = parse("FORWARDER_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("FORWARDER_REQUEST_TIMEOUT_SECS") {
            self.request_timeout =
                Duration::from_secs(parse("FORWARDER_REQUEST_TIMEOUT_SECS", &v)?);
        }
        if let Some(v) = get("FORWARDER_POOL_SIZE") {
            self.pool_size = parse("FORWARDER_POOL_SIZE", &v)?;
        }
        if let Some(v) = get("FORWARDER_SMTP_PASSWORD") {
            if let crate::statements::config::Transport::Smtp(s) = &mut self.mail.transport {
                s.password = Some(v);
            }
        }
        if let Some(calls) = self.calls.as_mut() {
            if let Some(v) = get("FORWARDER_SIP_LISTEN") {
                calls.sip.listen = parse("FORWARDER_SIP_LISTEN", &v)?;
            }
            if let Some(v) = get("FORWARDER_CENTRAL_URL") {
                calls.central.central_url = v;
            }
            if let Some(v) = get("FORWARDER_ENROLLMENT_TOKEN") {
                calls.central.enrollment_token = Some(v);
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Invalid("max_body_bytes must be > 0".into()));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "request_timeout_secs must be > 0".into(),
            ));
        }
        if self.pool_size == 0 {
            return Err(ConfigError::Invalid("pool_size must be > 0".into()));
        }
        if self.database_url.trim().is_empty() {
            return Err(ConfigError::Invalid("database_url is empty".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "api_listen = \"127.0.0.1:9000\"\nmax_body_bytes = 1000\n",
        )
        .unwrap();
        let mut cfg = Config::defaults(dir.path());
        let text = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
        cfg.apply_file(dir.path(), &text).unwrap();
        assert_eq!(cfg.api_listen.port(), 9000);
        assert_eq!(cfg.max_body_bytes, 1000);
        cfg.apply_env(|n| (n == "FORWARDER_API_LISTEN").then(|| "127.0.0.1:9100".to_string()))
            .unwrap();
        assert_eq!(cfg.api_listen.port(), 9100);
        assert!(cfg.database_url.ends_with(SQLITE_FILE));
    }

    #[test]
    fn bad_values_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::defaults(dir.path());
        assert!(cfg.apply_file(dir.path(), "api_listen = 5").is_err());
        assert!(cfg.apply_file(dir.path(), "unknown_key = 1").is_err());
        let err = cfg
            .apply_env(|n| (n == "FORWARDER_POOL_SIZE").then(|| "many".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("FORWARDER_POOL_SIZE"));
        cfg.max_body_bytes = 0;
        assert!(cfg.check().is_err());
    }
}
