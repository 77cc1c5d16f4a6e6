//! Runtime configuration: `Leptos.toml` plus environment overrides (SPEC section 7).

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Everything the server reads at start-up.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub runner: RunnerConfig,
    pub llm: LlmConfig,
    pub notify: NotifyConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub site_addr: String,
    pub site_root: String,
    pub db: PathBuf,
    pub max_upload_bytes: usize,
    pub max_rows: usize,
    /// How long a database statement waits for a lock someone else holds.
    pub busy_timeout_ms: u64,
    /// `postgres://…` runs on PostgreSQL (SPEC section 10); empty, on the SQLite `db`.
    pub database_url: String,
    /// The access token (SPEC section 9); empty = open to anyone who can connect.
    pub token: String,
    /// Serve without a token on an address other machines can reach.
    pub allow_open: bool,
    /// Host names requests may name besides loopback, the served address and the
    /// public URL's host (SPEC section 11), comma-separated; `*` takes any.
    pub allowed_hosts: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct RunnerConfig {
    pub pause_poll_ms: u64,
    pub default_concurrency: u32,
    pub global_concurrency: usize,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub shutdown_grace_ms: u64,
    pub request_timeout_ms: u64,
    pub max_body_bytes: usize,
    pub max_extra_pages: usize,
    pub allow_private_targets: bool,
    pub user_agent: String,
    /// PostgreSQL: a worker silent for this long is dead and its items are rescued.
    pub worker_timeout_ms: u64,
    /// Items failing in a row that pause their job (an error burst); 0 = off.
    pub error_burst: u32,
    /// Requests in flight to one host (scheme, host, port) over every job.
    pub host_concurrency: usize,
    /// Whether robots.txt is read and followed.
    pub robots: RobotsPolicy,
}

/// `JOBDECK_ROBOTS`: `obey` (robots.txt is read and followed) or `ignore`, for sites the
/// operator owns.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RobotsPolicy {
    #[default]
    Obey,
    Ignore,
}

impl FromStr for RobotsPolicy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_lowercase().as_str() {
            "obey" => Ok(Self::Obey),
            "ignore" => Ok(Self::Ignore),
            _ => Err(()),
        }
    }
}

/// Notifications (SPEC section 8): all off unless configured.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct NotifyConfig {
    /// Where job events are POSTed; empty = no webhook.
    pub webhook_url: String,
    /// The HMAC-SHA256 key of `X-Jobdeck-Signature`.
    pub webhook_secret: String,
    /// `smtp://host:port` (or `smtps://user:pass@host`); empty = no e-mail.
    pub smtp_url: String,
    /// Who gets the e-mails (one or more addresses, comma-separated).
    pub email_to: String,
    /// The sender of the e-mails.
    pub email_from: String,
    /// Tries of one delivery before it is given up (and logged as failed).
    pub max_tries: u32,
    /// The wait before the second try; it doubles per try, up to ten minutes.
    pub retry_base_ms: u64,
    /// The address links in e-mails point to; empty = `http://` + the site address.
    pub public_url: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct LlmConfig {
    pub base_url: String,
    pub api_key: String,
    pub model: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            site_addr: "127.0.0.1:3000".into(),
            site_root: "target/site".into(),
            db: PathBuf::from("data/jobdeck.sqlite3"),
            max_upload_bytes: 50 * 1024 * 1024,
            max_rows: 1_000_000,
            busy_timeout_ms: 10_000,
            database_url: String::new(),
            token: String::new(),
            allow_open: false,
            allowed_hosts: String::new(),
        }
    }
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            pause_poll_ms: 3000,
            default_concurrency: 5,
            global_concurrency: 64,
            max_attempts: 3,
            retry_base_ms: 500,
            shutdown_grace_ms: 10_000,
            request_timeout_ms: 15_000,
            max_body_bytes: 2 * 1024 * 1024,
            max_extra_pages: 2,
            allow_private_targets: false,
            user_agent: "jobdeck/0.1 (account research; self-hosted)".into(),
            worker_timeout_ms: 30_000,
            host_concurrency: 2,
            robots: RobotsPolicy::Obey,
            error_burst: 10,
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            webhook_url: String::new(),
            webhook_secret: String::new(),
            smtp_url: String::new(),
            email_to: String::new(),
            email_from: "jobdeck <jobdeck@localhost>".into(),
            max_tries: 10,
            retry_base_ms: 2_000,
            public_url: String::new(),
        }
    }
}

impl ServerConfig {
    /// Why this server must not start as configured: no token on an address other
    /// machines can reach, unless that is allowed explicitly.
    pub fn open_refusal(&self, addr: std::net::SocketAddr) -> Option<String> {
        let open = self.token.trim().is_empty() && !addr.ip().is_loopback();
        (open && !self.allow_open).then(|| {
            format!(
                "refusing to serve on {addr} without an access token: anyone who can reach it could run, \
                 pause and delete jobs. Set JOBDECK_TOKEN, serve on a loopback address (127.0.0.1), \
                 or set JOBDECK_ALLOW_OPEN=1 if the network in front of it is trusted"
            )
        })
    }

    pub fn busy_timeout(&self) -> Duration {
        Duration::from_millis(self.busy_timeout_ms)
    }

    /// The PostgreSQL URL when one is set.
    pub fn postgres_url(&self) -> Option<&str> {
        Some(self.database_url.trim()).filter(|u| !u.is_empty())
    }
}

impl RunnerConfig {
    /// `JOBDECK_ROBOTS=ignore`: robots.txt is not read (sites the operator owns).
    pub fn ignores_robots(&self) -> bool {
        self.robots == RobotsPolicy::Ignore
    }
    pub fn pause_poll(&self) -> Duration {
        Duration::from_millis(self.pause_poll_ms.max(10))
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
    pub fn worker_timeout(&self) -> Duration {
        Duration::from_millis(self.worker_timeout_ms.max(100))
    }
}

impl LlmConfig {
    /// The LLM profile is asked for only when an endpoint is configured.
    pub fn enabled(&self) -> bool {
        !self.base_url.trim().is_empty()
    }
}

/// A configuration that cannot be used; start-up stops with this message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not valid: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("environment variable {name}={value:?} is not valid")]
    Env { name: &'static str, value: String },
}

impl Config {
    /// Reads `$JOBDECK_CONFIG` (default `Leptos.toml`; a missing default file means
    /// built-in defaults), then applies the environment overrides.
    pub fn load() -> Result<Self, ConfigError> {
        let explicit = std::env::var("JOBDECK_CONFIG").ok();
        let path = explicit.clone().unwrap_or_else(|| "Leptos.toml".into());
        let mut config = if explicit.is_some() || Path::new(&path).exists() {
            let text =
                std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            Self::from_toml(&text).map_err(|source| ConfigError::Parse { path, source })?
        } else {
            Self::default()
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Applies overrides from `lookup` (the process environment in production).
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let s = &mut self.server;
        set(&lookup, "LEPTOS_SITE_ADDR", &mut s.site_addr)?;
        set(&lookup, "LEPTOS_SITE_ROOT", &mut s.site_root)?;
        set(&lookup, "JOBDECK_DB", &mut s.db)?;
        set(&lookup, "JOBDECK_MAX_UPLOAD_BYTES", &mut s.max_upload_bytes)?;
        set(&lookup, "JOBDECK_MAX_ROWS", &mut s.max_rows)?;
        set(&lookup, "JOBDECK_BUSY_TIMEOUT_MS", &mut s.busy_timeout_ms)?;
        set(&lookup, "JOBDECK_DATABASE_URL", &mut s.database_url)?;
        set(&lookup, "JOBDECK_TOKEN", &mut s.token)?;
        set(&lookup, "JOBDECK_ALLOWED_HOSTS", &mut s.allowed_hosts)?;
        if let Some(value) = lookup("JOBDECK_ALLOW_OPEN") {
            s.allow_open = parse_bool(&value).ok_or(ConfigError::Env { name: "JOBDECK_ALLOW_OPEN", value })?;
        }
        let r = &mut self.runner;
        set(&lookup, "JOBDECK_PAUSE_POLL_MS", &mut r.pause_poll_ms)?;
        set(&lookup, "JOBDECK_DEFAULT_CONCURRENCY", &mut r.default_concurrency)?;
        set(&lookup, "JOBDECK_GLOBAL_CONCURRENCY", &mut r.global_concurrency)?;
        set(&lookup, "JOBDECK_MAX_ATTEMPTS", &mut r.max_attempts)?;
        set(&lookup, "JOBDECK_RETRY_BASE_MS", &mut r.retry_base_ms)?;
        set(&lookup, "JOBDECK_SHUTDOWN_GRACE_MS", &mut r.shutdown_grace_ms)?;
        set(&lookup, "JOBDECK_REQUEST_TIMEOUT_MS", &mut r.request_timeout_ms)?;
        set(&lookup, "JOBDECK_MAX_BODY_BYTES", &mut r.max_body_bytes)?;
        set(&lookup, "JOBDECK_MAX_EXTRA_PAGES", &mut r.max_extra_pages)?;
        set(&lookup, "JOBDECK_USER_AGENT", &mut r.user_agent)?;
        set(&lookup, "JOBDECK_WORKER_TIMEOUT_MS", &mut r.worker_timeout_ms)?;
        set(&lookup, "JOBDECK_HOST_CONCURRENCY", &mut r.host_concurrency)?;
        set(&lookup, "JOBDECK_ROBOTS", &mut r.robots)?;
        set(&lookup, "JOBDECK_ERROR_BURST", &mut r.error_burst)?;
        if let Some(value) = lookup("JOBDECK_ALLOW_PRIVATE_TARGETS") {
            r.allow_private_targets =
                parse_bool(&value).ok_or(ConfigError::Env { name: "JOBDECK_ALLOW_PRIVATE_TARGETS", value })?;
        }
        let l = &mut self.llm;
        set(&lookup, "JOBDECK_LLM_BASE_URL", &mut l.base_url)?;
        set(&lookup, "JOBDECK_LLM_API_KEY", &mut l.api_key)?;
        set(&lookup, "JOBDECK_LLM_MODEL", &mut l.model)?;
        let n = &mut self.notify;
        set(&lookup, "JOBDECK_WEBHOOK_URL", &mut n.webhook_url)?;
        set(&lookup, "JOBDECK_WEBHOOK_SECRET", &mut n.webhook_secret)?;
        set(&lookup, "JOBDECK_SMTP_URL", &mut n.smtp_url)?;
        set(&lookup, "JOBDECK_NOTIFY_EMAIL", &mut n.email_to)?;
        set(&lookup, "JOBDECK_NOTIFY_FROM", &mut n.email_from)?;
        set(&lookup, "JOBDECK_NOTIFY_TRIES", &mut n.max_tries)?;
        set(&lookup, "JOBDECK_NOTIFY_RETRY_BASE_MS", &mut n.retry_base_ms)?;
        set(&lookup, "JOBDECK_PUBLIC_URL", &mut n.public_url)?;
        Ok(())
    }
}

fn set<T: FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    field: &mut T,
) -> Result<(), ConfigError> {
    if let Some(value) = lookup(name) {
        *field = value.trim().parse().map_err(|_| ConfigError::Env { name, value })?;
    }
    Ok(())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_leptos_toml_parses_and_env_wins() {
        let text = include_str!("../../Leptos.toml");
        let mut config = Config::from_toml(text).expect("Leptos.toml parses");
        assert_eq!(config.runner.pause_poll_ms, 3000);
        assert!(!config.runner.allow_private_targets);
        assert_eq!(config.server.postgres_url(), None, "SQLite unless a database URL is given");
        assert_eq!(config.runner.worker_timeout_ms, 30_000);
        let env = |name: &str| match name {
            "JOBDECK_PAUSE_POLL_MS" => Some("250".to_string()),
            "JOBDECK_ALLOW_PRIVATE_TARGETS" => Some("1".to_string()),
            "JOBDECK_DB" => Some("/tmp/x.sqlite3".to_string()),
            "JOBDECK_DATABASE_URL" => Some(" postgres://db/jobdeck ".to_string()),
            "JOBDECK_WORKER_TIMEOUT_MS" => Some("5000".to_string()),
            _ => None,
        };
        config.apply_env(env).unwrap();
        assert_eq!(config.runner.pause_poll_ms, 250);
        assert!(config.runner.allow_private_targets);
        assert_eq!(config.server.db, PathBuf::from("/tmp/x.sqlite3"));
        assert_eq!(config.server.postgres_url(), Some("postgres://db/jobdeck"));
        assert_eq!(config.runner.worker_timeout(), Duration::from_secs(5));
    }

    #[test]
    fn a_bad_override_is_named() {
        let mut config = Config::default();
        let err = config.apply_env(|n| (n == "JOBDECK_PAUSE_POLL_MS").then(|| "soon".to_string())).unwrap_err();
        assert!(err.to_string().contains("JOBDECK_PAUSE_POLL_MS"));
    }
}
