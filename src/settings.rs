//! Typed configuration: built-in defaults < `config/default.toml` <
//! `--config FILE` < `COLLABD__SECTION__KEY` environment variables.

use std::path::Path;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

/// Everything a node is configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The HTTP listener.
    pub http: HttpSettings,
    /// This node.
    pub node: NodeSettings,
    /// Tokens.
    pub auth: AuthSettings,
    /// How nodes share state.
    pub backplane: BackplaneSettings,
    /// Logging.
    pub log: LogSettings,
    /// Event streams.
    pub sse: SseSettings,
    /// Bounds on what one client may hold.
    pub limits: LimitSettings,
}

/// The HTTP listener.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// Address to listen on, e.g. `127.0.0.1:8080` (port 0 picks a free one).
    pub listen: String,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// Seconds to wait for requests in flight on shutdown.
    pub shutdown_timeout_secs: u64,
}

/// This node's identity.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeSettings {
    /// A name for this node in logs and metrics; empty means generated.
    pub id: String,
}

/// Token issuing and checking.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// The admin bearer token.
    pub admin_token: String,
    /// The key agent and customer tokens are signed with (HMAC-SHA256).
    pub secret: String,
    /// How long a minted agent token is valid.
    pub agent_token_ttl_secs: u64,
    /// How long a customer token is valid.
    pub customer_token_ttl_secs: u64,
}

/// Which backplane, and where.
#[derive(Debug, Clone, Deserialize)]
pub struct BackplaneSettings {
    /// `memory` (embedded, one node) or `redis` (cluster).
    pub kind: BackplaneKind,
    /// Redis URL for `redis`.
    pub redis_url: String,
    /// Key and channel prefix, so deployments can share a Redis.
    pub namespace: String,
}

/// The backplane implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackplaneKind {
    /// In-process, one node.
    Memory,
    /// Shared Redis, many nodes.
    Redis,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `collabd=debug,info`.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Event streams.
#[derive(Debug, Clone, Deserialize)]
pub struct SseSettings {
    /// Seconds between `: keep-alive` comments.
    pub keep_alive_secs: u64,
    /// Events buffered per client; a client further behind is disconnected.
    pub outbox: usize,
    /// Bytes buffered per client; a client further behind is disconnected.
    pub outbox_bytes: usize,
}

/// Bounds on what one client may hold.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    /// Event streams one token may hold open at once on a node; the next
    /// one is refused (429 `too_many_streams`), none is dropped.
    pub streams_per_token: usize,
    /// Requests (event streams aside, once open) a node handles at once;
    /// more are refused with 503 and `Retry-After` rather than queued.
    pub max_in_flight: usize,
}

/// The defaults every layer starts from (the same as `config/default.toml`).
const DEFAULTS: &str = r#"
[http]
listen = "127.0.0.1:8080"
workers = 0
max_body_bytes = 65536
shutdown_timeout_secs = 5

[node]
id = ""

[auth]
admin_token = "dev-admin-token"
secret = "dev-secret-change-me"
agent_token_ttl_secs = 86400
customer_token_ttl_secs = 86400

[backplane]
kind = "memory"
redis_url = "redis://127.0.0.1:6379"
namespace = "collabd"

[log]
format = "pretty"
level = "info"

[sse]
keep_alive_secs = 15
outbox = 256
outbox_bytes = 1048576

[limits]
streams_per_token = 4
max_in_flight = 1024
"#;

impl Settings {
    /// Loads the layers; `file` is the `--config` argument.
    pub fn load(file: Option<&Path>) -> Result<Self, config::ConfigError> {
        let mut builder = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .add_source(File::with_name("config/default").required(false));
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).required(true));
        }
        let mut settings: Settings = builder
            .add_source(
                Environment::with_prefix("COLLABD")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
        if settings.node.id.is_empty() {
            settings.node.id = crate::domain::id::random_id("node");
        }
        settings.validate().map_err(config::ConfigError::Message)?;
        Ok(settings)
    }

    /// Refuses values that would fail later, on a request path.
    pub fn validate(&self) -> Result<(), String> {
        /// Ten years: longer token lifetimes overflow date arithmetic.
        const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;
        let checks = [
            (
                self.sse.keep_alive_secs >= 1,
                "sse.keep_alive_secs must be at least 1",
            ),
            (self.sse.outbox >= 1, "sse.outbox must be at least 1"),
            (
                self.sse.outbox_bytes >= 4096,
                "sse.outbox_bytes must be at least 4096",
            ),
            (
                self.limits.streams_per_token >= 1,
                "limits.streams_per_token must be at least 1",
            ),
            (
                self.limits.max_in_flight >= 1,
                "limits.max_in_flight must be at least 1",
            ),
            (
                self.http.max_body_bytes >= 1024,
                "http.max_body_bytes must be at least 1024",
            ),
            (
                (1..=MAX_TTL_SECS).contains(&self.auth.agent_token_ttl_secs),
                "auth.agent_token_ttl_secs must be 1 to 315360000",
            ),
            (
                (1..=MAX_TTL_SECS).contains(&self.auth.customer_token_ttl_secs),
                "auth.customer_token_ttl_secs must be 1 to 315360000",
            ),
            (
                !self.auth.admin_token.is_empty(),
                "auth.admin_token must not be empty",
            ),
            (
                !self.auth.secret.is_empty(),
                "auth.secret must not be empty",
            ),
            (
                !self.backplane.namespace.is_empty()
                    && self
                        .backplane
                        .namespace
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "backplane.namespace must be letters, digits, '-' or '_' (it is part of every Redis key's hash tag)",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err((*why).to_owned()),
            None => Ok(()),
        }
    }

    /// Settings for tests: memory backplane, a free port, one worker.
    pub fn for_tests() -> Self {
        let mut s: Settings = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .build()
            .and_then(Config::try_deserialize)
            .unwrap_or_else(|e| panic!("built-in defaults must parse: {e}"));
        s.http.listen = "127.0.0.1:0".into();
        s.http.workers = 1;
        s.http.shutdown_timeout_secs = 1;
        s.node.id = crate::domain::id::random_id("node");
        s.auth.admin_token = "test-admin-token".into();
        s.auth.secret = crate::domain::id::random_id("secret");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_would_fail_on_a_request_path_are_refused() {
        let mut s = Settings::for_tests();
        assert!(s.validate().is_ok());
        s.sse.keep_alive_secs = 0;
        assert!(s.validate().unwrap_err().contains("keep_alive"));
        let mut s = Settings::for_tests();
        s.auth.customer_token_ttl_secs = u64::MAX;
        assert!(s.validate().unwrap_err().contains("customer_token_ttl"));
    }

    #[test]
    fn defaults_parse_and_tests_get_a_free_port() {
        let s = Settings::for_tests();
        assert_eq!(s.http.listen, "127.0.0.1:0");
        assert_eq!(s.backplane.kind, BackplaneKind::Memory);
        assert_eq!(s.sse.keep_alive_secs, 15);
    }
}
