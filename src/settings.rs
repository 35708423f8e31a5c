//! Typed configuration: built-in defaults < `config/default.toml` <
//! `--config FILE` < `COLLABD__SECTION__KEY` environment variables.
//!
//! A node refuses to start on a key it does not know (a typo would
//! otherwise leave it on a default: `[backplan] kind = "redis"` is a node
//! on the memory backplane) and on secrets anyone could know, unless it
//! only listens on loopback with the embedded backplane.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use config::{Config, Environment, File, FileFormat, Value, ValueKind};
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
    /// The web console.
    pub console: ConsoleSettings,
    /// The configuration files read, in order (not a key).
    #[serde(skip)]
    pub sources: Vec<String>,
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
    /// Seconds a client has to send a request's headers, and again its body
    /// (408 `request_timeout` after that).
    pub request_timeout_secs: u64,
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
    /// When set, `/metrics` needs it as a bearer token.
    pub metrics_token: String,
}

/// Which backplane, and where.
#[derive(Debug, Clone, Deserialize)]
pub struct BackplaneSettings {
    /// `memory` (embedded, one node), `redis` (nodes sharing one Redis) or
    /// `redis-cluster` (nodes sharing a Redis Cluster).
    pub kind: BackplaneKind,
    /// Redis URL for `redis`; `rediss://` for TLS.
    pub redis_url: String,
    /// Seed nodes of the Redis Cluster for `redis-cluster` (any few of its
    /// nodes: the rest are discovered); all `redis://` or all `rediss://`.
    pub redis_urls: Vec<String>,
    /// With N > 0 a change is acknowledged only once `WAIT N` confirmed N
    /// replicas have it (so it survives a failover); 0 does not wait.
    pub wait_replicas: u32,
    /// How long a change waits for its replicas before the answer is 503.
    pub wait_timeout_ms: u64,
    /// A PEM file of the CA certificate(s) to trust for a `rediss://` URL
    /// instead of the platform's roots; empty means the platform's roots.
    pub tls_ca_file: String,
    /// Key and channel prefix, so deployments can share a Redis.
    pub namespace: String,
}

impl BackplaneSettings {
    /// How long a change waits for `wait_replicas` replicas.
    pub fn wait_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.wait_timeout_ms)
    }
}

/// The backplane implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackplaneKind {
    /// In-process, one node.
    Memory,
    /// Shared Redis, many nodes.
    Redis,
    /// A shared Redis Cluster, many nodes.
    #[serde(rename = "redis-cluster")]
    RedisCluster,
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
    /// Requests a second one agent or customer token may make, sustained,
    /// across every node (429 `rate_limited` beyond).
    pub rate_per_token: u32,
    /// Requests such a token may make at once after a quiet spell.
    pub rate_burst: u32,
    /// Requests a second the admin token may make, across every node.
    pub admin_rate: u32,
    /// Requests the admin token may make at once.
    pub admin_burst: u32,
    /// Requests a second all the customer tokens of one account may make
    /// together, across every node: a bound on customer traffic that the
    /// account's agents cannot raise by creating sessions.
    pub customer_rate_per_account: u32,
    /// Requests they may make at once after a quiet spell.
    pub customer_burst_per_account: u32,
}

/// The web console (`/`, `/customer`, `/admin`), served from the binary.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsoleSettings {
    /// Serve it; off, those paths are 404 and only the API is served.
    pub enabled: bool,
    /// The CSP `frame-ancestors` sources: who may show the console in a
    /// frame (`'none'`: nobody; e.g. `https://support.example.com` to embed
    /// it in a host product).
    pub frame_ancestors: String,
}

impl ConsoleSettings {
    /// Refuses a `frame_ancestors` that is not a plain CSP source list:
    /// it goes into a header, so nothing may end the directive or the
    /// header (`;`, `,`, control characters).
    fn check(&self) -> Result<(), String> {
        // Spaces between sources, nothing else that is not part of one.
        let printable = self
            .frame_ancestors
            .bytes()
            .all(|b| b == b' ' || b.is_ascii_graphic());
        let sources: Vec<&str> = self
            .frame_ancestors
            .split(' ')
            .filter(|s| !s.is_empty())
            .collect();
        let plain = |s: &str| {
            matches!(s, "'none'" | "'self'")
                || (!s.starts_with('\'')
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~:/*[]%".contains(&b)))
        };
        if !printable
            || sources.is_empty()
            || !sources.iter().all(|s| plain(s))
            || (sources.contains(&"'none'") && sources.len() > 1)
        {
            return Err(format!(
                "console.frame_ancestors {:?} is not a CSP source list: use 'none', 'self' \
                 or origins such as https://support.example.com, separated by spaces",
                self.frame_ancestors
            ));
        }
        Ok(())
    }
}

/// Shortest secret accepted outside loopback + memory.
pub const MIN_SECRET_BYTES: usize = 32;

/// Secrets that ship in this repository (defaults and documentation).
const KNOWN_SECRETS: &[&str] = &["dev-admin-token", "dev-secret-change-me"];

/// Why a secret is unsafe, if it is.
fn weak_secret(value: &str) -> Option<&'static str> {
    let lower = value.to_ascii_lowercase();
    if value.is_empty() {
        Some("is empty")
    } else if KNOWN_SECRETS.contains(&value) {
        Some("is a built-in default")
    } else if [
        "change-me",
        "changeme",
        "change_me",
        "placeholder",
        "<",
        "example",
    ]
    .iter()
    .any(|p| lower.contains(p))
    {
        Some("is a placeholder")
    } else if value.len() < MIN_SECRET_BYTES {
        Some("is shorter than 32 bytes")
    } else {
        None
    }
}

/// Whether `listen` (`host:port`) names a loopback address.
fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    match listen.rsplit_once(':') {
        Some((host, _)) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// A URL with its password (and user) replaced, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{path}"),
        None => url.to_owned(),
    }
}

/// The PEM bytes of `backplane.tls_ca_file`, once they are known to hold
/// at least one certificate (and nothing unreadable); the error names the
/// file.
pub fn read_ca_file(path: &str) -> Result<Vec<u8>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let pem = std::fs::read(path)
        .map_err(|e| format!("backplane.tls_ca_file {path}: cannot be read: {e}"))?;
    // The same checks the redis crate makes when it builds the client:
    // PEM blocks, each an X.509 certificate usable as a trust anchor.
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|e| {
            format!("backplane.tls_ca_file {path}: not a PEM certificate file: {e}")
        })?;
        roots.add(certificate).map_err(|e| {
            format!("backplane.tls_ca_file {path}: not a usable CA certificate: {e}")
        })?;
    }
    if roots.is_empty() {
        return Err(format!(
            "backplane.tls_ca_file {path}: holds no PEM certificate \
             (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(pem)
}

/// Every leaf key of a configuration, dotted (`http.listen`).
fn leaf_keys(prefix: &str, value: &Value, out: &mut BTreeSet<String>) {
    match &value.kind {
        ValueKind::Table(table) => {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_keys(&key, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

fn keys_of(config: &Config) -> Result<BTreeSet<String>, config::ConfigError> {
    let mut keys = BTreeSet::new();
    let top: std::collections::HashMap<String, Value> = config.clone().try_deserialize()?;
    for (k, v) in &top {
        leaf_keys(k, v, &mut keys);
    }
    Ok(keys)
}

/// Refuses a configuration with keys the built-in defaults do not have,
/// naming each with the environment variable that would set it.
fn refuse_unknown_keys(merged: &Config) -> Result<(), config::ConfigError> {
    let known = keys_of(
        &Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .build()?,
    )?;
    let unknown: Vec<String> = keys_of(merged)?
        .into_iter()
        .filter(|k| !known.contains(k))
        .map(|k| {
            let env = format!("COLLABD__{}", k.replace('.', "__").to_ascii_uppercase());
            format!("{k} (or {env})")
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(config::ConfigError::Message(format!(
        "unknown configuration key{}: {}; known keys are those of config/default.toml",
        if unknown.len() == 1 { "" } else { "s" },
        unknown.join(", ")
    )))
}

/// The defaults every layer starts from: `config/default.toml` as it was
/// built in, so a binary run anywhere starts from the documented file (a
/// `config/default.toml` in the working directory is read over it).
const DEFAULTS: &str = include_str!("../config/default.toml");

impl Settings {
    /// Loads the layers; `file` is the `--config` argument. Unknown keys
    /// and unsafe secrets (outside loopback + memory) are refused here.
    pub fn load(file: Option<&Path>) -> Result<Self, config::ConfigError> {
        const DEFAULT_FILE: &str = "config/default.toml";
        let mut sources = Vec::new();
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if Path::new(DEFAULT_FILE).is_file() {
            sources.push(DEFAULT_FILE.to_owned());
            builder = builder.add_source(File::new(DEFAULT_FILE, FileFormat::Toml));
        }
        if let Some(path) = file {
            sources.push(path.display().to_string());
            builder = builder.add_source(File::from(path).required(true));
        }
        let merged = builder
            .add_source(
                Environment::with_prefix("COLLABD")
                    .separator("__")
                    .try_parsing(true)
                    // COLLABD__BACKPLANE__REDIS_URLS=redis://a:7000,redis://b:7000
                    .list_separator(",")
                    .with_list_parse_key("backplane.redis_urls"),
            )
            .build()?;
        refuse_unknown_keys(&merged)?;
        let mut settings: Settings = merged.try_deserialize()?;
        settings.sources = sources;
        if settings.node.id.is_empty() {
            settings.node.id = crate::domain::id::random_id("node");
        }
        settings.validate().map_err(config::ConfigError::Message)?;
        settings.check_tls().map_err(config::ConfigError::Message)?;
        settings
            .check_secrets()
            .map_err(config::ConfigError::Message)?;
        Ok(settings)
    }

    /// Whether this node is only reachable from this machine and keeps its
    /// state to itself: the one setting where development secrets are allowed.
    pub fn is_private(&self) -> bool {
        self.backplane.kind == BackplaneKind::Memory && is_loopback(&self.http.listen)
    }

    /// Refuses secrets anyone could know (built-in defaults, placeholders,
    /// fewer than 32 bytes) unless the node [is private](Self::is_private).
    pub fn check_secrets(&self) -> Result<(), String> {
        let unsafe_ones = self.unsafe_secrets();
        if unsafe_ones.is_empty() || self.is_private() {
            return Ok(());
        }
        Err(format!(
            "{}; refusing to start with {} (allowed only when http.listen is a loopback \
             address and backplane.kind is \"memory\"); set at least 32 random bytes, \
             e.g. COLLABD__AUTH__SECRET=$(openssl rand -hex 32)",
            unsafe_ones.join("; "),
            if unsafe_ones.len() == 1 { "it" } else { "them" },
        ))
    }

    /// Why each secret that is unsafe is so (empty when all are safe).
    pub fn unsafe_secrets(&self) -> Vec<String> {
        let mut found = Vec::new();
        let secrets = [
            ("auth.admin_token", self.auth.admin_token.as_str()),
            ("auth.secret", self.auth.secret.as_str()),
            ("auth.metrics_token", self.auth.metrics_token.as_str()),
        ];
        for (key, value) in secrets {
            if key == "auth.metrics_token" && value.is_empty() {
                continue; // unset: /metrics is open, a choice, not a weak secret
            }
            if let Some(why) = weak_secret(value) {
                found.push(format!("{key} {why}"));
            }
        }
        found
    }

    /// `backplane.redis_url` without its password, for logs.
    pub fn redis_url_for_logs(&self) -> String {
        redact_url(&self.backplane.redis_url)
    }

    /// `backplane.redis_urls` without passwords, for logs.
    pub fn redis_urls_for_logs(&self) -> String {
        let urls: Vec<String> = self
            .backplane
            .redis_urls
            .iter()
            .map(|u| redact_url(u))
            .collect();
        urls.join(",")
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
                (1..=1_000_000).contains(&self.limits.rate_per_token)
                    && (1..=1_000_000).contains(&self.limits.rate_burst),
                "limits.rate_per_token and limits.rate_burst must be 1 to 1000000",
            ),
            (
                (1..=1_000_000).contains(&self.limits.admin_rate)
                    && (1..=1_000_000).contains(&self.limits.admin_burst),
                "limits.admin_rate and limits.admin_burst must be 1 to 1000000",
            ),
            (
                (1..=1_000_000).contains(&self.limits.customer_rate_per_account)
                    && (1..=1_000_000).contains(&self.limits.customer_burst_per_account),
                "limits.customer_rate_per_account and limits.customer_burst_per_account must be 1 to 1000000",
            ),
            (
                (1..=3600).contains(&self.http.request_timeout_secs),
                "http.request_timeout_secs must be 1 to 3600",
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
            None => self.console.check().and_then(|()| self.check_redis_urls()),
        }
    }

    /// The Redis URLs this node connects to: `redis_url` for `redis`, the
    /// seed nodes for `redis-cluster`, none for `memory`.
    pub fn redis_urls(&self) -> Vec<&str> {
        match self.backplane.kind {
            BackplaneKind::Memory => Vec::new(),
            BackplaneKind::Redis => vec![self.backplane.redis_url.as_str()],
            BackplaneKind::RedisCluster => self
                .backplane
                .redis_urls
                .iter()
                .map(String::as_str)
                .collect(),
        }
    }

    /// Whether the Redis URLs speak TLS (`rediss://`).
    pub fn redis_tls(&self) -> bool {
        self.redis_urls()
            .first()
            .is_some_and(|u| u.starts_with("rediss://"))
    }

    /// Refuses seed lists that cannot work and durability settings out of range.
    fn check_redis_urls(&self) -> Result<(), String> {
        let b = &self.backplane;
        if b.wait_replicas > 16 {
            return Err("backplane.wait_replicas must be 0 to 16".into());
        }
        if !(1..=60_000).contains(&b.wait_timeout_ms) {
            return Err("backplane.wait_timeout_ms must be 1 to 60000".into());
        }
        if b.kind != BackplaneKind::RedisCluster {
            return Ok(());
        }
        if b.redis_urls.is_empty() {
            return Err(
                "backplane.kind is \"redis-cluster\" but backplane.redis_urls is empty; \
                        list a few of the cluster's nodes, e.g. [\"redis://10.0.0.1:7000\"]"
                    .into(),
            );
        }
        if b.redis_urls.len() > 64 {
            return Err("backplane.redis_urls lists more than 64 seed nodes".into());
        }
        for url in &b.redis_urls {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(format!(
                    "backplane.redis_urls: {} is not a redis:// or rediss:// URL",
                    redact_url(url)
                ));
            }
        }
        let tls = self.redis_tls();
        if b.redis_urls
            .iter()
            .any(|u| u.starts_with("rediss://") != tls)
        {
            return Err(
                "backplane.redis_urls mixes redis:// and rediss://; a cluster is all TLS or none"
                    .into(),
            );
        }
        Ok(())
    }

    /// Refuses a `backplane.tls_ca_file` that would only fail on the first
    /// connection: one that names no readable PEM certificate, or that
    /// comes with a URL that is not `rediss://` (it would be ignored).
    pub fn check_tls(&self) -> Result<(), String> {
        let ca_file = &self.backplane.tls_ca_file;
        if ca_file.is_empty() {
            return Ok(());
        }
        if self.backplane.kind == BackplaneKind::RedisCluster && !self.redis_tls() {
            return Err(format!(
                "backplane.tls_ca_file is set ({ca_file}) but backplane.redis_urls are not \
                 rediss:// URLs; use rediss:// for TLS, or unset tls_ca_file"
            ));
        }
        if self.backplane.kind != BackplaneKind::RedisCluster
            && !self.backplane.redis_url.starts_with("rediss://")
        {
            return Err(format!(
                "backplane.tls_ca_file is set ({ca_file}) but backplane.redis_url ({}) is not \
                 a rediss:// URL; use rediss:// for TLS, or unset tls_ca_file",
                self.redis_url_for_logs()
            ));
        }
        read_ca_file(ca_file).map(|_| ())
    }

    /// The built-in defaults alone (`config/default.toml`), read from no
    /// file and no environment.
    pub fn defaults() -> Self {
        Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .build()
            .and_then(Config::try_deserialize)
            .unwrap_or_else(|e| panic!("built-in defaults must parse: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults, valid as they are for a test (loopback, memory).
    fn test_settings() -> Settings {
        let mut s = Settings::defaults();
        s.http.listen = "127.0.0.1:0".into();
        s.auth.admin_token = "test-admin-token-0123456789abcdef".into();
        s.auth.secret = crate::domain::id::random_id("secret");
        s.sources = Vec::new();
        s
    }

    #[test]
    fn values_that_would_fail_on_a_request_path_are_refused() {
        let mut s = test_settings();
        assert!(s.validate().is_ok());
        s.sse.keep_alive_secs = 0;
        assert!(s.validate().unwrap_err().contains("keep_alive"));
        let mut s = test_settings();
        s.auth.customer_token_ttl_secs = u64::MAX;
        assert!(s.validate().unwrap_err().contains("customer_token_ttl"));
    }

    #[test]
    fn console_frame_ancestors_must_be_a_plain_csp_source_list() {
        let mut s = test_settings();
        assert_eq!(s.console.frame_ancestors, "'none'");
        for good in [
            "'self'",
            "https://support.example.com",
            "'self' https://*.example.com:8443",
        ] {
            s.console.frame_ancestors = good.into();
            assert!(s.validate().is_ok(), "{good}");
        }
        // Anything that would end the directive or the header, or 'none'
        // with others, or a keyword CSP does not mean here.
        for bad in [
            "",
            "'none' 'self'",
            "https://a.example; script-src *",
            "https://a.example, https://b.example",
            "'unsafe-inline'",
            "https://a.example\r\nX-Evil: 1",
        ] {
            s.console.frame_ancestors = bad.into();
            let err = s.validate().unwrap_err();
            assert!(err.contains("console.frame_ancestors"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn defaults_parse_and_tests_get_a_free_port() {
        let s = test_settings();
        assert_eq!(s.http.listen, "127.0.0.1:0");
        assert_eq!(s.backplane.kind, BackplaneKind::Memory);
        assert_eq!(s.sse.keep_alive_secs, 15);
    }

    #[test]
    fn the_shipped_file_alone_names_every_setting() {
        // DEFAULTS is config/default.toml built in; the known keys are its
        // keys. Alone, with no other layer, it must make whole settings: a
        // field added to the structs but not to the file fails here (and
        // could never be set, since unknown keys are refused).
        let merged = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .build()
            .unwrap();
        let s: Settings = merged.try_deserialize().unwrap();
        assert!(s.validate().is_ok());
        assert_eq!(
            (s.limits.rate_per_token, s.limits.rate_burst, s.sse.outbox),
            (20, 40, 256)
        );
    }

    fn load_file(toml: &str) -> Result<Settings, String> {
        let dir = std::env::temp_dir().join(crate::domain::id::random_id("settings"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join("collabd.toml");
        std::fs::write(&path, toml).map_err(|e| e.to_string())?;
        let loaded = Settings::load(Some(&path)).map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        loaded
    }

    const STRONG: &str = "0123456789abcdef0123456789abcdef-strong";

    #[test]
    fn a_misspelt_section_or_key_refuses_start_up_naming_it() {
        let err = load_file("[backplan]\nkind = \"redis\"\n").unwrap_err();
        assert!(err.contains("backplan.kind"), "{err}");
        assert!(err.contains("COLLABD__BACKPLAN__KIND"), "{err}");
        let err = load_file("[http]\nlistn = \"0.0.0.0:1\"\n").unwrap_err();
        assert!(err.contains("http.listn"), "{err}");
    }

    #[test]
    fn development_secrets_are_refused_outside_loopback_and_memory() {
        // Loopback + memory: allowed (the node warns).
        let dev = load_file("[http]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        assert!(dev.is_private());
        assert_eq!(dev.unsafe_secrets().len(), 2, "{:?}", dev.unsafe_secrets());
        // Reachable from elsewhere: refused, naming each secret.
        let err = load_file("[http]\nlisten = \"0.0.0.0:0\"\n").unwrap_err();
        assert!(
            err.contains("auth.admin_token is a built-in default"),
            "{err}"
        );
        assert!(err.contains("auth.secret is a built-in default"), "{err}");
        // Loopback but shared through Redis: refused too.
        let err = load_file("[backplane]\nkind = \"redis\"\n").unwrap_err();
        assert!(err.contains("auth.secret"), "{err}");
        // Empty, short or placeholder: refused as well.
        let err = load_file(&format!(
            "[http]\nlisten = \"0.0.0.0:0\"\n[auth]\nadmin_token = \"{STRONG}\"\nsecret = \"\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("auth.secret must not be empty"), "{err}");
        let err = load_file(&format!(
            "[http]\nlisten = \"0.0.0.0:0\"\n[auth]\nadmin_token = \"{STRONG}\"\nsecret = \"short\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("shorter than 32 bytes"), "{err}");
        let err = load_file(&format!(
            "[http]\nlisten = \"0.0.0.0:0\"\n[auth]\nadmin_token = \"{STRONG}\"\nsecret = \"<change-me: 32 random bytes here>\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("placeholder"), "{err}");
        // Strong secrets: fine anywhere.
        let ok = load_file(&format!(
            "[http]\nlisten = \"0.0.0.0:0\"\n[auth]\nadmin_token = \"{STRONG}\"\nsecret = \"{STRONG}x\"\n"
        ))
        .unwrap();
        assert!(ok.unsafe_secrets().is_empty());
        assert!(!ok.is_private());
    }

    #[test]
    fn a_tls_ca_file_that_is_missing_not_a_certificate_or_without_rediss_refuses_start_up() {
        let dir = std::env::temp_dir().join(crate::domain::id::random_id("ca"));
        std::fs::create_dir_all(&dir).unwrap();
        let with = |url: &str, ca: &Path| {
            format!(
                "[backplane]\nredis_url = \"{url}\"\ntls_ca_file = \"{}\"\n",
                ca.display()
            )
        };
        let tls = "rediss://127.0.0.1:6380";

        // Unset: nothing to check, whatever the URL.
        assert!(load_file(&format!("[backplane]\nredis_url = \"{tls}\"\n")).is_ok());

        let missing = dir.join("missing.pem");
        let err = load_file(&with(tls, &missing)).unwrap_err();
        assert!(err.contains("backplane.tls_ca_file"), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("cannot be read"), "{err}");

        let text = dir.join("notes.txt");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let err = load_file(&with(tls, &text)).unwrap_err();
        assert!(err.contains(&text.display().to_string()), "{err}");
        assert!(err.contains("no PEM certificate"), "{err}");

        // A private key alone is no CA.
        let key = dir.join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = load_file(&with(tls, &key)).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");

        // A certificate block whose content is no certificate.
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = load_file(&with(tls, &garbage)).unwrap_err();
        assert!(err.contains(&garbage.display().to_string()), "{err}");
        assert!(err.contains("not a usable CA certificate"), "{err}");

        // A CA for a URL that is not TLS would be ignored: refused, the
        // URL's password kept out of the message.
        let err = load_file(&with("redis://:hunter2@127.0.0.1:6379", &garbage)).unwrap_err();
        assert!(err.contains("not a rediss:// URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn loopback_is_recognised_in_every_spelling() {
        for l in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "127.0.0.2:0",
        ] {
            assert!(is_loopback(l), "{l}");
        }
        for l in ["0.0.0.0:8080", "[::]:8080", "10.0.0.1:80", "example.com:80"] {
            assert!(!is_loopback(l), "{l}");
        }
    }

    #[test]
    fn redis_passwords_never_reach_the_logs() {
        assert_eq!(
            redact_url("redis://:hunter2@redis:6379/0"),
            "redis://***@redis:6379/0"
        );
        assert_eq!(
            redact_url("rediss://user:pw@10.0.0.1:6380"),
            "rediss://***@10.0.0.1:6380"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
